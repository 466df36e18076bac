"""Run the rules over the mesh and apply the federated config: severities, domain rules, waivers, baseline.

Precedence: a rule's default severity < mesh.yml ``governance.rules`` (may also turn a rule
off) < a domain's ``mesh_domain.yml`` (may only raise severities, add its own rules, and waive
a rule for named models with a reason and an expiry date). The rules of a check are its own
``Registry`` (built-in + plugins); a domain's plugin rules judge that domain only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ConfigError, display_path
from mesh_tools.core.jsonfile import loads
from mesh_tools.core.mesh import Mesh
from mesh_tools.core.suggestions import did_you_mean
from mesh_tools.core.yamlfile import load_yaml
from mesh_tools.governance.context import CheckContext
from mesh_tools.governance.registry import Registry
from mesh_tools.governance.rule import Finding, Rule, Severity, Violation
from mesh_tools.model.manifest import Manifest


def _raised_by_the_engine(ctx: CheckContext) -> list[Finding]:
    """The waiver rules find nothing themselves: the engine reports them as it applies the waivers."""
    return []


# Rules about the configuration itself (not in a check's registry: the engine raises them while applying waivers;
# mesh.yml and mesh_domain.yml set their severity as any rule's). Documented like the others: `mesh rules` and
# docs/reference/rules.md show them.
META_RULES: dict[str, Rule] = {
    meta.code: meta
    for meta in (
        Rule(
            "GOV001",
            "waiver-without-reason",
            Severity.ERROR,
            "waivers",
            _raised_by_the_engine,
            doc="""
            A waiver says why the rule does not apply.

            Rationale:
                A waiver is a decision someone will have to revisit; without the reason nobody can
                tell whether it still holds. A waiver without a reason waives nothing.
            Example:
                `waivers: [{rule: GOV202, models: [legacy_export], expires: 2027-03-31}]` in a mesh_domain.yml.
            Fix:
                Give the waiver a `reason:` saying why the rule does not apply.
            """,
        ),
        Rule(
            "GOV002",
            "waiver-expired",
            Severity.ERROR,
            "waivers",
            _raised_by_the_engine,
            doc="""
            A waiver has an expiry date, and it has not passed.

            Rationale:
                Exceptions are temporary: the date makes the owner come back to the models. An expired
                waiver (or one without `expires:`) waives nothing.
            Example:
                A waiver with `expires: 2026-01-31` checked after that day, or with no `expires:`.
            Fix:
                Fix the models and remove the waiver, or renew it with a new `expires:`.
            """,
        ),
        Rule(
            "GOV003",
            "waiver-unused",
            Severity.WARN,
            "waivers",
            _raised_by_the_engine,
            doc="""
            Every waiver matches a violation.

            Rationale:
                A waiver that matches nothing is left over from a fixed problem, or names the wrong
                model or rule; either way it would silently waive a future violation.
            Example:
                A waiver of GOV106 for `fct_orders` after every column of fct_orders was described.
            Fix:
                Remove the waiver: nothing it names violates the rule any more.
            """,
        ),
    )
}


@dataclass
class CheckReport:
    domains: list[str]
    rules: list[str]
    violations: list[Violation] = field(default_factory=list)  # not waived
    waived: list[Violation] = field(default_factory=list)
    baselined: set[str] = field(default_factory=set)  # fingerprints already known
    seconds: float = 0.0
    registry: Registry = field(default_factory=Registry)  # the rules this check ran (and their docs)

    def failing(self, fail_on: Severity) -> list[Violation]:
        return [v for v in self.violations if v.severity >= fail_on and v.fingerprint not in self.baselined]


def _check_codes(registry: Registry, codes: list[str], path: Path, loc: tuple[Any, ...], keyed: bool = True) -> None:
    """Every code names a known rule; ``keyed``: codes are keys at ``loc``, else list items' ``rule``."""
    known = set(registry) | set(META_RULES)
    doc = load_yaml(path, required=False)
    for index, code in enumerate(codes):
        if code not in known:
            line = (doc.line_of(loc + ((code,) if keyed else (index, "rule")))) if doc else None
            where = f"{display_path(path)}:{line}" if line else display_path(path)
            raise ConfigError(f"{where}: unknown rule code '{code}'.{did_you_mean(code, known)} See `mesh rules`.")


def _resolve_severities(
    mesh: Mesh, registry: Registry
) -> tuple[dict[str, Severity | None], dict[str, dict[str, Severity]], dict]:
    """Global severities (None = off), per-domain raised severities, and rule options."""
    mesh_file = mesh.config_path or mesh.root / "mesh.yml"
    _check_codes(registry, list(mesh.governance.rules), mesh_file, ("governance", "rules"))
    severities: dict[str, Severity | None] = {code: r.severity for code, r in registry.items()}
    options: dict[str, dict[str, Any]] = {}
    for code, raw in mesh.governance.rules.items():
        setting = raw
        if setting.severity == "off":
            severities[code] = None
        elif setting.severity:
            severities[code] = Severity.parse(setting.severity)
        options[code] = dict(setting.options)
    per_domain: dict[str, dict[str, Severity]] = {}
    for name, domain in mesh.domains.items():
        domain_file = domain.path / "mesh_domain.yml"
        _check_codes(registry, list(domain.governance.rules), domain_file, ("governance", "rules"))
        waived = [w.rule for w in domain.governance.waivers]
        _check_codes(registry, waived, domain_file, ("governance", "waivers"), keyed=False)
        for code, raw in domain.governance.rules.items():
            setting = raw
            floor = severities.get(code, META_RULES[code].severity if code in META_RULES else None)
            if setting.severity == "off" or (
                setting.severity and floor is not None and Severity.parse(setting.severity) < floor
            ):
                doc = load_yaml(domain_file, required=False)
                line = doc.line_of(("governance", "rules", code)) if doc else None
                raise ConfigError(
                    f"{display_path(domain_file)}:{line}: {name} sets {code} to '{setting.severity}', below the mesh's "
                    f"'{floor.label if floor else 'off'}'. A domain may raise a rule's severity, not lower it: "
                    "use a waiver for named models."
                )
            if setting.severity:
                per_domain.setdefault(name, {})[code] = Severity.parse(setting.severity)
            if setting.options:
                options.setdefault(code, {}).update(setting.options)
    return severities, per_domain, options


def run_check(
    mesh: Mesh,
    domains: list[str] | None = None,
    *,
    sqlfluff: bool = True,
    baseline: set[str] | None = None,
    today: date | None = None,
    load: list[str] | None = None,
    contracts: dict[str, dict[str, Any]] | None = None,
    warehouse_grants: dict[str, list[str]] | None = None,
    contract_tests: dict[str, list[tuple[str, str]]] | None = None,
    manifests: dict[str, Manifest] | None = None,
) -> CheckReport:
    """Every rule over the selected domains (with the whole mesh loaded for cross-project rules).

    ``manifests``: those the caller already read from the domains' manifest paths (not read again).
    """
    start = time.perf_counter()
    registry = Registry.for_mesh(mesh)
    severities, raised, options = _resolve_severities(mesh, registry)
    selected = domains or list(mesh.domains)
    if load is None:  # the selected domains, plus every other domain that has a manifest
        load = [n for n in mesh.domains if n in selected or mesh.domains[n].manifest_path.is_file()]
    ctx = CheckContext.load(mesh, sorted(set(load) | set(selected), key=list(mesh.domains).index), manifests)
    ctx.options = options
    ctx.baseline_contracts = contracts or {}
    ctx.warehouse_grants = warehouse_grants or {}
    ctx.contract_tests = contract_tests or {}
    if not sqlfluff:
        ctx.options.setdefault("GOV502", {})["enabled"] = False
    report = CheckReport(domains=selected, rules=[], registry=registry)
    violations: list[Violation] = []
    for code, rule in registry.items():
        severity = severities.get(code)
        if severity is None or (code == "GOV502" and not sqlfluff):
            continue
        report.rules.append(code)
        if not any(registry.judges(code, d) for d in selected):
            continue  # a domain's own rule, and that domain is not checked
        seen: set[Finding] = set()
        for finding in rule.check(ctx):
            if finding.domain not in selected or not registry.judges(code, finding.domain) or finding in seen:
                continue
            seen.add(finding)
            effective = max(severity, raised.get(finding.domain, {}).get(code, severity))
            violations.append(Violation(code, rule.name, effective, finding, rule.section("Fix")))
    levels = _MetaLevels(severities, raised)
    report.violations, report.waived = _apply_waivers(mesh, selected, violations, today or date.today(), levels)
    report.baselined = set(baseline or ()) & {v.fingerprint for v in report.violations}
    report.seconds = time.perf_counter() - start
    return report


@dataclass
class _MetaLevels:
    """The severity of a waiver rule in a domain: the mesh's setting (None: off), raised by the domain's own."""

    severities: dict[str, Severity | None]
    raised: dict[str, dict[str, Severity]]

    def of(self, code: str, domain: str) -> Severity | None:
        severity = self.severities.get(code, META_RULES[code].severity)
        if severity is None:
            return None
        return max(severity, self.raised.get(domain, {}).get(code, severity))


def _apply_waivers(
    mesh: Mesh, selected: list[str], violations: list[Violation], today: date, levels: _MetaLevels
) -> tuple[list[Violation], list[Violation]]:
    kept: list[Violation] = []
    waived: list[Violation] = []
    used: set[tuple[str, int]] = set()
    meta: list[Violation] = []
    for name in selected:
        domain_file = display_path(mesh.domains[name].path / "mesh_domain.yml")
        for index, waiver in enumerate(mesh.domains[name].governance.waivers):
            problem = None
            if not (waiver.reason or "").strip():
                problem = (
                    "GOV001",
                    f"waiver #{index + 1} of {waiver.rule} for {', '.join(waiver.models)} has no reason",
                )
            elif waiver.expires is None or waiver.expires < today:
                when = f"expired on {waiver.expires}" if waiver.expires else "has no expiry date"
                problem = ("GOV002", f"waiver #{index + 1} of {waiver.rule} for {', '.join(waiver.models)} {when}")
            if problem:
                code, message = problem
                broken, severity = META_RULES[code], levels.of(code, name)
                if severity is not None:
                    finding = Finding(name, message, file=domain_file)
                    meta.append(Violation(code, broken.name, severity, finding, broken.section("Fix")))
                used.add((name, index))  # a broken waiver is reported once, not also as unused
    for violation in violations:
        finding = violation.finding
        waivers = mesh.domains[finding.domain].governance.waivers if finding.domain in mesh.domains else []
        match = None
        for index, waiver in enumerate(waivers):
            if waiver.rule != violation.code or not waiver.reason or not waiver.expires or waiver.expires < today:
                continue
            model, model_name = finding.model, finding.model_name
            if any(model == m or model_name == m for m in waiver.models):
                match = (index, waiver)
                break
        if match:
            used.add((finding.domain, match[0]))
            waived.append(
                Violation(
                    violation.code,
                    violation.rule,
                    violation.severity,
                    finding,
                    violation.fix,
                    waived_by=f"{match[1].reason} (until {match[1].expires})",
                )  # fmt: skip
            )
        else:
            kept.append(violation)
    for name in selected:
        for index, waiver in enumerate(mesh.domains[name].governance.waivers):
            severity = levels.of("GOV003", name)
            if (name, index) not in used and severity is not None:
                unused = META_RULES["GOV003"]
                message = f"waiver of {waiver.rule} for {', '.join(waiver.models)} matches no violation"
                file = display_path(mesh.domains[name].path / "mesh_domain.yml")
                meta.append(Violation("GOV003", unused.name, severity, Finding(name, message, file=file),
                                      unused.section("Fix")))  # fmt: skip
    return meta + kept, waived


def read_baseline(path: Path) -> set[str]:
    try:
        data = loads(path.read_text(encoding="utf-8"))
        return set(data["fingerprints"])
    except FileNotFoundError:
        raise ConfigError(f"{display_path(path)}: baseline file not found. Write one with --write-baseline.") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{display_path(path)}: not a baseline file ({exc}).") from None


def write_baseline(path: Path, report: CheckReport) -> None:
    from mesh_tools.core.files import write_atomic

    fingerprints = sorted({v.fingerprint for v in report.violations})
    write_atomic(path, json.dumps({"fingerprints": fingerprints}, indent=2) + "\n")


def all_rules(mesh: Mesh | None = None) -> list[Rule]:
    """Every rule by code: the built-in ones, and with ``mesh`` its plugins' (every domain's)."""
    registry = Registry.for_mesh(mesh) if mesh is not None else Registry()
    return list(registry.values())


def write_contracts(path: Path, mesh: Mesh) -> None:
    """Save the contract of every public model (by product key) as a baseline for GOV301."""
    from mesh_tools.core.files import write_atomic
    from mesh_tools.model.release import Contract

    ctx = CheckContext.load(mesh, [n for n in mesh.domains if mesh.domains[n].manifest_path.is_file()])
    saved = {}
    for domain in ctx.manifests:
        for node in ctx.public_models(domain):
            saved[node.key] = Contract.of(node).model_dump()
    write_atomic(path, json.dumps({"contracts": saved}, indent=2, sort_keys=True) + "\n")


def read_contracts(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return dict(loads(path.read_text(encoding="utf-8"))["contracts"])
    except FileNotFoundError:
        raise ConfigError(
            f"{display_path(path)}: contracts file not found. Write one with --write-contracts."
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{display_path(path)}: not a contracts file ({exc}).") from None


CONTRACT_SUFFIXES = (".odcs.yaml", ".odcs.yml", ".odcs.json")


def read_odcs_dir(folder: Path) -> dict[str, dict[str, Any]]:
    """The ODCS contracts in ``folder`` (``*.odcs.yaml``, as `mesh contracts export` writes them), by product
    key (each contract's ``name``), as baselines for GOV301. A file that is not a valid ODCS v3 contract is
    one located ConfigError: a baseline half read would hide breaking changes."""
    from mesh_tools.core.errors import located
    from mesh_tools.model import odcs

    if not folder.is_dir():
        raise ConfigError(
            f"{display_path(folder)}: no such folder. Write one with `mesh contracts export --output-dir DIR`."
        )
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(CONTRACT_SUFFIXES))
    if not files:
        raise ConfigError(
            f"{display_path(folder)}: no ODCS contracts (*.odcs.yaml) in it. Write them with "
            "`mesh contracts export --output-dir DIR`."
        )
    out: dict[str, dict[str, Any]] = {}
    for path in files:
        doc = load_yaml(path)
        data = doc.data if doc else None
        problems = odcs.schema_problems(data)
        if problems:
            where = problems[0].split(":", 1)[0]
            loc = tuple(int(x) if x.isdigit() else x for x in where.split("/")) if where != "(top)" else ()
            line = doc.line_of(loc) if doc else None
            raise ConfigError(located(display_path(path), line,
                                      f"not a valid ODCS v3 contract: {problems[0]}"
                                      + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")))  # fmt: skip
        assert isinstance(data, dict)  # the ODCS schema it passed requires an object
        key = str(data.get("name") or data.get("id"))
        if key in out:
            raise ConfigError(f"{display_path(path)}: a second contract for {key} in {display_path(folder)}.")
        out[key] = odcs.baseline_of(data)
    return out
