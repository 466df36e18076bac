"""Storage: a domain writes its own storage only, never another domain's nor the exchange."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from mesh_tools.dbt import engines
from mesh_tools.dbt.engines.sqlscan import Scanner
from mesh_tools.governance.context import CheckContext
from mesh_tools.governance.rule import Finding, rule
from mesh_tools.model.nodes import Node

# Packages whose macros are dbt's own, or written by the mesh (the runtime writes releases by design).
_NOT_THE_DOMAINS = ("dbt", "mesh_tools_runtime")


@dataclass(frozen=True)
class _Statement:
    node: Node
    where: str  # "'invoices' (post-hook)", "on-run-start hook", ...
    sql: str


def _statements(ctx: CheckContext, domain: str) -> Iterator[_Statement]:
    """Every piece of SQL the domain runs: models (compiled when built), hooks, operations, the macros of
    its own project and of the packages it installs."""
    manifest = ctx.manifests[domain]
    for node in manifest.nodes.values():
        if node.package != domain:
            continue
        kind = node.resource_type
        if kind == "operation":
            hook = "on-run-end" if "on-run-end" in node.unique_id else "on-run-start"
            yield _Statement(node, f"{hook} hook", node.get("raw_code") or "")
            continue
        if kind not in ("model", "snapshot", "seed", "test"):
            continue
        if kind in ("model", "snapshot"):
            yield _Statement(node, f"'{node.name}'", node.code)
        for key in ("pre-hook", "post-hook"):
            for hook in node.config.get(key) or []:
                sql = hook.get("sql") if isinstance(hook, dict) else hook
                if isinstance(sql, str):
                    yield _Statement(node, f"'{node.name}' ({key})", sql)
    stubs = set(ctx.domain(domain).upstream_names)
    for macro in manifest.macros.values():
        package = macro.package
        if package in stubs or package in _NOT_THE_DOMAINS or package.startswith("dbt_"):
            continue  # upstream stubs, dbt and its adapters, the mesh's runtime
        where = f"macro '{macro.name}'" + ("" if package == domain else f" of package '{package}'")
        yield _Statement(macro, where, macro.get("macro_sql") or "")


def _may_attach(sql: str) -> bool:
    """Whether scanning ``sql`` can teach the scanner an attachment or a current catalog: only an ATTACH or a
    USE statement does, and neither is written without its keyword (any text the scanner looks at, Jinja
    strings included, is part of ``sql``). The first pass skips the rest: it would parse them for nothing. Text
    that is not ASCII is always scanned (a keyword may be spelt with letters whose upper case is ASCII)."""
    lower = sql.lower()
    return "attach" in lower or "use" in lower or not sql.isascii()


@rule("GOV205", "foreign-storage-write")
def foreign_write(ctx: CheckContext) -> Iterator[Finding]:
    """No model, hook or macro attaches or writes another domain's storage, or reads the exchange directly.

    Rationale:
        A domain that writes another's tables or release files forges its data past its owner's
        build, tests and release gate; one that reads release files itself bypasses pins, access
        and PII policies. Found by tokenizing and parsing the SQL (compiled models, hooks,
        on-run-start/end, macros of the domain and its packages, strings in Jinja tags) with
        sqlglot, so paths and names are resolved, not pattern-matched. Always blocks publishing,
        even in an advisory mesh; `mesh stitch` checks the same before dbt runs.
    Example:
        `on-run-start: "attach '../sales/sales.duckdb' as s"` and a post-hook
        `insert into s.main.fct_orders ...`; or `copy (...) to '../exchange/products/...'`.
    Fix:
        Write only your own storage. Read other domains through `ref('<domain>', '<product>')`.
    """
    for domain in ctx.manifests:
        dialect = engines.sql_dialect(ctx.manifests[domain].adapter)
        scanner = Scanner(ctx.territory(domain), dialect)
        statements = list(_statements(ctx, domain))
        for statement in statements:  # first learn every attachment: hooks run before the models they serve
            if _may_attach(statement.sql):
                scanner.scan(statement.sql)
        scanner.current = None
        for statement in statements:
            for reach in scanner.scan(statement.sql):
                yield ctx.finding(domain, statement.node, f"{statement.where} {reach.describe()}")


@rule("GOV206", "warehouse-grants")
def warehouse_grants(ctx: CheckContext) -> Iterator[Finding]:
    """On a shared warehouse, a domain's role grants exactly what the mesh's policy allows.

    Rationale:
        On PostgreSQL the database enforces who reads what: a grant added by hand (a consumer
        reading a working table, a PII column, a product it never declared) is a hole in the
        policy the mesh's metadata cannot see; a grant missing breaks a consumer that may read.
        Checked by `mesh check --target <warehouse target>`, which reads each domain's grants
        through its own connection (without a warehouse target there is nothing to check).
    Example:
        `grant select on sales_marts.fct_orders_v2 to marketing` typed in a SQL console.
    Fix:
        `mesh grants --target <target>` revokes what the policy does not allow and grants what it
        does (`--dry-run` prints the SQL). To allow a read, change the policy: the consumer's
        dependencies.yml, `meta.allowed_consumers` or `meta.pii_allowed_consumers`.
    """
    for domain, problems in ctx.warehouse_grants.items():
        for problem in problems:
            yield Finding(domain, problem, file=ctx.root_relative(ctx.domain(domain).path / "profiles.yml"))
