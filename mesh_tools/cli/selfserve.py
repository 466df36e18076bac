"""Self-service commands: new-domain, adopt, upgrade-domain, init."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from mesh_tools.cli.app import (
    ExitCode,
    _locked,
    _mesh,
    _note,
    _plan,
    _shown,
    handles_errors,
    main,
    wait_option,
    wait_seconds,
)
from mesh_tools.cli.render import _progress
from mesh_tools.core.lock import CONFIG
from mesh_tools.core.words import counted
from mesh_tools.workflows.domain_run import SUCCESS
from mesh_tools.workflows.scheduler import run_mesh


@main.command("new-domain")
@click.argument("name")
@click.option("--owner", help='The owning team: "Name <email>".')
@click.option("--description", help="What the domain is about.")
@click.option("--upstream", "upstreams", multiple=True, help="A domain whose products it reads (repeatable).")
@click.option("--path", help="Folder of the new project, relative to the root (default: projects/NAME).")
@click.option("--dry-run", is_flag=True, help="List the files it would write, and write nothing.")
@wait_option
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

    mesh = _mesh(ctx, allow_empty=True)  # the first domain of a mesh starts from an empty folder
    if not dry_run:  # mesh.yml, read by the plan and rewritten with the new domain: one writer at a time
        _locked(ctx, mesh, also=[CONFIG])
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
@wait_option
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
    from mesh_tools.workflows.adopt import apply_edits, contract_edits, plan_adopt, readiness, register

    mesh = _mesh(ctx)
    if not dry_run:
        _locked(ctx, mesh, also=[CONFIG])  # mesh.yml, to register it
    plan = plan_adopt(mesh, path, owner, description)
    name = plan.name
    # its folder (stubs, target/: it is parsed even with --dry-run), and for --contracts its storage (catalog)
    _locked(ctx, plan.mesh, [name], storage=bool(contract_models), target=target)
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
        edits = contract_edits(domain, contract_models, domain.catalog_paths[0])
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
@wait_option
@click.pass_context
@handles_errors
def upgrade_domain(ctx: click.Context, name: str, dry_run: bool, yes: bool, force: bool) -> None:
    """Bring a domain's shared files (dbt_project.yml, profiles.yml, ...) up to date with the mesh's template.

    Shows the diff first. The domain's own edits are kept (3-way merge); its models, tests and
    starter files are never touched. Exit 1 when a conflict (or a file without record) blocks it.
    """
    from mesh_tools.selfservice.upgrade import apply_upgrade, plan_upgrade

    mesh = _mesh(ctx)
    if not dry_run and name in mesh.domains:  # its shared files, read by the plan and rewritten
        _locked(ctx, mesh, [name])
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
@click.option("--advisory", is_flag=True, help="Write governance.enforce: false (findings shown, never blocking).")
@click.option("--dry-run", is_flag=True, help="Print the mesh.yml it would write, and write nothing.")
@wait_option
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
    if not dry_run:  # two at once: both would find no mesh.yml
        from mesh_tools.core.lock import hold

        ctx.with_resource(hold(root, [CONFIG], "mesh init", wait=wait_seconds(ctx), note=_note))
    from mesh_tools.governance.engine import all_rules

    floor = [(r.code, r.severity.label, r.name, r.description) for r in all_rules(None)]
    path, text, mesh = init_mesh(root, floor, enforce=not advisory, dry_run=dry_run)
    if dry_run:
        click.echo(text, nl=False)
        return
    if not mesh.domains:
        click.echo(f"mesh init: wrote {_shown(path)} with no domain yet. Next: `mesh new-domain NAME`.")
    else:
        found = counted(len(mesh.domains), "domain")
        click.echo(f"mesh init: wrote {_shown(path)} with {found}: {', '.join(mesh.domains)}")
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
