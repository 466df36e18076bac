"""Freshness: the sources a product reads (their last load against dbt's criteria), and the
product's age against its SLO (``meta.freshness_slo_hours``)."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

from mesh_tools.health.common import Report, first_line, hours, label
from mesh_tools.health.facts import Facts
from mesh_tools.health.report import Freshness, SourceState
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node, package_of, resource_type_of


def sources_of(manifest: Manifest, domain: str, uid: str, facts: Facts) -> list[SourceState]:
    """The latest freshness of every source the model reads, through the domain's own models."""
    seen, queue, found = {uid}, deque([uid]), []
    while queue:
        node = manifest.nodes.get(queue.popleft())
        for parent in node.depends_on if node is not None else []:
            if parent in seen:
                continue
            seen.add(parent)
            if parent.startswith("source."):
                row = facts.sources.get(parent)
                if row:
                    found.append(
                        SourceState(
                            source=parent,
                            status=row["status"] or "",
                            max_loaded_at=row["max_loaded_at"],
                            age_hours=None if row["age_hours"] is None else round(row["age_hours"], 2),
                            warn_after_hours=row["warn_after_hours"],
                            error_after_hours=row["error_after_hours"],
                        )
                    )
            elif resource_type_of(parent) == "model" and package_of(parent) == domain:
                queue.append(parent)
    return sorted(found, key=lambda s: s.source)


def judge_sources(sources: list[SourceState], facts: Facts, problem: Report) -> None:
    for state in sources:
        if state.status == "error":
            problem("source_freshness", "stale",
                    f"source {label(state.source)} last loaded {state.age_hours or 0:.1f} h ago "
                    f"(error after {state.error_after_hours:g} h)", node=state.source)  # fmt: skip
        elif state.status == "warn":
            problem("source_freshness", "warning",
                    f"source {label(state.source)} last loaded {state.age_hours or 0:.1f} h ago "
                    f"(warn after {state.warn_after_hours:g} h)", node=state.source)  # fmt: skip
        elif state.status == "runtime error":
            problem("source_freshness", "warning", f"freshness of source {label(state.source)} could not be "
                    f"checked: {first_line(facts.sources[state.source].get('message'))}",
                    node=state.source)  # fmt: skip


def product_freshness(key: str, node: Node, facts: Facts, now: datetime, sources: list[SourceState]) -> Freshness:
    """How old the product's data is (the older of its last good build and the loads it read), against its SLO."""
    uid, slo_hours = node.unique_id, node.slo_hours
    times = [facts.last_success[uid]] if uid in facts.last_success else []
    times += [s.max_loaded_at for s in sources if s.max_loaded_at is not None]
    as_of = min(times) if times else None
    age = hours(now - as_of) if as_of else None
    within = None if slo_hours is None or age is None else age <= slo_hours
    ok, n = facts.compliance.get(key, (0, 0))
    if within is not None:
        ok, n = ok + int(within), n + 1
    return Freshness(
        slo_hours=slo_hours,
        data_as_of=as_of,
        age_hours=age,
        within_slo=within,
        slo_compliance=round(ok / n, 4) if n else None,
        sources=sources,
    )


def judge_slo(freshness: Freshness, problem: Report) -> None:
    if freshness.within_slo is False:
        problem("freshness_slo", "stale", f"data is {freshness.age_hours:.1f} h old; its SLO is "
                f"{freshness.slo_hours:g} h", since=_since(freshness))  # fmt: skip


def _since(freshness: Freshness) -> datetime | None:
    if freshness.data_as_of is None or freshness.slo_hours is None:
        return None
    return freshness.data_as_of + timedelta(hours=freshness.slo_hours)
