"""Runs waiting for the next health collection: what a build that rebuilt nothing leaves behind.

A state-aware `mesh build` in which no domain had anything to do runs no dbt, publishes nothing and
does not re-judge the mesh (`mesh health` does, at any time); it still records that each domain
reused its models. Those runs go to a small file beside the history, appended in one write, and the
next collection moves them into the history's ``runs`` table (command ``reused``).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from mesh_tools.core.files import append_durably, remove_below, write_atomic
from mesh_tools.core.jsonfile import loads
from mesh_tools.core.mesh import Mesh
from mesh_tools.health.inputs import RunEvent, parse_time

PENDING = "pending-runs.jsonl"
# Builds that rebuild nothing, every few minutes for months, and no collection: the file keeps only
# the latest runs (they all say the same, "reused"), so it never grows without bound.
KEEP_BYTES = 1_000_000
KEEP_LINES = 2_000


def defer_runs(mesh: Mesh, events: list[RunEvent], at: datetime) -> None:
    """Append ``events`` (runs that rebuilt nothing) for the next collection."""
    folder = mesh.health_path
    below = mesh.anchor(folder)  # below the mesh root: no folder on the way may be a link
    batch = uuid.uuid4().hex[:16]
    text = "".join(
        json.dumps(
            {
                "id": batch,
                "domain": e.domain,
                "status": e.status,
                "seconds": e.seconds,
                "models_reused": e.models_reused,
                "at": at.isoformat(),
            }
        )
        + "\n"  # fmt: skip
        for e in events
    )
    path = folder / PENDING
    append_durably(path, text.encode("utf-8"), below=below)  # one write, never through a link planted there
    if path.stat().st_size > KEEP_BYTES:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        write_atomic(path, "".join(lines[-KEEP_LINES:]), below=below)


def pending_runs(mesh: Mesh) -> list[tuple[str, RunEvent, datetime]]:
    """(batch id, event, when) of every deferred run; a line that is not one is skipped."""
    path = mesh.health_path / PENDING
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    found = []
    for line in lines:
        try:
            raw: Any = loads(line)
            at = parse_time(raw["at"])
            event = RunEvent(str(raw["domain"]), str(raw["status"]), (), float(raw["seconds"]), None,
                             int(raw["models_reused"]))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            continue
        if at is not None:
            found.append((str(raw.get("id") or "pending"), event, at))
    return found


def clear_pending(mesh: Mesh) -> None:
    remove_below(mesh.health_path / PENDING, mesh.anchor(mesh.health_path))
