"""The `mesh` group, its global options, exit codes and error handling, and what every command shares."""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mesh_tools import __version__
from mesh_tools.core.errors import ArtifactError, BusyError, DbtError, MeshError, describe_os_error
from mesh_tools.core.mesh import Mesh, find_root, load_mesh
from mesh_tools.workflows.locks import domain_locks
from mesh_tools.workflows.scheduler import RunPlan, default_jobs

if TYPE_CHECKING:
    from mesh_tools.core.lock import Resource
    from mesh_tools.core.selection import Selection


class ExitCode(enum.IntEnum):
    """What a `mesh` command's exit status means: the one list `mesh --help`, every command's help and the
    reference (docs/reference/exit-codes.md) are made from (EXIT_CODE_TEXT)."""

    OK = 0
    FAILED = 1  # a domain failed (or was skipped because an upstream failed)
    USAGE = 2  # bad command line or configuration
    DBT = 3  # dbt could not run, an artifact is missing or corrupt, or the file system refused (I/O)
    INTERNAL = 4  # an unexpected error: a bug of mesh-tools, to report
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it


@dataclasses.dataclass(frozen=True)
class ExitCodeText:
    """An exit code in three lengths: ``brief`` under each command's help, ``summary`` in `mesh --help`,
    ``detail`` in the reference."""

    brief: str
    summary: str
    detail: str


EXIT_CODE_TEXT: dict[ExitCode, ExitCodeText] = {
    ExitCode.OK: ExitCodeText("ok", "ok", "The command did what it was asked; nothing it judged failed."),
    ExitCode.FAILED: ExitCodeText(
        "findings",
        "findings: a domain failed or was skipped, a check or gate failed, a product is unhealthy",
        "Findings, not errors: a domain failed (its downstream domains are shown as `skipped`) or a ref was "
        "refused, a check found violations at or above `--fail-on`, a publish or promote gate refused, a product "
        "or domain is unhealthy. What it means for each command is written under the command's help.",
    ),
    ExitCode.USAGE: ExitCodeText(
        "usage or configuration error (or busy)",
        "usage or configuration error, or another run holds what this one writes",
        "A usage or configuration error: the command line, mesh.yml, a mesh_domain.yml, dependencies.yml, "
        "dbt_project.yml or the selection. Configuration is checked for the whole mesh before anything runs, so a "
        "refused command builds and writes nothing. Also: another `mesh` run writes the same domain or file (busy; "
        "see `--wait`).",
    ),
    ExitCode.DBT: ExitCodeText(
        "dbt, artifact or file-system problem",
        "dbt could not run, an artifact is missing or corrupt, or the file system refused",
        "dbt could not run; an artifact (an upstream's `manifest.json`, its database, a release) is missing, "
        "corrupt or does not match its record; or the file system refused (read-only, full, permission denied, "
        "I/O error).",
    ),
    ExitCode.INTERNAL: ExitCodeText(
        "a bug of mesh-tools",
        "an unexpected error: a bug of mesh-tools (run again with --debug and report it)",
        "An unexpected error: a bug of mesh-tools. Run the command again with `--debug` for the traceback and "
        "report it with the command you ran.",
    ),
    ExitCode.INTERRUPTED: ExitCodeText(
        "interrupted",
        "interrupted (Ctrl-C)",
        "Interrupted (Ctrl-C, SIGINT): the command stopped where it was; `interrupted` is printed on stderr.",
    ),
}


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
        except click.ClickException:  # a usage error found in the body: click says it, exit 2
            raise
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
            sys.exit(ExitCode.INTERRUPTED)
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


def _locked(
    ctx: click.Context,
    mesh: Mesh,
    domains: Iterable[str] = (),
    *,
    storage: bool = False,
    target: str | None = None,
    also: Iterable[Resource] = (),
) -> None:
    """Hold, until the command ends, the locks of what it writes (core/lock.py): ``domains``, with ``storage``
    the database files their profiles open for ``target`` (domains may share one), and ``also``. Another run
    writing one of them: wait up to ``--wait`` seconds, else BusyError (exit 2) naming it."""
    from mesh_tools.core import lock

    names = list(dict.fromkeys(domains))
    resources = domain_locks(mesh, names, storage=storage, target=target) + list(also)
    shown = f"mesh {ctx.info_name}"
    if names and len(names) < len(mesh.domains):
        shown += " " + " ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    ctx.with_resource(lock.hold(mesh.root, resources, shown, wait=wait_seconds(ctx), note=_note))


def wait_seconds(ctx: click.Context) -> float:
    """``--wait SECONDS`` of this command (``MESH_WAIT``): how long to wait for another writer; 0 by default."""
    value = ctx.find_root().meta.get("mesh_wait")
    return float(value) if value is not None else 0.0


def _set_wait(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None:
        ctx.find_root().meta["mesh_wait"] = value
    return value


def wait_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--wait", type=click.FloatRange(min=0), callback=_set_wait, expose_value=False, envvar="MESH_WAIT",
        metavar="SECONDS",
        help="When another run writes one of the same domains (or files), wait up to SECONDS for it to finish "
        "(MESH_WAIT); default 0: exit 2 at once, naming it.",
    )(func)  # fmt: skip


def _note(text: str) -> None:
    click.echo(f"note: {text}", err=True)


def _mesh(ctx: click.Context, *, allow_empty: bool = False) -> Mesh:
    params = ctx.find_root().params
    root = params.get("root")
    mesh = load_mesh(Path(root) if root else find_root(Path.cwd()), allow_empty=allow_empty)
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

    Commands that select take dbt's grammar: -s/--select and --exclude (`-s sales+`, `-s 2+sales`, `-s @sales`,
    `-s sales.fct_orders+` for a model and its downstream in every domain, `-s 'a b'` for a union,
    `-s sales+,owner:NAME` for an intersection); the selectors may also be given as arguments
    (`mesh build sales+`), an alias of --select.
    """


# The exit codes under the group's help, from the enum (one list for --help, every command and the reference).
main.help = (
    inspect.cleandoc(main.help or "")
    + "\n\n\b\nExit codes:\n"
    + "\n".join(f"  {int(code):>3}  {EXIT_CODE_TEXT[code].summary}" for code in ExitCode)
)


# Below every command's help (cli/__init__.py), with what exit 1 means for it where that says more.
# "{one}" is the command's own meaning of 1 (braces of the texts doubled: it is a format string).
EXIT_CODES_HELP = (
    "Exit codes: "
    + ", ".join(
        f"{int(code)} " + ("{one}" if code == ExitCode.FAILED else EXIT_CODE_TEXT[code].brief.replace("{", "{{"))
        for code in ExitCode
    )
    + "."
)


class Words(click.Option):
    """An option that takes every word up to the next option, as dbt's -s and --exclude do (``-s a b --exclude c
    d``), and may be repeated; the command gets one tuple of words per use (flattened by ``select_options``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(multiple=True, type=tuple)
        super().__init__(*args, **kwargs)

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:  # click's parser holds one handler per spelling: wrap this option's
            handler = parser._long_opt.get(name) or parser._short_opt.get(name)
            if handler is None:
                continue
            take = handler.process

            def process(
                value: str, state: Any, take: Callable[[Any, Any], None] = take, prefixes: Any = handler.prefixes
            ) -> None:
                words = [value]
                while state.rargs and not any(state.rargs[0].startswith(p) for p in prefixes):
                    words.append(state.rargs.pop(0))
                take(tuple(words), state)

            handler.process = process


def _flat(groups: Any) -> tuple[str, ...]:
    """The words of a Words option, however click nested them (one tuple per use, of the words taken)."""
    if isinstance(groups, (tuple, list)):
        return tuple(w for g in groups for w in _flat(g))
    return (str(groups),)


def select_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """-s/--select and --exclude (dbt's grammar, repeatable), and the selectors as arguments (an alias of
    --select, kept from before --select existed): the command gets ``select`` and ``exclude``."""

    @functools.wraps(func)
    def wrapper(*args: Any, selectors: tuple[str, ...] = (), select: tuple[str, ...] = (),
                exclude: tuple[str, ...] = (), **kwargs: Any) -> Any:  # fmt: skip
        return func(*args, select=_flat(select) + tuple(selectors), exclude=_flat(exclude), **kwargs)

    wrapper = click.option(
        "--exclude", cls=Words, metavar="SELECTOR...",
        help="Leave out what this selects (dbt's grammar; every word up to the next option, as in dbt).",
    )(wrapper)  # fmt: skip
    wrapper = click.option(
        "--select", "-s", cls=Words, metavar="SELECTOR...",
        help="What to run, in dbt's grammar: DOMAIN, DOMAIN+, +DOMAIN, 2+DOMAIN, @DOMAIN, domain:, owner:, "
        "comma for an intersection; every word up to the next option (default: everything). Arguments are an alias.",
    )(wrapper)  # fmt: skip
    return click.argument("selectors", nargs=-1, metavar="[SELECTORS]...")(wrapper)


# One --fail-on vocabulary, dbt's words where dbt has them (its severities are `warn` and `error`); the old
# spellings (`mesh health --fail-on warning|failing`) are accepted as aliases.
FAIL_ON_ALIASES = {"warning": "warn", "failing": "error"}


class FailOn(click.Choice):
    """A --fail-on level: one of ``levels``, or an old spelling of one (FAIL_ON_ALIASES)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        word = str(value).strip().lower()
        return super().convert(FAIL_ON_ALIASES.get(word, word), param, ctx)


def fail_on_option(levels: tuple[str, ...], what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--fail-on", type=FailOn(levels), help=f"{what.rstrip('.')} (old spellings: warning = warn, failing = error)."
    )


def output_dir_alias(ctx: click.Context, value: Path | None, old: str, new: str = "--output-dir") -> Path | None:
    """An old spelling that named a folder (``-o``, which is a file everywhere now): still taken, with a note."""
    if value is not None:
        words: list[str] = []
        at = ctx
        while at.parent is not None:  # `contracts export`, not `export`
            words.insert(0, str(at.info_name))
            at = at.parent
        click.echo(f"note: mesh {' '.join(words)} {old} FOLDER is now {new} FOLDER (-o names a file in every command); "
                   f"{old} still works", err=True)  # fmt: skip
    return value


def selection_of(select: tuple[str, ...], exclude: tuple[str, ...]) -> Selection:
    from mesh_tools.core.selection import parse_selection

    return parse_selection(select, exclude)


def _selection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = select_options(func)
    func = env_option(func)
    func = click.option("--target", "-t", help="dbt target for every domain (default: mesh.yml, then profile).")(func)
    func = click.option("--jobs", "-j", type=click.IntRange(1, 64), help="Domains run at once, one process each.")(func)
    func = click.option("--verbose", "-v", is_flag=True, help="Show dbt's own output.")(func)
    return wait_option(func)


def _plan(
    mesh: Mesh, command: str, selectors: tuple[str, ...], target: str | None, jobs: int | None, verbose: bool,
    exclude: tuple[str, ...] = (),
) -> RunPlan:  # fmt: skip
    from mesh_tools.workflows.model_selection import plan_selection

    shown = f"`mesh {click.get_current_context().info_name}`"
    domains, slices = plan_selection(mesh, selection_of(selectors, exclude), shown, models=command == "build")
    if command in ("build", "parse"):  # a read-only domain folder is exit 3 naming it, not dbt's raw error midway
        mesh.require_writable(domains, "build" if command == "build" else "stitch")
    return RunPlan(
        command=command,
        domains=domains,
        target=target or mesh.defaults.target,
        jobs=jobs or mesh.defaults.jobs or default_jobs(),
        verbose=verbose,
        slices=slices,
    )


def _notes(mesh: Mesh) -> None:
    """What the loader ignored, and why (`mesh doctor` shows the whole picture)."""
    for note in mesh.notes:
        click.echo(f"note: {note}")


def _parse_stale(mesh: Mesh, names: list[str]) -> Mesh:
    """The mesh in which each of ``names`` whose manifest is stale reads a parse of its current files instead
    (workflows/readers.py); its notes go to stderr (stdout may be a JSON or SARIF report), its scratch folders
    are removed when the command ends."""
    from mesh_tools.workflows.readers import current_view

    ctx = click.get_current_context()

    def cleanup(path: Path) -> None:
        ctx.call_on_close(functools.partial(shutil.rmtree, path, True))

    return current_view(mesh, names, lambda text: click.echo(f"note: {text}", err=True), cleanup, _shown)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
