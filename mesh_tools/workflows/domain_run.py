"""The work done for one domain inside a worker process: deps, stitch, then one dbt command.

A worker process runs dbt in-process and takes the project's folder as its working directory,
as a domain team does with ``cd projects/<domain> && dbt build``; the CLI process never does.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh_tools.core.errors import ConfigError, MeshError, describe_os_error, display_path
from mesh_tools.core.files import file_sha256, open_nofollow
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.dbt import engines
from mesh_tools.dbt.packages import needs_deps, read_marker
from mesh_tools.dbt.staleness import before_dbt, others_of, record_parse
from mesh_tools.exchange.publish import PublishOutcome
from mesh_tools.model.freshness import FreshnessResults
from mesh_tools.model.manifest import Manifest, RunResults
from mesh_tools.model.nodes import product_key
from mesh_tools.stitch.plan import stitch_domain, upstream_manifests
from mesh_tools.stitch.refs import explain_dbt_error
from mesh_tools.workflows.build_inputs import (
    env_digests,
    env_names,
    fingerprint_reads,
    hook_writes,
    landing_files,
    landing_fingerprint,
    landing_location,
    node_reads,
    project_env_names,
    run_footprint,
    singular_tests,
    sql_dialect,
    storage_shared,
    target_identity,
)
from mesh_tools.workflows.build_state import (
    BuildPlan,
    BuildState,
    Observed,
    change_detection,
    changed_metadata,
    explain,
    freshness_sources,
    load_state,
    plan_build,
    project_digest,
    quiet_facts,
    record_quiet,
    record_state,
    record_storage,
    relations_to_check,
    seed_digests,
    state_dir,
    storage_fingerprint,
    why_full,
)

if TYPE_CHECKING:
    from mesh_tools.dbt.profiles import ProfileInfo

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

    def dbt_args(self) -> list[str]:
        return ["--exclude", *self.exclude] if self.exclude else []


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
    _PROFILES.clear()
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
    from mesh_tools.dbt import runner as dbt_runner  # imported here: only worker processes need dbt

    domain = mesh.domains[name]
    wall_start = time.time()
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
        storage_before = _storage_now(mesh, domain, target) if command == "build" else None
        outcome = stitch_domain(mesh, domain, target)
        if outcome.dropped and storage_before is not None:
            _own_write(mesh, domain, target, storage_before)
        run.stitched = outcome.changed + outcome.unchanged
        run.consumed = dict(outcome.consumed)
        run.warnings.extend(outcome.warnings)
        run.stitched_from = list(outcome.notes)  # products read from a working copy: said, never silent
        if not outcome.ok:
            run.problems.extend(outcome.problems)
            return _done(run, start)
        args = command.split()
        plan = None
        if command == "build":
            plan = _plan_build(mesh, domain, target, publish, full, verbose, run)
            if plan.empty:  # nothing changed: no dbt at all, every table and release stays
                run.status = SUCCESS
                run.models_total = sum(1 for _ in plan.state.manifest.own("model")) if plan.state else 0
                run.notes.append("nothing changed since its last build: no dbt run")
                _record_storage(mesh, domain, target)
                if plan.state is not None:
                    _record_quiet(mesh, domain, target, outcome.consumed, plan.state.manifest, plan)
                return _done(run, start)
            args += plan.dbt_args() + (stage.dbt_args() if stage else [])
        if command == "docs generate":  # beside the build's artifacts, which the publish gate and health read
            args += ["--target-path", str(domain.docs_dir), "--static"]
        inputs = before_dbt(domain, others_of(mesh))  # what this dbt run parses, recorded with its manifest
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
    except MeshError as exc:
        run.problems.append(str(exc))
        return _done(run, start)
    except OSError as exc:  # the domain's folder refused a write midway (read-only, full, permission)
        run.problems.append(describe_os_error(exc))
        return _done(run, start)
    record_parse(domain, inputs, others_of(mesh))  # readers tell a current manifest by it (dbt/staleness.py)
    run.warnings.extend(_deprecations(invocation.deprecations, _upstream_model_names(domain)))
    if command == "build":
        _count(run, domain, wall_start, target)
        if plan is not None:
            _remember(mesh, domain, target, plan, outcome.consumed, run, invocation.hook_statements,
                      stage.later if stage else ())  # fmt: skip
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
    if run.status == SUCCESS and command == "build":
        try:
            _after_build(mesh, domain, outcome.consumed, target, publish, run)
        except MeshError as exc:
            run.status = FAILED
            run.problems.append(str(exc))
        except OSError as exc:  # the exchange or the domain's folder refused a write (full, read-only, ...)
            run.status = FAILED
            run.problems.append(describe_os_error(exc))
    if command == "build":
        _record_storage(mesh, domain, target)
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
    _name, profile = _target_name(mesh, domain, target)
    if profile is None:
        return
    name = engines.console_log(profile.adapter)
    if name is None:
        return
    domain.target_dir.mkdir(parents=True, exist_ok=True)
    log = open_nofollow(domain.target_dir / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
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


_PROFILES: dict[tuple[str, str | None, str | None], tuple[str, ProfileInfo | None]] = {}


def _state_comparison_refused(message: str | None) -> bool:
    return bool(message) and "comparing to previous project state" in str(message)


def _target_name(mesh: Mesh, domain: Domain, target: str | None) -> tuple[str, ProfileInfo | None]:
    """The target dbt builds (its name keys the build state) and its profile, read once per run of a domain."""
    from mesh_tools.dbt import profiles

    key = (str(domain.path), target, str(mesh.profiles_dir) if mesh.profiles_dir else None)
    if key not in _PROFILES:
        try:
            profile = profiles.load_profile(domain.path, target, mesh.profiles_dir)
            _PROFILES[key] = (profile.target, profile)
        except MeshError:
            _PROFILES[key] = (target or "default", None)
    return _PROFILES[key]


def _plan_build(
    mesh: Mesh, domain: Domain, target: str | None, publish: bool, full: bool, verbose: bool, run: DomainRun
) -> BuildPlan:
    """What this build of the domain runs (workflows/build_state.py), measuring what it must first."""
    from mesh_tools.dbt import runner as dbt_runner
    from mesh_tools.dbt.staleness import code_fingerprint

    name, profile = _target_name(mesh, domain, target)
    code = code_fingerprint(domain)
    state: BuildState | str = "--full was given" if full else load_state(domain, name)
    own = code_fingerprint(domain, stubs=False)
    names, computed = env_names(domain)
    observed = Observed(
        target=target_identity(profile) if profile is not None else None,
        env=env_digests(names),
        env_computed=computed,
        project_env=project_env_names(domain),
        footprint=run_footprint(domain, singular_tests(state.manifest if isinstance(state, BuildState) else None)),
    )
    # the storage as the last build left it or not, before anything of this build (freshness runs the
    # project's on-run-start hooks) writes into it
    fingerprint = storage_fingerprint(profile.files, profile.remote, profile.identity) if profile else None
    engine = engines.find_engine(profile.adapter) if profile is not None else None
    if profile is not None and engine is not None:
        for problem in engine.profile_problems(str(profile.schema or domain.name), domain.upstream_names,
                                               profile.stored, profile.profiles_file, profile.target):  # fmt: skip
            if not problem.publish_only:
                raise ConfigError(f"{display_path(profile.profiles_file)}: target {profile.target} of {domain.name} "
                                  f"{problem.message}. {problem.fix}")  # fmt: skip
    if profile is not None and engine is not None and engine.loads_landing:  # before freshness: it measures them
        _load_landing(mesh, domain, target, name, profile, state, own, verbose, run)
    fresh = None
    if mesh.health.source_freshness and has_freshness_checks(domain) and _freshness_wanted(domain, state, own):
        fresh = _measure_freshness(mesh, domain, target, name, verbose, run)
    missing: set[str] = set()
    unreleased: set[str] = set()
    metadata: dict[str, str] = {}
    if isinstance(state, BuildState):
        state = (
            _ran_outside(domain, state)
            or _unreadable_artifacts(domain)
            or why_full(state, project_digest(domain), observed)
            or state
        )
    if isinstance(state, BuildState) and fingerprint is not None and profile is not None:
        if engine is not None and engine.catalog_per_file:
            observed.watched = {str(profile.database or "").lower(), *_attachment_aliases(domain, profile).values()}
        if state.storage and {e[0] for e in fingerprint} != {e[0] for e in state.storage}:
            state = "its storage is not the one its last build wrote (the profile points elsewhere)"
        elif state.storage and fingerprint != state.storage:
            state = _storage_changed(mesh, domain, profile, state, fingerprint, observed, target) or state
    if isinstance(state, BuildState):
        looked_up = fingerprint is None or fingerprint != state.storage or fingerprint[0][1:] == ["warehouse"]
        relations = relations_to_check(state.manifest) if looked_up else []
        candidates = _stored_source_candidates(state, observed)
        if relations or candidates:
            try:
                found = dbt_runner.run_macro(
                    domain.path, "relation_kinds", {"relations": relations + candidates}, target=target,
                    profiles_dir=mesh.profiles_dir, verbose=verbose,
                )  # fmt: skip
                kinds = {str(uid): kind for uid, kind in found}
                missing = {str(r[3]) for r in relations if kinds.get(str(r[3])) is None}
                observed.kinds.update({str(c[3]): str(kinds.get(str(c[3]))) for c in candidates})
            except (MeshError, TypeError, ValueError) as exc:
                state = f"its relations could not be checked ({_first_lines(str(exc), 1)})"
    if isinstance(state, BuildState) and publish:
        unreleased = _unreleased(mesh, domain, state)
    if isinstance(state, BuildState):
        recorded = state.file.env if state.file is not None else {}
        env_changed = any(recorded.get(n, v) != v for n, v in observed.env.items())
        informs = any(state.manifest.own_sources()) or any(state.manifest.products(domain.name))
        if (own != state.own or env_changed) and informs:  # locations and metadata as they are now
            observed.current = _parse_now(mesh, domain, target, name, verbose)
            if observed.current is not None and any(state.manifest.products(domain.name)):
                metadata = changed_metadata(state.manifest, observed.current, domain.name)
        counted = [s for s in (observed.current or state.manifest).own_sources() if change_detection(s) == "row_count"]
        if counted:
            observed.counts = _count_rows(mesh, domain, target, verbose, counted, run)
    plan = plan_build(domain, state, code, fresh, missing, unreleased, project_digest(domain), metadata, observed)
    plan.own = own
    run.full_reason = plan.why_full or None
    run.unseen = list(plan.unseen)
    return plan


def _stored_source_candidates(state: BuildState, observed: Observed) -> list[list[str | None]]:
    """[database, schema, identifier, id] of the sources that may live in a database file the mesh fingerprints
    (no landing file, no declared change detection) and whose kind is not known yet, or whose file changed: a
    table there changes only with its file, a view changes with whatever it reads (workflows/build_state.py)."""
    recorded = state.file.source_kinds if state.file is not None else {}
    observed.kinds.update({u: k for u, k in recorded.items()})
    found: list[list[str | None]] = []
    for source in state.manifest.own_sources():
        database = str(source.get("database") or "").lower()
        if landing_location(source) or change_detection(source) or not database or database not in observed.watched:
            continue
        if source.unique_id in recorded and database not in observed.databases:
            continue
        identifier = source.get("identifier") or source.name
        found.append([source.get("database"), source.get("schema"), identifier, source.unique_id])
    return found


def _unreadable_artifacts(domain: Domain) -> str | None:
    """Why the domain must be built in full when its own manifest cannot be read (truncated, damaged):
    only a build writes it whole again, and its consumers and the publish gate read it."""
    try:
        Manifest.load(domain.manifest_path, domain.name)
    except MeshError:
        return f"its {domain.manifest_path.name} is missing or cannot be read: a build writes it again"
    return None


def _storage_changed(
    mesh: Mesh,
    domain: Domain,
    profile: ProfileInfo,
    state: BuildState,
    now: list[Any],
    observed: Observed,
    target: str | None,
) -> str | None:
    """Why the domain is built in full when its storage changed since the mesh's last build of this target,
    or None. Only the mesh's builds of this target write its own database file: a change there is someone
    else's write (a hand-run dbt, another target, a restored copy). A changed attached file is a source
    database: the sources that live in it run (``observed.databases``). A file other domains build into
    too changes with their builds: then every relation is looked up instead, as before."""
    if now[0][1:] == ["warehouse"] or not profile.files:
        return None
    before = {str(e[0]): e for e in state.storage or []}
    changed = {str(e[0]) for e in now if before.get(str(e[0])) != e}
    main = str(profile.files[0])
    if {main, main + ".wal"} & changed:
        if engines.engine_for(profile.adapter).shared_storage or storage_shared(mesh, domain, profile.files, target):
            observed.watched.discard(str(profile.database or "").lower())  # other domains' builds change it
            return None
        return (
            "its storage changed since the mesh's last build of this target (written outside the mesh: a hand-run "
            "dbt, another target, a restored or copied file)"
        )
    aliases = _attachment_aliases(domain, profile)
    for path in changed:
        alias = aliases.get(path.removesuffix(".wal"))
        if alias is None:
            return f"a database file it opens changed ({display_path(Path(path))})"
        observed.databases.add(alias)
    return None


def _attachment_aliases(domain: Domain, profile: ProfileInfo) -> dict[str, str]:
    """Each local attached database file -> the catalog name its relations carry (its alias, else its stem)."""
    out = {}
    for entry in profile.attached:
        alias, _, where = entry.partition(" = ")
        where = where.removesuffix(" (read-only)")
        path = Path(where.removeprefix("file:")).expanduser()
        path = (path if path.is_absolute() else domain.path / path).resolve()
        out[str(path)] = alias.strip().lower()
    return out


def _count_rows(
    mesh: Mesh, domain: Domain, target: str | None, verbose: bool, sources: list[Any], run: DomainRun
) -> dict[str, int]:
    """Row counts of the sources that declare ``meta.change_detection: row_count`` (their relation, through dbt)."""
    from mesh_tools.dbt import runner as dbt_runner

    statements = [f"select count(*) from {s.get('relation_name')}" for s in sources if s.get("relation_name")]
    try:
        rows = dbt_runner.run_statements(domain.path, statements, target=target, profiles_dir=mesh.profiles_dir,
                                         verbose=verbose)  # fmt: skip
    except MeshError as exc:
        run.warnings.append(f"row counts of its sources could not be taken ({_first_lines(str(exc), 1)}): they run")
        return {}
    counted = [s for s in sources if s.get("relation_name")]
    return {s.unique_id: int(r[0][0]) for s, r in zip(counted, rows, strict=False) if r and r[0] and r[0][0]}


def _load_landing(
    mesh: Mesh, domain: Domain, target: str | None, name: str, profile: ProfileInfo, state: BuildState | str,
    own: str, verbose: bool, run: DomainRun,
) -> None:  # fmt: skip
    """On a warehouse that cannot read files (PostgreSQL), load the sources' landing files into their tables.

    The sources come from the last build's manifest while the domain's own code is unchanged, else
    from a `dbt parse` into the state folder. A source without local landing files is left alone.
    """
    from mesh_tools.dbt import runner as dbt_runner

    manifest = state.manifest if isinstance(state, BuildState) and state.own == own else None
    if manifest is None:
        scratch = state_dir(domain, name) / "parse"
        parsed = dbt_runner.invoke(domain.path, ["parse", "--target-path", str(scratch)], target=target,
                                   verbose=verbose, profiles_dir=mesh.profiles_dir)  # fmt: skip
        if not parsed.success:
            return  # the build reports the parse error itself
        manifest = Manifest.read(scratch / "manifest.json", domain.name, missing_ok=True)
        if manifest is None:
            return
    sources = []
    for source in manifest.own_sources():
        location = landing_location(source)
        files = landing_files(domain, location)
        if not files or not all(f.is_file() and f.suffix == ".parquet" for f in files):
            continue
        schema, table = str(source.get("schema") or ""), str(source.get("identifier") or source.name)
        sources.append((schema, table, files, landing_fingerprint(domain, location) or ""))
    loaded = engines.engine_for(profile.adapter).load_landing(profile, sources)
    if loaded:
        run.notes.append(f"loaded its landing files into {', '.join(loaded)}")


# dbt commands that write relations: one of them run by hand leaves tables the mesh did not build
_WRITING = {"build", "run", "seed", "snapshot", "run-operation", "retry"}


def _ran_outside(domain: Domain, state: BuildState) -> str | None:
    """Why the domain must be built in full when dbt wrote its relations outside the mesh since its last
    build (`dbt build -s x` by hand, maybe from code since undone): its tables may come from other code."""
    if state.invocation is None:
        return None
    try:
        results = RunResults.read(domain.run_results_path, missing_ok=True)
    except MeshError:
        return "its run_results.json cannot be read: what last ran in it is unknown"
    if results is None or results.invocation_id == state.invocation or results.command not in _WRITING:
        return None
    return (
        f"`dbt {results.command}` ran in it outside the mesh since its last build (its tables may come from other code)"
    )


def _freshness_wanted(domain: Domain, state: BuildState | str, own: str) -> bool:
    """Source freshness is measured unless every measured source's landing files show it unchanged
    (and the domain's own code, where sources are declared, is as it was)."""
    if isinstance(state, str) or own != state.own:
        return True
    for source in freshness_sources(state.manifest):
        fingerprint = landing_fingerprint(domain, source)
        if fingerprint is None or fingerprint != state.landing.get(source.unique_id):
            return True
    return False


def _measure_freshness(
    mesh: Mesh, domain: Domain, target: str | None, name: str, verbose: bool, run: DomainRun
) -> FreshnessResults | None:
    """`dbt source freshness` into the state folder (the build's artifacts stay whole), then beside them."""
    from mesh_tools.core.files import write_atomic
    from mesh_tools.dbt import runner as dbt_runner

    scratch = state_dir(domain, name) / "freshness"
    fresh = dbt_runner.invoke(domain.path, ["source", "freshness", "--target-path", str(scratch)], target=target,
                              verbose=verbose, profiles_dir=mesh.profiles_dir)  # fmt: skip
    if fresh.exception:
        run.warnings.append(f"dbt source freshness could not run: {_first_lines(fresh.exception, 2)}")
        return None
    try:
        found = FreshnessResults.read(scratch / "sources.json", missing_ok=True)
        if found is not None:
            write_atomic(domain.sources_path, (scratch / "sources.json").read_text(encoding="utf-8"))
        return found
    except (MeshError, OSError) as exc:
        run.warnings.append(f"source freshness results unreadable: {exc}")
        return None


def _parse_now(mesh: Mesh, domain: Domain, target: str | None, name: str, verbose: bool) -> Manifest | None:
    """The project as dbt reads it now (`dbt parse` into the state folder; its artifacts stay whole), or None
    when it does not parse (the build reports that itself)."""
    from mesh_tools.dbt import runner as dbt_runner

    scratch = state_dir(domain, name) / "parse"
    # dbt's partial parsing skips a YAML file whose modification time it saw before: an edit restored with its
    # old time (cp -p, rsync -a) would be missed, so this parse reads every file
    parsed = dbt_runner.invoke(domain.path, ["parse", "--no-partial-parse", "--target-path", str(scratch)],
                               target=target, verbose=verbose, profiles_dir=mesh.profiles_dir)  # fmt: skip
    try:
        return Manifest.read(scratch / "manifest.json", domain.name, missing_ok=True) if parsed.success else None
    except MeshError:
        return None


def _unreleased(mesh: Mesh, domain: Domain, state: BuildState) -> set[str]:
    """Products whose current release is not from the build that last built them (or that have none)."""
    from mesh_tools.store.exchange import open_exchange

    exchange = open_exchange(mesh)
    out = set()
    for product in state.manifest.products(domain.name):
        try:
            current = exchange.current(domain.name, product.name, product.version, verify=False)
        except (MeshError, OSError):
            current = None
        built = state.built.get(product.unique_id)
        if current is None or built is None or current.descriptor.build.invocation_id != built:
            out.add(product.unique_id)
    return out


def _remember(mesh: Mesh, domain: Domain, target: str | None, plan: BuildPlan, consumed: dict[str, str],
              run: DomainRun, hooks: list[str], later: tuple[str, ...] = ()) -> None:  # fmt: skip
    """After dbt wrote this build's results: the state the next build compares with, and why nodes ran.

    ``hooks``: the statements its on-run-start hooks ran in this build; ``later``: nodes a later stage builds
    (owed: this stage left them out, whatever its plan chose)."""
    if run.invocation_id is None:
        return  # dbt stopped before running anything: the next build decides again from the same state
    try:
        results = RunResults.read(domain.run_results_path)
        manifest = Manifest.load(domain.manifest_path, domain.name)
    except MeshError as exc:
        run.warnings.append(f"build state not recorded: {exc}")
        return
    if results is None or results.invocation_id != manifest.invocation_id:
        return
    for source in manifest.own_sources():
        plan.landing.setdefault(source.unique_id, landing_fingerprint(domain, source))
    name, _profile = _target_name(mesh, domain, target)
    products = [p.unique_id for p in manifest.products(domain.name)]
    known = set(manifest.nodes) | set(manifest.unit_tests) | set(manifest.sources)
    try:
        record_state(domain, name, plan, domain.manifest_path, results, products, known,
                     seed_digests(domain, manifest), _inputs(domain, plan, manifest, hooks), owe=later)  # fmt: skip
    except OSError as exc:
        run.warnings.append(f"build state not recorded: {describe_os_error(exc)}")
        return
    _record_storage(mesh, domain, target)  # as this build left it: the publish gate compares with it
    _record_quiet(mesh, domain, target, consumed, manifest, plan)
    run.models_total = sum(1 for _ in manifest.own("model"))
    run.decisions = explain(plan, domain.name, manifest, results)


def _inputs(domain: Domain, plan: BuildPlan, manifest: Manifest, hooks: list[str]) -> dict[str, Any]:
    """What this build observed beyond code and sources, for the next one (build_state.StateFile's fields)."""
    recorded = plan.state.file if plan.state is not None else None
    previous_reads = {u: r.model_dump() for u, r in recorded.reads.items()} if recorded is not None else {}
    reads = node_reads(domain, manifest, previous_reads)
    prints = fingerprint_reads(domain, reads)
    for uid, digest in plan.read_prints.items():  # taken before the build: a change while it ran is seen next time
        if uid in prints and (previous_reads.get(uid) or {}).get("files") == reads[uid].get("files"):
            prints[uid] = digest
    counts = dict(recorded.counts) if recorded is not None else {}
    counts.update(plan.observed.counts)
    return {
        "target": plan.observed.target,
        "env": plan.observed.env,
        "env_computed": plan.observed.env_computed,
        "hooks": hook_writes(hooks, manifest, sql_dialect(manifest.adapter)),
        "reads": reads,
        "read_prints": prints,
        "footprint": run_footprint(domain, singular_tests(manifest)),
        "footprint_skip": singular_tests(manifest),
        "counts": counts,
        "source_kinds": {u: k for u, k in plan.observed.kinds.items() if k},
        "unseen": plan.unseen,
    }


def _stored(manifest: Manifest, plan: BuildPlan) -> set[str]:
    """The sources that are tables in a database file the storage fingerprint observes: unchanged file, same rows."""
    observed = plan.observed
    return {
        s.unique_id for s in manifest.own_sources()
        if observed.kinds.get(s.unique_id) == "table" and str(s.get("database") or "").lower() in observed.watched
    }  # fmt: skip


def _record_quiet(
    mesh: Mesh, domain: Domain, target: str | None, consumed: dict[str, str], manifest: Manifest, plan: BuildPlan
) -> None:
    """What lets the next build skip the domain without dbt, when none of it changes (build_state.quiescent)."""
    from mesh_tools.dbt.profiles import profiles_dir_for

    name, _profile = _target_name(mesh, domain, target)
    try:
        path = profiles_dir_for(domain.path, mesh.profiles_dir) / "profiles.yml"
        profiles_sha = file_sha256(path) if path.is_file() else None
        record_quiet(
            domain,
            name,
            target is not None,
            quiet_facts(mesh, domain, consumed, manifest, plan.observed.watched),
            profiles_sha,
        )
    except OSError:
        pass  # the next build decides through its worker


def _storage_now(mesh: Mesh, domain: Domain, target: str | None) -> list[Any] | None:
    """The domain's storage fingerprint now (build_state.storage_fingerprint), or None when it has none."""
    _name, profile = _target_name(mesh, domain, target)
    return storage_fingerprint(profile.files, profile.remote, profile.identity) if profile is not None else None


def _own_write(mesh: Mesh, domain: Domain, target: str | None, before: list[Any]) -> None:
    """The mesh itself changed the domain's storage (revocation dropped stub views): when the storage was as its
    last build left it just before, record it as it is now, so the next plan does not take the mesh's own
    write for someone else's (a change by anyone else before it still shows)."""
    name, _profile = _target_name(mesh, domain, target)
    recorded = load_state(domain, name)
    if isinstance(recorded, BuildState) and recorded.storage == before:
        _record_storage(mesh, domain, target)


def _record_storage(mesh: Mesh, domain: Domain, target: str | None) -> None:
    name, profile = _target_name(mesh, domain, target)
    if profile is None:
        return
    try:
        record_storage(domain, name, storage_fingerprint(profile.files, profile.remote, profile.identity))
    except OSError:
        pass  # the next build checks the relations through dbt


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
    own = f".{domain.name}."
    for result in results:
        kind = result.unique_id.split(".", 1)[0]
        if kind in ("model", "seed", "snapshot") and own not in result.unique_id:
            run.upstream_views += 1
            if result.status == "error":
                denied = engines.explain_error(result.message or "", domain.name, target)
                problem = denied or f"upstream view {result.unique_id}: {_first_lines(result.message)}"
                if problem not in run.problems:
                    run.problems.append(problem)
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
    run.ended_at = datetime.now(UTC).isoformat()
    return run
