"""Quiescence: whether a domain can be skipped with no dbt at all, as an ordered tuple of small checks.

Each check looks at one thing the domain's last build depended on and returns why it may have changed
(a reason, as `--explain` shows it) or None. They run in the order of ``CHECKS``, cheapest and most
telling first, and the first reason wins (as sqlglot orders its optimizer passes). Python only: no
dbt, no profile rendering; anything a check cannot tell without dbt is a reason, and the domain goes to
its worker, whose state-aware plan decides again (state/plan.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Domain, Mesh, Upstream
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import local_name, split_product_key
from mesh_tools.state.file import (
    DefaultTarget,
    QuietFacts,
    StateFile,
    read_default_target,
    read_state,
    update_state,
    write_default_target,
)
from mesh_tools.state.inputs import (
    change_detection,
    env_digests,
    file_digest,
    file_stat,
    fingerprint_reads,
    footprint_changes,
    landing_fingerprint,
    landing_location,
    profile_env_digest,
    run_footprint,
    tree_stat,
)

if TYPE_CHECKING:
    from mesh_tools.store.exchange import Exchange


def _upstream_manifest(mesh: Mesh, upstream: Upstream, consumer: Domain) -> Path | None:
    """The manifest the domain's stitching read for ``upstream`` (its stat says whether it was parsed or built)."""
    if upstream.name in mesh.domains:
        return mesh.domains[upstream.name].manifest_path
    if upstream.remote:  # the interface stitching fetched from the object store, in this run's channel
        from mesh_tools.store.exchange import interface_channels, open_exchange

        exchange = open_exchange(mesh)
        for channel in interface_channels(consumer, upstream.name, exchange.env):
            path = exchange.interface_cache(upstream.name, channel)
            if path.is_file():
                return path
        return None
    return upstream.manifest_path


def profiles_file(mesh: Mesh, domain: Domain) -> Path:
    """The profiles.yml dbt reads for the domain."""
    from mesh_tools.dbt.profiles import profiles_dir_for

    return profiles_dir_for(domain.path, mesh.profiles_dir) / "profiles.yml"


def _profile_env(mesh: Mesh, domain: Domain) -> str:
    return profile_env_digest(profiles_file(mesh, domain))


def quiet_facts(
    mesh: Mesh, domain: Domain, consumed: dict[str, str], manifest: Manifest, stored: set[str] | None = None
) -> dict[str, Any]:
    """What must stay the same for the next build to skip this domain without dbt (see ``quiescent``).

    ``stored``: the sources that are tables in a database file the storage fingerprint observes."""
    return {
        "mesh_yml": file_digest(mesh.root / "mesh.yml"),
        "profiles": file_digest(profiles_file(mesh, domain)),
        "upstreams": {up.name: file_stat(_upstream_manifest(mesh, up, domain)) for up in domain.upstreams},
        "consumed": dict(consumed),
        "locations": {s.unique_id: landing_location(s) for s in manifest.own_sources()},
        "models": sum(1 for _ in manifest.own("model")),
        "products": [[p.unique_id, p.name, p.version] for p in manifest.products(domain.name)],
        "profile_env": _profile_env(mesh, domain),
        "detect": sorted(s.unique_id for s in manifest.own_sources() if change_detection(s) in ("always", "row_count")),
        # the artifacts as this build left them: replaced or damaged since, the worker looks again
        "artifacts": [file_stat(domain.manifest_path), file_stat(domain.run_results_path)],
        "stored": sorted(stored or ()),
    }


def record_quiet(domain: Domain, target: str, explicit: bool, facts: dict[str, Any], profiles_sha: str | None) -> None:
    """Add ``facts`` to the recorded state; remember which target a build without ``--target`` built."""
    quiet = QuietFacts.model_validate(facts)  # what is written is what the next build reads
    if not update_state(domain, target, quiet=quiet.model_dump()):
        return  # no usable state to add them to: the next build decides through its worker
    if not explicit:
        pointer = DefaultTarget(target=target, profiles=profiles_sha, profile_env=quiet.profile_env)
        write_default_target(domain, pointer)


# -- the checks


@dataclass
class Quiet:
    """What every check looks at: the domain, its recorded state, and the profile as it is now."""

    mesh: Mesh
    domain: Domain
    state: StateFile
    facts: QuietFacts
    publish: bool
    profiles_sha: str | None  # SHA-256 of the profiles.yml now
    profile_env: str  # digest of the variables it reads now
    _exchange: Exchange | None = field(default=None, repr=False)

    @property
    def exchange(self) -> Exchange:
        """The exchange, opened by the first check that asks (the earlier ones need none)."""
        if self._exchange is None:
            from mesh_tools.store.exchange import open_exchange

            self._exchange = open_exchange(self.mesh)
        return self._exchange

    @property
    def reads(self) -> dict[str, dict[str, Any]]:
        return {uid: r.model_dump() for uid, r in self.state.reads.items()}


Check = Callable[[Quiet], str | None]


def owed(q: Quiet) -> str | None:
    return "a node is owed a good run" if q.state.owed else None


def profiles_changed(q: Quiet) -> str | None:
    return "its profiles.yml changed" if q.facts.profiles != q.profiles_sha else None


def profile_env_changed(q: Quiet) -> str | None:
    return "an environment variable its profile reads changed" if q.facts.profile_env != q.profile_env else None


def mesh_yml_changed(q: Quiet) -> str | None:
    return "mesh.yml changed" if q.facts.mesh_yml != file_digest(q.mesh.root / "mesh.yml") else None


def env_name_computed(q: Quiet) -> str | None:
    return "its code reads an environment variable whose name is computed" if q.state.env_computed else None


def hooks_write(q: Quiet) -> str | None:
    return "its on-run-start hooks write what its models may read" if q.state.hooks else None


def opaque_reads(q: Quiet) -> str | None:
    """A model whose reads cannot be observed (a Python model, SQL built at run time) runs every time."""
    return next((f"{local_name(uid)}: {r.opaque}" for uid, r in sorted(q.state.reads.items()) if r.opaque), None)


def change_detection_declared(q: Quiet) -> str | None:
    return "a source declares meta.change_detection (dbt counts or runs it)" if q.facts.detect else None


def env_changed(q: Quiet) -> str | None:
    changed = next((n for n, v in env_digests(q.state.env).items() if q.state.env.get(n) != v), None)
    return f"environment variable {changed} changed" if changed else None


def artifacts_replaced(q: Quiet) -> str | None:
    now = [file_stat(q.domain.manifest_path), file_stat(q.domain.run_results_path)]
    return "its manifest.json or run_results.json changed since its last build" if q.facts.artifacts != now else None


def ran_outside(q: Quiet) -> str | None:
    if footprint_changes(q.state.footprint or {}, run_footprint(q.domain, q.state.footprint_skip)):
        return "dbt wrote its relations outside the mesh since its last build"
    return None


def read_files_changed(q: Quiet) -> str | None:
    return "a file its SQL reads changed" if fingerprint_reads(q.domain, q.reads) != q.state.read_prints else None


def upstreams_changed(q: Quiet) -> str | None:
    return "its upstreams changed" if set(q.facts.upstreams) != set(q.domain.upstream_names) else None


def upstream_rebuilt(q: Quiet) -> str | None:
    for up in q.domain.upstreams:
        if q.facts.upstreams.get(up.name) != file_stat(_upstream_manifest(q.mesh, up, q.domain)):
            return f"upstream {up.name} was parsed or built"
    return None


def release_changed(q: Quiet) -> str | None:
    from mesh_tools.store.exchange import wanted_release

    for key, release in q.facts.consumed.items():
        project, model, version = split_product_key(str(key))
        try:
            if wanted_release(q.exchange, q.domain, project, model, version) != release:
                return f"{key} has another current release"
        except (MeshError, OSError):
            return f"{key}: its current release cannot be read"
    return None


def source_changed(q: Quiet) -> str | None:
    stored = set(q.facts.stored)  # sources in a database file: the storage check sees them
    for uid, location in q.facts.locations.items():
        fingerprint = landing_fingerprint(q.domain, location)
        if fingerprint is None and uid in stored:
            continue
        if fingerprint is None and uid not in q.state.loaded_at:
            return f"source {uid} cannot be observed"
        if fingerprint is None or fingerprint != q.state.landing.get(uid):
            return f"source {uid} may have new data"
    return None


def packages_missing(q: Quiet) -> str | None:
    from mesh_tools.dbt.packages import needs_deps

    return "its packages are not installed" if needs_deps(q.domain) else None


def code_changed(q: Quiet) -> str | None:
    from mesh_tools.dbt.staleness import code_fingerprint

    return "its code changed" if code_fingerprint(q.domain) != q.state.code else None


def storage_changed(q: Quiet) -> str | None:
    storage = q.state.storage
    if not storage or any(len(e) == 2 and e[1] == "warehouse" for e in storage):
        return "its storage cannot be observed without dbt"
    for entry in storage:
        path = Path(str(entry[0]))
        now: list[Any] | None = [str(path), "tree", tree_stat(path)] if len(entry) == 3 and entry[1] == "tree" else None
        if now is None:
            stat = file_stat(path)
            now = [str(path), *stat] if stat is not None else [str(path), None]
        if now != list(entry):
            return "its storage changed"
    return None


def unpublished(q: Quiet) -> str | None:
    if not q.publish:
        return None
    for uid, name, version in q.facts.products:
        try:
            current = q.exchange.current(q.domain.name, str(name), version, verify=False)
        except (MeshError, OSError):
            current = None
        if current is None or not q.exchange.vouches(current.descriptor, q.state.built.get(str(uid))):
            return f"{name} is not published from its last build"
    return None


# In order: what the state file says alone, then the cheap observations (files' stats, digests of small
# files), then those that read the exchange, hash the code or walk the storage.
CHECKS: tuple[Check, ...] = (
    owed,
    profiles_changed,
    profile_env_changed,
    mesh_yml_changed,
    env_name_computed,
    hooks_write,
    opaque_reads,
    change_detection_declared,
    env_changed,
    artifacts_replaced,
    ran_outside,
    read_files_changed,
    upstreams_changed,
    upstream_rebuilt,
    release_changed,
    source_changed,
    packages_missing,
    code_changed,
    storage_changed,
    unpublished,
)


def first_reason(quiet: Quiet, checks: tuple[Check, ...] = CHECKS) -> str | None:
    """The first reason a check gives, in order, or None when every check passes."""
    for check in checks:
        why = check(quiet)
        if why:
            return why
    return None


def _default_target(domain: Domain, profiles_sha: str | None, profile_env: str) -> str | DefaultTarget:
    """The target a build without ``--target`` builds, as the last one recorded it, or why it cannot be told."""
    pointer = read_default_target(domain)
    if pointer is None:
        return "no recorded build"
    if pointer.profiles != profiles_sha:
        return "its profiles.yml changed"
    if pointer.profile_env != profile_env:
        return "an environment variable its profile reads changed (the target may be another)"
    return pointer


def quiescent(mesh: Mesh, domain: Domain, target: str | None, publish: bool) -> tuple[str | None, int, list[str]]:
    """Whether the domain can be skipped with no dbt at all: (None, its models) when nothing it depends on
    changed since its last build, else (the first thing that did, 0); then what its last build could not see
    change (for --explain)."""
    profiles_sha = file_digest(profiles_file(mesh, domain))
    profile_env = _profile_env(mesh, domain)
    if target is None:
        pointer = _default_target(domain, profiles_sha, profile_env)
        if isinstance(pointer, str):
            return pointer, 0, []
        target = pointer.target
    data = read_state(domain, target)
    if isinstance(data, str) or data.quiet is None:
        return "no usable recorded build", 0, []
    quiet = Quiet(mesh, domain, data, data.quiet, publish, profiles_sha, profile_env)
    why = first_reason(quiet)
    if why is not None:
        return why, 0, []
    return None, data.quiet.models, list(data.unseen)
