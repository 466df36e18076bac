"""Commands of federated governance: check, rules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mesh_tools.cli.app import (
    ExitCode,
    _mesh,
    _parse_stale,
    fail_on_option,
    handles_errors,
    main,
    select_options,
    wait_option,
)
from mesh_tools.core.errors import ConfigError, MeshError
from mesh_tools.core.mesh import Mesh
from mesh_tools.model.nodes import ProductKey

if TYPE_CHECKING:
    from mesh_tools.exchange.grants import GrantPlan


@main.command()
@select_options
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "junit", "sarif"]), default="text", show_default=True,
    help="text: grouped by domain, each finding with its location and fix; json; junit: one test suite per domain "
    "(CI dashboards); sarif: code-scanning annotations.",
)  # fmt: skip
@fail_on_option(
    ("info", "warn", "error", "never"), "Lowest severity that exits 1, or never (default: mesh.yml, else error)."
)
@click.option("--no-sqlfluff", is_flag=True, help="Skip the SQL style rule (GOV502).")
@click.option(
    "--baseline", type=click.Path(dir_okay=False, path_type=Path), help="Fail only on violations not in this file."
)
@click.option(
    "--write-baseline", type=click.Path(dir_okay=False, path_type=Path), help="Save today's violations as the baseline."
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here, not to stdout."
)
@click.option(
    "--contracts",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Saved contracts to compare products with (GOV301), instead of their last published releases.",
)
@click.option(
    "--write-contracts",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save every public model's contract, as a baseline for --contracts.",
)
@click.option(
    "--contracts-from",
    "contracts_from",
    type=click.Path(file_okay=False, path_type=Path),
    help="ODCS contracts (a `mesh contracts export` folder) to compare products with (GOV301), with the "
    "consumers each breaking change affects.",
)
@click.option(
    "--datacontract",
    is_flag=True,
    help="Also test each product's current release against its ODCS contract with datacontract-cli (GOV107).",
)
@click.option(
    "--target",
    "-t",
    help="Also check the warehouse grants of the domains this dbt target puts on a shared warehouse (GOV206).",
)
@click.pass_context
@handles_errors
def check(
    ctx: click.Context,
    select: tuple[str, ...],
    exclude: tuple[str, ...],
    fmt: str,
    fail_on: str | None,
    no_sqlfluff: bool,
    baseline: Path | None,
    write_baseline: Path | None,
    output: Path | None,
    contracts: Path | None,
    write_contracts: Path | None,
    contracts_from: Path | None,
    datacontract: bool,
    target: str | None,
) -> None:
    """Check governance rules over the whole mesh (every domain's manifest, plus the exchange)."""
    from mesh_tools.governance import engine, render
    from mesh_tools.governance.rule import Severity

    mesh = _mesh(ctx)
    mesh = _parse_stale(mesh, list(mesh.domains))  # a stale domain is judged on a parse outside its target/
    level = fail_on or mesh.governance.fail_on
    threshold = Severity.parse("error" if level == "never" else level)
    known = engine.read_baseline(baseline) if baseline else None
    if contracts and contracts_from:
        raise click.UsageError("give --contracts (a saved file) or --contracts-from (ODCS contracts), not both")
    saved = engine.read_contracts(contracts) if contracts else None
    if contracts_from:
        saved = engine.read_odcs_dir(contracts_from)
        unknown = sorted(k for k in saved if ProductKey.parse(k).domain not in mesh.domains)
        if unknown and len(unknown) == len(saved):
            raise ConfigError(f"{contracts_from}: no contract in it names a product of this mesh "
                              f"(`<domain>.<model>[.vN]`, e.g. {unknown[0]!r}): nothing to compare.")  # fmt: skip
        for key in unknown:
            click.echo(f"mesh check: {key} ({contracts_from}) names no domain of this mesh: not compared", err=True)
    selected = mesh.select(select, exclude, "`mesh check`")
    from mesh_tools.exchange.grants import grant_problems

    grants = grant_problems(mesh, selected, target or mesh.defaults.target)
    tested = None
    if datacontract:
        from mesh_tools.contracts.datacontract import test_releases

        tested, untested = test_releases(mesh, selected)
        for note in untested:
            click.echo(f"mesh check --datacontract: {note}", err=True)
    report = engine.run_check(mesh, selected, sqlfluff=not no_sqlfluff, baseline=known, contracts=saved,
                              warehouse_grants=grants, contract_tests=tested)  # fmt: skip
    if not datacontract and "GOV107" in report.rules:  # on, but it needs datacontract-cli: say it did not run
        click.echo("mesh check: GOV107 (product-data-contract) not checked: `mesh check --datacontract` tests each "
                   "release against its ODCS contract", err=True)  # fmt: skip
    if write_contracts:
        engine.write_contracts(write_contracts, mesh)
    rendered = render.RENDERERS[fmt](report, threshold)
    if output:
        from mesh_tools.core.files import write_atomic

        write_atomic(output, rendered + "\n")
        click.echo(f"mesh check: report written to {output}")
    else:
        click.echo(rendered)
    if write_baseline:
        engine.write_baseline(write_baseline, report)
    sys.exit(ExitCode.FAILED if level != "never" and report.failing(threshold) else ExitCode.OK)


@main.command()
@select_options
@click.option("--target", "-t", help="dbt target of the warehouse (default: mesh.yml, then each profile's).")
@click.option("--dry-run", is_flag=True, help="Print the SQL that would reconcile the grants; change nothing.")
@click.option("--bootstrap", is_flag=True, help="Print the SQL an administrator runs once: roles, database.")
@wait_option
@click.pass_context
@handles_errors
def grants(
    ctx: click.Context, select: tuple[str, ...], exclude: tuple[str, ...], target: str | None, dry_run: bool,
    bootstrap: bool,
) -> None:  # fmt: skip
    """Make each domain's warehouse grants match the mesh's policy (PostgreSQL).

    Each domain's role grants its consumers' roles USAGE on its releases and products schemas and
    SELECT on the products they may read (PII in clear only for the consumers the policy names);
    every other grant on what it owns is drift, revoked. Runs on each domain's own connection.
    """
    from mesh_tools.exchange.grants import bootstrap_sql, reconcile

    mesh = _mesh(ctx)
    target = target or mesh.defaults.target
    if bootstrap:
        lines = bootstrap_sql(mesh, target)
        if not lines:
            raise MeshError(f"no domain of the mesh builds on PostgreSQL with target {target or '(default)'}.")
        click.echo("\n".join(lines))
        return
    selected = mesh.select(select, exclude, "`mesh grants`")
    if not dry_run:
        from mesh_tools.cli.app import _locked

        _locked(ctx, mesh, selected)  # each domain's grants, on its own connection
    outcomes = reconcile(mesh, selected, target, dry_run)
    for name, outcome in outcomes:
        if isinstance(outcome, str):
            click.echo(f"{name}: {outcome}", err=True)
        else:
            _show_grants(outcome, dry_run)
    if not outcomes:
        raise MeshError(
            f"no selected domain builds on PostgreSQL with target {target or '(default)'}: give the warehouse's "
            "target with --target."
        )
    if any(isinstance(o, str) for _, o in outcomes):
        sys.exit(ExitCode.DBT)
    if any(o.refused for _, o in outcomes if not isinstance(o, str)):
        sys.exit(ExitCode.USAGE)  # a profile names a role that is not a domain's own: what else was due is done


def _show_grants(plan: GrantPlan, dry_run: bool) -> None:
    """One domain's grants: clean, or what was (or would be) revoked, granted and pointed, and the SQL."""
    from mesh_tools.exchange.grants import describe

    head = f"{plan.domain} (role {plan.role}, target {plan.target})"
    if plan.clean:
        click.echo(f"{head}: grants match the policy")
        return
    click.echo(f"{head}: {len(plan.drift)} beyond the policy, {len(plan.missing)} missing"
               + (f", {len(plan.repoint)} pointer(s) behind" if plan.repoint else ""))  # fmt: skip
    for privilege in plan.drift:
        click.echo(f"  {'would revoke' if dry_run else 'revoked'}: {describe(privilege)}")
    for privilege in plan.missing:
        click.echo(f"  {'would grant' if dry_run else 'granted'}: {describe(privilege)}")
    for view in plan.repoint:
        click.echo(f"  {'would point' if dry_run else 'pointed'} {view} at its current release")
    for problem in plan.problems:
        click.echo(f"  problem: {problem}")
    if dry_run:
        click.echo("\n".join(f"    {sql};" for sql in plan.statements))


@main.command()
@click.option(
    "--format", "fmt", type=click.Choice(["text", "markdown"]), default="text", show_default=True,
    help="markdown: a heading per rule, its documentation below.",
)  # fmt: skip
@click.argument("codes", nargs=-1, metavar="[CODE]...")
@click.pass_context
@handles_errors
def rules(ctx: click.Context, fmt: str, codes: tuple[str, ...]) -> None:
    """List every governance rule with its documentation (or only the rules named: `mesh rules GOV301`)."""
    import inspect

    from mesh_tools.core.suggestions import did_you_mean
    from mesh_tools.governance.engine import META_RULES, all_rules

    try:
        mesh: Mesh | None = _mesh(ctx)
    except MeshError:
        mesh = None
    every = [*all_rules(mesh), *META_RULES.values()]
    known = {item.code: item for item in every} | {item.name: item for item in every}
    for code in codes:
        if code.upper() not in known and code not in known:
            close = did_you_mean(code.upper(), list(known))
            raise click.UsageError(f"no rule {code!r}.{close} `mesh rules` lists them all.")
    wanted = {(known.get(c.upper()) or known[c]).code for c in codes}
    for item in every:
        if wanted and item.code not in wanted:
            continue
        if fmt == "markdown":
            click.echo(f"### {item.code} {item.name} ({item.severity.label})\n\n{inspect.cleandoc(item.doc)}\n")
        else:
            click.echo(f"{item.code}  {item.name}  [{item.severity.label}, {item.family}]")
            for line in inspect.cleandoc(item.doc).splitlines():
                click.echo(f"    {line}")
            click.echo("")
