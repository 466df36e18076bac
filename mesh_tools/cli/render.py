"""How results are shown: progress lines, the summary table, the governance line, and the JSON documents."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import click

from mesh_tools.core.mesh import Mesh
from mesh_tools.core.words import counted
from mesh_tools.workflows.domain_run import SUCCESS, DomainRun, StageSlice
from mesh_tools.workflows.scheduler import RunPlan

if TYPE_CHECKING:
    from mesh_tools.workflows.doctor import Diagnosis
    from mesh_tools.workflows.model_selection import Listed

BUILD_SCHEMA = "mesh-build/1"
LS_SCHEMA = "mesh-ls/1"
DOCTOR_SCHEMA = "mesh-doctor/1"


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
            for note in run.notes + run.stitched_from:
                click.echo(f"    note: {note}")

    return show


def _explain(runs: list[DomainRun], slices: Mapping[str, StageSlice] | None = None) -> None:
    """Why each model ran (`mesh build --explain`), domain by domain (``slices``: a model-level selection's)."""
    click.echo("")
    for run in runs:
        reused = max(run.models_total - run.models, 0)
        picked = (slices or {}).get(run.domain)
        if picked is not None:
            click.echo(f"{run.domain}: ran the {counted(len(picked.nodes), 'node')} the selection names, left "
                       f"{len(picked.later)} as they are (owed a run by the next whole build)")  # fmt: skip
            for node in picked.nodes:
                click.echo(f"    {node}: selected")
        elif run.full_reason:
            click.echo(f"{run.domain}: every model ran: {run.full_reason}")
        elif run.decisions:
            click.echo(f"{run.domain}: ran {run.models} of {run.models_total} models, reused {reused}")
        elif run.status == SUCCESS:
            click.echo(f"{run.domain}: nothing changed, no dbt run ({counted(run.models_total, 'model')} reused)")
        else:
            click.echo(f"{run.domain}: {run.status}")
        for node, why in run.decisions:
            if not run.full_reason:
                click.echo(f"    {node}: {why}")
        for product in run.confirmed:
            click.echo(f"    {product}: rows unchanged: readers reused (its current release confirmed)")
        for unseen in run.unseen:
            click.echo(f"    not seen: {unseen}")
        for read in run.stitched_from:  # every upstream product read from its release, except these
            click.echo(f"    stitched: {read}")


def _summary(runs: list[DomainRun], command: str, seconds: float) -> None:
    click.echo("")
    header = (
        f"{'domain':<16} {'status':<8} {'models':>6} {'reused':>6} {'tests pass/fail/warn':>21} "
        f"{'upstream views':>14} {'published':>9} {'time':>7}"
    )
    click.echo(header)
    click.echo("-" * len(header))
    for run in runs:
        tests = f"{run.tests_passed}/{run.tests_failed}/{run.tests_warned}"
        models = f"{run.models}" if not run.models_failed else f"{run.models}!{run.models_failed}"
        reused = max(run.models_total - run.models, 0)
        click.echo(
            f"{run.domain:<16} {run.status:<8} {models:>6} {reused:>6} {tests:>21} {run.upstream_views:>14} "
            f"{run.published:>9} {run.seconds:>6.1f}s"
        )
    ok = sum(r.status == SUCCESS for r in runs)
    ran, total = sum(r.models for r in runs), sum(max(r.models_total, r.models) for r in runs)
    click.echo(
        f"\nmesh {command}: {ok} of {len(runs)} domains succeeded in {seconds:.1f}s; "
        f"ran {ran} of {total} models, reused {total - ran}"
    )
    confirmed = sum(len(r.confirmed) for r in runs)
    if confirmed:
        click.echo(
            f"{counted(confirmed, 'product')} rebuilt with unchanged rows: current release confirmed, readers reused"
        )


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
    click.echo(f"{counted(total, 'governance finding')} ({detail}; {mode}) — run `mesh check`")


def build_document(mesh: Mesh, plan: RunPlan, runs: list[DomainRun], seconds: float, selection: str) -> dict[str, Any]:
    """`mesh build --format json`: one document, schema ``mesh-build/1`` (stable: fields are only ever added).

    ``{"schema", "mesh", "command", "selection", "target", "ok", "seconds", "models": {"ran", "total", "reused"},
    "domains": [{"domain", "status" (success, failed, skipped), "seconds", "models": {"ran", "failed", "total",
    "reused"}, "tests": {"passed", "failed", "warned"}, "upstream_views", "selected" (the nodes a model-level
    selection ran in it, else null), "decisions": [{"node", "why"}], "published": [{"product", "release_id",
    "rows"}], "confirmed" (products whose current release was confirmed), "problems", "warnings",
    "notes"}]}``, the domains in build order.
    """
    domains = []
    for run in runs:
        picked = plan.slices.get(run.domain)
        domains.append({
            "domain": run.domain,
            "status": run.status,
            "seconds": round(run.seconds, 3),
            "models": {"ran": run.models, "failed": run.models_failed, "total": max(run.models_total, run.models),
                       "reused": max(run.models_total - run.models, 0)},
            "tests": {"passed": run.tests_passed, "failed": run.tests_failed, "warned": run.tests_warned},
            "upstream_views": run.upstream_views,
            "selected": list(picked.nodes) if picked is not None else None,
            "decisions": [{"node": node, "why": "selected"} for node in picked.nodes] if picked is not None else
                         [{"node": node, "why": why} for node, why in run.decisions],
            "published": [{"product": r.product, "release_id": r.release_id, "rows": r.row_count}
                          for r in run.released],
            "confirmed": list(run.confirmed),
            "problems": list(run.problems),
            "warnings": list(run.warnings),
            "notes": list(run.notes),
        })  # fmt: skip
    ran, total = sum(r.models for r in runs), sum(max(r.models_total, r.models) for r in runs)
    return {
        "schema": BUILD_SCHEMA,
        "mesh": mesh.name,
        "command": plan.command,
        "selection": selection,
        "target": plan.target,
        "ok": all(r.status == SUCCESS for r in runs),
        "seconds": round(seconds, 3),
        "models": {"ran": ran, "total": total, "reused": total - ran},
        "domains": domains,
    }


def ls_document(mesh: Mesh, names: list[str], models: Mapping[str, list[Listed]] | None) -> dict[str, Any]:
    """`mesh ls --format json`, schema ``mesh-ls/1``: ``{"schema", "mesh", "root", "config" (mesh.yml or
    discovered), "domains": [{"name", "path", "owner": {"name", "email"} or null, "description", "upstreams",
    "models" (with --models: [{"label", "unique_id", "resource_type", "access"}], null without a manifest;
    absent without --models)}]}``, in dependency order."""
    domains = []
    for name in names:
        domain = mesh.domains[name]
        item: dict[str, Any] = {
            "name": name,
            "path": str(domain.path),
            "owner": {"name": domain.owner.name, "email": domain.owner.email} if domain.owner else None,
            "description": domain.description,
            "upstreams": list(domain.upstream_names),
        }
        if models is not None:
            item["models"] = [dataclasses.asdict(m) for m in models[name]] if name in models else None
        domains.append(item)
    config = "mesh.yml" if mesh.config_path else "discovered"
    return {"schema": LS_SCHEMA, "mesh": mesh.name, "root": str(mesh.root), "config": config, "domains": domains}


def doctor_document(found: Diagnosis) -> dict[str, Any]:
    """`mesh doctor --format json`, schema ``mesh-doctor/1``: ``{"schema", "root", "config", "projects": [{"name",
    "path", "profile", "target", "adapter", "storage", "schema", "attached", "upstreams", "server", "schemas",
    "landing" (these three on a metastore every domain shares, a Spark cluster; else "", [])}], "packages", "edges":
    [{"consumer", "producer", "declared_in", "how"}], "stages", "ignored", "problems": [{"level" (blocking or
    warning), "where", "message", "fix"}], "blocking" (how many problems would stop `mesh build`)}``."""
    return {"schema": DOCTOR_SCHEMA, **dataclasses.asdict(found), "blocking": len(found.blocking)}


def doctor_lines(found: Diagnosis) -> list[str]:
    """`mesh doctor` as text: the projects, the edges and where each was declared, stages, what was ignored,
    the problems with their fixes (the verdict line is the command's)."""
    out = [f"mesh doctor: {found.root} ({found.config})", f"\nprojects ({len(found.projects)}):"]
    for p in found.projects:
        out.append(f"  {p.name}  {p.path}/")
        out.append(f"      profile {p.profile}, target {p.target} ({p.adapter}); storage {p.storage}"
                   + (f", schema {p.schema}" if p.schema else ""))  # fmt: skip
        out += [f"      attaches {attached}" for attached in p.attached]
        if p.server:  # a metastore every domain shares: the cluster and what this domain puts there
            out.append(f"      on {p.server}")
            out.append(f"      schemas {', '.join(p.schemas)}"
                       + (f"; landing views {', '.join(p.landing)}" if p.landing else ""))  # fmt: skip
    out += [f"  (package) {package}" for package in found.packages]
    out.append(f"\nedges ({len(found.edges)}):")
    out += [f"  {e.consumer} reads {e.producer}   {e.declared_in} ({e.how})" for e in found.edges]
    if found.stages:  # cycles of domains, built in stages
        out += ["\nstages:", *(f"  {line}" for line in found.stages)]
    if found.ignored:
        out += [f"\nignored ({len(found.ignored)}):", *(f"  {note}" for note in found.ignored)]
    if found.problems:
        out.append(f"\nproblems ({len(found.problems)}):")
        out += [f"  [{p.level}] {p.where}: {p.message}\n      fix: {p.fix}" for p in found.problems]
    return out
