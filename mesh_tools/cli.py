"""The `mesh` command line: thin click commands that call the library and render its results."""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mesh_tools import __version__
from mesh_tools.build import RunPlan, default_jobs, run_mesh
from mesh_tools.errors import ArtifactError, BusyError, DbtError, MeshError, describe_os_error
from mesh_tools.exchange.store import Exchange
from mesh_tools.mesh import Mesh, find_root, load_mesh
from mesh_tools.worker import SUCCESS, DomainRun


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
    from mesh_tools.lock import mesh_lock

    ctx.with_resource(mesh_lock(mesh.root, f"mesh {ctx.info_name}"))


def _mesh(ctx: click.Context) -> Mesh:
    params = ctx.find_root().params
    root = params.get("root")
    mesh = load_mesh(Path(root) if root else find_root(Path.cwd()))
    profiles = params.get("profiles_dir")
    return dataclasses.replace(mesh, profiles_dir=Path(profiles).resolve()) if profiles else mesh


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
            for note in run.notes:
                click.echo(f"    note: {note}")

    return show


def _summary(runs: list[DomainRun], command: str, seconds: float) -> None:
    click.echo("")
    header = (
        f"{'domain':<16} {'status':<8} {'models':>6} {'tests pass/fail/warn':>21} {'upstream views':>14} "
        f"{'published':>9} {'time':>7}"
    )
    click.echo(header)
    click.echo("-" * len(header))
    for run in runs:
        tests = f"{run.tests_passed}/{run.tests_failed}/{run.tests_warned}"
        models = f"{run.models}" if not run.models_failed else f"{run.models}!{run.models_failed}"
        click.echo(
            f"{run.domain:<16} {run.status:<8} {models:>6} {tests:>21} {run.upstream_views:>14} "
            f"{run.published:>9} {run.seconds:>6.1f}s"
        )
    ok = sum(r.status == SUCCESS for r in runs)
    click.echo(f"\nmesh {command}: {ok} of {len(runs)} domains succeeded in {seconds:.1f}s")


@main.command()
@_selection_options
@click.option("--no-publish", is_flag=True, help="Build only; publish no releases.")
@click.pass_context
@handles_errors
def build(
    ctx: click.Context,
    selectors: tuple[str, ...],
    target: str | None,
    jobs: int | None,
    verbose: bool,
    no_publish: bool,
) -> None:
    """Stitch, `dbt build` and publish every selected domain in dependency order.

    SELECTORS: domain names; `sales+` adds everything downstream, `+sales` everything upstream.
    Each domain reads its upstreams' published releases and, when its build passes, publishes
    its own data products as new releases, so consumers later in the run read them.
    """
    mesh = _mesh(ctx)
    _locked(ctx, mesh)
    plan = dataclasses.replace(_plan(mesh, "build", selectors, target, jobs, verbose), publish=not no_publish)
    if plan.publish:
        Exchange(mesh.exchange_path).require_writable("`mesh build` (which publishes)")
    start = time.perf_counter()
    click.echo(f"mesh build: {len(plan.domains)} domain(s) of mesh '{mesh.name}', {plan.jobs} at a time")
    _notes(mesh)
    runs = run_mesh(mesh, plan, _progress(start))
    _summary(runs, "build", time.perf_counter() - start)
    _governance_line(mesh, runs)
    _after_run(mesh, runs)
    sys.exit(ExitCode.OK if all(r.status == SUCCESS for r in runs) else ExitCode.FAILED)


def _notes(mesh: Mesh) -> None:
    """What the loader ignored, and why (`mesh doctor` shows the whole picture)."""
    for note in mesh.notes:
        click.echo(f"note: {note}")


def _governance_line(mesh: Mesh, runs: list[DomainRun]) -> None:
    """One line: how many governance findings the built domains have, and whether they block."""
    counts: dict[str, int] = {}
    for run in runs:
        for severity, count in run.findings.items():
            counts[severity] = counts.get(severity, 0) + count
    total = sum(counts.values())
    if not total:
        return
    detail = ", ".join(f"{counts[s]} {s}" for s in ("error", "warn", "info") if counts.get(s))
    mode = "error-level ones block publishing" if mesh.governance.enforce else "advisory"
    click.echo(f"{total} governance findings ({detail}; {mode}) — run `mesh check`")


def _after_run(mesh: Mesh, runs: list[DomainRun]) -> None:
    """Update the health history and report; a problem there is a warning, never the build's failure."""
    from mesh_tools.health import RunEvent, update_health

    events = [RunEvent(r.domain, r.status, tuple(r.problems), r.seconds, r.invocation_id) for r in runs]
    try:
        report, paths = update_health(mesh, "build", events)
    except MeshError as exc:
        click.echo(f"warning: health report not updated: {exc}", err=True)
        return
    c = report.products_by_status
    click.echo(
        f"health: {report.status} ({c.healthy} healthy, {c.warning} warning, {c.stale} stale, {c.failing} failing "
        f"products) — report: {_shown(paths['html'])}"
    )
    from mesh_tools.docsite.site import build_site

    try:
        site = build_site(mesh)
    except (MeshError, OSError) as exc:
        click.echo(f"warning: documentation site not written: {exc}", err=True)
        return
    click.echo(f"docs: {site.pages} pages — {_shown(site.path / 'index.html')}")


def _parse_stale(mesh: Mesh, names: list[str]) -> None:
    """Parse again the domains whose files changed after their manifest, so nothing judges stale artifacts.

    Notes go to stderr (stdout may be a JSON or SARIF report). A domain that no longer parses is
    an error: its old manifest would describe code that is gone.
    """
    from mesh_tools.staleness import stale_domains

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


@main.command()
@_selection_options
@click.pass_context
@handles_errors
def stitch(ctx: click.Context, selectors: tuple[str, ...], target: str | None, jobs: int | None, verbose: bool) -> None:
    """Install upstream stubs into each selected domain and parse it, so plain `dbt build` works there.

    Afterwards a domain team's daily loop is `cd projects/<domain> && dbt build`.
    """
    mesh = _mesh(ctx)
    _locked(ctx, mesh)
    plan = _plan(mesh, "parse", selectors, target, jobs, verbose)
    start = time.perf_counter()
    runs = run_mesh(mesh, plan, _progress(start))
    for run in runs:
        if run.status == SUCCESS:
            stitched = ", ".join(run.stitched) or "no upstreams"
            click.echo(f"{run.domain}: stitched ({stitched})")
    click.echo(f"mesh stitch: {sum(r.status == SUCCESS for r in runs)} of {len(runs)} domains ready")
    sys.exit(ExitCode.OK if all(r.status == SUCCESS for r in runs) else ExitCode.FAILED)


@main.command()
@click.argument("domains", nargs=-1, required=True)
@click.option("--target", "-t", help="dbt target whose storage holds the built products.")
@click.pass_context
@handles_errors
def publish(ctx: click.Context, domains: tuple[str, ...], target: str | None) -> None:
    """Publish each domain's data products from its last build as new, immutable releases.

    Refused, with the reason, when the domain's last build did not pass; its current releases
    then stay as they are.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from mesh_tools import dbt_runner  # noqa: F401  (imported once, before the workers fork)
    from mesh_tools.worker import publish_in_worker

    mesh = _mesh(ctx)
    _locked(ctx, mesh)
    names = mesh.select(domains)
    Exchange(mesh.exchange_path).require_writable("`mesh publish`")
    refused = False
    for name in names:
        # each domain in a process of its own, in its folder: it is read through its own dbt connection
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
            outcome = pool.submit(publish_in_worker, mesh, name, target or mesh.defaults.target).result()
        if outcome.refused:
            refused = True
            click.echo(f"{name}: publish refused: {outcome.refused} Its current releases stay current.")
            continue
        for release in outcome.releases:
            click.echo(f"{name}: published {release.product} {release.release_id} ({release.row_count} rows)")
        for expired in outcome.expired:
            click.echo(f"{name}: expired {expired}")
        rate = outcome.rows / outcome.seconds if outcome.seconds else 0
        click.echo(f"{name}: {len(outcome.releases)} releases, {outcome.rows} rows in {outcome.seconds:.2f}s "
                   f"({rate:,.0f} rows/s)")  # fmt: skip
    sys.exit(ExitCode.FAILED if refused else ExitCode.OK)


@main.command()
@_selection_options
@click.option("--dry-run", is_flag=True, help="Say what would be rebuilt, and rebuild nothing.")
@click.pass_context
@handles_errors
def sync(
    ctx: click.Context,
    selectors: tuple[str, ...],
    target: str | None,
    jobs: int | None,
    verbose: bool,
    dry_run: bool,
) -> None:
    """Rebuild exactly the consumers whose upstreams published newer releases, and their downstream."""
    from mesh_tools.exchange.sync import sync_plan

    mesh = _mesh(ctx)
    _locked(ctx, mesh)
    start = time.perf_counter()
    names, reasons = sync_plan(mesh, mesh.select(selectors))
    if not names:
        click.echo(f"mesh sync: every consumer is up to date ({time.perf_counter() - start:.2f}s, dbt not run)")
        return
    for name in names:
        click.echo(f"{name}: {reasons[name]}")
    if dry_run:
        click.echo(f"mesh sync --dry-run: {len(names)} domain(s) would be rebuilt")
        return
    Exchange(mesh.exchange_path).require_writable("`mesh sync` (whose rebuilds publish)")
    plan = _plan(mesh, "build", tuple(names), target, jobs, verbose)
    plan = dataclasses.replace(plan, domains=names)
    runs = run_mesh(mesh, plan, _progress(start))
    _summary(runs, "sync", time.perf_counter() - start)
    _after_run(mesh, runs)
    sys.exit(ExitCode.OK if all(r.status == SUCCESS for r in runs) else ExitCode.FAILED)


HEALTH_FAIL = {"failing": 3, "stale": 2, "warning": 1}


@main.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown", "html"]),
    default="text",
    show_default=True,
    help="What to print; report.html, report.json and report.md are always written.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["failing", "stale", "warning", "never"]),
    help="Exit 1 when a product is at least this bad (default: mesh.yml health.fail_on, else failing).",
)
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False),
    help="Folder of the reports (default: health/, by the history).",
)
@click.option("--schema", is_flag=True, help="Print the JSON schema of report.json and exit.")
@click.pass_context
@handles_errors
def health(ctx: click.Context, fmt: str, fail_on: str | None, output_dir: str | None, schema: bool) -> None:
    """Collect every domain's last run into the history, judge every product, write the health report.

    Per domain and data product: a status (healthy, warning, stale, failing, no data), a score,
    last success, freshness against the SLO, volume, schema changes, test-failure streaks, and
    the downstream products at risk, with their owners. Exit 1 when a product is failing (see --fail-on).
    """
    from mesh_tools.health import update_health
    from mesh_tools.health.render import schema as report_schema
    from mesh_tools.health.render import to_html, to_json, to_markdown, to_text
    from mesh_tools.health.report import RANK

    if schema:
        click.echo(report_schema(), nl=False)
        return
    mesh = _mesh(ctx)
    _locked(ctx, mesh)
    report, paths = update_health(mesh, "health", out=Path(output_dir).resolve() if output_dir else None)
    render = {"text": to_text, "json": to_json, "markdown": to_markdown, "html": to_html}[fmt]
    click.echo(render(report), nl=False)
    if fmt == "text":
        click.echo(f"report: {_shown(paths['html'])} (also report.json, report.md) in {report.seconds:.2f}s")
    threshold = fail_on or mesh.health.fail_on
    if threshold != "never" and any(RANK[p.status] >= HEALTH_FAIL[threshold] for p in report.products):
        sys.exit(ExitCode.FAILED)


@main.command()
@click.option("--output-dir", "-o", type=click.Path(file_okay=False), help="Folder of the site (default: site/).")
@click.option(
    "--catalog", is_flag=True, help="First run `dbt docs generate` in every domain (warehouse column types, dbt docs)."
)
@click.option("--target", "-t", help="dbt target for --catalog.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), help="Domains run at once for --catalog.")
@click.pass_context
@handles_errors
def docs(ctx: click.Context, output_dir: str | None, catalog: bool, target: str | None, jobs: int | None) -> None:
    """Write the static documentation site: every domain and data product, lineage across projects, search.

    It needs no server: open site/index.html from disk, or host the folder anywhere.
    """
    from mesh_tools.docsite.site import build_site

    mesh = _mesh(ctx)
    _locked(ctx, mesh)
    if not catalog:  # `docs generate` parses every domain anyway
        _parse_stale(mesh, list(mesh.domains))
    if catalog:
        plan = _plan(mesh, "docs generate", (), target, jobs, False)
        runs = run_mesh(mesh, plan, _progress(time.perf_counter()))
        for run in runs:
            if run.status != SUCCESS:
                click.echo(f"{run.domain}: no catalog ({'; '.join(run.problems)[:300]}); its pages use the manifest")
    site = build_site(mesh, Path(output_dir).resolve() if output_dir else None)
    for note in site.notes:
        click.echo(f"note: {note}")
    click.echo(
        f"mesh docs: {site.pages} pages, {site.bytes / 1024:,.0f} KB in {site.seconds:.2f}s — "
        f"open {_shown(site.path / 'index.html')}"
    )


@main.command("new-domain")
@click.argument("name")
@click.option("--owner", help='The owning team: "Name <email>".')
@click.option("--description", help="What the domain is about.")
@click.option("--upstream", "upstreams", multiple=True, help="A domain whose products it reads (repeatable).")
@click.option("--path", help="Folder of the new project, relative to the root (default: projects/NAME).")
@click.option("--dry-run", is_flag=True, help="List the files it would write, and write nothing.")
@click.pass_context
@handles_errors
def new_domain(
    ctx: click.Context,
    name: str,
    owner: str | None,
    description: str | None,
    upstreams: tuple[str, ...],
    path: str | None,
    dry_run: bool,
) -> None:
    """Create a domain from the mesh's template and register it in mesh.yml.

    The new dbt project has its own storage, the shared macros, its upstreams declared, a starter
    staging model and one public, contracted, documented, tested data product (built on the first
    upstream's product). `mesh build NAME` and `mesh check` pass on it as created.
    """
    from mesh_tools.selfservice.newdomain import create_domain, plan_new_domain

    mesh = _mesh(ctx)
    plan = plan_new_domain(mesh, name, owner, description, upstreams, path)
    where = _shown(plan.folder)
    for relative in sorted(plan.files):
        click.echo(f"  {'would create' if dry_run else 'create'} {where}/{relative}")
    if plan.mesh_yml is not None:
        click.echo(f"  {'would register' if dry_run else 'register'} {name} in {_shown(mesh.config_path or Path())}")
    if dry_run:
        return
    create_domain(mesh, plan)
    for note in plan.notes:
        click.echo(f"note: {note}")
    click.echo(f"mesh new-domain: {name} created in {where}. Next: `mesh build {name}` and `mesh check {name}`.")


@main.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--owner", help='The owning team: "Name <email>".')
@click.option("--description", help="What the domain is about.")
@click.option(
    "--contracts", "contract_models", multiple=True, help="Add an enforced contract to this model (repeatable)."
)
@click.option("--dry-run", is_flag=True, help="Show what would change (mesh.yml, YAML diffs), and change nothing.")
@click.option("--target", "-t", help="dbt target to read the catalog from.")
@click.pass_context
@handles_errors
def adopt(
    ctx: click.Context,
    path: str,
    owner: str | None,
    description: str | None,
    contract_models: tuple[str, ...],
    dry_run: bool,
    target: str | None,
) -> None:
    """Bring an existing dbt project into the mesh as a domain.

    Registers it in mesh.yml, parses it, and reports what it lacks to meet the mesh's governance
    (public products, contracts, descriptions, owners, and every governance finding). With
    --contracts MODEL, adds the contract YAML (columns and types from the built catalog) to that
    model's properties file; --dry-run shows those diffs first.
    """
    from mesh_tools.selfservice.adopt import apply_edits, contract_edits, plan_adopt, readiness, register

    mesh = _mesh(ctx)
    plan = plan_adopt(mesh, path, owner, description)
    name = plan.name
    if plan.already:
        click.echo(f"{name}: already a domain of the mesh")
    elif plan.mesh_yml is not None:
        click.echo(f"{name}: {'would register' if dry_run else 'registered'} in {_shown(mesh.config_path or Path())}")
        if not dry_run:
            register(plan)
    else:
        click.echo(f"{name}: found by discovery (no domains list in mesh.yml)")
    start = time.perf_counter()
    runs = run_mesh(plan.mesh, _plan(plan.mesh, "parse", (name,), target, 1, False), _progress(start))
    if runs[-1].status != SUCCESS:
        sys.exit(ExitCode.FAILED)
    domain = plan.mesh.domains[name]
    found = readiness(plan.mesh, domain)
    click.echo(f"\n{name}: {found.models} models, {len(found.public)} public (data products)")
    lacks = [
        ("no public model (no data product yet): set `access: public` on the models others may use", []),
        ("no enforced contract", found.no_contract),
        ("no description", found.no_description),
        ("columns not documented", found.undocumented_columns),
        ("no owner (a group with an owner)", found.no_owner),
    ]
    if not found.public:
        click.echo(f"  {lacks[0][0]}")
    for what, models in lacks[1:]:
        if models:
            click.echo(f"  {what}: {', '.join(models)}")
    for finding in found.findings:
        click.echo(f"  {finding}")
    if contract_models:
        plan_docs = _plan(plan.mesh, "docs generate", (name,), target, 1, False)
        runs = run_mesh(plan.mesh, plan_docs, _progress(time.perf_counter()))
        if runs[-1].status != SUCCESS:
            sys.exit(ExitCode.FAILED)
        edits = contract_edits(domain, contract_models, domain.target_dir / "docs" / "catalog.json")
        for edit in edits:
            click.echo(edit.diff(plan.mesh.root), nl=False)
        if dry_run:
            click.echo(f"mesh adopt --dry-run: {len(edits)} file(s) would change")
            return
        apply_edits(edits)
        click.echo(f"{name}: contracts added to {', '.join(contract_models)}. Next: `mesh build {name}`.")
    elif not dry_run:
        click.echo(f"\nNext: `mesh build {name}`, then `mesh adopt {path} --contracts MODEL` for its products.")


@main.command("upgrade-domain")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Show the diff, and change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Apply without asking.")
@click.option("--force", is_flag=True, help="Take the template's version of shared files that have no record.")
@click.pass_context
@handles_errors
def upgrade_domain(ctx: click.Context, name: str, dry_run: bool, yes: bool, force: bool) -> None:
    """Bring a domain's shared files (dbt_project.yml, profiles.yml, ...) up to date with the mesh's template.

    Shows the diff first. The domain's own edits are kept (3-way merge); its models, tests and
    starter files are never touched. Exit 1 when a conflict (or a file without record) blocks it.
    """
    from mesh_tools.selfservice.upgrade import apply_upgrade, plan_upgrade

    mesh = _mesh(ctx)
    plan = plan_upgrade(mesh, name, force)
    for change in plan.changes:
        click.echo(f"  {change.path}: {change.action}")
    for change in plan.pending + [c for c in plan.blocked if c not in plan.pending]:
        diff = change.diff()
        if diff:
            click.echo(diff, nl=not diff.endswith("\n"))
    if not plan.pending and not plan.blocked:
        click.echo(f"mesh upgrade-domain: {name} is up to date with the template")
        return
    if plan.blocked:
        click.echo(f"mesh upgrade-domain: {name} cannot be upgraded as is: "
                   + ", ".join(f"{c.path} ({c.action})" for c in plan.blocked), err=True)  # fmt: skip
        sys.exit(ExitCode.FAILED)
    if dry_run:
        click.echo(f"mesh upgrade-domain --dry-run: {len(plan.pending)} file(s) would change")
        return
    if not yes and not click.confirm(f"Apply these changes to {name}?", default=False):
        click.echo("nothing changed")
        sys.exit(ExitCode.FAILED)
    apply_upgrade(plan)
    click.echo(f"mesh upgrade-domain: {name} upgraded ({len(plan.pending)} file(s))")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
@handles_errors
def status(ctx: click.Context, fmt: str) -> None:
    """Per domain: last build, current releases, upstream releases consumed, and whether it is behind.

    Exit 1 when a current release cannot be read (a dangling pointer, a missing or corrupt release)."""
    from mesh_tools.exchange.sync import domain_states

    mesh = _mesh(ctx)
    states = domain_states(mesh)
    broken = [r for s in states for r in s.releases if r.get("problem")]
    if fmt == "json":
        click.echo(json.dumps({"mesh": mesh.name, "domains": [s.to_json() for s in states]}, indent=2))
        sys.exit(ExitCode.FAILED if broken else ExitCode.OK)
    for state in states:
        build = state.last_build
        ran = (
            f"dbt {build['command']} {'ok' if build['ok'] else 'FAILED'} at {build['finished_at']}" if build else "none"
        )
        flag = "BEHIND" if state.is_behind else "up to date"
        click.echo(f"{state.name}: last run: {ran}; {flag}")
        for release in state.releases:
            if release.get("problem"):
                click.echo(f"  PROBLEM   {release['product']}: {release['problem']}")
                continue
            click.echo(f"  publishes {release['product']} @ {release['release_id']} ({release.get('rows')} rows)")
        for product, release_id in sorted(state.consumed.items()):
            newer = f"  -> newer: {state.behind[product]}" if product in state.behind else ""
            click.echo(f"  consumed  {product} @ {release_id}{newer}")
        if state.never_built:
            click.echo("  has not been built against published releases yet")
    if broken:
        click.echo(f"{len(broken)} current release(s) cannot be read: consumers of them cannot build. Publish again.")
        sys.exit(ExitCode.FAILED)


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
        from mesh_tools.exchange.store import write_atomic

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


@main.command()
@click.option("--target", "-t", help="dbt target to read each profile for (default: mesh.yml, then profile).")
@click.pass_context
@handles_errors
def doctor(ctx: click.Context, target: str | None) -> None:
    """Show how the mesh reads this mesh, and what would stop `mesh build`.

    Every project found (path, name, profile, storage), every edge with the file and line that
    declared it, what was ignored and why, and each problem with its fix. Exit 1 when a problem
    would stop a build (a mesh.yml or project the mesh cannot read is one).
    """
    from mesh_tools.doctor import diagnose

    params = ctx.find_root().params
    root = Path(params["root"]) if params.get("root") else find_root(Path.cwd())
    try:
        mesh = _mesh(ctx)
    except MeshError as exc:
        click.echo(f"mesh doctor: {root.resolve()}")
        click.echo(f"problems (1):\n  [blocking] {exc}")
        click.echo("\n1 problem would stop `mesh build`.")
        sys.exit(ExitCode.FAILED)
    found = diagnose(mesh, target)
    click.echo(f"mesh doctor: {found.root} ({found.config})")
    click.echo(f"\nprojects ({len(found.projects)}):")
    for p in found.projects:
        click.echo(f"  {p.name}  {p.path}/")
        click.echo(f"      profile {p.profile}, target {p.target} ({p.adapter}); storage {p.storage}"
                   + (f", schema {p.schema}" if p.schema else ""))  # fmt: skip
        for attached in p.attached:
            click.echo(f"      attaches {attached}")
    for package in found.packages:
        click.echo(f"  (package) {package}")
    click.echo(f"\nedges ({len(found.edges)}):")
    for edge in found.edges:
        click.echo(f"  {edge.consumer} reads {edge.producer}   {edge.declared_in} ({edge.how})")
    if found.ignored:
        click.echo(f"\nignored ({len(found.ignored)}):")
        for note in found.ignored:
            click.echo(f"  {note}")
    if found.problems:
        click.echo(f"\nproblems ({len(found.problems)}):")
        for problem in found.problems:
            click.echo(f"  [{problem.level}] {problem.where}: {problem.message}\n      fix: {problem.fix}")
    blocking = found.blocking
    if blocking:
        click.echo(f"\n{len(blocking)} problem(s) would stop `mesh build`.")
        sys.exit(ExitCode.FAILED)
    warnings = f" ({len(found.problems)} warning(s))" if found.problems else ""
    click.echo(f"\nnothing would stop `mesh build`{warnings}.")
    if mesh.config_path is None:
        click.echo("next: `mesh build`; `mesh init` writes a mesh.yml with the recommended governance floor.")


@main.command()
@click.option("--advisory", is_flag=True, help="Write governance.enforce: false (findings shown, never blocking).")
@click.option("--dry-run", is_flag=True, help="Print the mesh.yml it would write, and write nothing.")
@click.pass_context
@handles_errors
def init(ctx: click.Context, advisory: bool, dry_run: bool) -> None:
    """Write a commented mesh.yml for the dbt projects below the root, with the recommended governance floor.

    Lists every domain found and turns governance enforcement on (an error-level finding then
    blocks a domain's releases). Never replaces an existing mesh.yml.
    """
    from mesh_tools.selfservice.init import init_mesh

    params = ctx.find_root().params
    root = (Path(params["root"]) if params.get("root") else Path.cwd()).resolve()
    path, text, mesh = init_mesh(root, enforce=not advisory, dry_run=dry_run)
    if dry_run:
        click.echo(text, nl=False)
        return
    click.echo(f"mesh init: wrote {_shown(path)} with {len(mesh.domains)} domain(s): {', '.join(mesh.domains)}")
    built = [n for n, d in mesh.domains.items() if d.manifest_path.is_file()]
    if built and not advisory:
        from mesh_tools.governance.engine import run_check
        from mesh_tools.governance.rule import Severity

        report = run_check(mesh, built, sqlfluff=False, load=built)
        errors = [v for v in report.violations if v.severity >= Severity.ERROR]
        if errors:
            domains = sorted({v.finding.domain for v in errors})
            click.echo(f"governance is now enforced: {len(errors)} error-level finding(s) in {', '.join(domains)} "
                       "would block their releases. `mesh check` lists them; fix them, waive them per domain, "
                       "or set governance.enforce: false while you adopt.")  # fmt: skip
            return
    click.echo("governance is now enforced" if not advisory else "governance stays advisory (enforce: false)")


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


@main.command(name="generate-mesh")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--domains", type=click.IntRange(1), default=5, show_default=True)
@click.option("--models", type=click.IntRange(2), default=20, show_default=True, help="Models per domain.")
@click.option("--refs", type=click.IntRange(0), default=8, show_default=True, help="Cross-project refs in all.")
@click.option("--rows", type=click.IntRange(1), default=1000, show_default=True, help="Landing rows per domain.")
@click.option("--seed", type=int, default=1, show_default=True)
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


if __name__ == "__main__":  # pragma: no cover
    main()
