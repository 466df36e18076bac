"""The `mesh` group, its global options, exit codes and error handling, and what every command shares."""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mesh_tools import __version__
from mesh_tools.core.errors import ArtifactError, BusyError, DbtError, MeshError, describe_os_error
from mesh_tools.core.mesh import Mesh, find_root, load_mesh
from mesh_tools.workflows.domain_run import SUCCESS
from mesh_tools.workflows.scheduler import RunPlan, default_jobs, run_mesh


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # a domain failed (or was skipped because an upstream failed)
    USAGE = 2  # bad command line or configuration
    DBT = 3  # dbt could not run, an artifact is missing or corrupt, or the file system refused (I/O)
    INTERNAL = 4  # an unexpected error: a bug of mesh-tools, to report


def _exit_code_for(exc: MeshError) -> ExitCode:
    if isinstance(exc, BusyError):
        return ExitCode.USAGE
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
        except BrokenPipeError:  # output piped into `head` and the like
            sys.stderr.close()
            sys.exit(ExitCode.OK)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except OSError as exc:  # the file system refused: read-only, full, permission, I/O
            if debug:
                traceback.print_exc()
            click.echo(f"error: {describe_os_error(exc)}", err=True)
            sys.exit(ExitCode.DBT)
        except Exception as exc:
            if debug:
                traceback.print_exc()
            click.echo(
                f"internal error: {exc!r}. This is a bug of mesh-tools: run again with --debug for the traceback "
                "and report it with the command you ran.",
                err=True,
            )
            sys.exit(ExitCode.INTERNAL)

    return wrapper


def _locked(ctx: click.Context, mesh: Mesh) -> None:
    """Hold the mesh's lock until the command ends: one writing run at a time (mesh_tools/lock.py)."""
    from mesh_tools.core.lock import mesh_lock

    ctx.with_resource(mesh_lock(mesh.root, f"mesh {ctx.info_name}"))


def _mesh(ctx: click.Context) -> Mesh:
    params = ctx.find_root().params
    root = params.get("root")
    mesh = load_mesh(Path(root) if root else find_root(Path.cwd()))
    profiles = params.get("profiles_dir")
    return dataclasses.replace(mesh, profiles_dir=Path(profiles).resolve()) if profiles else mesh


def _set_env(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--env NAME``: the channel this run reads upstreams from and publishes to (``MESH_ENV``, inherited by
    the domain workers)."""
    from mesh_tools.core.errors import ConfigError
    from mesh_tools.store.exchange import check_channel

    if value is None:
        return None
    try:
        check_channel(value, "--env")
    except ConfigError as exc:
        raise click.BadParameter(str(exc).removeprefix("--env: ")) from None
    os.environ["MESH_ENV"] = value
    return value


def env_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--env", callback=_set_env, expose_value=False, is_eager=True, envvar="MESH_ENV",
        help="Environment (channel) to read upstream releases from and publish to; default prod (MESH_ENV).",
    )(func)  # fmt: skip


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@env_option
@click.option("--root", type=click.Path(file_okay=False), help="Mesh root (default: nearest folder with mesh.yml).")
@click.option(
    "--profiles-dir",
    type=click.Path(file_okay=False, exists=True),
    help="Folder of profiles.yml for every domain (default: as dbt: DBT_PROFILES_DIR, the project's folder, ~/.dbt).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, prog_name="mesh")
def main(root: str | None, profiles_dir: str | None, debug: bool) -> None:
    """Run a mesh of dbt projects, one per business domain, as one data mesh.

    Exit codes: 0 ok, 1 a domain failed, 2 usage or configuration error, 3 dbt or artifact problem.
    """


def _selection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.argument("selectors", nargs=-1)(func)
    func = env_option(func)
    func = click.option("--target", "-t", help="dbt target for every domain (default: mesh.yml, then profile).")(func)
    func = click.option("--jobs", "-j", type=click.IntRange(1, 64), help="Domains run at once, one process each.")(func)
    func = click.option("--verbose", "-v", is_flag=True, help="Show dbt's own output.")(func)
    return func


def _plan(
    mesh: Mesh, command: str, selectors: tuple[str, ...], target: str | None, jobs: int | None, verbose: bool
) -> RunPlan:
    domains = mesh.select(selectors)
    if command in ("build", "parse"):  # a read-only domain folder is exit 3 naming it, not dbt's raw error midway
        mesh.require_writable(domains, "build" if command == "build" else "stitch")
    return RunPlan(
        command=command,
        domains=domains,
        target=target or mesh.defaults.target,
        jobs=jobs or mesh.defaults.jobs or default_jobs(),
        verbose=verbose,
    )


def _notes(mesh: Mesh) -> None:
    """What the loader ignored, and why (`mesh doctor` shows the whole picture)."""
    for note in mesh.notes:
        click.echo(f"note: {note}")


def _parse_stale(mesh: Mesh, names: list[str]) -> None:
    """Parse again the domains whose files changed after their manifest, so nothing judges stale artifacts.

    Notes go to stderr (stdout may be a JSON or SARIF report). A domain that no longer parses is
    an error: its old manifest would describe code that is gone.
    """
    from mesh_tools.dbt.staleness import stale_domains

    candidates = [mesh.domains[n] for n in names if mesh.domains[n].manifest_path.is_file()]
    stale = stale_domains(candidates, list(mesh.domains.values()))
    if not stale:
        return
    for name, why in stale.items():
        click.echo(f"note: {why}: parsing {name} again", err=True)
    plan = RunPlan(command="parse", domains=[n for n in mesh.order if n in stale], target=mesh.defaults.target,
                   jobs=mesh.defaults.jobs or default_jobs())  # fmt: skip
    for run in run_mesh(mesh, plan):
        if run.status != SUCCESS:
            problem = "; ".join(run.problems) or "dbt parse failed"
            raise ArtifactError(
                f"{run.domain}: its files changed after its manifest was written and it no longer parses: {problem}"
            )


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
