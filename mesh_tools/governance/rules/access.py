"""Access: domains meet only through public products, declared, without back doors."""

from __future__ import annotations

import re
from collections.abc import Iterator

from mesh_tools.core.graph import find_cycle
from mesh_tools.governance.context import CheckContext
from mesh_tools.governance.rule import Finding, rule


@rule("GOV201", "ref-to-non-public-model")
def non_public_ref(ctx: CheckContext) -> Iterator[Finding]:
    """No domain reads a protected or private model of another domain.

    Rationale:
        Only public models carry a promise; anything else may change or vanish without notice.
        (A local-package install of an upstream lets dbt resolve such refs: this rule still catches them.)
    Example:
        `{{ ref('customers', 'int_customers_enriched') }}` where that model is private.
    Fix:
        Use a public product of that domain, or ask its owner to publish one.
    """
    seen = set()
    for ref in ctx.cross_refs:
        if ref.project not in ctx.manifests:
            continue
        producer = ctx.producer_node(ref.upstream_node)
        read = (ref.consumer, ref.node.unique_id, ref.upstream_node)
        if (producer is not None and producer.is_public) or read in seen:
            continue
        seen.add(read)
        what = "does not exist" if producer is None else f"is {producer.access}"
        yield ctx.finding(
            ref.consumer, ref.node, f"'{ref.node.name}' reads {ref.upstream_node}, which {what} in {ref.project}"
        )


def _foreign_markers(ctx: CheckContext, domain: str) -> dict[str, list[re.Pattern[str]]]:
    """Per other domain: patterns that mean "this reaches into its storage"."""
    out: dict[str, list[re.Pattern[str]]] = {}
    mine = ctx.manifests.get(domain)
    own_dbs = {str(n.get("database")).lower() for n in mine.nodes.values() if n.get("database")} if mine else set()
    own_schemas = {str(n.get("schema")).lower() for n in mine.nodes.values() if n.get("schema")} if mine else set()
    for other, spec in ctx.mesh.domains.items():
        if other == domain:
            continue
        patterns = [
            re.compile(rf"\b{re.escape(other)}\.duckdb\b"),
            re.compile(rf"exchange/products/{re.escape(other)}/"),
            re.compile(rf"\.\./{re.escape(spec.path.name)}/"),
        ]
        manifest = ctx.manifests.get(other)
        databases = (
            {str(n.get("database")) for n in manifest.nodes.values() if n.get("database")} if manifest else set()
        )
        # on a shared warehouse every domain builds into the same database: its schemas are its own
        for db in {d for d in databases if d.lower() not in own_dbs} | {other}:
            patterns.append(re.compile(rf'(?<![\w.]){re.escape(db)}"?\."?\w+"?\."?\w+', re.I))
        if {d.lower() for d in databases} & own_dbs:
            schemas = {str(n.get("schema")) for n in manifest.nodes.values() if n.get("schema")} if manifest else set()
            for schema in sorted(s for s in schemas if s.lower() not in own_schemas | {"main", "public"}):
                patterns.append(re.compile(rf'\b(?:from|join)\s+(?:"?\w+"?\.)?"?{re.escape(schema)}"?\."?\w+', re.I))
        out[other] = patterns
    return out


_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_COMMENT = re.compile(r"--[^\n]*")


@rule("GOV202", "storage-bypass")
def storage_bypass(ctx: CheckContext) -> Iterator[Finding]:
    """No domain reads another domain's storage directly (a source or a hard-coded relation).

    Rationale:
        Reading another domain's tables or files bypasses its contract, its versions and its
        release gate: the producer cannot change anything without breaking you unseen.
    Example:
        A source with `external_location: "../sales/landing/orders.parquet"`, or SQL with
        `from sales.marts.fct_orders_v2`.
    Fix:
        Declare the domain in dependencies.yml and use `{{ ref('sales', 'fct_orders') }}`.
    """
    for domain in ctx.manifests:
        markers = _foreign_markers(ctx, domain)
        for source in ctx.sources(domain):
            text = " ".join(
                str(x) for x in (
                    source.meta.get("external_location"), source.get("relation_name"),
                    source.get("database"), (source.get("source_meta") or {}).get("external_location"),
                ) if x
            )  # fmt: skip
            for other, patterns in markers.items():
                if any(p.search(text) for p in patterns):
                    yield ctx.finding(
                        domain, source, f"source '{source.source_name}.{source.name}' reads {other}'s storage ({text})"
                    )
        for node in ctx.nodes(domain):
            sql = _COMMENT.sub("", _JINJA.sub("", node.get("raw_code") or ""))
            for other, patterns in markers.items():
                hit = next((m for p in patterns if (m := p.search(sql))), None)
                if hit:
                    yield ctx.finding(domain, node, f"'{node.name}' reads {other}'s storage directly: {hit.group(0)}")


@rule("GOV203", "undeclared-project")
def undeclared(ctx: CheckContext) -> Iterator[Finding]:
    """Every project a domain refs is declared in its dependencies.yml.

    Rationale:
        The declaration is how the mesh knows build order, impact and who consumes what.
    Example:
        `ref('sales', 'fct_orders')` in marketing, with no `- name: sales` under `projects:`.
    Fix:
        Add the project under `projects:` in the consumer's dependencies.yml.
    """
    seen = set()
    for ref in ctx.cross_refs:
        if ref.project not in ctx.mesh.domains or ref.project in ctx.domain(ref.consumer).upstream_names:
            continue
        if (ref.consumer, ref.project) in seen:
            continue
        seen.add((ref.consumer, ref.project))
        yield ctx.finding(
            ref.consumer,
            ref.node,
            f"{ref.consumer} reads project '{ref.project}' ({ref.upstream_node}) "
            "without declaring it in dependencies.yml",
        )


@rule("GOV204", "domain-cycle")
def cycle(ctx: CheckContext) -> Iterator[Finding]:
    """Domains depend on each other in one direction only, counting local-package installs too.

    Rationale:
        A cycle couples the domains' releases: the mesh builds one whose models form no cycle only in
        stages (a slice of one domain, then the other's, then the rest), so neither domain changes or
        publishes on its own schedule, and one new ref can make it a cycle of models that stops both.
    Example:
        sales declares marketing while marketing installs sales as a local package.
    Fix:
        Remove one of the dependencies; move shared logic into a product of one domain (or waive the
        rule for those domains, with a reason, while a split is under way).
    """
    graph: dict[str, set[str]] = {}
    folders = {d.path.resolve(): n for n, d in ctx.mesh.domains.items()}
    for name, domain in ctx.mesh.domains.items():
        graph[name] = set(domain.upstream_names) | {folders[p] for p in domain.local_packages if p in folders}
    found = find_cycle(graph)
    if found:
        yield Finding(found[0], f"cycle between domains: {' -> '.join(found)}")
