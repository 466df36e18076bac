"""Commands that report on the mesh: health, docs, status."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from mesh_tools.cli.app import (
    ExitCode,
    _locked,
    _mesh,
    _parse_stale,
    _plan,
    _shown,
    env_option,
    fail_on_option,
    handles_errors,
    main,
    output_dir_alias,
    select_options,
    wait_option,
)
from mesh_tools.cli.render import _progress
from mesh_tools.core.words import counted
from mesh_tools.workflows.domain_run import SUCCESS
from mesh_tools.workflows.locks import docs_lock, health_lock
from mesh_tools.workflows.scheduler import run_mesh


@main.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown", "html"]),
    default="text",
    show_default=True,
    help="What to print; report.html, report.json and report.md are always written.",
)
@fail_on_option(
    ("warn", "stale", "error", "never"),
    "Exit 1 when a product or a domain is at least this bad: warn (a warning), stale, error (failing), or never "
    "(default: mesh.yml health.fail_on, else error)",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    help="Folder of the reports (default: health/, by the history).",
)
@click.option(
    "--output", "-o", "output", type=click.Path(path_type=Path),
    help="Write what --format prints to this file (a name with an extension: report.json) instead of stdout. "
    "(A path without an extension, or an existing folder, is the old -o FOLDER: still taken as --output-dir, "
    "with a note.)",
)  # fmt: skip
@click.option("--schema", is_flag=True, help="Print the JSON schema of report.json and exit.")
@wait_option
@click.pass_context
@handles_errors
def health(
    ctx: click.Context, fmt: str, fail_on: str | None, output_dir: str | None, output: Path | None, schema: bool
) -> None:
    """Collect every domain's last run into the history, judge every product, write the health report.

    Per domain and data product: a status (healthy, warning, stale, failing, no data), a score,
    last success, freshness against the SLO, volume, schema changes, test-failure streaks, and
    the downstream products at risk, with their owners. Exit 1 when a product or a domain is failing (see --fail-on).
    """
    from mesh_tools.health import update_health
    from mesh_tools.health.render import schema as report_schema
    from mesh_tools.health.render import to_html, to_json, to_markdown, to_text
    from mesh_tools.workflows.after_run import health_findings

    if schema:
        click.echo(report_schema(), nl=False)
        return
    if output is not None and (output.is_dir() or not output.suffix or str(output).endswith(("/", os.sep))):
        if output_dir is not None:
            raise click.UsageError("-o FOLDER is the old spelling of --output-dir: give one of them")
        output_dir, output = str(output_dir_alias(ctx, output, "-o")), None
    mesh = _mesh(ctx)
    _locked(ctx, mesh, also=[health_lock(mesh)])  # the history it collects into; domains are only read
    out = Path(output_dir).resolve() if output_dir else None
    report, paths = update_health(mesh, "health", out=out, findings=health_findings(mesh))
    render = {"text": to_text, "json": to_json, "markdown": to_markdown, "html": to_html}[fmt]
    if output is not None:
        from mesh_tools.core.files import write_atomic

        write_atomic(output, render(report))
        click.echo(f"mesh health: {fmt} report written to {_shown(output)}")
    else:
        click.echo(render(report), nl=False)
    if fmt == "text":
        click.echo(f"report: {_shown(paths['html'])} (also report.json, report.md) in {report.seconds:.2f}s")
    level = {"warn": "warning", "error": "failing"}.get(fail_on or "", fail_on)  # the report's status words
    if report.fails(level or mesh.health.fail_on):  # a product or a domain (a corrupt artifact, a failed build)
        sys.exit(ExitCode.FAILED)


@main.command()
@click.option("--output-dir", type=click.Path(file_okay=False), help="Folder of the site (default: site/).")
@click.option("-o", "old_output", type=click.Path(file_okay=False), hidden=True, help="Old spelling of --output-dir.")
@click.option(
    "--catalog", is_flag=True, help="First run `dbt docs generate` in every domain (warehouse column types, dbt docs)."
)
@click.option("--target", "-t", help="dbt target for --catalog.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), help="Domains run at once for --catalog.")
@wait_option
@click.pass_context
@handles_errors
def docs(
    ctx: click.Context, output_dir: str | None, old_output: str | None, catalog: bool, target: str | None,
    jobs: int | None,
) -> None:  # fmt: skip
    """Write the static documentation site: every domain and data product, lineage across projects, search.

    It needs no server: open site/index.html from disk, or host the folder anywhere. The site is the whole
    mesh's (it is replaced whole), so it takes no selection.
    """
    from mesh_tools.docsite.site import build_site

    if old_output is not None:
        if output_dir is not None:
            raise click.UsageError("-o FOLDER is the old spelling of --output-dir: give one of them")
        output_dir = str(output_dir_alias(ctx, Path(old_output), "-o"))

    mesh = _mesh(ctx)
    out = Path(output_dir).resolve() if output_dir else None
    # the site's folder; with --catalog also every domain, where dbt runs (stitch, target/docs, its storage)
    _locked(ctx, mesh, list(mesh.domains) if catalog else (), storage=catalog, target=target or mesh.defaults.target,
            also=[docs_lock(mesh, out)])  # fmt: skip
    if not catalog:  # `docs generate` parses every domain anyway
        mesh = _parse_stale(mesh, list(mesh.domains))
    if catalog:
        plan = _plan(mesh, "docs generate", (), target, jobs, False)
        runs = run_mesh(mesh, plan, _progress(time.perf_counter()))
        for run in runs:
            if run.status != SUCCESS:
                click.echo(f"{run.domain}: no catalog ({'; '.join(run.problems)[:300]}); its pages use the manifest")
    site = build_site(mesh, out)
    for note in site.notes:
        click.echo(f"note: {note}")
    click.echo(
        f"mesh docs: {site.pages} pages, {site.bytes / 1024:,.0f} KB in {site.seconds:.2f}s — "
        f"open {_shown(site.path / 'index.html')}"
    )


@main.command()
@select_options
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="json: one document on stdout, each domain with its build and releases.",
)  # fmt: skip
@env_option
@click.pass_context
@handles_errors
def status(ctx: click.Context, select: tuple[str, ...], exclude: tuple[str, ...], fmt: str) -> None:
    """Per selected domain (default: all): last build, current releases, upstream releases consumed, and whether
    it is behind.

    Exit 1 when a current release cannot be read (a dangling pointer, a missing or corrupt release)."""
    from mesh_tools.exchange.sync import domain_states

    mesh = _mesh(ctx)
    wanted = set(mesh.select(select, exclude, "`mesh status`"))
    states = [s for s in domain_states(mesh) if s.name in wanted]
    broken = [r for s in states for r in s.releases if r.get("problem")]
    broken += [s.last_build for s in states if s.last_build and s.last_build.get("problem")]
    from mesh_tools.store.exchange import PROD, current_env, open_exchange

    if fmt == "json":
        where = {"mesh": mesh.name, "env": current_env(), "exchange": open_exchange(mesh).url}
        click.echo(json.dumps({**where, "domains": [s.to_json() for s in states]}, indent=2))
        sys.exit(ExitCode.FAILED if broken else ExitCode.OK)
    env, exchange = current_env(), open_exchange(mesh)
    plain = env == PROD and exchange.local  # the default: one channel, a folder; nothing more to say
    if not plain:
        click.echo(f"exchange: {exchange.url} (environment {env})")
    for state in states:
        build = state.last_build
        if build and build.get("problem"):
            ran = f"unreadable ({build['problem']})"
        else:
            ran = (
                f"dbt {build['command']} {'ok' if build['ok'] else 'FAILED'} at {build['finished_at']}"
                if build
                else "none"
            )
        flag = "BEHIND" if state.is_behind else "up to date"
        click.echo(f"{state.name}: last run: {ran}; {flag}")
        for release in state.releases:
            if release.get("problem"):
                click.echo(f"  PROBLEM   {release['product']}: {release['problem']}")
                continue
            channel = "" if plain else f", {release.get('channel') or PROD}"
            unverified = f"; bytes not verified: {release['unverified']}" if release.get("unverified") else ""
            confirmed = f"; confirmed at {release['confirmed_at']}" if release.get("confirmed_at") else ""
            click.echo(
                f"  publishes {release['product']} @ {release['release_id']} "
                f"({counted(release.get('rows') or 0, 'row')}{channel})" + confirmed + unverified
            )
        for product, release_id in sorted(state.consumed.items()):
            newer = f"  -> newer: {state.behind[product]}" if product in state.behind else ""
            through = state.channels.get(product)
            shown = (
                f" ({'pinned' if through == 'pin' else through})" if through and not (plain and through == PROD) else ""
            )
            if product in state.used:
                click.echo(f"  consumed  {product} @ {release_id}{shown}{newer}")
            else:  # stitched (a stub view), but none of its models reads it: `mesh sync` does not wait for it
                click.echo(f"  stitched  {product} @ {release_id}{shown} (none of its models reads it)")
        if state.never_built:
            click.echo("  has not been built against published releases yet")
    if broken:
        click.echo(f"{len(broken)} current release(s) cannot be read: consumers of them cannot build. Publish again.")
        sys.exit(ExitCode.FAILED)
