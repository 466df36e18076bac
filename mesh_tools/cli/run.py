"""Commands that run dbt across domains: build, stitch, publish, sync."""

from __future__ import annotations

import dataclasses
import sys
import time

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
    docs_lock,
    env_option,
    handles_errors,
    health_lock,
    main,
    wait_option,
    wait_seconds,
)
from mesh_tools.cli.render import _explain, _governance_line, _progress, _summary
from mesh_tools.core.mesh import Mesh
from mesh_tools.store.exchange import open_exchange
from mesh_tools.workflows.domain_run import SUCCESS, DomainRun
from mesh_tools.workflows.scheduler import run_mesh, worker_pool

# How long a build or sync waits for the health history and docs site another run is writing.
AFTER_RUN_WAIT = 120.0


@main.command()
@_selection_options
@click.option("--no-publish", is_flag=True, help="Build only; publish no releases.")
@click.option("--full", is_flag=True, help="Build every model, whatever changed since the last build.")
@click.option("--explain", is_flag=True, help="Say why each model ran (or why a domain ran nothing).")
@click.pass_context
@handles_errors
def build(
    ctx: click.Context,
    selectors: tuple[str, ...],
    target: str | None,
    jobs: int | None,
    verbose: bool,
    no_publish: bool,
    full: bool,
    explain: bool,
) -> None:
    """Stitch, `dbt build` and publish every selected domain in dependency order.

    SELECTORS: domain names; `sales+` adds everything downstream, `+sales` everything upstream.
    Each domain reads its upstreams' published releases and, when its build passes, publishes
    its own data products as new releases, so consumers later in the run read them.

    Only what changed runs: a model whose code, config or macros changed, whose sources have
    new data, whose upstream products have new releases, whose relation is missing or whose
    last run failed, and everything downstream of those. A domain with nothing to do runs no
    dbt at all. `--full` builds everything; `--explain` says why each model ran.
    """
    mesh = _mesh(ctx)
    plan = dataclasses.replace(
        _plan(mesh, "build", selectors, target, jobs, verbose), publish=not no_publish, full=full
    )
    _locked(ctx, mesh, plan.domains, storage=True, target=plan.target)
    open_exchange(mesh).refuse_links(plan.domains)  # a linked folder in the shared exchange: refused before dbt runs
    if plan.publish:
        open_exchange(mesh).require_writable("`mesh build` (which publishes)")
    start = time.perf_counter()
    click.echo(f"mesh build: {len(plan.domains)} domain(s) of mesh '{mesh.name}', {plan.jobs} at a time")
    _notes(mesh)
    runs = run_mesh(mesh, plan, _progress(start))
    if explain:
        _explain(runs)
    _summary(runs, "build", time.perf_counter() - start)
    _governance_line(mesh, runs)
    _after_run(mesh, runs, plan.target)
    sys.exit(ExitCode.OK if all(r.status == SUCCESS for r in runs) else ExitCode.FAILED)


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
def stitch(ctx: click.Context, selectors: tuple[str, ...], target: str | None, jobs: int | None, verbose: bool) -> None:
    """Install upstream stubs into each selected domain and parse it, so plain `dbt build` works there.

    Afterwards a domain team's daily loop is `cd projects/<domain> && dbt build`.
    """
    mesh = _mesh(ctx)
    plan = _plan(mesh, "parse", selectors, target, jobs, verbose)
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
@click.argument("domains", nargs=-1, required=True)
@click.option("--target", "-t", help="dbt target whose storage holds the built products.")
@env_option
@wait_option
@click.pass_context
@handles_errors
def publish(ctx: click.Context, domains: tuple[str, ...], target: str | None) -> None:
    """Publish each domain's data products from its last build as new, immutable releases.

    Refused, with the reason, when the domain's last build did not pass; its current releases
    then stay as they are.
    """
    from mesh_tools.dbt import runner as dbt_runner  # noqa: F401  (imported once, before the workers fork)
    from mesh_tools.workflows.domain_run import publish_in_worker

    mesh = _mesh(ctx)
    names = mesh.select(domains)
    _locked(ctx, mesh, names, storage=True, target=target or mesh.defaults.target)  # it reads their storage
    open_exchange(mesh).require_writable("`mesh publish`")
    open_exchange(mesh).refuse_links(names)
    refused = False
    for name in names:
        # each domain in a process of its own, in its folder: it is read through its own dbt connection
        with worker_pool(1) as pool:
            outcome = pool.submit(publish_in_worker, mesh, name, target or mesh.defaults.target).result()
        if outcome.refused:
            refused = True
            click.echo(f"{name}: publish refused: {outcome.refused} Its current releases stay current.")
            continue
        for release in outcome.releases:
            click.echo(f"{name}: published {release.product} {release.release_id} ({release.row_count} rows)")
        for expired in outcome.expired:
            click.echo(f"{name}: expired {expired}")
        for note in outcome.notes:
            click.echo(f"{name}: warning: {note}")
        from mesh_tools.workflows.lineage import emit_publish

        for warning in emit_publish(mesh, name, outcome.releases, target or mesh.defaults.target):
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
    selectors: tuple[str, ...],
    target: str | None,
    jobs: int | None,
    verbose: bool,
    dry_run: bool,
) -> None:
    """Rebuild exactly the consumers whose upstreams published newer releases, and their downstream."""
    from mesh_tools.exchange.sync import sync_plan

    mesh = _mesh(ctx)
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
@click.argument("domains", nargs=-1, required=True)
@click.option("--from", "source", required=True, help="Channel whose current releases are promoted (e.g. dev).")
@click.option("--to", "dest", default="prod", show_default=True, help="Channel that makes them current.")
@click.option("--dry-run", is_flag=True, help="Check the gate and say what would move; move nothing.")
@wait_option
@click.pass_context
@handles_errors
def promote(ctx: click.Context, domains: tuple[str, ...], source: str, dest: str, dry_run: bool) -> None:
    """Make a domain's current releases of one channel current in another: pointers move, data does not.

    Behind the publish gate: each release verified by hash, its data tests passed, and no breaking
    change against the target's current release (GOV301). A domain moves all its products or none.
    Exit 1 when the gate refuses.
    """
    from mesh_tools.core.channels import check_channel
    from mesh_tools.workflows.promote import promote as promote_domain

    for channel, flag in ((source, "--from"), (dest, "--to")):
        check_channel(channel, flag)  # as --env checks it: a channel nobody could read is never written
    mesh = _mesh(ctx)
    names = mesh.select(domains)
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
