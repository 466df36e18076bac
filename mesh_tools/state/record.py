"""After a build: the state the next build of the domain compares with (written through state/file.py), and why
nodes ran."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import MeshError, describe_os_error
from mesh_tools.core.files import copy_into, create_partial, file_sha256
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.model.manifest import Manifest, RunResults
from mesh_tools.state.explain import explain
from mesh_tools.state.file import STATE_VERSION, BuildState, StateFile, load_state, state_dir, update_state, write_state
from mesh_tools.state.inputs import (
    fingerprint_reads,
    hook_writes,
    landing_fingerprint,
    node_reads,
    run_footprint,
    seed_digests,
    singular_tests,
    sql_dialect,
    storage_fingerprint,
)
from mesh_tools.state.observe import BuildReport, target_name
from mesh_tools.state.plan import BuildPlan
from mesh_tools.state.quiescence import quiet_facts, record_quiet

_GOOD = {"success", "pass", "warn"}


def record_state(
    domain: Domain,
    target: str,
    plan: BuildPlan,
    manifest_path: Path,
    results: RunResults,
    products: Iterable[str] = (),
    known: set[str] | None = None,
    seeds: dict[str, str | None] | None = None,
    inputs: dict[str, Any] | None = None,
    owe: Iterable[str] = (),
) -> None:
    """Write the state the next build compares with, after a dbt build wrote ``results`` (or ran nothing).

    Nodes that did not succeed stay owed; the code and landing fingerprints are those taken before
    the build, so a change made while it ran is seen by the next one. ``inputs``: what
    state/inputs.py observed (StateFile's fields: env, target, reads, hooks, footprint ...).
    """
    folder = state_dir(domain, target)
    previous = plan.state
    owed = set(previous.owed) if previous is not None and not plan.full else set()
    built = dict(previous.built) if previous is not None else {}
    for uid in products:
        if results.status_of(uid) == "success" and results.invocation_id:
            built[uid] = results.invocation_id
    for result in results.results:
        if result.status in _GOOD:
            owed.discard(result.unique_id)
        else:
            owed.add(result.unique_id)
    owed |= set(owe)  # a stage of a staged build left them to a later stage (workflows/stages.py)
    if known is not None:  # a node gone from the project is owed nothing
        owed &= known
    loaded_at = dict(previous.loaded_at) if previous is not None else {}
    for measured in plan.fresh.results if plan.fresh is not None else ():
        if measured.max_loaded_at:
            loaded_at[measured.unique_id] = measured.max_loaded_at
    landing = dict(previous.landing) if previous is not None else {}
    landing.update(plan.landing)
    # validated before anything is written: what is written is what the next build accepts
    state = StateFile.model_validate({
        "version": STATE_VERSION,
        "code": plan.code,
        "landing": landing,
        "owed": sorted(owed),
        "loaded_at": loaded_at,
        "built": built,
        "project": plan.project,
        "own": plan.own,
        "invocation": results.invocation_id,
        "seeds": seeds or {},
        "storage": previous.storage if previous is not None else None,
        **(inputs or {}),
    })  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    scratch, fd = create_partial(folder / "manifest.json")  # a new file: never through a planted link
    try:
        copy_into(fd, manifest_path)
        os.replace(scratch, folder / "manifest.json")
    finally:
        scratch.unlink(missing_ok=True)
    write_state(domain, target, state)


def record_storage(domain: Domain, target: str, fingerprint: list[Any] | None) -> None:
    """The storage files as the domain's run left them: unchanged next time means no relation was dropped."""
    update_state(domain, target, storage=fingerprint)


# -- in the domain's worker, after its dbt command


def remember_build(mesh: Mesh, domain: Domain, target: str | None, plan: BuildPlan, consumed: dict[str, str],
              run: BuildReport, hooks: list[str], later: tuple[str, ...] = ()) -> None:  # fmt: skip
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
    name, _profile = target_name(mesh, domain, target)
    products = [p.unique_id for p in manifest.products(domain.name)]
    known = set(manifest.nodes) | set(manifest.unit_tests) | set(manifest.sources)
    try:
        record_state(domain, name, plan, domain.manifest_path, results, products, known,
                     seed_digests(domain, manifest), _inputs(domain, plan, manifest, hooks), owe=later)  # fmt: skip
    except OSError as exc:
        run.warnings.append(f"build state not recorded: {describe_os_error(exc)}")
        return
    record_storage_now(mesh, domain, target)  # as this build left it: the publish gate compares with it
    record_quiet_facts(mesh, domain, target, consumed, manifest, plan)
    run.models_total = sum(1 for _ in manifest.own("model"))
    run.decisions = explain(plan, domain.name, manifest, results)


def _inputs(domain: Domain, plan: BuildPlan, manifest: Manifest, hooks: list[str]) -> dict[str, Any]:
    """What this build observed beyond code and sources, for the next one (state/file.StateFile's fields)."""
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


def record_quiet_facts(
    mesh: Mesh, domain: Domain, target: str | None, consumed: dict[str, str], manifest: Manifest, plan: BuildPlan
) -> None:
    """What lets the next build skip the domain without dbt, when none of it changes (state/quiescence.py)."""
    from mesh_tools.dbt.profiles import profiles_dir_for

    name, _profile = target_name(mesh, domain, target)
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


def storage_now(mesh: Mesh, domain: Domain, target: str | None) -> list[Any] | None:
    """The domain's storage fingerprint now (state/inputs.storage_fingerprint), or None when it has none."""
    _name, profile = target_name(mesh, domain, target)
    return storage_fingerprint(profile.files, profile.remote, profile.identity) if profile is not None else None


def own_write(mesh: Mesh, domain: Domain, target: str | None, before: list[Any]) -> None:
    """The mesh itself changed the domain's storage (revocation dropped stub views): when the storage was as its
    last build left it just before, record it as it is now, so the next plan does not take the mesh's own
    write for someone else's (a change by anyone else before it still shows)."""
    name, _profile = target_name(mesh, domain, target)
    recorded = load_state(domain, name)
    if isinstance(recorded, BuildState) and recorded.storage == before:
        record_storage_now(mesh, domain, target)


def record_storage_now(mesh: Mesh, domain: Domain, target: str | None) -> None:
    name, profile = target_name(mesh, domain, target)
    if profile is None:
        return
    try:
        record_storage(domain, name, storage_fingerprint(profile.files, profile.remote, profile.identity))
    except OSError:
        pass  # the next build checks the relations through dbt
