"""Why each node of a state-aware build ran, for ``--explain`` and the build summary."""

from __future__ import annotations

from typing import Any

from mesh_tools.model.manifest import Manifest, RunResults
from mesh_tools.model.nodes import Node, NodeId, name_of, package_of, resource_type_of
from mesh_tools.state.inputs import BUILT
from mesh_tools.state.plan import BuildPlan


def explain(plan: BuildPlan, domain: str, after: Manifest | None, results: RunResults | None) -> list[tuple[str, str]]:
    """(node label, reason) for every model, seed and snapshot that ran."""
    if results is None:
        return []
    ran = [r.unique_id for r in results.results if resource_type_of(r.unique_id) in BUILT]
    if plan.full:
        return [(_label(u, after), f"full build ({plan.why_full})") for u in ran]
    before = plan.state.manifest if plan.state is not None else None
    ran_set = set(ran)
    out = []
    for uid in ran:
        label = _label(uid, after) + ("" if package_of(uid) == domain else " (upstream view)")
        out.append((label, _reason(uid, plan, domain, before, after, ran_set)))
    return out


def _reason(uid: str, plan: BuildPlan, domain: str, before: Manifest | None, after: Manifest | None,
            ran: set[str]) -> str:  # fmt: skip
    if uid in plan.reasons:
        return plan.reasons[uid]
    node = after.nodes.get(uid) if after is not None else None
    old = before.nodes.get(uid) if before is not None else None
    if node is not None and old is None:
        return "it is new" if node.package == domain else "an upstream product it reads is new"
    if node is not None and old is not None:
        if node.package != domain and node.get("raw_code") != old.get("raw_code"):
            return f"upstream {node.package}.{node.label} has a new release"
        if (node.get("checksum") or {}).get("checksum") != (old.get("checksum") or {}).get("checksum"):
            return "its code changed"
        if node.get("config") != old.get("config"):
            return "its configuration changed"
        changed = [m for m in _macros(node) if _macro_sql(after, m) != _macro_sql(before, m)]
        if changed:
            return f"macro {name_of(changed[0])} changed"
        parents = [p for p in node.depends_on if p in ran]
        if parents:
            return f"upstream {_label(parents[0], after)} ran"
        sources = [p for p in node.depends_on if p in plan.reasons]
        if sources:
            return plan.reasons[sources[0]]
    return "dbt's state comparison selected it"


def _macros(node: Node) -> list[str]:
    depends = node.get("depends_on") or {}
    return [str(m) for m in depends.get("macros") or []] if isinstance(depends, dict) else []


def _macro_sql(manifest: Manifest | None, uid: str) -> Any:
    macro = manifest.macros.get(uid) if manifest is not None else None
    return macro.get("macro_sql") if macro is not None else None


def _label(uid: str, manifest: Manifest | None) -> str:
    node = manifest.node(uid) if manifest is not None else None
    if node is not None:
        return f"{node.package}.{node.label}" if node.resource_type != "source" else uid
    read = NodeId.read(uid)
    return f"{read.package}.{read.local}" if read is not None else uid
