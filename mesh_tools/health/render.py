"""Render a health report as text (terminal), Markdown (pull-request comment), JSON and HTML."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from mesh_tools.core.words import counted, noun
from mesh_tools.health.charts import sparkline
from mesh_tools.health.report import HealthReport, Problem

ICON = {"healthy": "🟢", "warning": "🟡", "stale": "🟠", "failing": "🔴", "no_data": "⚪"}


def to_json(report: HealthReport) -> str:
    return report.model_dump_json(indent=2) + "\n"


def schema() -> str:
    return json.dumps(HealthReport.model_json_schema(), indent=2, sort_keys=True) + "\n"


def _impact(problem: Problem) -> str:
    if not problem.impact:
        return ""
    names = ", ".join(f"{i.product} ({i.owner or i.domain})" for i in problem.impact)
    return f"at risk downstream: {names}"


def to_text(report: HealthReport) -> str:
    lines = [f"mesh health: {report.mesh} is {report.status.replace('_', ' ')} — {report.counts_line()}"]
    for domain in report.domains:
        extra = f" — {domain.reason}" if domain.reason else ""
        lines.append(f"  {domain.domain:<16} {domain.status:<8} score {domain.score:>3}{extra}")
    problems = [p for p in report.problems if p.kind != "upstream" and p.status != "no_data"]
    if problems:
        lines.append("open problems:")
        for p in problems:
            where = p.product or p.domain
            lines.append(f"  [{p.status}] {where}: {p.message}" + (f" — owner {p.owner}" if p.owner else ""))
            if p.impact:
                lines.append(f"      {_impact(p)}")
    return "\n".join(lines) + "\n"


def to_markdown(report: HealthReport) -> str:
    """A summary fit for a pull-request comment: status, counts, open problems with owners and impact."""
    out = [
        f"### {ICON[report.status]} Mesh health: {report.mesh} is **{report.status.replace('_', ' ')}**",
        "",
        f"{report.counts_line()} · {report.generated_at:%Y-%m-%d %H:%M} UTC",
        "",
        "| Domain | Status | Score | Products | SLO compliance | Last run |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for d in report.domains:
        run = d.last_run
        last = f"{run.status} {run.finished_at:%Y-%m-%d %H:%M}" if run and run.finished_at else "—"
        status = f"{ICON[d.status]} {d.status.replace('_', ' ')}"
        compliance = f"{d.slo_compliance:.0%}" if d.slo_compliance is not None else "—"
        out.append(f"| {d.domain} | {status} | {d.score} | {len(d.products)} | {compliance} | {last} |")
    problems = [p for p in report.problems if p.kind != "upstream"]
    if problems:
        out += ["", "| Status | Where | Problem | Owner | At risk downstream |", "| --- | --- | --- | --- | --- |"]
        for p in problems:
            risk = ", ".join(f"{i.product}" for i in p.impact) or ""
            message = p.message.replace("|", "\\|")
            out.append(f"| {ICON[p.status]} {p.status} | {p.product or p.domain} | {message} | {p.owner} | {risk} |")
    else:
        out += ["", "No open problems."]
    slo = [p for p in report.products if p.freshness.slo_hours is not None]
    if slo:
        out += ["", "<details><summary>Freshness SLOs</summary>", "", "| Product | Age (h) | SLO (h) | Compliance |"]
        out.append("| --- | ---: | ---: | ---: |")
        for product in slo:
            f = product.freshness
            compliance = f"{f.slo_compliance:.0%}" if f.slo_compliance is not None else "—"
            age = f"{f.age_hours:.1f}" if f.age_hours is not None else "—"
            out.append(f"| {product.product} | {age} | {f.slo_hours:g} | {compliance} |")
        out += ["", "</details>"]
    return "\n".join(out) + "\n"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mesh_tools.health", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["sparkline"] = lambda points, title, unit="": jinja2.utils.markupsafe.Markup(
        sparkline(points, title, unit=unit)
    )
    env.globals["icon"] = ICON
    env.filters["counted"], env.filters["noun"] = counted, noun
    env.filters["when"] = lambda v: v.strftime("%Y-%m-%d %H:%M") if v else "—"
    env.filters["hours"] = lambda v: "—" if v is None else f"{v:,.1f} h"
    env.filters["pct"] = lambda v: "—" if v is None else f"{v:.0%}"
    env.filters["num"] = lambda v: "—" if v is None else f"{v:,.0f}"
    return env


def to_html(report: HealthReport) -> str:
    return _environment().get_template("report.html.j2").render(report=report)


def write_reports(report: HealthReport, folder: Path, *, below: Path | None = None) -> dict[str, Path]:
    """Write report.html, report.json and report.md into ``folder``, each replaced whole, never through a link
    (with ``below``, none on the way from it to ``folder`` either)."""
    from mesh_tools.core.files import write_atomic

    paths = {"html": folder / "report.html", "json": folder / "report.json", "markdown": folder / "report.md"}
    write_atomic(paths["json"], to_json(report), below=below)
    write_atomic(paths["markdown"], to_markdown(report), below=below)
    write_atomic(paths["html"], to_html(report), below=below)
    return paths
