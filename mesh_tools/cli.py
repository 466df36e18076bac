"""The `mesh` command line: thin click commands that call the library and render its results."""

from __future__ import annotations

import enum
import functools
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mesh_tools import __version__
from mesh_tools.build import RunPlan, default_jobs, run_mesh
from mesh_tools.errors import ArtifactError, DbtError, MeshError
from mesh_tools.mesh import Mesh, find_root, load_mesh
from mesh_tools.worker import SUCCESS, DomainRun


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # a domain failed (or was skipped because an upstream failed)
    USAGE = 2  # bad command line or configuration
    DBT = 3  # dbt could not run, or an artifact is missing or corrupt


def _exit_code_for(exc: MeshError) -> ExitCode:
    if isinstance(exc, (ArtifactError, DbtError)):
        return ExitCode.DBT
    return ExitCode.USAGE


def handles_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one `error:` line and the documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().params.get("debug"))
        try:
            return func(*args, **kwargs)
        except MeshError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            sys.exit(_exit_code_for(exc))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"internal error: {exc!r}. Run again with --debug for the traceback, and report it.", err=True)
            sys.exit(ExitCode.DBT)

    return wrapper


def _mesh(ctx: click.Context) -> Mesh:
    root = ctx.find_root().params.get("root")
    return load_mesh(Path(root) if root else find_root(Path.cwd()))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", type=click.Path(file_okay=False), help="Mesh root (default: nearest folder with mesh.yml).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, prog_name="mesh")
def main(root: str | None, debug: bool) -> None:
    """Run a mesh of dbt projects, one per business domain, as one data mesh.

    Exit codes: 0 ok, 1 a domain failed, 2 usage or configuration error, 3 dbt or artifact problem.
    """


def _selection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.argument("selectors", nargs=-1)(func)
    func = click.option("--target", "-t", help="dbt target for every domain (default: mesh.yml, then profile).")(func)
    func = click.option("--jobs", "-j", type=click.IntRange(1, 64), help="Domains run at once, one process each.")(func)
    func = click.option("--verbose", "-v", is_flag=True, help="Show dbt's own output.")(func)
    return func


def _plan(
    mesh: Mesh, command: str, selectors: tuple[str, ...], target: str | None, jobs: int | None, verbose: bool
) -> RunPlan:
    return RunPlan(
        command=command,
        domains=mesh.select(selectors),
        target=target or mesh.defaults.target,
        jobs=jobs or mesh.defaults.jobs or default_jobs(),
        verbose=verbose,
    )


def _progress(start: float) -> Callable[[str, str, DomainRun | None], None]:
    def show(event: str, name: str, run: DomainRun | None) -> None:
        stamp = f"[{time.perf_counter() - start:6.1f}s]"
        if event == "started":
            click.echo(f"{stamp} {name}: started")
        elif run is not None and event == "skipped":
            click.echo(f"{stamp} {name}: skipped ({run.problems[0]})")
        elif run is not None:
            verdict = "ok" if run.status == SUCCESS else run.status.upper()
            click.echo(f"{stamp} {name}: {verdict} in {run.seconds:.1f}s")
            for problem in run.problems:
                click.echo(f"    error: {problem}")
            for warning in run.warnings:
                click.echo(f"    warning: {warning}")

    return show


def _summary(runs: list[DomainRun], command: str, seconds: float) -> None:
    click.echo("")
    header = (
        f"{'domain':<16} {'status':<8} {'models':>6} {'tests pass/fail/warn':>21} {'upstream views':>14} {'time':>7}"
    )
    click.echo(header)
    click.echo("-" * len(header))
    for run in runs:
        tests = f"{run.tests_passed}/{run.tests_failed}/{run.tests_warned}"
        models = f"{run.models}" if not run.models_failed else f"{run.models}!{run.models_failed}"
        click.echo(
            f"{run.domain:<16} {run.status:<8} {models:>6} {tests:>21} {run.upstream_views:>14} {run.seconds:>6.1f}s"
        )
    ok = sum(r.status == SUCCESS for r in runs)
    click.echo(f"\nmesh {command}: {ok} of {len(runs)} domains succeeded in {seconds:.1f}s")


@main.command()
@_selection_options
@click.pass_context
@handles_errors
def build(ctx: click.Context, selectors: tuple[str, ...], target: str | None, jobs: int | None, verbose: bool) -> None:
    """Stitch and `dbt build` every selected domain in dependency order.

    SELECTORS: domain names; `sales+` adds everything downstream, `+sales` everything upstream.
    """
    mesh = _mesh(ctx)
    plan = _plan(mesh, "build", selectors, target, jobs, verbose)
    start = time.perf_counter()
    click.echo(f"mesh build: {len(plan.domains)} domain(s) of mesh '{mesh.name}', {plan.jobs} at a time")
    runs = run_mesh(mesh, plan, _progress(start))
    _summary(runs, "build", time.perf_counter() - start)
    sys.exit(ExitCode.OK if all(r.status == SUCCESS for r in runs) else ExitCode.FAILED)


@main.command()
@_selection_options
@click.pass_context
@handles_errors
def stitch(ctx: click.Context, selectors: tuple[str, ...], target: str | None, jobs: int | None, verbose: bool) -> None:
    """Install upstream stubs into each selected domain and parse it, so plain `dbt build` works there.

    Afterwards a domain team's daily loop is `cd projects/<domain> && dbt build`.
    """
    mesh = _mesh(ctx)
    plan = _plan(mesh, "parse", selectors, target, jobs, verbose)
    start = time.perf_counter()
    runs = run_mesh(mesh, plan, _progress(start))
    for run in runs:
        if run.status == SUCCESS:
            stitched = ", ".join(run.stitched) or "no upstreams"
            click.echo(f"{run.domain}: stitched ({stitched})")
    click.echo(f"mesh stitch: {sum(r.status == SUCCESS for r in runs)} of {len(runs)} domains ready")
    sys.exit(ExitCode.OK if all(r.status == SUCCESS for r in runs) else ExitCode.FAILED)


@main.command(name="ls")
@click.pass_context
@handles_errors
def list_domains(ctx: click.Context) -> None:
    """List the domains in dependency order with their owners and upstreams."""
    mesh = _mesh(ctx)
    click.echo(f"mesh '{mesh.name}' at {mesh.root} ({'mesh.yml' if mesh.config_path else 'discovered'})")
    for name, domain in mesh.domains.items():
        owner = domain.owner.label() if domain.owner else "-"
        ups = ", ".join(domain.upstream_names) or "-"
        click.echo(f"{name:<16} owner: {owner:<40} upstreams: {ups}")


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


if __name__ == "__main__":  # pragma: no cover
    main()
