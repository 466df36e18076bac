"""Commands that run dbt across domains: build, stitch, publish, sync."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator

import click

from mesh_tools.cli.app import (
    ExitCode,
    _locked,
    _mesh,
    _note,
    _notes,
    _plan,
    _selection_options,
    _shown,
    env_option,
    handles_errors,
    main,
    select_options,
    selection_of,
    wait_option,
    wait_seconds,
)
from mesh_tools.cli.render import _explain, _governance_line, _progress, _summary, build_document
from mesh_tools.core.mesh import Mesh
from mesh_tools.core.words import counted
from mesh_tools.exchange.publish import NEW_RELEASE_VARIABLE
from mesh_tools.store.exchange import open_exchange
from mesh_tools.workflows.domain_run import SUCCESS, DomainRun
from mesh_tools.workflows.locks import docs_lock, health_lock, save_storage_cache
from mesh_tools.workflows.scheduler import publish_each, run_mesh


def _force_new_release(ctx: click.Context, new_release: bool) -> None:
    """`--new-release`: no early cutoff in this command's publishes (its workers inherit the variable); the
    variable as it was comes back when the command ends (one process may run several commands: tests, Dagster)."""
    if not new_release:
        return
    before = os.environ.get(NEW_RELEASE_VARIABLE)
    os.environ[NEW_RELEASE_VARIABLE] = "1"

    def restore() -> None:
        if before is None:
            os.environ.pop(NEW_RELEASE_VARIABLE, None)
        else:
            os.environ[NEW_RELEASE_VARIABLE] = before

    ctx.call_on_close(restore)


# How long a build or sync waits for the health history and docs site another run is writing.
AFTER_RUN_WAIT = 120.0


@main.command()
@_selection_options
@click.option("--no-publish", is_flag=True, help="Build only; publish no releases.")
@click.option(
    "--no-state", is_flag=True,
    help="Build every selected model, whatever changed since the last build (the state-aware build is the "
    "default). `--full`, its old spelling, is still accepted.",
)  # fmt: skip
@click.option("--full", is_flag=True, hidden=True, help="The old spelling of --no-state.")
@click.option(
    "--full-refresh", is_flag=True, hidden=True,
    help="Not a mesh option: refused with what to run instead.",
)  # fmt: skip
@click.option(
    "--new-release", is_flag=True,
    help="Make a new release of every product this build rebuilds even when its rows are unchanged (no early "
    "cutoff: readers then rebuild). A product nothing changed in is not rebuilt, so it gets none: add --no-state, "
    "or run `mesh publish --new-release`. Also MESH_NEW_RELEASE=1.",
)  # fmt: skip
@click.option("--explain", is_flag=True, help="Say why each model ran (or why a domain ran nothing).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="json: the progress goes to stderr, one JSON document (schema mesh-build/1) to stdout.",
)  # fmt: skip
@click.pass_context
@handles_errors
def build(
    ctx: click.Context,
    select: tuple[str, ...],
    exclude: tuple[str, ...],
    target: str | None,
    jobs: int | None,
    verbose: bool,
    no_publish: bool,
    no_state: bool,
    full: bool,
    full_refresh: bool,
    explain: bool,
    fmt: str,
    new_release: bool = False,
) -> None:
    """Stitch, `dbt build` and publish every selected domain in dependency order.

    Select with -s/--select and --exclude in dbt's grammar; the selectors may also be given as arguments
    (`mesh build sales+`, kept as an alias of -s). A domain (`sales`, `sales+` with everything downstream,
    `+sales` with everything upstream) builds whole; a model (`-s sales.fct_orders+`) builds that model and
    what reads it, in every domain, and only those: the products it rebuilt are published, the others keep
    their current release. Each domain reads its upstreams' published releases and, when its build passes,
    publishes its own data products as new releases, so consumers later in the run read them.

    Only what changed runs: a model whose code, config or macros changed, whose sources have
    new data, whose upstream products have new releases, whose relation is missing or whose
    last run failed, and everything downstream of those. A domain with nothing to do runs no
    dbt at all. `--no-state` builds everything selected; `--explain` says why each model ran.
    """
    if full_refresh:
        raise click.UsageError(
            "mesh build has no --full-refresh: dbt's flag rebuilds incremental models from scratch, and a mesh build "
            "publishes what it builds, so it is not passed through. Rebuild in the domain with `cd <domain> && dbt "
            "build --full-refresh -s <models>`, then `mesh publish <domain>`; `--no-state` builds every selected "
            "model without it."
        )
    _force_new_release(ctx, new_release)
    if full:
        click.echo("note: --full is now spelled --no-state (not to be taken for dbt's --full-refresh); "
                   "--full still works", err=True)  # fmt: skip
        no_state = True
    json_out = sys.stdout
    with _human_to_stderr(fmt == "json"):
        mesh = _mesh(ctx)
        plan = dataclasses.replace(
            _plan(mesh, "build", select, target, jobs, verbose, exclude), publish=not no_publish, full=no_state
        )
        _locked(ctx, mesh, plan.domains, storage=True, target=plan.target)
        open_exchange(mesh).refuse_links(plan.domains)  # a linked folder in the shared exchange: refused before dbt
        if plan.publish:
            open_exchange(mesh).require_writable("`mesh build` (which publishes)")
        start = time.perf_counter()
        models = sum(len(s.nodes) for s in plan.slices.values())
        scope = f"{models} selected model(s) in " if plan.slices else ""
        domains = counted(len(plan.domains), "domain")
        click.echo(f"mesh build: {scope}{domains} of mesh '{mesh.name}', {plan.jobs} at a time")
        _notes(mesh)
        runs = run_mesh(mesh, plan, _progress(start))
        save_storage_cache(mesh)  # the profiles rendered to lock storage, for the next build (it ran: not refused)
        seconds = time.perf_counter() - start
        if explain:
            _explain(runs, plan.slices)
        _summary(runs, "build", seconds)
        _governance_line(mesh, runs)
        _after_run(mesh, runs, plan.target)
    if fmt == "json":
        document = build_document(mesh, plan, runs, seconds, str(selection_of(select, exclude)))
        json_out.write(json.dumps(document, indent=2) + "\n")
        json_out.flush()
    sys.exit(ExitCode.OK if all(r.status == SUCCESS for r in runs) else ExitCode.FAILED)


@contextlib.contextmanager
def _human_to_stderr(active: bool) -> Iterator[None]:
    """With --format json, every human line (progress, summary, notes) goes to stderr: stdout holds the JSON."""
    if not active:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _after_run(mesh: Mesh, runs: list[DomainRun], target: str | None) -> None:
    """Lineage events, health and docs after a run (workflows/after_run.py, workflows/lineage.py); a problem
    there is a warning, never a failure.

    The health history and the docs site are the mesh's, not a domain's: their locks are taken only now,
    waited for (another run may be writing them for a while), and a run that still finds them busy leaves
    them to that run, and says so.
    """
    from mesh_tools.core.errors import BusyError
    from mesh_tools.core.lock import hold
    from mesh_tools.workflows.after_run import after_run
    from mesh_tools.workflows.lineage import emit_runs

    for warning in emit_runs(mesh, runs, target):
        click.echo(f"warning: {warning}", err=True)

    ctx = click.get_current_context()
    try:
        with hold(mesh.root, [health_lock(mesh), docs_lock(mesh)], f"mesh {ctx.info_name}",
                  wait=max(wait_seconds(ctx), AFTER_RUN_WAIT), note=_note):  # fmt: skip
            done = after_run(mesh, runs)
    except BusyError as exc:
        click.echo(f"warning: health and docs not updated: {exc}", err=True)
        return
    if done.idle:
        click.echo("health and docs: nothing was rebuilt, so their last report stands (`mesh health` re-judges "
                   "ages and SLOs now); the reused runs go into the health history at its next collection")  # fmt: skip
    if done.report is not None:
        click.echo(f"health: {done.report.summary()} — report: {_shown(done.report_paths['html'])}")
    if done.site is not None:
        click.echo(f"docs: {done.site.pages} pages — {_shown(done.site.path / 'index.html')}")
    for warning in done.warnings:
        click.echo(f"warning: {warning}", err=True)


@main.command()
@_selection_options
@click.pass_context
@handles_errors
def stitch(
    ctx: click.Context, select: tuple[str, ...], exclude: tuple[str, ...], target: str | None, jobs: int | None,
    verbose: bool,
) -> None:  # fmt: skip
    """Install upstream stubs into each selected domain and parse it, so plain `dbt build` works there.

    Afterwards a domain team's daily loop is `cd projects/<domain> && dbt build`.
    """
    mesh = _mesh(ctx)
    plan = _plan(mesh, "parse", select, target, jobs, verbose, exclude)
    _locked(ctx, mesh, plan.domains)  # stubs, dbt_packages and target/ of each; its storage is not opened
    open_exchange(mesh).refuse_links(plan.domains)  # it writes their leases
    start = time.perf_counter()
    runs = run_mesh(mesh, plan, _progress(start))
    for run in runs:
        if run.status == SUCCESS:
            stitched = ", ".join(run.stitched) or "no upstreams"
            click.echo(f"{run.domain}: stitched ({stitched})")
    click.echo(f"mesh stitch: {sum(r.status == SUCCESS for r in runs)} of {len(runs)} domains ready")
    sys.exit(ExitCode.OK if all(r.status == SUCCESS for r in runs) else ExitCode.FAILED)


@main.command()
@select_options
@click.option("--target", "-t", help="dbt target whose storage holds the built products.")
@env_option
@wait_option
@click.option(
    "--new-release", is_flag=True,
    help="Make a new release of every published product even when its rows are unchanged (no early cutoff: "
    "readers then rebuild). Also MESH_NEW_RELEASE=1.",
)  # fmt: skip
@click.pass_context
@handles_errors
def publish(
    ctx: click.Context, select: tuple[str, ...], exclude: tuple[str, ...], target: str | None, new_release: bool
) -> None:
    """Publish each domain's data products from its last build as new, immutable releases.

    Refused, with the reason, when the domain's last build did not pass; its current releases
    then stay as they are. A product whose rows and everything its consumers see equal its current
    release gets no new release: the current one is confirmed (`--new-release` makes one anyway).
    """
    _force_new_release(ctx, new_release)
    if not select:
        raise click.UsageError("name the domains to publish: `mesh publish -s DOMAIN` (or `mesh publish DOMAIN`).")
    mesh = _mesh(ctx)
    names = mesh.select(select, exclude, "`mesh publish`")
    _locked(ctx, mesh, names, storage=True, target=target or mesh.defaults.target)  # it reads their storage
    open_exchange(mesh).require_writable("`mesh publish`")
    open_exchange(mesh).refuse_links(names)
    refused = False
    for name, outcome, warnings in publish_each(mesh, names, target or mesh.defaults.target):
        if outcome.refused:
            refused = True
            click.echo(f"{name}: publish refused: {outcome.refused} Its current releases stay current.")
            continue
        for release in outcome.releases:
            rows = counted(release.row_count, "row")
            click.echo(f"{name}: published {release.product} {release.release_id} ({rows})")
        for confirmed in outcome.confirmed:
            click.echo(f"{name}: confirmed {confirmed.product} {confirmed.release_id} (rows unchanged: readers reused)")
        for expired in outcome.expired:
            click.echo(f"{name}: expired {expired}")
        for note in outcome.notes:
            click.echo(f"{name}: warning: {note}")
        for warning in warnings:
            click.echo(f"{name}: warning: {warning}", err=True)
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
    select: tuple[str, ...],
    exclude: tuple[str, ...],
    target: str | None,
    jobs: int | None,
    verbose: bool,
    dry_run: bool,
) -> None:
    """Rebuild exactly the consumers whose upstreams published newer releases, and their downstream."""
    from mesh_tools.exchange.sync import sync_plan

    mesh = _mesh(ctx)
    start = time.perf_counter()
    names, reasons = sync_plan(mesh, mesh.select(select, exclude, "`mesh sync`"))
    if not names:
        click.echo(f"mesh sync: every consumer is up to date ({time.perf_counter() - start:.2f}s, dbt not run)")
        return
    for name in names:
        click.echo(f"{name}: {reasons[name]}")
    if dry_run:
        click.echo(f"mesh sync --dry-run: {counted(len(names), 'domain')} would be rebuilt")
        return
    open_exchange(mesh).require_writable("`mesh sync` (whose rebuilds publish)")
    plan = _plan(mesh, "build", tuple(names), target, jobs, verbose)
    plan = dataclasses.replace(plan, domains=names)
    _locked(ctx, mesh, names, storage=True, target=plan.target)
    open_exchange(mesh).refuse_links(names)
    runs = run_mesh(mesh, plan, _progress(start))
    _summary(runs, "sync", time.perf_counter() - start)
    _after_run(mesh, runs, plan.target)
    sys.exit(ExitCode.OK if all(r.status == SUCCESS for r in runs) else ExitCode.FAILED)


@main.command()
@select_options
@click.option("--from", "source", required=True, help="Channel whose current releases are promoted (e.g. dev).")
@click.option("--to", "dest", default="prod", show_default=True, help="Channel that makes them current.")
@click.option("--dry-run", is_flag=True, help="Check the gate and say what would move; move nothing.")
@wait_option
@click.pass_context
@handles_errors
def promote(
    ctx: click.Context, select: tuple[str, ...], exclude: tuple[str, ...], source: str, dest: str, dry_run: bool
) -> None:
    """Make a domain's current releases of one channel current in another: pointers move, data does not.

    Behind the publish gate: each release verified by hash, its data tests passed, and no breaking
    change against the target's current release (GOV301). A domain moves all its products or none.
    Exit 1 when the gate refuses.
    """
    from mesh_tools.core.channels import check_channel
    from mesh_tools.workflows.promote import promote as promote_domain

    for channel, flag in ((source, "--from"), (dest, "--to")):
        check_channel(channel, flag)  # as --env checks it: a channel nobody could read is never written
    if not select:
        raise click.UsageError("name the domains to promote: `mesh promote -s DOMAIN --from dev`.")
    mesh = _mesh(ctx)
    names = mesh.select(select, exclude, "`mesh promote`")
    if not dry_run:
        _locked(ctx, mesh, names)  # the pointers of their releases (no folder, no storage)
        open_exchange(mesh).refuse_links(names)
    refused = False
    for name in names:
        steps = promote_domain(mesh, name, source, dest, dry_run=dry_run)
        blocked = [s for s in steps if s.problems]
        for step in steps:
            was = f" (was {step.previous})" if step.previous else " (first release there)"
            if step.problems:
                click.echo(f"{name}: {step.product} {step.release_id}: refused: {'; '.join(step.problems)}")
            elif step.previous == step.release_id:
                click.echo(f"{name}: {step.product} {step.release_id} is already current in {dest}")
            elif step.done:
                click.echo(f"{name}: promoted {step.product} {step.release_id} {source} -> {dest}{was}")
            else:
                click.echo(f"{name}: would promote {step.product} {step.release_id} {source} -> {dest}{was}")
        if blocked:
            refused = True
            click.echo(f"{name}: promotion refused; {dest}'s releases stay as they are.")
    sys.exit(ExitCode.FAILED if refused else ExitCode.OK)
