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


def _foreign_markers(ctx: CheckContext, domain: str, other: str) -> list[re.Pattern[str]]:
    """The patterns that mean "this reaches into ``other``'s storage", as ``domain`` sees it."""
    mine = ctx.manifests.get(domain)
    own_dbs = {str(n.get("database")).lower() for n in mine.nodes.values() if n.get("database")} if mine else set()
    own_schemas = {str(n.get("schema")).lower() for n in mine.nodes.values() if n.get("schema")} if mine else set()
    spec = ctx.mesh.domains[other]
    patterns = [
        re.compile(rf"\b{re.escape(other)}\.duckdb\b"),
        re.compile(rf"exchange/products/{re.escape(other)}/"),
        re.compile(rf"\.\./{re.escape(spec.path.name)}/"),
    ]
    manifest = ctx.manifests.get(other)
    databases = {str(n.get("database")) for n in manifest.nodes.values() if n.get("database")} if manifest else set()
    # on a shared warehouse every domain builds into the same database: its schemas are its own
    for db in {d for d in databases if d.lower() not in own_dbs} | {other}:
        patterns.append(re.compile(rf'(?<![\w.]){re.escape(db)}"?\."?\w+"?\."?\w+', re.I))
    if {d.lower() for d in databases} & own_dbs:
        schemas = {str(n.get("schema")) for n in manifest.nodes.values() if n.get("schema")} if manifest else set()
        for schema in sorted(s for s in schemas if s.lower() not in own_schemas | {"main", "public"}):
            patterns.append(re.compile(rf'\b(?:from|join)\s+(?:"?\w+"?\.)?"?{re.escape(schema)}"?\."?\w+', re.I))
    return patterns


_WORD = re.compile(r"[a-z0-9_]+")
_ASCII_WORD = re.compile(r"[A-Za-z0-9_]+")


class _Markers:
    """Per pair of domains, the patterns of ``_foreign_markers``, tried only on the other domains a text can
    name: every pattern needs one of the other domain's names (the domain, its folder, a database, a schema) in
    the text, and a name made of ASCII word characters only as a whole word (each pattern puts a non-word
    character or the text's end on both sides of it). So an ASCII text is looked up by its words (and by
    substring for a name with other characters); a non-ASCII text, or a non-ASCII name (case folding crosses
    from it into ASCII), is tried against every domain, as before. One pass over the mesh, not one per domain."""

    def __init__(self, ctx: CheckContext):
        self.ctx = ctx
        self.order = {name: index for index, name in enumerate(ctx.mesh.domains)}
        self.by_word: dict[str, set[str]] = {}
        self.by_substring: list[tuple[str, str]] = []  # (lower-case name, domain)
        self.always: set[str] = set()
        self.patterns: dict[tuple[str, str], list[re.Pattern[str]]] = {}
        for other, spec in ctx.mesh.domains.items():
            manifest = ctx.manifests.get(other)
            names = {other, spec.path.name}
            for node in manifest.nodes.values() if manifest else ():
                names.update(str(node.get(key)) for key in ("database", "schema") if node.get(key))
            for name in names:
                if not name.isascii():
                    self.always.add(other)
                elif _ASCII_WORD.fullmatch(name):
                    self.by_word.setdefault(name.lower(), set()).add(other)
                else:
                    self.by_substring.append((name.lower(), other))

    def others(self, domain: str, text: str) -> list[str]:
        """The other domains whose patterns may match ``text``, in the mesh's order."""
        if not text.isascii():
            found = set(self.order)
        else:
            low = text.lower()
            found = set(self.always)
            for word in set(_WORD.findall(low)):
                found |= self.by_word.get(word, set())
            found.update(other for name, other in self.by_substring if name in low)
        found.discard(domain)
        return sorted(found, key=self.order.__getitem__)

    def of(self, domain: str, other: str) -> list[re.Pattern[str]]:
        key = (domain, other)
        if key not in self.patterns:
            self.patterns[key] = _foreign_markers(self.ctx, domain, other)
        return self.patterns[key]


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
    markers = _Markers(ctx)
    for domain in ctx.manifests:
        for source in ctx.sources(domain):
            text = " ".join(
                str(x) for x in (
                    source.meta.get("external_location"), source.get("relation_name"),
                    source.get("database"), (source.get("source_meta") or {}).get("external_location"),
                ) if x
            )  # fmt: skip
            for other in markers.others(domain, text):
                if any(p.search(text) for p in markers.of(domain, other)):
                    yield ctx.finding(
                        domain, source, f"source '{source.source_name}.{source.name}' reads {other}'s storage ({text})"
                    )
        for node in ctx.nodes(domain):
            sql = _COMMENT.sub("", _JINJA.sub("", node.get("raw_code") or ""))
            for other in markers.others(domain, sql):
                hit = next((m for p in markers.of(domain, other) if (m := p.search(sql))), None)
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
