"""Commands that speak the standards others read: data contracts (ODCS)."""

from __future__ import annotations

from pathlib import Path

import click

from mesh_tools.cli.app import _mesh, _parse_stale, env_option, handles_errors, main


@main.group()
def contracts() -> None:
    """Data contracts in the Open Data Contract Standard (ODCS v3), one per data product version."""


@contracts.command("export")
@click.argument("selectors", nargs=-1)
@click.option(
    "--output", "-o", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder to write them to (default: contracts/ in the mesh root), one <domain>/<product>.odcs.yaml each.",
)  # fmt: skip
@env_option
@click.pass_context
@handles_errors
def export(ctx: click.Context, selectors: tuple[str, ...], out: Path | None) -> None:
    """Write the ODCS contract of every product version of the selected domains (default: all).

    Each describes the product's current release in this run's channel (--env): columns with logical
    and physical types, required/unique/primary key, PII classification, quality checks from its dbt
    tests, owner, freshness SLO, where the release file is, and its id, hash and row count. A product
    never published gets a proposed contract from its model. Every contract is validated against the
    standard's JSON schema before it is written.
    """
    from mesh_tools.contracts.datacontract import export_contracts

    mesh = _mesh(ctx)
    selected = mesh.select(selectors)
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
