"""Render a check report: text (grouped by domain, with the fix), JSON, JUnit XML, SARIF 2.1.0."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from mesh_tools import __version__
from mesh_tools.core.words import counted
from mesh_tools.governance.engine import META_RULES, CheckReport
from mesh_tools.governance.rule import Severity, Violation


def _where(v: Violation) -> str:
    if v.finding.file:
        return f"{v.finding.file}:{v.finding.line}" if v.finding.line else v.finding.file
    return v.finding.domain


def _by_domain(report: CheckReport) -> dict[str, list[Violation]]:
    grouped: dict[str, list[Violation]] = defaultdict(list)
    for v in report.violations:
        grouped[v.finding.domain].append(v)
    return grouped


def text(report: CheckReport, fail_on: Severity) -> str:
    by_domain = _by_domain(report)
    lines = []
    for domain in report.domains:
        found = sorted(by_domain.get(domain, []), key=lambda v: (-v.severity, v.code, _where(v)))
        if not found:
            continue
        lines.append(f"{domain}:")
        for v in found:
            mark = " (baseline)" if v.fingerprint in report.baselined else ""
            lines.append(f"  {v.severity.label.upper():5} {v.code} {v.rule}{mark}: {v.finding.message}")
            lines.append(f"        at {_where(v)}")
            if v.fix:
                lines.append(f"        fix: {' '.join(v.fix.split())}")
    counts = {s: sum(v.severity == s for v in report.violations) for s in Severity}
    failing = len(report.failing(fail_on))
    lines.append(
        f"mesh check: {counted(len(report.domains), 'domain')}, {counted(len(report.rules), 'rule')}, "
        f"{counted(counts[Severity.ERROR], 'error')}, {counted(counts[Severity.WARN], 'warning')}, "
        f"{counts[Severity.INFO]} info, "
        f"{len(report.waived)} waived, {len(report.baselined)} in baseline; "
        f"{failing} at or above '{fail_on.label}' ({report.seconds:.2f}s)"
    )
    return "\n".join(lines)


def to_json(report: CheckReport, fail_on: Severity) -> str:
    def item(v: Violation) -> dict[str, Any]:
        return {
            "code": v.code,
            "rule": v.rule,
            "severity": v.severity.label,
            "domain": v.finding.domain,
            "node": v.finding.node,
            "file": v.finding.file,
            "line": v.finding.line,
            "message": v.finding.message,
            "fix": " ".join(v.fix.split()),
            "baseline": v.fingerprint in report.baselined,
            "waived_by": v.waived_by,
        }

    return json.dumps(
        {
            "tool": f"mesh_tools {__version__}",
            "fail_on": fail_on.label,
            "domains": report.domains,
            "rules": report.rules,
            "violations": [item(v) for v in report.violations],
            "waived": [item(v) for v in report.waived],
            "failing": len(report.failing(fail_on)),
            "seconds": round(report.seconds, 3),
        },
        indent=2,
    )


def junit(report: CheckReport, fail_on: Severity) -> str:
    by_domain = _by_domain(report)
    suites = []
    for domain in report.domains:
        found = by_domain.get(domain, [])
        failures = [v for v in found if v.severity >= fail_on and v.fingerprint not in report.baselined]
        cases = []
        for v in found:
            body = escape(f"{v.finding.message}\nat {_where(v)}\nfix: {' '.join(v.fix.split())}")
            tag = "failure" if v in failures else "skipped"
            cases.append(
                f"    <testcase classname={quoteattr(domain)} name={quoteattr(f'{v.code} {v.finding.node or domain}')}>"
                f"<{tag} message={quoteattr(v.finding.message)} type={quoteattr(v.severity.label)}>{body}</{tag}>"
                "</testcase>"
            )
        if not found:
            cases.append(f'    <testcase classname={quoteattr(domain)} name="governance"/>')
        suites.append(
            f'  <testsuite name={quoteattr("mesh check: " + domain)} tests="{max(1, len(found))}" '
            f'failures="{len(failures)}" skipped="{len(found) - len(failures)}">\n'
            + "\n".join(cases)
            + "\n  </testsuite>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="mesh check">\n'
        + "\n".join(suites)
        + "\n</testsuites>"
    )


_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARN: "warning", Severity.INFO: "note"}


def sarif(report: CheckReport, fail_on: Severity) -> str:
    rules = []
    for code in sorted(set(report.rules) | {v.code for v in report.violations}):
        if code in report.registry:
            r = report.registry[code]
            name, description, fix = r.name, r.description, r.section("Fix")
        else:
            meta = META_RULES[code]
            name, description, fix = meta.name, meta.description, meta.section("Fix")
        rules.append(
            {
                "id": code,
                "name": name,
                "shortDescription": {"text": description},
                "help": {"text": " ".join(fix.split())},
            }
        )
    results = []
    for v in report.violations:
        result: dict[str, Any] = {
            "ruleId": v.code,
            "level": _SARIF_LEVEL[v.severity],
            "message": {"text": v.finding.message},
            "properties": {"domain": v.finding.domain, "node": v.finding.node},
        }
        if v.finding.file:
            location: dict[str, Any] = {"artifactLocation": {"uri": v.finding.file}}
            if v.finding.line:
                location["region"] = {"startLine": v.finding.line}
            result["locations"] = [{"physicalLocation": location}]
        if v.fingerprint in report.baselined:
            result["baselineState"] = "unchanged"
        results.append(result)
    return json.dumps(
        {
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [
                {"tool": {"driver": {"name": "mesh check", "version": __version__, "rules": rules}}, "results": results}
            ],
        },
        indent=2,
    )


RENDERERS = {"text": text, "json": to_json, "junit": junit, "sarif": sarif}
