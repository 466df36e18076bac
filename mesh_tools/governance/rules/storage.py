"""Storage: a domain writes its own storage only, never another domain's nor the exchange."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh_tools.governance.context import CheckContext
from mesh_tools.governance.rule import Finding, rule

# Only statements that may attach or write are parsed; a model's select never gets that far.
_MAY_WRITE = re.compile(r"\b(attach|insert|update|delete|merge|copy|create|drop|alter|truncate)\b", re.I)
_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.S)
_TAG_OR_COMMENT = re.compile(r"\{%.*?%\}|\{#.*?#\}", re.S)
_DIALECTS = {"duckdb": "duckdb", "spark": "spark", "databricks": "databricks", "postgres": "postgres"}


@dataclass(frozen=True)
class _Statement:
    node: dict[str, Any]
    where: str  # "'invoices' (post-hook)", "on-run-start hook", ...
    sql: str


def _statements(ctx: CheckContext, domain: str) -> Iterator[_Statement]:
    """Every piece of SQL the domain runs: models (compiled when built), hooks, operations, its macros."""
    manifest = ctx.manifests[domain]
    for node in manifest.get("nodes", {}).values():
        if node.get("package_name") != domain:
            continue
        kind = node.get("resource_type")
        if kind == "operation":
            hook = "on-run-end" if "on-run-end" in str(node.get("unique_id")) else "on-run-start"
            yield _Statement(node, f"{hook} hook", node.get("raw_code") or "")
            continue
        if kind not in ("model", "snapshot", "seed", "test"):
            continue
        if kind in ("model", "snapshot"):
            yield _Statement(node, f"'{node.get('name')}'", node.get("compiled_code") or node.get("raw_code") or "")
        config = node.get("config") or {}
        for key in ("pre-hook", "post-hook"):
            for hook in config.get(key) or []:
                sql = hook.get("sql") if isinstance(hook, dict) else hook
                if isinstance(sql, str):
                    yield _Statement(node, f"'{node.get('name')}' ({key})", sql)
    for macro in manifest.get("macros", {}).values():
        if macro.get("package_name") == domain:
            yield _Statement(macro, f"macro '{macro.get('name')}'", macro.get("macro_sql") or "")


def _parse(sql: str, dialect: str) -> list[Any]:
    """The statements of ``sql`` with Jinja taken out; a statement sqlglot cannot read is skipped."""
    import sqlglot
    from sqlglot.errors import ErrorLevel

    text = _TAG_OR_COMMENT.sub(" ", _EXPRESSION.sub("__jinja__", sql))
    parsed = []
    for piece in text.split(";"):
        if not _MAY_WRITE.search(piece):
            continue
        try:
            parsed.extend(s for s in sqlglot.parse(piece, read=dialect, error_level=ErrorLevel.IGNORE) if s)
        except Exception:  # noqa: BLE001 - sqlglot raises many kinds; an unreadable statement is skipped
            continue
    return parsed


class _Territory:
    """What belongs to other domains and to the exchange, as one domain sees it."""

    def __init__(self, ctx: CheckContext, domain: str):
        self.base = ctx.domain(domain).path.resolve()
        self.exchange = ctx.mesh.exchange_path.resolve()
        self.folders = {
            other: spec.path.resolve() for other, spec in ctx.mesh.domains.items() if other != domain
        }  # fmt: skip
        own = {str(n.get("database") or "").lower() for n in ctx.manifests[domain].get("nodes", {}).values()}
        self.catalogs: dict[str, str] = {}
        for other in self.folders:
            names = {other} | {
                str(n.get("database") or "") for n in ctx.manifests.get(other, {}).get("nodes", {}).values()
            }
            for name in names:
                if name and name.lower() not in own and name.lower() != domain.lower():
                    self.catalogs[name.lower()] = other

    def owner_of_path(self, text: str) -> str | None:
        """'the exchange', another domain's name, or None for a path of this domain or elsewhere."""
        if not text or re.match(r"^[a-z][a-z0-9+.-]*://", text, re.I) or text == ":memory:":
            return None
        path = Path(text.removeprefix("file:")).expanduser()
        resolved = (path if path.is_absolute() else self.base / path).resolve()
        if resolved == self.exchange or self.exchange in resolved.parents:
            return "the exchange"
        for other, folder in self.folders.items():
            if (resolved == folder or folder in resolved.parents) and not (
                self.base == resolved or self.base in resolved.parents
            ):
                return other
        return None


def _owner_label(owner: str) -> str:
    return owner if owner == "the exchange" else f"{owner}'s storage"


@rule("GOV205", "foreign-storage-write")
def foreign_write(ctx: CheckContext) -> Iterator[Finding]:
    """No model, hook or macro attaches or writes another domain's storage, or the exchange.

    Rationale:
        A domain that writes another's tables or release files forges its data past its owner's
        build, tests and release gate; consumers then read data nobody published. Found by parsing
        the SQL (compiled models, hooks, on-run-start/end, the domain's macros) with sqlglot, so a
        path or name written any way is resolved, not pattern-matched. Always blocks publishing.
    Example:
        `on-run-start: "attach '../sales/sales.duckdb' as s"` and a post-hook
        `insert into s.main.fct_orders ...`; or `copy (...) to '../exchange/products/...'`.
    Fix:
        Write only your own storage. Read other domains through `ref('<domain>', '<product>')`.
    """
    import sqlglot.expressions as exp

    for domain in ctx.manifests:
        dialect = _DIALECTS.get(str(ctx.manifests[domain].get("metadata", {}).get("adapter_type")), "duckdb")
        territory = _Territory(ctx, domain)
        aliases: dict[str, str] = {}  # attached alias -> its owner, across the domain's statements
        statements = [(s, _parse(s.sql, dialect)) for s in _statements(ctx, domain)]
        for statement, parsed in statements:
            for tree in parsed:
                if isinstance(tree, exp.Attach):
                    target = tree.this
                    alias = target.alias if isinstance(target, exp.Alias) else ""
                    literal = target.this if isinstance(target, exp.Alias) else target
                    path = literal.name if isinstance(literal, exp.Literal) else ""
                    owner = territory.owner_of_path(path)
                    if owner:
                        aliases[(alias or Path(path).stem).lower()] = owner
                        yield ctx.finding(
                            domain, statement.node, f"{statement.where} attaches {_owner_label(owner)}: '{path}'"
                        )
        for statement, parsed in statements:
            for tree in parsed:
                for owner, what in _writes(tree, territory, aliases):
                    yield ctx.finding(domain, statement.node, f"{statement.where} writes {_owner_label(owner)}: {what}")


_WRITES = ("Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "TruncateTable", "Copy")


def _writes(tree: Any, territory: _Territory, aliases: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(owner, what) for each table or file of another domain or of the exchange that ``tree`` writes."""
    import sqlglot.expressions as exp

    if type(tree).__name__ not in _WRITES:
        return
    if isinstance(tree, exp.Copy) and not tree.args.get("kind"):  # COPY ... TO 'file'
        for file in tree.args.get("files") or []:
            owner = territory.owner_of_path(file.name) if isinstance(file, exp.Literal) else None
            if owner:
                yield owner, f"'{file.name}'"
        return
    targets = list(tree.args.get("expressions") or []) if isinstance(tree, exp.TruncateTable) else []
    targets += list(tree.args.get("tables") or []) if isinstance(tree, exp.Drop) else []
    this = tree.this
    if isinstance(this, exp.Schema):  # CREATE TABLE t (columns)
        this = this.this
    targets.append(this)
    for table in targets:
        if not isinstance(table, exp.Table) or not table.catalog:
            continue
        catalog = table.catalog.lower()
        owner = aliases.get(catalog) or territory.catalogs.get(catalog)
        if owner:
            yield owner, " ".join(tree.sql(dialect="duckdb").split())[:160]
