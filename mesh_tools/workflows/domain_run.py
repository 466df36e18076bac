"""The work done for one domain inside a worker process: deps, stitch, plan, one dbt command, after the build.

A worker process runs dbt in-process and takes the project's folder as its working directory,
as a domain team does with ``cd projects/<domain> && dbt build``; the CLI process never does.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mesh_tools.core.errors import MeshError, describe_os_error, display_path
from mesh_tools.core.files import open_nofollow
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.dbt import engines
from mesh_tools.dbt.packages import needs_deps, read_marker
from mesh_tools.dbt.staleness import before_dbt, others_of, record_parse
from mesh_tools.exchange.publish import PublishOutcome
from mesh_tools.model.manifest import Manifest, RunResults
from mesh_tools.model.nodes import NodeId, package_of, resource_type_of
from mesh_tools.state.observe import first_lines, forget_profiles, plan_domain_build, target_name
from mesh_tools.state.plan import BuildPlan
from mesh_tools.state.record import own_write, record_quiet_facts, record_storage_now, remember_build, storage_now
from mesh_tools.stitch.plan import StitchOutcome, stitch_domain, upstream_manifests
from mesh_tools.stitch.refs import explain_dbt_error

if TYPE_CHECKING:
    from mesh_tools.dbt.runner import Invocation

SUCCESS, FAILED, SKIPPED = "success", "failed", "skipped"


def die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to kill this worker when the `mesh` process that started it dies (even by SIGKILL).

    A worker left alive would go on building and publishing for a run nobody watches. The parent
    (``parent``, the pid that forked it, when known) may have died before the request took effect:
    then exit at once.
    """
    import ctypes
    import signal

    parent = parent or os.getppid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the parent's own shutdown stops its workers
    if os.getppid() != parent:
        os._exit(1)


@dataclass
class DomainRun:
    """What happened to one domain in a mesh-wide run."""

    domain: str
    status: str
    seconds: float = 0.0
    models: int = 0
    models_failed: int = 0
    tests_passed: int = 0
    tests_failed: int = 0
    tests_warned: int = 0
    upstream_views: int = 0
    published: int = 0
    published_rows: int = 0
    confirmed: list[str] = field(default_factory=list)  # products whose current release the publish confirmed
    stitched: tuple[str, ...] = ()
    findings: dict[str, int] = field(default_factory=dict)  # governance findings by severity (advisory or not)
    notes: list[str] = field(default_factory=list)
    invocation_id: str | None = None  # of the run_results this run wrote, if dbt got that far
    models_total: int = 0  # the domain's own models (a state-aware build runs some, reuses the others)
    decisions: list[tuple[str, str]] = field(default_factory=list)  # (node, why it ran)
    full_reason: str | None = None  # why everything ran, when it did
    unseen: list[str] = field(default_factory=list)  # changes the build cannot see (for --explain)
    stitched_from: list[str] = field(default_factory=list)  # upstream products not read from their release
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # for its lineage events: when it ran (ISO 8601, UTC), what it read and what it published
    started_at: str | None = None
    ended_at: str | None = None
    consumed: dict[str, str] = field(default_factory=dict)  # product -> release id
    released: list[Any] = field(default_factory=list)  # ReleaseDescriptor of each release it published


@dataclass(frozen=True)
class StageSlice:
    """One stage of a staged build of a cycle of domains (workflows/stages.py): what its `dbt build` leaves out of
    the domain's own plan, and the domain's nodes later stages build (owed a run until their stage comes)."""

    number: int
    of: int
    nodes: tuple[str, ...]  # the domain's nodes this stage builds
    exclude: tuple[str, ...]  # dbt selectors: the domain's other stages, stubs of products a later stage builds
    later: tuple[str, ...]  # the domain's nodes a later stage builds
    final: bool
    select: tuple[str, ...] = ()  # dbt selectors: a model-level selection's nodes (workflows/model_selection.py)

    def dbt_args(self) -> list[str]:
        select = ["--select", *self.select] if self.select else []
        return select + (["--exclude", *self.exclude] if self.exclude else [])


def run_domain(
    mesh: Mesh, name: str, command: str, target: str | None, verbose: bool, publish: bool = True, full: bool = False,
    stage: StageSlice | None = None,
) -> DomainRun:  # fmt: skip
    """Stitch ``name``, run ``dbt <command>`` in it, then (build) record receipts and publish (``stage``: one stage
    of a cycle of domains, built in stages).

    Never raises for a domain's own failure: that is the DomainRun's status and problems. A file the mesh
    refuses to write (a planted link, a full disk) anywhere in the run is one located problem of the domain,
    never a crashed worker.
    """
    die_with_parent()
    forget_profiles()
    start = time.perf_counter()
    run = DomainRun(name, FAILED, started_at=datetime.now(UTC).isoformat())
    try:
        return _run_domain(mesh, name, command, target, verbose, publish, full, run, start, stage)
    except MeshError as exc:
        run.status = FAILED
        run.problems.append(str(exc))
    except OSError as exc:
        run.status = FAILED
        run.problems.append(describe_os_error(exc))
    return _done(run, start)


def _run_domain(
    mesh: Mesh, name: str, command: str, target: str | None, verbose: bool, publish: bool, full: bool,
    run: DomainRun, start: float, stage: StageSlice | None = None,
) -> DomainRun:  # fmt: skip
    """One domain's run, step by step: deps, stitch, plan (a build), dbt, then after the build."""
    domain = mesh.domains[name]
    build = command == "build"
    wall_start = time.time()
    os.chdir(domain.path)
    if not verbose:
        _quiet_engine(mesh, domain, target)
    try:
        if not _deps(mesh, domain, verbose, run):
            return _done(run, start)
        outcome = _stitch(mesh, domain, target, build, run)
        if not outcome.ok:
            return _done(run, start)
        plan = plan_domain_build(mesh, domain, target, publish, full, verbose, run) if build else None
        if plan is not None and plan.empty:  # nothing changed: no dbt at all, every table and release stays
            _nothing_to_run(mesh, domain, target, plan, outcome.consumed, run)
            return _done(run, start)
        inputs = before_dbt(domain, others_of(mesh))  # what this dbt run parses, recorded with its manifest
        invocation, plan = _dbt(mesh, domain, command, target, verbose, plan, stage, run)
    except MeshError as exc:
        run.problems.append(str(exc))
        return _done(run, start)
    except OSError as exc:  # the domain's folder refused a write midway (read-only, full, permission)
        run.problems.append(describe_os_error(exc))
        return _done(run, start)
    record_parse(domain, inputs, others_of(mesh))  # readers tell a current manifest by it (dbt/staleness.py)
    run.warnings.extend(_deprecations(invocation.deprecations, _upstream_model_names(domain)))
    if plan is not None:  # a build: what ran, and the state the next build compares with
        _count(run, domain, wall_start, target)
        remember_build(mesh, domain, target, plan, outcome.consumed, run, invocation.hook_statements,
                       stage.later if stage else ())  # fmt: skip
    _judge(mesh, domain, command, target, invocation, run)
    if build:
        if run.status == SUCCESS:
            _after_build_or_fail(mesh, domain, outcome.consumed, target, publish, run)
        record_storage_now(mesh, domain, target)
    return _done(run, start)


def _deps(mesh: Mesh, domain: Domain, verbose: bool, run: DomainRun) -> bool:
    """`dbt deps` when a declared package is missing; False (the problem said) when it fails."""
    from mesh_tools.dbt import runner as dbt_runner  # imported here: only worker processes need dbt

    if not needs_deps(domain):
        return True
    deps = dbt_runner.invoke(domain.path, ["deps"], verbose=verbose, profiles_dir=mesh.profiles_dir)
    if not deps.success:
        run.problems.append(explain_deps_failure(domain, deps.exception or "; ".join(deps.errors)))
    return deps.success


def _stitch(mesh: Mesh, domain: Domain, target: str | None, build: bool, run: DomainRun) -> StitchOutcome:
    """Stitch the domain's upstream products from the releases it reads (its problems are the run's)."""
    storage_before = storage_now(mesh, domain, target) if build else None
    outcome = stitch_domain(mesh, domain, target)
    if outcome.dropped and storage_before is not None:
        own_write(mesh, domain, target, storage_before)
    run.stitched = outcome.changed + outcome.unchanged
    run.consumed = dict(outcome.consumed)
    run.warnings.extend(outcome.warnings)
    run.stitched_from = list(outcome.notes)  # products read from a working copy: said, never silent
    if not outcome.ok:
        run.problems.extend(outcome.problems)
    return outcome


def _nothing_to_run(
    mesh: Mesh, domain: Domain, target: str | None, plan: BuildPlan, consumed: dict[str, str], run: DomainRun
) -> None:
    """A build whose plan selects nothing: a success with no dbt, its state recorded as the storage is now."""
    run.status = SUCCESS
    run.models_total = sum(1 for _ in plan.state.manifest.own("model")) if plan.state else 0
    run.notes.append("nothing changed since its last build: no dbt run")
    record_storage_now(mesh, domain, target)
    if plan.state is not None:
        record_quiet_facts(mesh, domain, target, consumed, plan.state.manifest, plan)


def _dbt(
    mesh: Mesh, domain: Domain, command: str, target: str | None, verbose: bool, plan: BuildPlan | None,
    stage: StageSlice | None, run: DomainRun,
) -> tuple[Invocation, BuildPlan | None]:  # fmt: skip
    """Run ``dbt <command>`` on the plan's selection (a build), and the plan it ran."""
    from mesh_tools.dbt import runner as dbt_runner

    profiles = mesh.profiles_dir
    args = command.split()
    if plan is not None:
        args += plan.dbt_args() + (stage.dbt_args() if stage else [])
    if command == "docs generate":  # beside the build's artifacts, which the publish gate and health read
        args += ["--target-path", str(domain.docs_dir), "--static"]
    invocation = dbt_runner.invoke(domain.path, args, target=target, verbose=verbose, profiles_dir=profiles)
    if plan is not None and not plan.full and _state_comparison_refused(invocation.exception):
        # dbt refuses a state comparison across a breaking change to an enforced contract; the
        # mesh lets the build run and its governance judge the release (GOV301), as a full build does
        plan = plan.as_full("dbt's state comparison found a breaking change to an enforced contract")
        run.full_reason = plan.why_full
        invocation = dbt_runner.invoke(
            domain.path,
            ["build", *(stage.dbt_args() if stage else [])],
            target=target,
            verbose=verbose,
            profiles_dir=profiles,
        )
    return invocation, plan


def _judge(mesh: Mesh, domain: Domain, command: str, target: str | None, invocation: Invocation,
           run: DomainRun) -> None:  # fmt: skip
    """The run's status from dbt's outcome; its errors explained (a problem already found stands)."""
    name = domain.name
    if invocation.exception:
        manifests = _manifests_quietly(mesh, domain)
        run.problems.append(
            explain_dbt_error(invocation.exception, manifests, domain.name)
            or _explain_encoding(domain, invocation.exception)
            or engines.explain_error(invocation.exception, domain.name, target)
            or invocation.exception
        )
    if invocation.success and not run.problems:
        run.status = SUCCESS
    elif not run.problems:
        errors = invocation.errors[-5:] or [f"dbt {command} failed"]
        explained = [engines.explain_error(e, name, target) or e for e in errors]
        run.problems.extend(dict.fromkeys(explained))


def _after_build_or_fail(
    mesh: Mesh, domain: Domain, consumed: dict[str, str], target: str | None, publish: bool, run: DomainRun
) -> None:
    """After a good build (receipt, governance, publish); a refusal there fails the domain's run."""
    try:
        _after_build(mesh, domain, consumed, target, publish, run)
    except MeshError as exc:
        run.status = FAILED
        run.problems.append(str(exc))
    except OSError as exc:  # the exchange or the domain's folder refused a write (full, read-only, ...)
        run.status = FAILED
        run.problems.append(describe_os_error(exc))


_TEXT_SUFFIXES = {".sql", ".yml", ".yaml", ".csv", ".md", ".py", ".jinja", ".j2"}
_NOT_CODE = {"target", "dbt_packages", "logs", "dbt_modules", ".git", ".venv"}


def _explain_encoding(domain: Domain, message: str) -> str | None:
    """dbt's bare "'utf-8' codec can't decode" names no file: find the project file that is not UTF-8."""
    if "codec can't decode" not in message:
        return None

    for path in sorted(domain.path.rglob("*")):
        if path.suffix not in _TEXT_SUFFIXES or _NOT_CODE & set(path.relative_to(domain.path).parts):
            continue
        try:
            raw = path.read_bytes()
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            return (
                f"{display_path(path)}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); dbt reads every project "
                "file as UTF-8. Save the file as UTF-8."
            )
        except OSError:
            continue
    return None


def _quiet_engine(mesh: Mesh, domain: Domain, target: str | None) -> None:
    """Send an in-process engine's own console output (Spark's JVM logging) to target/<engine>.log.

    The JVM inherits the worker's stdout and stderr; this worker serves this one domain only.
    """
    _name, profile = target_name(mesh, domain, target)
    if profile is None:
        return
    name = engines.console_log(profile.adapter, profile.connection)
    if name is None:
        return
    domain.target_dir.mkdir(parents=True, exist_ok=True)
    log = open_nofollow(domain.target_dir / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def _state_comparison_refused(message: str | None) -> bool:
    return bool(message) and "comparing to previous project state" in str(message)


def _after_build(
    mesh: Mesh, domain: Domain, consumed: dict[str, str], target: str | None, publish: bool, run: DomainRun
) -> None:
    """A good build: write the consumption receipt, then publish the domain's products (or measure them)."""
    from mesh_tools.exchange.publish import unsafe_product_name
    from mesh_tools.health.measure import measure_built_products
    from mesh_tools.store.exchange import open_exchange
    from mesh_tools.store.receipts import write_receipt
    from mesh_tools.workflows.release import finding_counts, governance_findings, publish_domain

    exchange = open_exchange(mesh)
    manifest = Manifest.load(domain.manifest_path, domain.name, "Build again.")
    unsafe = unsafe_product_name(domain, manifest.products())
    if unsafe:  # a product whose name or version would leave its folder: nothing goes further
        run.status = FAILED
        run.problems.append(f"publish refused: {unsafe}")
        return
    if not publish and not exchange.writable():
        run.warnings.append(f"the exchange ({exchange.url}) is read-only here: no consumption receipt recorded")
    elif any(up.name in mesh.domains or up.remote for up in domain.upstreams):
        write_receipt(exchange, domain.name, consumed, _used_products(manifest, domain), manifest.invocation_id)
    violations = governance_findings(mesh, domain)
    run.findings = finding_counts(violations)
    if not publish:
        run.notes.extend(measure_built_products(mesh, domain, target))
        return
    outcome = publish_domain(mesh, domain, target, violations)
    if outcome.refused:
        run.status = FAILED
        run.problems.append(f"publish refused: {outcome.refused}")
        return
    run.published = len(outcome.releases)
    run.released = list(outcome.releases)
    run.warnings.extend(outcome.notes)
    run.published_rows = outcome.rows
    run.confirmed = [c.product for c in outcome.confirmed]


def publish_in_worker(mesh: Mesh, name: str, target: str | None) -> PublishOutcome:
    """`mesh publish` for one domain, in a worker process whose working directory is the domain's folder."""
    from mesh_tools.workflows.release import publish_domain

    die_with_parent()
    domain = mesh.domains[name]
    os.chdir(domain.path)
    _quiet_engine(mesh, domain, target)
    return publish_domain(mesh, domain, target)


def explain_deps_failure(domain: Domain, message: str) -> str:
    """`dbt deps` failed: name the packages it could not fetch and the way out when it is the network."""

    text = " ".join(message.split())
    offline = any(
        marker in text.lower()
        for marker in ("hub.getdbt.com", "connection", "max retries", "name or service not known", "resolve")
    )
    hub = domain.remote_package_names
    if offline and hub:
        where = display_path(domain.path / ("packages.yml" if (domain.path / "packages.yml").is_file()
                                            else "dependencies.yml"))  # fmt: skip
        return (
            f"dbt deps could not download {', '.join(hub)} (declared in {where}): this machine cannot reach "
            "dbt Hub or the package's git host. Vendor the package into the repository and declare it with "
            "'- local: <path>' instead, or install it where there is network and copy the dbt_packages folder."
        )
    return f"dbt deps failed: {text}"


def _used_products(manifest: Manifest, domain: Domain) -> list[str]:
    """Upstream products the domain's own nodes actually read (stub nodes with a child of the domain)."""
    upstream = set(domain.upstream_names)
    used = set()
    for _node, parent in manifest.foreign_reads():
        read = NodeId.read(parent)
        stub = manifest.nodes.get(parent)
        if read is not None and read.package in upstream:
            used.add(stub.key if stub is not None else str(read.product))
    return sorted(used)


def _upstream_model_names(domain: Domain) -> set[str]:
    """Names of the models the domain's stubs define (their deprecation is the producer's to act on)."""
    names: set[str] = set()
    for up in domain.upstream_names:
        marker = read_marker(domain.packages_dir / up) or {}
        names |= {read.name for uid in marker.get("models", []) if (read := NodeId.read(str(uid))) is not None}
    return names


def _deprecations(events: list[tuple[str, str, str]], foreign: set[str]) -> list[str]:
    """Deprecation messages for the consumer: refs to deprecated versions, not the stub models' own."""
    kept = [msg for name, model, msg in events if not (name == "DeprecatedModel" and model in foreign)]
    return list(dict.fromkeys(kept))


def _manifests_quietly(mesh: Mesh, domain: Domain) -> dict:
    try:
        return upstream_manifests(mesh, domain)
    except MeshError:
        return {}


def _count(run: DomainRun, domain: Domain, start_wall: float, target: str | None = None) -> None:
    path = domain.run_results_path
    if not path.is_file() or path.stat().st_mtime < start_wall - 1:
        return  # dbt stopped before running anything: the results on disk are an older run's
    try:
        read = RunResults.read(path)
        assert read is not None
        results, run.invocation_id = read.results, read.invocation_id
    except MeshError as exc:
        run.problems.append(str(exc))
        return
    for result in results:
        kind = resource_type_of(result.unique_id)
        if kind in ("model", "seed", "snapshot") and package_of(result.unique_id) != domain.name:
            run.upstream_views += 1
            if result.status == "error":
                denied = engines.explain_error(result.message or "", domain.name, target)
                problem = denied or f"upstream view {result.unique_id}: {first_lines(result.message)}"
                if problem not in run.problems:
                    run.problems.append(problem)
            continue
        if kind in ("model", "seed", "snapshot"):
            run.models += kind == "model"
            if result.status == "error":
                run.models_failed += 1
                # an engine's explanation (a cluster that lost its executors, ...) instead of its stack trace
                explained = engines.explain_error(result.message or "", domain.name, target)
                run.problems.append(f"{kind} {result.unique_id} failed: {explained or first_lines(result.message)}")
        elif kind in ("test", "unit_test"):
            if result.status == "pass":
                run.tests_passed += 1
            elif result.status == "warn":
                run.tests_warned += 1
                run.warnings.append(f"test {result.unique_id} warned: {first_lines(result.message)}")
            elif result.status in ("fail", "error"):
                run.tests_failed += 1
                run.problems.append(f"test {result.unique_id} {result.status}ed: {first_lines(result.message)}")


def _done(run: DomainRun, start: float) -> DomainRun:
    run.seconds = time.perf_counter() - start
    run.ended_at = datetime.now(UTC).isoformat()
    return run
