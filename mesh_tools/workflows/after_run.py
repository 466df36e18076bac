"""After a run of domains: the health history and report, then the documentation site.

Neither can fail the run: a problem with either is returned as a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Mesh
from mesh_tools.workflows.domain_run import DomainRun

if TYPE_CHECKING:
    from mesh_tools.health.collect import Findings
    from mesh_tools.model.manifest import Manifest


@dataclass
class AfterRun:
    report: Any = None  # the HealthReport, when it was written
    report_paths: dict[str, Path] = field(default_factory=dict)
    site: Any = None  # the written site (path, pages), when it was written
    warnings: list[str] = field(default_factory=list)
    idle: bool = False  # nothing was rebuilt: runs recorded for the next collection, nothing re-judged


def health_findings(mesh: Mesh) -> Findings:
    """What health records of governance: the check over the domains whose manifests it read (sqlfluff style
    rules left out), one row per violation. MeshError when the check cannot run."""

    def findings(manifests: dict[str, Manifest]) -> list[dict[str, Any]]:
        from mesh_tools.governance.engine import run_check

        names = list(manifests)
        report = run_check(mesh, names, sqlfluff=False, load=names, manifests=manifests)
        return [
            {
                "domain": v.finding.domain,
                "code": v.code,
                "rule": v.rule,
                "severity": v.severity.name.lower(),
                "node": v.finding.node,
                "message": v.finding.message,
            }
            for v in report.violations
        ]

    return findings


def after_run(mesh: Mesh, runs: list[DomainRun], trigger: str = "build") -> AfterRun:
    """Record ``runs`` in the health history, judge the mesh, write the report and the docs site."""
    from mesh_tools.docsite.site import build_site
    from mesh_tools.health import RunEvent, update_health

    done = AfterRun()
    if runs and all(r.status == "success" and r.invocation_id is None and not r.published for r in runs):
        from datetime import UTC, datetime

        from mesh_tools.health.inputs import RunEvent as Event
        from mesh_tools.health.pending import defer_runs

        try:
            defer_runs(mesh, [Event(r.domain, r.status, (), r.seconds, None, r.models_total) for r in runs],
                       datetime.now(UTC))  # fmt: skip
        except OSError as exc:
            done.warnings.append(f"health history not updated: {exc}")
        done.idle = True
        return done
    events = [
        RunEvent(r.domain, r.status, tuple(r.problems), r.seconds, r.invocation_id, max(r.models_total - r.models, 0))
        for r in runs
    ]
    try:
        done.report, done.report_paths = update_health(mesh, trigger, events, findings=health_findings(mesh))
    except MeshError as exc:
        done.warnings.append(f"health report not updated: {exc}")
        return done
    try:
        done.site = build_site(mesh)
    except (MeshError, OSError) as exc:
        done.warnings.append(f"documentation site not written: {exc}")
    return done
