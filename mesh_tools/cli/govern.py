"""Commands of federated governance: check, rules."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mesh_tools.cli.app import (
    ExitCode,
    _mesh,
    _parse_stale,
    handles_errors,
    main,
)
from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Mesh


@main.command()
@click.argument("selectors", nargs=-1)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "junit", "sarif"]), default="text", show_default=True
)
@click.option(
    "--fail-on",
    type=click.Choice(["info", "warn", "error"]),
    help="Lowest failing severity (default: mesh.yml, else error).",
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
@click.pass_context
@handles_errors
def check(
    ctx: click.Context,
    selectors: tuple[str, ...],
    fmt: str,
    fail_on: str | None,
    no_sqlfluff: bool,
    baseline: Path | None,
    write_baseline: Path | None,
    output: Path | None,
    contracts: Path | None,
    write_contracts: Path | None,
) -> None:
    """Check governance rules over the whole mesh (every domain's manifest, plus the exchange)."""
    from mesh_tools.governance import engine, render
    from mesh_tools.governance.rule import Severity

    mesh = _mesh(ctx)
    _parse_stale(mesh, list(mesh.domains))
    threshold = Severity.parse(fail_on or mesh.governance.fail_on)
    known = engine.read_baseline(baseline) if baseline else None
    saved = engine.read_contracts(contracts) if contracts else None
    report = engine.run_check(mesh, mesh.select(selectors), sqlfluff=not no_sqlfluff, baseline=known, contracts=saved)
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
    sys.exit(ExitCode.FAILED if report.failing(threshold) else ExitCode.OK)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "markdown"]), default="text", show_default=True)
@click.pass_context
@handles_errors
def rules(ctx: click.Context, fmt: str) -> None:
    """List every governance rule with its documentation."""
    import inspect

    from mesh_tools.governance.engine import META_RULES, all_rules

    try:
        mesh: Mesh | None = _mesh(ctx)
    except MeshError:
        mesh = None
    for item in all_rules(mesh):
        if fmt == "markdown":
            click.echo(f"### {item.code} {item.name} ({item.severity.label})\n\n{inspect.cleandoc(item.doc)}\n")
        else:
            click.echo(f"{item.code}  {item.name}  [{item.severity.label}, {item.family}]")
            for line in inspect.cleandoc(item.doc).splitlines():
                click.echo(f"    {line}")
            click.echo("")
    for code, (name, severity, fix) in META_RULES.items():
        click.echo(f"{code}  {name}  [{severity.label}, waivers]\n    {fix}\n")
