"""Observability: collect every domain's run into a history, judge it, write the health report."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from mesh_tools.core.mesh import Mesh
from mesh_tools.health.collect import Findings, collect
from mesh_tools.health.history import open_history
from mesh_tools.health.inputs import RunEvent
from mesh_tools.health.monitors import evaluate
from mesh_tools.health.render import write_reports
from mesh_tools.health.report import HealthReport

__all__ = ["Findings", "RunEvent", "update_health"]


def update_health(
    mesh: Mesh,
    trigger: str,
    events: list[RunEvent] | None = None,
    now: datetime | None = None,
    out: Path | None = None,
    findings: Findings | None = None,
) -> tuple[HealthReport, dict[str, Path]]:
    """Collect what is new into the history, judge the mesh, and write report.html/.json/.md (to ``out``).

    ``findings`` gives the governance findings over a list of domains (health does not run governance);
    without it, no finding is recorded.
    """
    start = time.perf_counter()
    folder = mesh.health_path
    below = mesh.anchor(folder)  # below the mesh root: no folder on the way to the history may be a link
    with open_history(folder / "history.duckdb", below=below) as history:
        collection = collect(mesh, history, trigger, events, now, findings)
        report = evaluate(mesh, history, collection, now)
        history.prune(mesh.health.history_days)
    report.seconds = round(time.perf_counter() - start, 3)
    paths = write_reports(report, out, below=None) if out else write_reports(report, folder, below=below)
    return report, paths
