"""Commands that describe or prepare a mesh: doctor, ls, demo-data, generate-mesh."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from mesh_tools.cli.app import (
    ExitCode,
    _mesh,
    handles_errors,
    main,
    select_options,
)
from mesh_tools.cli.render import doctor_document, doctor_lines, ls_document
from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import find_root
from mesh_tools.core.words import counted


@main.command()
@click.option("--target", "-t", help="dbt target to read each profile for (default: mesh.yml, then profile).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="json: one document (schema mesh-doctor/1) on stdout.",
)  # fmt: skip
@click.pass_context
@handles_errors
def doctor(ctx: click.Context, target: str | None, fmt: str) -> None:
    """Show how the mesh reads this mesh, and what would stop `mesh build`.

    Every project found (path, name, profile, storage), every edge with the file and line that
    declared it, what was ignored and why, and each problem with its fix. Exit 1 when a problem
    would stop a build (a mesh.yml or project the mesh cannot read is one). It looks at the whole
    mesh (a problem of one domain stops its consumers), so it takes no selection.
    """
    from mesh_tools.workflows.doctor import Diagnosis, Problem, diagnose

    params = ctx.find_root().params
    root = Path(params["root"]) if params.get("root") else find_root(Path.cwd())
    try:
        mesh = _mesh(ctx)
    except MeshError as exc:
        if fmt == "json":
            unread = Diagnosis(
                str(root.resolve()), "", problems=[Problem("blocking", str(root.resolve()), str(exc), "")]
            )
            click.echo(json.dumps(doctor_document(unread), indent=2))
            sys.exit(ExitCode.FAILED)
        click.echo(f"mesh doctor: {root.resolve()}")
        click.echo(f"problems (1):\n  [blocking] {exc}")
        click.echo("\n1 problem would stop `mesh build`.")
        sys.exit(ExitCode.FAILED)
    found = diagnose(mesh, target)
    if fmt == "json":
        click.echo(json.dumps(doctor_document(found), indent=2))
        sys.exit(ExitCode.FAILED if found.blocking else ExitCode.OK)
    click.echo("\n".join(doctor_lines(found)))
    blocking = found.blocking
    if blocking:
        click.echo(f"\n{len(blocking)} problem(s) would stop `mesh build`.")
        sys.exit(ExitCode.FAILED)
    warnings = f" ({counted(len(found.problems), 'warning')})" if found.problems else ""
    click.echo(f"\nnothing would stop `mesh build`{warnings}.")
    if mesh.config_path is None:
        click.echo("next: `mesh build`; `mesh init` writes a mesh.yml with the recommended governance floor.")


@main.command(name="ls")
@select_options
@click.option("--models", is_flag=True, help="Also list each domain's models, seeds and snapshots, as -s names them.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="json: one document (schema mesh-ls/1) on stdout.",
)  # fmt: skip
@click.pass_context
@handles_errors
def list_domains(ctx: click.Context, select: tuple[str, ...], exclude: tuple[str, ...], models: bool, fmt: str) -> None:
    """List the selected domains (default: all) in dependency order with their owners and upstreams."""
    from mesh_tools.workflows.model_selection import mesh_models

    mesh = _mesh(ctx)
    names = mesh.select(select, exclude, "`mesh ls`")
    listed = mesh_models(mesh, names) if models else None
    if fmt == "json":
        click.echo(json.dumps(ls_document(mesh, names, listed), indent=2))
        return
    click.echo(f"mesh '{mesh.name}' at {mesh.root} ({'mesh.yml' if mesh.config_path else 'discovered'})")
    for name in names:
        domain = mesh.domains[name]
        owner = domain.owner.label() if domain.owner else "-"
        ups = ", ".join(domain.upstream_names) or "-"
        click.echo(f"{name:<16} owner: {owner:<40} upstreams: {ups}")
        for item in (listed or {}).get(name, []):
            click.echo(f"    {item.label:<40} {item.resource_type:<9} {item.access}")
        if listed is not None and name not in listed:
            click.echo("    (no manifest yet: `mesh stitch` parses it)")


@main.command(name="demo-data")
@click.option("--orders", type=click.IntRange(1), default=500, show_default=True, help="Number of orders.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the generator.")
@click.pass_context
@handles_errors
def demo_data(ctx: click.Context, orders: int, seed: int) -> None:
    """Write the demo mesh's landing files (Parquet), deterministic for a seed."""
    from mesh_tools.demo_data import write_landing_files

    mesh = _mesh(ctx)
    start = time.perf_counter()
    written = write_landing_files(mesh, orders=orders, seed=seed)
    for path, rows in written:
        click.echo(f"{path}: {rows} rows")
    click.echo(f"demo-data: {len(written)} files in {time.perf_counter() - start:.1f}s")


@main.command(name="generate-mesh")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--domains", type=click.IntRange(1), default=5, show_default=True, help="Number of domains.")
@click.option("--models", type=click.IntRange(2), default=20, show_default=True, help="Models per domain.")
@click.option("--refs", type=click.IntRange(0), default=8, show_default=True, help="Cross-project refs in all.")
@click.option("--rows", type=click.IntRange(1), default=1000, show_default=True, help="Landing rows per domain.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the generator.")
@click.option("--force", is_flag=True, help="Replace FOLDER if it is not empty.")
@handles_errors
def generate_mesh_command(
    folder: Path, domains: int, models: int, refs: int, rows: int, seed: int, force: bool
) -> None:
    """Write a synthetic mesh (for benchmarks and trials), deterministic for a seed."""
    from mesh_tools.synthetic import SyntheticSpec, generate_mesh

    start = time.perf_counter()
    spec = SyntheticSpec(domains=domains, models=models, refs=refs, rows=rows, seed=seed)
    names = generate_mesh(folder, spec, force=force)
    click.echo(
        f"generate-mesh: {len(names)} domains x {models} models in {folder} ({time.perf_counter() - start:.1f}s)"
    )
