"""Freshness: every source says how fresh it must be; products promise no more than their inputs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mesh_tools.governance.context import CheckContext
from mesh_tools.governance.rule import Finding, rule
from mesh_tools.model.nodes import NodeId


def _threshold(freshness: dict[str, Any] | None) -> bool:
    freshness = freshness or {}
    return any((freshness.get(k) or {}).get("count") for k in ("warn_after", "error_after"))


@rule("GOV601", "source-freshness", severity="warn")
def source_freshness(ctx: CheckContext) -> Iterator[Finding]:
    """Every source has a freshness threshold and a loaded_at_field.

    Rationale:
        Stale inputs are the commonest silent failure; `dbt source freshness` and `mesh health`
        can only catch them when the threshold is written down.
    Example:
        A source table with no `freshness:` (or `freshness: null`) or no `loaded_at_field`.
    Fix:
        Add `config: {loaded_at_field: _loaded_at, freshness: {warn_after: {count: 24, period: hour}}}`.
    """
    for domain in ctx.manifests:
        for source in ctx.sources(domain):
            name = f"{source.source_name}.{source.name}"
            if not _threshold(source.get("freshness")):
                problem = "no freshness threshold"
            elif not (source.get("loaded_at_field") or source.get("loaded_at_query")):
                problem = "no loaded_at_field"
            else:
                continue
            yield ctx.finding(domain, source, f"source '{name}' has {problem}")


@rule("GOV602", "slo-not-tighter-than-upstream")
def slo_upstream(ctx: CheckContext) -> Iterator[Finding]:
    """A product's freshness SLO (`meta.freshness_slo_hours`) is not tighter than its upstream products'.

    Rationale:
        A product cannot be fresher than what it is made of: a 6-hour promise on top of a
        24-hour input is broken by design.
    Example:
        customer_segments promises 6 hours and reads fct_orders, which promises 12.
    Fix:
        Loosen the product's SLO, or agree a tighter one with the upstream owner.
    """
    for domain, manifest in ctx.manifests.items():
        nodes = manifest.nodes
        for node in ctx.public_models(domain):
            slo = node.slo_hours
            if slo is None:
                continue
            seen: set[str] = set()
            todo = node.depends_on
            loosest: tuple[float, str] | None = None
            while todo:
                uid = todo.pop()
                if uid in seen:
                    continue
                seen.add(uid)
                read = NodeId.read(uid)
                if read is not None and read.resource_type == "model" and read.package != domain:
                    producer = ctx.producer_node(uid) or nodes.get(uid)
                    upstream = producer.slo_hours if producer is not None else None
                    if upstream is not None and (loosest is None or upstream > loosest[0]):
                        loosest = (upstream, uid)
                    continue
                if uid in nodes:
                    todo += nodes[uid].depends_on
            if loosest and slo < loosest[0]:
                yield ctx.finding(
                    domain,
                    node,
                    f"'{node.name}' promises {slo:g} h freshness but reads {loosest[1]}, "
                    f"which promises {loosest[0]:g} h",
                )
