"""Versions: breaking a product's contract takes a new version; old versions retire on a date."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from mesh_tools.governance.context import CheckContext, CrossRef
from mesh_tools.governance.rule import Finding, rule
from mesh_tools.model.nodes import Node, ProductKey
from mesh_tools.model.odcs import logical_type


def _norm(data_type: str | None) -> str:
    return re.sub(r"\s+", "", (data_type or "").lower())


def _constraint_types(items: list[dict[str, Any]]) -> set[str]:
    return {str(c.get("type")) for c in items or []}


def breaking_changes(previous: dict[str, Any], node: Node) -> list[tuple[str, str | None]]:
    """(what changed, the column concerned) between a released contract and the model now."""
    changes: list[tuple[str, str | None]] = []
    foreign = bool(previous.get("foreign"))  # another tool's ODCS contract: names and logical types compared
    before = {c["name"]: c for c in previous.get("columns", [])}
    now = node.columns
    if foreign:
        now = {n.lower(): c for n, c in now.items()}
        before = {n.lower(): c for n, c in before.items()}
    added = [c for c in now if c not in before]
    for name, column in before.items():
        if name not in now:
            verb = "removed or renamed" if added else "removed"
            changes.append((f"column '{name}' {verb}", name))
            continue
        was, is_now = column.get("data_type"), now[name].data_type
        if foreign and was and is_now and logical_type(was) != logical_type(is_now):
            changes.append((f"column '{name}' type changed {was} -> {is_now}", name))
        elif not foreign and _norm(was) != _norm(is_now):
            changes.append((f"column '{name}' type changed {was} -> {is_now}", name))
        dropped = _constraint_types(column.get("constraints", [])) - _constraint_types(now[name].constraints)
        for kind in sorted(dropped):
            changes.append((f"constraint {kind} dropped from column '{name}'", name))
    for kind in sorted(_constraint_types(previous.get("constraints", [])) - _constraint_types(node.constraints)):
        changes.append((f"model constraint {kind} dropped", None))
    if previous.get("enforced") and not node.contract_enforced:
        changes.append(("contract no longer enforced", None))
    if not node.is_public:
        changes.append((f"access lowered to {node.access}", None))
    return changes


def _selects(consumer_node: Node, column: str | None) -> str:
    sql = (consumer_node.get("raw_code") or "") + " " + (consumer_node.get("compiled_code") or "")
    if column is None:
        return "reads the model"
    if re.search(rf"\b{re.escape(column)}\b", sql, re.I):
        return f"selects '{column}'"
    if re.search(r"select\s+\*", sql, re.I) or re.search(r"\*\s+from", sql, re.I):
        return f"selects * (so '{column}')"
    return f"does not select '{column}'"


def _unread_consumers(ctx: CheckContext, producer: str) -> str:
    """What to say about the domains downstream of ``producer`` whose manifests this check did not load (the
    publish gate loads the producer and its upstreams only): their reads are unknown, not absent."""
    unread = [n for n, d in ctx.mesh.domains.items() if producer in d.upstream_names and n not in ctx.manifests]
    return f"; not read in this check: {', '.join(unread)} (`mesh check` lists every reader)" if unread else ""


def _impact(ctx: CheckContext, producer: str, consumers: list[CrossRef], column: str | None, with_selects: bool) -> str:
    """Who the change breaks: the readers found, and the downstream domains this check could not see."""
    unread = _unread_consumers(ctx, producer)
    if consumers:
        reads = sorted(f"{c.consumer}.{c.node.name}" + (f" ({_selects(c.node, column)})" if with_selects else "")
                       for c in consumers)  # fmt: skip  # sorted: the readers come in the order the manifests list them
        return "; affected: " + ", ".join(reads) + unread
    return unread or "; no consumer reads it today"


@rule("GOV301", "breaking-change-needs-new-version")
def breaking_change(ctx: CheckContext) -> Iterator[Finding]:
    """A breaking change to a public model's contract comes as a new model version.

    Rationale:
        Consumers read the released contract. Removing or renaming a column, changing a type,
        dropping a constraint or lowering access breaks them; a new version lets them move on
        their own schedule while the old version keeps its shape until its deprecation date.
        Compared with the last published release (or `mesh check --contracts F` / `--contracts-from
        DIR`); each finding names the consumer models affected and whether they select the column.
    Example:
        `amount` renamed to `order_total` in `fct_orders` v2 after v2 was published.
    Fix:
        Keep the released version as it was and add the change as a new version, with a
        deprecation_date on the old one. An unversioned model becomes `versions: [{v: 1, deprecation_date:
        ...}, {v: 2, columns: [...]}]` with `latest_version: 2`: v1 keeps the released shape in
        `<model>_v1.sql`, v2 (`<model>_v2.sql`) has the change. A versioned one adds the next number.
    """
    for domain in ctx.manifests:
        for node in ctx.nodes(domain):
            key = node.key
            previous = ctx.baseline_contracts.get(key)
            if previous is None:
                current = ctx.exchange.baseline(domain, node.name, node.version)
                if current is None:
                    continue
                previous = {**current.descriptor.contract.model_dump(), "release": current.descriptor.release_id}
            changes = breaking_changes(previous, node)
            if not changes:
                continue
            consumers = ctx.consumers_of(node.unique_id)
            for change, column in changes:
                impact = _impact(ctx, domain, consumers, column, with_selects=True)
                since = f" since release {previous['release']}" if previous.get("release") else ""
                yield ctx.finding(domain, node, f"{key}: {change}{since} without a new version{impact}")
    yield from _removed_products(ctx)


def _removed_products(ctx: CheckContext) -> Iterator[Finding]:
    """A product version in the saved contracts (``--contracts``, ``--contracts-from``) that its domain no
    longer has: every consumer still reading it breaks."""
    for key in sorted(ctx.baseline_contracts):
        product = ProductKey.parse(key)
        project = product.domain
        if project not in ctx.manifests or any(n.key == key for n in ctx.nodes(project)):
            continue
        consumers = ctx.consumers_of(str(product.node_id))
        impact = _impact(ctx, project, consumers, None, with_selects=False)
        where = ctx.root_relative(ctx.domain(project).path / "dbt_project.yml")
        yield Finding(project, f"{key}: the product version is gone (it is in the saved contracts){impact}",
                      file=where)  # fmt: skip


@rule("GOV302", "old-version-deprecation-date")
def deprecation_date(ctx: CheckContext) -> Iterator[Finding]:
    """Every version of a model older than its latest carries a deprecation_date.

    Rationale:
        Consumers plan migrations around the date; without one an old version lives forever.
    Example:
        `versions: [{v: 1}, {v: 2}]`, `latest_version: 2`, and v1 has no `deprecation_date`.
    Fix:
        Give the old version `deprecation_date: 2027-06-30` (a date consumers can meet).
    """
    for domain in ctx.manifests:
        for node in ctx.nodes(domain):
            version, latest = node.version, node.latest_version
            if version is None or latest is None or version == latest:
                continue
            try:
                older = float(version) < float(latest)
            except ValueError:
                older = version < latest
            if older and not node.deprecation_date:
                yield ctx.finding(
                    domain,
                    node,
                    f"'{node.name}' v{version} is older than latest v{latest} but has no deprecation_date",
                )


@rule("GOV303", "consumer-on-deprecated-version", severity="warn")
def deprecated_use(ctx: CheckContext) -> Iterator[Finding]:
    """No consumer still reads a model version past its deprecation date.

    Rationale:
        Past the date the producer may delete the version; the consumer's build will break.
    Example:
        finance refs `ref('sales', 'fct_orders', v=1)` after v1's deprecation_date.
    Fix:
        Migrate to the latest version: the ref without `v=` (or with the latest version number).
    """
    now = datetime.now(UTC)
    for ref in ctx.cross_refs:
        producer = ctx.producer_node(ref.upstream_node)
        date = producer.deprecation_date if producer is not None else None
        if not date:
            continue
        when = datetime.fromisoformat(str(date).replace("Z", "+00:00"))
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        if when < now:
            yield ctx.finding(
                ref.consumer,
                ref.node,
                f"'{ref.node.name}' reads {ref.upstream_node}, deprecated since {when.date()}",
            )
