"""Conventions: layer prefixes, and SQL style through sqlfluff."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from mesh_tools.governance.context import CheckContext
from mesh_tools.governance.rule import Finding, rule
from mesh_tools.model.nodes import Node

DEFAULT_PREFIXES = {"staging": "stg_", "intermediate": "int_"}


@rule("GOV501", "layer-prefixes", severity="warn")
def layer_prefixes(ctx: CheckContext) -> Iterator[Finding]:
    """Models in staging/ and intermediate/ folders carry their layer's prefix, and only there.

    Rationale:
        The layer tells a reader what a model is for and who may depend on it.
    Example:
        `models/staging/customers.sql`, or `models/marts/stg_orders.sql`.
    Fix:
        Rename to `stg_customers`, or move the model to its layer's folder.
        Options: `prefixes: {staging: stg_, intermediate: int_}`.
    """
    prefixes: dict[str, str] = ctx.option("GOV501", "prefixes", DEFAULT_PREFIXES)
    for domain in ctx.manifests:
        for node in ctx.nodes(domain):
            folders = set(Path(node.file).parts[:-1])
            for layer, prefix in prefixes.items():
                inside, named = layer in folders, node.name.startswith(prefix)
                if inside != named:
                    problem = (
                        f"is in {layer}/ but is not named {prefix}*"
                        if inside
                        else f"is named {prefix}* outside {layer}/"
                    )
                    yield ctx.finding(domain, node, f"'{node.name}' {problem}")


# LT02 (indentation) is left out: the jinja templater renders unknown macros as blanks and mis-indents.
DEFAULT_SQLFLUFF_RULES = ["LT01", "LT05", "LT12", "CP01", "AL01", "AM01", "ST02"]


@rule("GOV502", "sql-style", severity="warn")
def sql_style(ctx: CheckContext) -> Iterator[Finding]:
    """Model SQL follows the mesh's style, checked by sqlfluff (dialect duckdb, jinja templater with dbt builtins).

    Rationale:
        One style across domains makes every domain's SQL readable to every other. Every file of
        the mesh is linted in one pass, one worker process per core; each file's result is kept in
        `.mesh/sqlfluff-cache.json`, keyed by its bytes and path, the rule's options, the Python,
        sqlfluff and plugin versions and the sqlfluff config files up to the mesh root, so an
        unchanged file is not linted again (delete the file to force a full lint; a corrupt cache
        is ignored and rewritten).
    Example:
        Upper- and lower-case keywords mixed in one file (CP01).
    Fix:
        Run `sqlfluff fix` on the file, or configure the rules: options `rules`, `exclude_rules`,
        `max_line_length`. Skipped with `mesh check --no-sqlfluff`.
    """
    if not ctx.option("GOV502", "enabled", True):
        return
    from mesh_tools.governance.sqlstyle import SqlFile, lint_files, relevant

    overrides = {
        "dialect": ctx.option("GOV502", "dialect", "duckdb"),
        "templater": "jinja",
        "rules": ",".join(ctx.option("GOV502", "rules", DEFAULT_SQLFLUFF_RULES)),
        "exclude_rules": ",".join(ctx.option("GOV502", "exclude_rules", [])),
        "max_line_length": int(ctx.option("GOV502", "max_line_length", 120)),
    }
    configs = {"templater": {"jinja": {"apply_dbt_builtins": True}}}
    files: list[tuple[str, Node, SqlFile]] = []
    for domain in ctx.manifests:
        for node in ctx.nodes(domain):
            path = ctx.domain(domain).path / node.file
            if path.suffix != ".sql" or not path.is_file():
                continue
            files.append((domain, node, SqlFile(path, path.read_text(encoding="utf-8"))))
    # every file of the mesh in one pass, on every core; an unchanged file's result comes from the cache
    results = lint_files(ctx.mesh.root, [f for _, _, f in files], overrides, configs, len(os.sched_getaffinity(0)))
    for (domain, node, _), violations in zip(files, results, strict=True):
        for code, desc, line in relevant(violations):
            yield Finding(domain, f"{code}: {desc}", node=node.unique_id, file=ctx.relpath(domain, node), line=line)
