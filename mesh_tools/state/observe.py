"""Observing a domain before its state-aware build is planned, through dbt where Python cannot see.

In the domain's worker process (its folder the working directory): the target and its storage, whether
dbt ran outside the mesh, the relations the last build left, source freshness, row counts, a parse of the
code as it is now; then ``plan_domain_build`` hands what it observed to ``state.plan.plan_build``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mesh_tools.core.errors import ConfigError, MeshError, display_path
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.dbt import engines
from mesh_tools.model.freshness import FreshnessResults
from mesh_tools.model.manifest import Manifest, RunResults
from mesh_tools.state.file import BuildState, load_state, state_dir
from mesh_tools.state.inputs import (
    change_detection,
    env_digests,
    env_names,
    freshness_sources,
    landing_files,
    landing_fingerprint,
    landing_location,
    project_digest,
    project_env_names,
    run_footprint,
    singular_tests,
    storage_fingerprint,
    storage_shared,
    target_identity,
)
from mesh_tools.state.plan import BuildPlan, Observed, changed_metadata, plan_build, relations_to_check, why_full

if TYPE_CHECKING:
    from mesh_tools.dbt.profiles import ProfileInfo


class BuildReport(Protocol):
    """What a state-aware build says about itself as it goes (a domain's run, workflows/domain_run.DomainRun)."""

    notes: list[str]
    warnings: list[str]
    full_reason: str | None
    unseen: list[str]
    invocation_id: str | None
    models_total: int
    decisions: list[tuple[str, str]]


def first_lines(message: str | None, limit: int = 6) -> str:
    lines = [line.rstrip() for line in (message or "").strip().splitlines() if line.strip()]
    return "\n    ".join(lines[:limit])


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


def forget_profiles() -> None:
    """Read the profiles again from now on (a worker starts a new run of a domain)."""
    _PROFILES.clear()


def target_name(mesh: Mesh, domain: Domain, target: str | None) -> tuple[str, ProfileInfo | None]:
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


def plan_domain_build(
    mesh: Mesh, domain: Domain, target: str | None, publish: bool, full: bool, verbose: bool, run: BuildReport
) -> BuildPlan:
    """What this build of the domain runs (state/plan.py), measuring what it must first."""
    from mesh_tools.dbt.staleness import code_fingerprint

    name, profile = target_name(mesh, domain, target)
    code = code_fingerprint(domain)
    state: BuildState | str = "--no-state was given" if full else load_state(domain, name)
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
    engine = engines.find_engine(profile.adapter, profile.connection) if profile is not None else None
    if profile is not None and engine is not None:  # before freshness: it measures the loaded rows
        _refuse_profile_problems(domain, profile, engine)
        if engine.loads_landing:
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
        state = _compare_storage(mesh, domain, target, profile, engine, state, fingerprint, observed)
    if isinstance(state, BuildState):
        looked_up = fingerprint is None or fingerprint != state.storage or fingerprint[0][1:] == ["warehouse"]
        state, missing = _look_up_relations(mesh, domain, target, verbose, state, observed, looked_up)
    if isinstance(state, BuildState) and publish:
        unreleased = _unreleased(mesh, domain, state)
    if isinstance(state, BuildState):
        metadata = _observe_now(mesh, domain, target, name, verbose, state, observed, own, run)
    plan = plan_build(domain, state, code, fresh, missing, unreleased, project_digest(domain), metadata, observed)
    plan.own = own
    run.full_reason = plan.why_full or None
    run.unseen = list(plan.unseen)
    return plan


def _refuse_profile_problems(domain: Domain, profile: ProfileInfo, engine: engines.Engine) -> None:
    """What in the domain's profile stops a build on its engine (what only stops publishing is doctor's)."""
    for problem in engine.profile_problems(str(profile.schema or domain.name), domain.upstream_names,
                                           profile.stored, profile.profiles_file, profile.target,
                                           domain=domain.name):  # fmt: skip
        if not problem.publish_only:
            raise ConfigError(f"{display_path(profile.profiles_file)}: target {profile.target} of {domain.name} "
                              f"{problem.message}. {problem.fix}")  # fmt: skip


def _compare_storage(
    mesh: Mesh, domain: Domain, target: str | None, profile: ProfileInfo, engine: engines.Engine | None,
    state: BuildState, fingerprint: list[Any], observed: Observed,
) -> BuildState | str:  # fmt: skip
    """The storage now against what the last build left: another storage, or a write since, decides."""
    if engine is not None and engine.catalog_per_file:
        observed.watched = {str(profile.database or "").lower(), *_attachment_aliases(domain, profile).values()}
    if state.storage and {e[0] for e in fingerprint} != {e[0] for e in state.storage}:
        return "its storage is not the one its last build wrote (the profile points elsewhere)"
    if state.storage and fingerprint != state.storage:
        return _storage_changed(mesh, domain, profile, state, fingerprint, observed, target) or state
    return state


def _look_up_relations(
    mesh: Mesh, domain: Domain, target: str | None, verbose: bool, state: BuildState, observed: Observed,
    looked_up: bool,
) -> tuple[BuildState | str, set[str]]:  # fmt: skip
    """The relations the last build left that are gone (asked of the database, through dbt), and the kinds of
    the sources that may live in a fingerprinted file; a database that cannot answer means a full build."""
    from mesh_tools.dbt import runner as dbt_runner

    relations = relations_to_check(state.manifest) if looked_up else []
    candidates = _stored_source_candidates(state, observed)
    if not relations and not candidates:
        return state, set()
    try:
        found = dbt_runner.run_macro(
            domain.path, "relation_kinds", {"relations": relations + candidates}, target=target,
            profiles_dir=mesh.profiles_dir, verbose=verbose,
        )  # fmt: skip
        kinds = {str(uid): kind for uid, kind in found}
    except (MeshError, TypeError, ValueError) as exc:
        return f"its relations could not be checked ({first_lines(str(exc), 1)})", set()
    observed.kinds.update({str(c[3]): str(kinds.get(str(c[3]))) for c in candidates})
    return state, {str(r[3]) for r in relations if kinds.get(str(r[3])) is None}


def _observe_now(
    mesh: Mesh, domain: Domain, target: str | None, name: str, verbose: bool, state: BuildState,
    observed: Observed, own: str, run: BuildReport,
) -> dict[str, str]:  # fmt: skip
    """The project as it is now where its own code or environment changed (a parse: locations and metadata),
    and the row counts of sources whose change is detected by counting; the products' changed metadata."""
    metadata: dict[str, str] = {}
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
    return metadata


def _stored_source_candidates(state: BuildState, observed: Observed) -> list[list[str | None]]:
    """[database, schema, identifier, id] of the sources that may live in a database file the mesh fingerprints
    (no landing file, no declared change detection) and whose kind is not known yet, or whose file changed: a
    table there changes only with its file, a view changes with whatever it reads (state/plan.py)."""
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
    mesh: Mesh, domain: Domain, target: str | None, verbose: bool, sources: list[Any], run: BuildReport
) -> dict[str, int]:
    """Row counts of the sources that declare ``meta.change_detection: row_count`` (their relation, through dbt)."""
    from mesh_tools.dbt import runner as dbt_runner

    statements = [f"select count(*) from {s.get('relation_name')}" for s in sources if s.get("relation_name")]
    try:
        rows = dbt_runner.run_statements(domain.path, statements, target=target, profiles_dir=mesh.profiles_dir,
                                         verbose=verbose)  # fmt: skip
    except MeshError as exc:
        run.warnings.append(f"row counts of its sources could not be taken ({first_lines(str(exc), 1)}): they run")
        return {}
    counted = [s for s in sources if s.get("relation_name")]
    return {s.unique_id: int(r[0][0]) for s, r in zip(counted, rows, strict=False) if r and r[0] and r[0][0]}


def _load_landing(
    mesh: Mesh, domain: Domain, target: str | None, name: str, profile: ProfileInfo, state: BuildState | str,
    own: str, verbose: bool, run: BuildReport,
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
    mesh: Mesh, domain: Domain, target: str | None, name: str, verbose: bool, run: BuildReport
) -> FreshnessResults | None:
    """`dbt source freshness` into the state folder (the build's artifacts stay whole), then beside them."""
    from mesh_tools.core.files import write_atomic
    from mesh_tools.dbt import runner as dbt_runner

    scratch = state_dir(domain, name) / "freshness"
    (scratch / "sources.json").unlink(missing_ok=True)  # never an earlier measurement's
    # --no-write-json: dbt would write the whole manifest twice (after its parse and after the run) into this
    # scratch folder, which nothing reads: most of the invocation's time. Its results are written here instead.
    fresh = dbt_runner.invoke(domain.path, ["source", "freshness", "--target-path", str(scratch), "--no-write-json"],
                              target=target, verbose=verbose, profiles_dir=mesh.profiles_dir)  # fmt: skip
    if fresh.exception:
        run.warnings.append(f"dbt source freshness could not run: {first_lines(fresh.exception, 2)}")
        return None
    try:
        if callable(getattr(fresh.result, "write", None)):  # what dbt writes as sources.json, from the same object
            scratch.mkdir(parents=True, exist_ok=True)
            fresh.result.write(str(scratch / "sources.json"))
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
        if current is None or not exchange.vouches(current.descriptor, built):  # made or confirmed by it
            out.add(product.unique_id)
    return out
