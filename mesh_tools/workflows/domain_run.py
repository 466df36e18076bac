"""The work done for one domain inside a worker process: deps, stitch, then one dbt command.

A worker process runs dbt in-process and takes the project's folder as its working directory,
as a domain team does with ``cd projects/<domain> && dbt build``; the CLI process never does.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from mesh_tools.core.errors import MeshError, describe_os_error
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.dbt import engines
from mesh_tools.dbt.engines import duckdb as duckdb_engine
from mesh_tools.dbt.packages import needs_deps, read_marker
from mesh_tools.exchange.publish import PublishOutcome
from mesh_tools.model.manifest import Manifest, RunResults
from mesh_tools.model.nodes import product_key
from mesh_tools.stitch.plan import stitch_domain, upstream_manifests
from mesh_tools.stitch.refs import explain_dbt_error

SUCCESS, FAILED, SKIPPED = "success", "failed", "skipped"


def die_with_parent() -> None:
    """Ask Linux to kill this worker when the `mesh` process that started it dies (even by SIGKILL).

    A worker left alive would go on building and publishing for a run nobody watches. The parent
    may have died before the request took effect: then exit at once.
    """
    import ctypes
    import signal

    parent = os.getppid()
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
    stitched: tuple[str, ...] = ()
    findings: dict[str, int] = field(default_factory=dict)  # governance findings by severity (advisory or not)
    notes: list[str] = field(default_factory=list)
    invocation_id: str | None = None  # of the run_results this run wrote, if dbt got that far
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def run_domain(
    mesh: Mesh, name: str, command: str, target: str | None, verbose: bool, publish: bool = True
) -> DomainRun:
    """Stitch ``name``, run ``dbt <command>`` in it, then (build) record receipts and publish.

    Never raises for a domain's own failure: that is the DomainRun's status and problems.
    """
    from mesh_tools.dbt import runner as dbt_runner  # imported here: only worker processes need dbt

    die_with_parent()
    domain = mesh.domains[name]
    start, wall_start = time.perf_counter(), time.time()
    run = DomainRun(name, FAILED)
    os.chdir(domain.path)
    if not verbose:
        _quiet_engine(mesh, domain, target)
    profiles = mesh.profiles_dir
    try:
        if needs_deps(domain):
            deps = dbt_runner.invoke(domain.path, ["deps"], verbose=verbose, profiles_dir=profiles)
            if not deps.success:
                run.problems.append(explain_deps_failure(domain, deps.exception or "; ".join(deps.errors)))
                return _done(run, start)
        outcome = stitch_domain(mesh, domain, target)
        run.stitched = outcome.changed + outcome.unchanged
        run.warnings.extend(outcome.warnings)
        if not outcome.ok:
            run.problems.extend(outcome.problems)
            return _done(run, start)
        if command == "build" and mesh.health.source_freshness and has_freshness_checks(domain):
            # before the build: its artifacts replace the manifest, which the publish gate matches with the build
            fresh = dbt_runner.invoke(
                domain.path, ["source", "freshness"], target=target, verbose=verbose, profiles_dir=profiles
            )
            if fresh.exception:
                run.warnings.append(f"dbt source freshness could not run: {_first_lines(fresh.exception, 2)}")
        args = command.split()
        if command == "docs generate":  # beside the build's artifacts, which the publish gate and health read
            args += ["--target-path", str(domain.docs_dir), "--static"]
        invocation = dbt_runner.invoke(domain.path, args, target=target, verbose=verbose, profiles_dir=profiles)
    except MeshError as exc:
        run.problems.append(str(exc))
        return _done(run, start)
    run.warnings.extend(_deprecations(invocation.deprecations, _upstream_model_names(domain)))
    if command == "build":
        _count(run, domain, wall_start)
    if invocation.exception:
        manifests = _manifests_quietly(mesh, domain)
        run.problems.append(
            explain_dbt_error(invocation.exception, manifests, domain.name)
            or _explain_encoding(domain, invocation.exception)
            or duckdb_engine.explain_error(invocation.exception)
            or invocation.exception
        )
    if invocation.success and not run.problems:
        run.status = SUCCESS
    elif not run.problems:
        errors = invocation.errors[-5:] or [f"dbt {command} failed"]
        run.problems.extend(duckdb_engine.explain_error(e) or e for e in errors)
    if run.status == SUCCESS and command == "build":
        try:
            _after_build(mesh, domain, outcome.consumed, target, publish, run)
        except MeshError as exc:
            run.status = FAILED
            run.problems.append(str(exc))
        except OSError as exc:  # the exchange or the domain's folder refused a write (full, read-only, ...)
            run.status = FAILED
            run.problems.append(describe_os_error(exc))
    return _done(run, start)


_TEXT_SUFFIXES = {".sql", ".yml", ".yaml", ".csv", ".md", ".py", ".jinja", ".j2"}
_NOT_CODE = {"target", "dbt_packages", "logs", "dbt_modules", ".git", ".venv"}


def _explain_encoding(domain: Domain, message: str) -> str | None:
    """dbt's bare "'utf-8' codec can't decode" names no file: find the project file that is not UTF-8."""
    if "codec can't decode" not in message:
        return None
    from mesh_tools.core.errors import display_path

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
    from mesh_tools.dbt import profiles

    try:
        profile = profiles.load_profile(domain.path, target, mesh.profiles_dir)
    except MeshError:
        return
    name = engines.console_log(profile.adapter)
    if name is None:
        return
    domain.target_dir.mkdir(parents=True, exist_ok=True)
    log = os.open(domain.target_dir / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def has_freshness_checks(domain: Domain) -> bool:
    """Whether any YAML file of the project configures source freshness (cheaper than parsing)."""
    for folder in domain.code_dirs:
        for path in folder.rglob("*.y*ml") if folder.is_dir() else ():
            try:
                if "freshness" in path.read_text(encoding="utf-8"):
                    return True
            except (OSError, UnicodeDecodeError):
                continue
    return False


def _after_build(
    mesh: Mesh, domain: Domain, consumed: dict[str, str], target: str | None, publish: bool, run: DomainRun
) -> None:
    """A good build: write the consumption receipt, then publish the domain's products (or measure them)."""
    from mesh_tools.core.errors import display_path
    from mesh_tools.exchange.publish import unsafe_product_name
    from mesh_tools.health.measure import measure_built_products
    from mesh_tools.store.exchange import Exchange
    from mesh_tools.store.receipts import write_receipt
    from mesh_tools.workflows.release import finding_counts, governance_findings, publish_domain

    exchange = Exchange(mesh.exchange_path)
    manifest = Manifest.load(domain.manifest_path, domain.name, "Build again.")
    unsafe = unsafe_product_name(domain, manifest.products())
    if unsafe:  # a product whose name or version would leave its folder: nothing goes further
        run.status = FAILED
        run.problems.append(f"publish refused: {unsafe}")
        return
    if not publish and not exchange.writable():
        run.warnings.append(
            f"the exchange ({display_path(exchange.root)}) is read-only here: no consumption receipt recorded"
        )
    elif any(up.name in mesh.domains for up in domain.upstreams):
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
    run.published_rows = outcome.rows


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
    from mesh_tools.core.errors import display_path

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
        project = parent.split(".")[1]
        stub = manifest.nodes.get(parent)
        if project in upstream:
            used.add(stub.key if stub is not None else product_key(project, parent.split(".")[2], None))
    return sorted(used)


def _upstream_model_names(domain: Domain) -> set[str]:
    """Names of the models the domain's stubs define (their deprecation is the producer's to act on)."""
    names: set[str] = set()
    for up in domain.upstream_names:
        marker = read_marker(domain.packages_dir / up) or {}
        names |= {uid.split(".")[2] for uid in marker.get("models", []) if uid.count(".") >= 2}
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


def _count(run: DomainRun, domain: Domain, start_wall: float) -> None:
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
    own = f".{domain.name}."
    for result in results:
        kind = result.unique_id.split(".", 1)[0]
        if kind in ("model", "seed", "snapshot") and own not in result.unique_id:
            run.upstream_views += 1
            if result.status == "error":
                run.problems.append(f"upstream view {result.unique_id}: {_first_lines(result.message)}")
            continue
        if kind in ("model", "seed", "snapshot"):
            run.models += kind == "model"
            if result.status == "error":
                run.models_failed += 1
                run.problems.append(f"{kind} {result.unique_id} failed: {_first_lines(result.message)}")
        elif kind in ("test", "unit_test"):
            if result.status == "pass":
                run.tests_passed += 1
            elif result.status == "warn":
                run.tests_warned += 1
                run.warnings.append(f"test {result.unique_id} warned: {_first_lines(result.message)}")
            elif result.status in ("fail", "error"):
                run.tests_failed += 1
                run.problems.append(f"test {result.unique_id} {result.status}ed: {_first_lines(result.message)}")


def _first_lines(message: str | None, limit: int = 6) -> str:
    lines = [line.rstrip() for line in (message or "").strip().splitlines() if line.strip()]
    return "\n    ".join(lines[:limit])


def _done(run: DomainRun, start: float) -> DomainRun:
    run.seconds = time.perf_counter() - start
    return run
