"""What a Dagster step does for one domain, through the library (never the `mesh` command): the domain's
state-aware `mesh build` and publish, under the same locks the commands take, then its lineage events and the
health history and docs site; and what Dagster is told of it afterwards (``DomainBuild``).

Nothing here imports Dagster: the step in definitions.py turns a ``DomainBuild`` into its events.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_tools.core import lock
from mesh_tools.core.channels import check_channel
from mesh_tools.core.errors import BusyError, ConfigError, MeshError
from mesh_tools.core.mesh import Mesh, load_mesh
from mesh_tools.model.manifest import Manifest, RunResults
from mesh_tools.model.nodes import product_key
from mesh_tools.store.exchange import open_exchange
from mesh_tools.workflows.domain_run import SUCCESS, DomainRun
from mesh_tools.workflows.locks import docs_lock, domain_locks, health_lock
from mesh_tools.workflows.scheduler import RunPlan, run_mesh
from mesh_tools.workflows.stages import own_built

AFTER_RUN_WAIT = 120.0  # seconds a step waits for the health history and docs site another run is writing


@contextlib.contextmanager
def channel(name: str | None) -> Iterator[None]:
    """The channel (``MESH_ENV``) a step reads and publishes in, for its duration (its workers inherit it)."""
    if name is None:
        yield
        return
    check_channel(name, "channel")
    before = os.environ.get("MESH_ENV")
    os.environ["MESH_ENV"] = name
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MESH_ENV", None)
        else:
            os.environ["MESH_ENV"] = before


@dataclass
class ProductRelease:
    """A product's current release after the step: the one it published, or the one it kept."""

    product: str
    release_id: str | None
    new: bool  # published by this step (else the build reused it and its current release stands)
    channel: str
    rows: int | None = None
    sha256: list[str] = field(default_factory=list)
    produced_at: str | None = None
    confirmed_at: str | None = None  # when a later build with the same rows confirmed it (early cutoff)
    contract_hash: str | None = None
    tests: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


@dataclass
class TestResult:
    status: str  # pass, fail, warn, error, skipped
    message: str | None
    failures: int | None


@dataclass
class DomainBuild:
    """One domain's step: its run, its products' releases, its tests' results and what it reused."""

    run: DomainRun
    releases: dict[str, ProductRelease] = field(default_factory=dict)  # by product key
    tests: dict[str, TestResult] = field(default_factory=dict)  # by the test's unique_id (this step's dbt run)
    ran: list[str] = field(default_factory=list)  # models this step's build ran
    reused: list[str] = field(default_factory=list)  # models it reused (state-aware)
    warnings: list[str] = field(default_factory=list)
    mesh: Mesh | None = None  # the mesh as the step loaded it (for ``after``)
    target: str | None = None

    @property
    def ok(self) -> bool:
        return self.run.status == SUCCESS


def build_domain(root: str | Path, name: str, *, target: str | None = None, channel_name: str | None = None,
                 wait: float = 0.0, after: bool = True) -> DomainBuild:  # fmt: skip
    """`mesh build <name>` through the library: state-aware, publishing, with the domain's and its database
    files' locks (another build or publish of it: wait up to ``wait`` seconds, else BusyError), then (``after``;
    else call ``after_build``) its lineage events and the health history and docs site, whose problems are
    warnings."""
    with channel(channel_name):
        mesh = load_mesh(Path(root))
        if name not in mesh.domains:
            raise ConfigError(f"no domain {name!r} in mesh {mesh.name!r} at {mesh.root}: reload the definitions")
        target = target or mesh.defaults.target
        mesh.require_writable([name], "build")
        exchange = open_exchange(mesh)
        exchange.refuse_links([name])
        exchange.require_writable("a Dagster materialization (which publishes)")
        plan = RunPlan(command="build", domains=[name], target=target, jobs=1)
        resources = domain_locks(mesh, [name], storage=True, target=target)
        with lock.hold(mesh.root, resources, f"dagster: mesh build {name}", wait=wait):
            run = run_mesh(mesh, plan)[0]
        build = DomainBuild(run=run, mesh=mesh, target=target)
        _results(mesh, build)
        build.releases = current_releases(mesh, name, {d.product: d for d in run.released})
        if after:
            after_build(build, channel_name)
        return build


def after_build(build: DomainBuild, channel_name: str | None = None) -> None:
    """The step's lineage events, health history and docs site (``build.warnings`` gets their problems)."""
    if build.mesh is None:
        return
    with channel(channel_name):
        build.warnings += _after(build.mesh, build.run, build.target)


def _results(mesh: Mesh, build: DomainBuild) -> None:
    """The tests' results and the models run, from the run results this step's dbt wrote (none when it ran no
    dbt: everything was reused)."""
    run = build.run
    domain = mesh.domains[run.domain]
    ran = {node for node, _why in run.decisions}
    try:
        results = RunResults.read(domain.run_results_path, missing_ok=True)
    except MeshError:
        results = None
    if results is not None and run.invocation_id is not None and results.invocation_id == run.invocation_id:
        for r in results.results:
            if r.unique_id.startswith("test."):
                build.tests[r.unique_id] = TestResult(r.status, r.message, r.failures)
            elif r.unique_id.startswith(("model.", "seed.", "snapshot.")):
                ran.add(r.unique_id)
    build.ran = sorted(ran)
    try:
        manifest = Manifest.read(domain.manifest_path, run.domain, missing_ok=True)
    except MeshError:
        manifest = None
    if manifest is not None:
        build.reused = sorted(n.unique_id for n in own_built(manifest) if n.unique_id not in ran)


def current_releases(mesh: Mesh, name: str, published: dict[str, Any] | None = None) -> dict[str, ProductRelease]:
    """Each product of ``name``'s current release in the run's channel (descriptor read, sizes checked, bytes not
    hashed); ``published``: the descriptors this step released, by product key."""
    published = published or {}
    exchange = open_exchange(mesh)
    out: dict[str, ProductRelease] = {}
    for model, version in exchange.products_of(name):
        key = product_key(name, model, version)
        try:
            release = exchange.current(name, model, version, verify=False)
        except (MeshError, OSError) as exc:
            out[key] = ProductRelease(key, None, False, exchange.env, problem=str(exc))
            continue
        if release is None:
            continue
        d = release.descriptor
        out[key] = ProductRelease(
            product=key, release_id=d.release_id, new=key in published and published[key].release_id == d.release_id,
            channel=exchange.env, rows=d.row_count, sha256=[f.sha256 for f in d.files], produced_at=d.produced_at,
            contract_hash=d.contract_hash, tests=d.tests.model_dump(mode="json"),
            confirmed_at=getattr(exchange.confirmation(d), "confirmed_at", None),
        )  # fmt: skip
    return out


def _after(mesh: Mesh, run: DomainRun, target: str | None) -> list[str]:
    """Lineage events, then the health history and docs site (their locks waited for; busy: left to the run
    writing them). Never a failure: warnings."""
    from mesh_tools.workflows.after_run import after_run
    from mesh_tools.workflows.lineage import emit_runs

    warnings = list(emit_runs(mesh, [run], target))
    try:
        with lock.hold(mesh.root, [health_lock(mesh), docs_lock(mesh)], f"dagster: mesh build {run.domain}",
                       wait=AFTER_RUN_WAIT):  # fmt: skip
            done = after_run(mesh, [run])
    except BusyError as exc:
        return [*warnings, f"health and docs not updated: {exc}"]
    return [*warnings, *done.warnings]
