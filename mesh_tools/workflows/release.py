"""A release: the quality gate, the governance check, then the exchange writes the releases.

The gate reads the domain's last build (manifest and run results, through the model); the
governance findings decide whether anything blocks; only then does the exchange write.
"""

from __future__ import annotations

import time
from typing import Any

from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.exchange.publish import BuildFacts, PublishOutcome, log_refusal, write_releases
from mesh_tools.governance.rule import Severity
from mesh_tools.model.manifest import Manifest, RunResults
from mesh_tools.model.nodes import NodeId
from mesh_tools.model.release import TestSummary
from mesh_tools.store.exchange import open_exchange

# Findings that refuse a release even where governance is advisory: the data itself is not the owner's.
ALWAYS_BLOCKING = frozenset({"GOV205"})


def check_gate(domain: Domain, target: str | None = None, written: str | None = None) -> BuildFacts | str:
    """The products to publish, or why the domain may not publish (its last build is not good).

    ``target``: the name of the target the build used (whose build state records what the mesh built);
    ``written``: why the storage may hold rows written after that build (``storage_written``), if it may."""
    again = f"run `mesh build {domain.name}`"
    manifest = Manifest.load(domain.manifest_path, domain.name, f"Build the domain first: `mesh build {domain.name}`.")
    results_path = domain.run_results_path
    results = RunResults.read(results_path, f"Build the domain again: `mesh build {domain.name}`.", missing_ok=True)
    if results is None:
        return f"{domain.name} has no build results ({results_path.name} missing): {again}."
    if results.command != "build":
        return f"the last dbt command in {domain.name} was `{results.command}`, not `build`: {again}."
    if results.args.get("empty"):
        return f"the last build of {domain.name} ran with --empty (no rows were read): {again}."
    if results.args.get("sample"):
        return f"the last build of {domain.name} ran with --sample (it read a sample of its inputs): {again}."
    if results.invocation_id != manifest.invocation_id:
        return f"{domain.name}'s manifest and run results come from different dbt runs: {again}."
    bad = [f"{r.unique_id} ({r.status})" for r in results.results if r.status in ("error", "fail", "skipped")]
    if bad:
        return f"the last build of {domain.name} did not pass: {', '.join(sorted(bad)[:5])}."
    # a state-aware (or any selective) build rebuilds some products: those are published, the others
    # keep their current release; a product it selected must have been built, with all its data tests
    products = [p for p in manifest.products(domain.name) if p.unique_id in results.by_id]
    missing = [n.unique_id for n in products if results.status_of(n.unique_id) != "success"]
    if missing:
        return f"data products not built by the last build of {domain.name}: {', '.join(missing)}."
    stale = _inputs_built_elsewhere(domain, target, manifest, results, products) or _written_since(
        domain, target, manifest, results, products, written
    )
    if stale:
        return stale
    # every data test of a product ran in that build (none excluded or left out of the selection);
    # unit tests check logic, not data, and are often left out of production builds: not required
    skipped = sorted(
        f"{test.name} on {product.name}"
        for product in products
        for test in manifest.tests_of(product.unique_id, data_only=True)
        if test.unique_id not in results.by_id
    )
    if skipped:
        return (
            f"data tests of {domain.name}'s products did not run in its last build (excluded or not selected): "
            f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}. Run `mesh build {domain.name}`."
        )
    tests: dict[str, TestSummary] = {}
    for product in products:
        statuses = [results.status_of(t.unique_id) for t in manifest.tests_of(product.unique_id)]
        tests[product.unique_id] = TestSummary(
            passed=statuses.count("pass"), failed=statuses.count("fail"), warned=statuses.count("warn")
        )
    return BuildFacts(
        products=products,
        tests=tests,
        invocation_id=results.invocation_id,
        dbt_version=manifest.dbt_version,
        built_at=results.generated_at,
        groups=manifest.groups,
        adapter=manifest.adapter,
        checks={p.unique_id: manifest.tests_of(p.unique_id, data_only=True) for p in products},
    )


def _inputs_built_elsewhere(
    domain: Domain, target: str | None, manifest: Manifest, results: RunResults, products: list[Any]
) -> str | None:
    """Why a product may not be published because a model it reads in its own domain was not built by this
    build, and its table was last written by a dbt run the mesh has no record of (`dbt build --empty`,
    `--sample`, a hand-run `dbt run` from code since undone): its rows would come from that run."""
    from mesh_tools.state.file import read_state
    from mesh_tools.state.inputs import run_file_of, run_footprint, singular_tests

    built = {"model", "seed", "snapshot"}
    ancestors: dict[str, str] = {}  # ancestor -> a product that reads it
    for product in products:
        stack = list(product.depends_on)
        while stack:
            uid = stack.pop()
            node = manifest.node(uid)
            if node is None or uid in ancestors or node.package != domain.name or node.resource_type not in built:
                continue
            ancestors[uid] = product.name
            stack.extend(node.depends_on)
    outside = {u: p for u, p in ancestors.items() if u not in results.by_id}
    if not outside:
        return None
    now = run_footprint(domain, singular_tests(manifest))
    record = read_state(domain, target) if target else "no target"
    recorded = record.footprint if not isinstance(record, str) else None
    for uid, product in sorted(outside.items()):
        node = manifest.node(uid)
        path = run_file_of(node) if node is not None else ""
        if path not in now:
            continue  # never written by dbt (ephemeral): compiled into its readers
        if recorded is None or recorded.get(path) != now[path]:
            label = node.name if node is not None else uid
            return (
                f"{product} reads {label}, which this build did not build, and its table was last written by a dbt "
                f"run the mesh has no record of (`--empty`, `--sample`, or a hand-run from other code): its rows "
                f"would be that run's. Build it with its products (`dbt build -s +{product}`), or `mesh build "
                f"{domain.name}`."
            )
    return None


def _written_since(
    domain: Domain,
    target: str | None,
    manifest: Manifest,
    results: RunResults,
    products: list[Any],
    written: str | None,
) -> str | None:
    """Why a product may not be published because its rows may have been written after the build the gate
    checks, when that build is the mesh's own recorded one: a hand-run `dbt run -s product` (even with
    --no-write-json, or into another --target-path) leaves run_results.json as it was."""
    from mesh_tools.state.file import read_state
    from mesh_tools.state.inputs import footprint_changes, run_footprint, singular_tests

    record = read_state(domain, target) if target else "no target"
    if isinstance(record, str) or record.invocation != results.invocation_id or record.footprint is None:
        return None  # not a build the mesh recorded: the footprint of its own run says nothing more
    changed = footprint_changes(record.footprint, run_footprint(domain, singular_tests(manifest)))
    why = f"dbt wrote target/run/{changed[0]} after it" if changed else written
    if why is None:
        return None
    return (
        f"{', '.join(p.name for p in products[:3])}: the rows of {domain.name}'s last build may have been written "
        f"again after it ({why}: a hand-run dbt, maybe from other code). Run `mesh build {domain.name}`."
    )


def storage_written(mesh: Mesh, domain: Domain, target: str | None) -> str | None:
    """Why the domain's own database file may hold rows written after its last recorded build, or None: the
    file changed since the mesh recorded it, and no other domain builds into it."""
    from mesh_tools.core.errors import MeshError
    from mesh_tools.dbt import profiles
    from mesh_tools.state.file import read_state
    from mesh_tools.state.inputs import storage_fingerprint, storage_shared

    try:
        profile = profiles.load_profile(domain.path, target, mesh.profiles_dir, require_env=False)
    except MeshError:
        return None
    record = read_state(domain, profile.target)
    now = storage_fingerprint(profile.files, profile.remote, profile.identity)
    if isinstance(record, str) or not record.storage or now is None or now[0][1:] == ["warehouse"]:
        return None
    own = {str(profile.files[0]), str(profile.files[0]) + ".wal"} if profile.files else set()
    before = [list(e) for e in record.storage if str(e[0]) in own]  # attached source files are inputs, not rows
    if not before:
        return None  # recorded for files elsewhere (a mesh copied or moved whole): nothing to compare with
    if before == [e for e in now if str(e[0]) in own] or storage_shared(mesh, domain, profile.files[:1], target):
        return None
    return "its database file changed since"


def governance_findings(mesh: Mesh, domain: Domain) -> list[Any]:
    """The domain's `mesh check` findings (its upstreams loaded too), to block or only to show.

    SQL style (GOV502) runs only when the mesh enforces governance and raised it to error: at
    warn, or in an advisory mesh, it could block nothing and costs seconds.
    """
    from mesh_tools.governance.engine import run_check

    style_blocks = mesh.governance.enforce and str(mesh.governance.rules.get("GOV502", "")).endswith("error")
    upstreams = [u for u in domain.upstream_names if u in mesh.domains and mesh.domains[u].manifest_path.is_file()]
    report = run_check(mesh, [domain.name], sqlfluff=style_blocks, load=[domain.name, *upstreams])
    return report.violations


def blocking_findings(mesh: Mesh, violations: list[Any]) -> list[Any]:
    """The findings that refuse a release.

    With ``governance.enforce`` every error-level finding. Without it, governance is advisory
    and only what makes the release unsafe for its readers blocks: a breaking change to a
    product whose released contract is enforced (GOV301), which consumers' builds check
    against, and which dbt itself refuses in a state comparison; and a domain writing another
    domain's storage or the exchange (GOV205), whose data then is not its owner's.
    """
    from mesh_tools.core.errors import MeshError

    errors = [v for v in violations if v.severity >= Severity.ERROR]
    if mesh.governance.enforce:
        return errors
    exchange = open_exchange(mesh)
    unsafe = []
    for violation in errors:
        if violation.code in ALWAYS_BLOCKING:
            unsafe.append(violation)
            continue
        if violation.code != "GOV301" or not violation.finding.node:
            continue
        node = NodeId.read(violation.finding.node)  # model.<project>.<name>[.v<N>]
        if node is None:
            continue
        try:
            current = exchange.baseline(node.package, node.name, node.version)
        except MeshError:
            current = None
        if current is not None and current.descriptor.contract.enforced:
            unsafe.append(violation)
    return unsafe


def finding_counts(violations: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for violation in violations:
        counts[violation.severity.label] = counts.get(violation.severity.label, 0) + 1
    return counts


def _target_name(mesh: Mesh, domain: Domain, target: str | None) -> str | None:
    """The name of the target dbt builds the domain with (``target``, else its profile's default)."""
    from mesh_tools.core.errors import MeshError
    from mesh_tools.dbt import profiles

    try:
        return profiles.load_profile(domain.path, target, mesh.profiles_dir, require_env=False).target
    except MeshError:
        return target


def publish_domain(
    mesh: Mesh, domain: Domain, target: str | None = None, violations: list[Any] | None = None
) -> PublishOutcome:
    """Publish every public model of ``domain`` from its last build, or refuse with the reason.

    ``violations``: its governance findings, when the caller has them already.
    """
    start = time.perf_counter()
    outcome = PublishOutcome(domain.name)
    facts = check_gate(domain, _target_name(mesh, domain, target), storage_written(mesh, domain, target))
    if isinstance(facts, str):
        outcome.refused = facts
        log_refusal(mesh, domain, facts)
        return outcome
    violations = governance_findings(mesh, domain) if violations is None else violations
    outcome.findings = finding_counts(violations)
    blocking = blocking_findings(mesh, violations)
    if blocking:
        why = (
            "error-level governance findings"
            if mesh.governance.enforce
            else "findings that block a release even where governance is advisory (a breaking change to an "
            "enforced contract, a write into another domain's storage)"
        )
        # in one order whatever order the domain's files were found in (the manifest lists nodes as parsed)
        listed = sorted(f"{v.code} {v.finding.message}" for v in blocking)
        outcome.refused = f"{why}: " + "; ".join(listed)
        log_refusal(mesh, domain, outcome.refused, facts.invocation_id)
        return outcome
    write_releases(mesh, domain, facts, target, outcome)
    outcome.seconds = time.perf_counter() - start
    return outcome
