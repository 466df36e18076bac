"""What one collection reads: each domain's artifacts (or why they cannot be read), and the run events.

Shared by collecting, measuring and judging; it imports neither of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Domain
from mesh_tools.model.freshness import FreshnessResults
from mesh_tools.model.manifest import Manifest, RunResults
from mesh_tools.model.nodes import Node, resource_type_of

RUN_COMMANDS = {"build", "run", "test", "seed", "snapshot", "retry", None}


@dataclass
class DomainArtifacts:
    """One domain's artifacts as read for this collection, or why they could not be read."""

    name: str
    manifest: Manifest | None = None
    run_results: RunResults | None = None
    sources: FreshnessResults | None = None
    no_data: str | None = None  # the reason, when the domain cannot be judged
    corrupt: bool = False  # no_data because an artifact exists but cannot be read: the domain is failing
    stale: str | None = None  # why its manifest no longer describes its files, when it does not
    notes: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)  # invocations of the earlier stages of its last (staged) build

    @property
    def invocation_id(self) -> str | None:
        return self.run_results.invocation_id if self.run_results else None


@dataclass
class Collection:
    """What one collection read: its id and time, and every domain's artifacts."""

    collection_id: str
    collected_at: datetime
    domains: dict[str, DomainArtifacts]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunEvent:
    """What `mesh build` knows that the artifacts do not: a failure before dbt ran, a refused publish."""

    domain: str
    status: str
    problems: tuple[str, ...]
    seconds: float
    invocation_id: str | None = None  # None: dbt wrote no results in this run
    models_reused: int = 0  # models a state-aware build kept as they were (not run, not fresh)


def parse_time(value: Any) -> datetime | None:
    """dbt's ISO timestamps (with ``Z`` or an offset, or naive meaning UTC) as aware datetimes."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def attached_models(node: Node | None) -> list[str]:
    """The models a test judges: its attached node, else every model it depends on."""
    if node is None:
        return []
    if node.attached_node:
        return [node.attached_node]
    return [p for p in node.depends_on if resource_type_of(p) == "model"]


def stage_results(domain: Domain, invocation_id: str | None) -> list[RunResults]:
    """The run results of the earlier stages of the staged build whose run_results.json is ``invocation_id``
    (workflows/stages.py records which one that is: ``stages.json``); none for any other build. Unreadable ones
    are left out: the nodes they ran count as not run."""
    folder = domain.stages_dir
    try:
        recorded = json.loads((folder / "stages.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return []
    if not isinstance(recorded, dict) or invocation_id is None or recorded.get("invocation_id") != invocation_id:
        return []
    found = []
    for path in sorted(folder.glob("stage-*.run_results.json")):
        try:
            results = RunResults.read(path, "", required=("results",))
        except MeshError:
            continue
        if results is not None and results.invocation_id != invocation_id:
            found.append(results)
    return found


def read_domain(domain: Domain, others: tuple[Path, ...] = ()) -> DomainArtifacts:
    """Read one domain's artifacts; never raises for a missing or corrupt file."""
    from mesh_tools.dbt.staleness import changed_since_manifest, stale_message

    found = DomainArtifacts(domain.name)
    fix = f"Build it with `mesh build {domain.name}`."
    reading = domain.manifest_path
    try:
        found.manifest = Manifest.read(reading, domain.name, fix, required=("nodes",))
        reading = domain.run_results_path
        found.run_results = RunResults.read(reading, fix, required=("results",))
    except MeshError as exc:
        # never built (no artifact yet) is no data; an artifact that is there but unreadable is a failure
        found.no_data, found.corrupt = str(exc), reading.exists()
        return found
    changed = changed_since_manifest(domain, others)
    if changed is not None:
        found.stale = stale_message(domain, changed)
    command = found.run_results.command if found.run_results else None
    if command not in RUN_COMMANDS:
        # `dbt compile`, `dbt docs generate` and the like: nothing ran; judge from the history
        found.notes.append(f"the last dbt command in {domain.name} was `{command}`: its results are not runs")
        found.run_results = None
    try:
        found.sources = FreshnessResults.read(domain.sources_path, "Build the domain again.", missing_ok=True)
    except MeshError as exc:
        found.notes.append(str(exc))
    return found
