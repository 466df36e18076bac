"""Commands that speak the standards others read: data contracts (ODCS)."""

from __future__ import annotations

from pathlib import Path

import click

from mesh_tools.cli.app import (
    _mesh,
    _parse_stale,
    env_option,
    handles_errors,
    main,
    output_dir_alias,
    select_options,
)


@main.group()
def contracts() -> None:
    """Data contracts in the Open Data Contract Standard (ODCS v3), one per data product version."""


@contracts.command("export")
@select_options
@click.option(
    "--output-dir", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder to write them to (default: contracts/ in the mesh root), one "
    "<domain>/<domain>.<model>[.v<N>].odcs.yaml each (contracts/sales/sales.fct_orders.v2.odcs.yaml).",
)  # fmt: skip
@click.option(
    "--output", "-o", "old_out", type=click.Path(file_okay=False, path_type=Path), default=None, hidden=True,
    help="The old spelling of --output-dir.",
)  # fmt: skip
@env_option
@click.pass_context
@handles_errors
def export(
    ctx: click.Context, select: tuple[str, ...], exclude: tuple[str, ...], out: Path | None, old_out: Path | None
) -> None:
    """Write the ODCS contract of every product version of the selected domains (default: all).

    Each describes the product's current release in this run's channel (--env): columns with logical
    and physical types, required/unique/primary key, PII classification, quality checks from its dbt
    tests, owner, freshness SLO, where the release file is, and its id, hash and row count. A product
    never published gets a proposed contract from its model. Every contract is validated against the
    standard's JSON schema before it is written.
    """
    from mesh_tools.contracts.datacontract import export_contracts

    if old_out is not None and out is not None:
        raise click.UsageError("give --output-dir only (-o/--output is its old spelling)")
    out = out or output_dir_alias(ctx, old_out, "-o/--output")
    mesh = _mesh(ctx)
    selected = mesh.select(select, exclude, "`mesh contracts export`")
    mesh = _parse_stale(mesh, selected)  # a stale domain: a parse of its files, outside its target/
    folder = out if out is not None else mesh.root / "contracts"
    result = export_contracts(mesh, selected, folder)
    for item, _path in result.written:
        release = item.release.descriptor.release_id if item.release else "no release"
        note = f" ({item.note})" if item.note else ""
        click.echo(f"  {item.product:<40} {release}{note}")
    for note in result.skipped:
        click.echo(f"  no contract: {note}", err=True)
    for path in result.stale:
        click.echo(f"  left in place, its product is gone: {path}")
    click.echo(f"mesh contracts export: {len(result.written)} contract(s) written to {folder}")
