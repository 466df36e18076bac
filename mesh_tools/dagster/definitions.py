"""The mesh as Dagster definitions: ``mesh_definitions("path/to/mesh")``.

- One asset per data product version (``sales/fct_orders/v2``), grouped by domain, with its owners, description,
  column schema and contract; a domain's private models as assets too with ``models=True``; a domain with no
  product (a pure consumer) as one asset. Cross-domain dependencies come from the products' reads.
- Each domain's assets are one step: the domain's state-aware `mesh build` and publish, through the library,
  under the locks `mesh build` takes. A product's materialization carries its release (id, channel, rows,
  SHA-256, new or kept) and what the build ran and reused. A failing domain fails its step: its assets are not
  materialized and Dagster does not run its downstream.
- A product's data tests are its asset checks (blocking where the publish gate blocks: severity error); a
  freshness SLO (``meta.freshness_slo_hours``) is a freshness check, evaluated by its own sensor.
- The exchange sensor (one per channel) requests a run of exactly the readers of each new release, once per
  release, and reports a release published outside Dagster (a team's own CI) as an external materialization.

Another team's manifest is data here: its texts are bounded and never rendered; names become keys as they are
and op, check and group names are reduced to what Dagster accepts (catalog.py).
"""

import contextlib
import dataclasses
import functools
import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

# No `from __future__ import annotations` here: Dagster reads a step's `context` annotation at run time.
from dagster import AssetExecutionContext, SensorEvaluationContext

from mesh_tools.core.errors import BusyError, MeshError
from mesh_tools.core.mesh import Mesh, find_root, load_mesh
from mesh_tools.dagster.catalog import Asset, Catalog, DomainAssets, bounded, build_catalog, safe_name
from mesh_tools.dagster.mail import describe, read_cursor, tick
from mesh_tools.dagster.run import DomainBuild, after_build, build_domain, channel
from mesh_tools.model.manifest import Manifest

RELEASE_ID = "mesh/release_id"  # the materialization metadata key the sensor compares releases by


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the definitions build and watch the mesh (``mesh_definitions``' arguments)."""

    root: str
    target: str | None
    channel: str | None
    wait: float
    after: bool


def mesh_definitions(
    path: str | os.PathLike[str] = ".",
    *,
    target: str | None = None,
    channel_name: str | None = None,
    models: bool = False,
    stitch: bool = True,
    wait: float = 300.0,
    health_and_docs: bool = True,
    sensor_interval: int = 30,
    start_sensors: bool = False,
) -> dg.Definitions:
    """Dagster definitions for the mesh at ``path`` (its root, or a folder below it).

    ``target``: the dbt target every domain builds (default: the mesh's); ``channel_name``: the exchange channel
    the steps read and publish in and the sensor watches (default ``MESH_ENV``, else prod); ``models``: each
    domain's private models as assets too; ``stitch``: parse (`mesh stitch`) a domain that has no manifest yet,
    so its products are known (else it shows as one asset until it is built); ``wait``: seconds a step waits
    for another build or publish of its domain; ``health_and_docs``: each step updates the health history and
    docs site, as `mesh build` does; ``start_sensors``: the sensors start running (else Dagster's default,
    stopped until turned on).
    """
    root = find_root(Path(path).resolve())
    with channel(channel_name):
        mesh = load_mesh(root)
        manifests, problems = load_manifests(mesh, target or mesh.defaults.target, stitch=stitch)
        catalog = build_catalog(mesh, manifests, models=models, problems=problems)
    settings = Settings(str(root), target, channel_name, wait, health_and_docs)
    steps = [_step(entry, settings) for entry in catalog.domains]
    freshness = _freshness_checks(catalog)
    status = dg.DefaultSensorStatus.RUNNING if start_sensors else dg.DefaultSensorStatus.STOPPED
    sensors = [_exchange_sensor(catalog, settings, sensor_interval, status)]
    if freshness:
        sensors.append(dg.build_sensor_for_freshness_checks(
            freshness_checks=freshness, name="mesh_freshness", minimum_interval_seconds=sensor_interval,
            default_status=status))  # fmt: skip
    return dg.Definitions(assets=steps, asset_checks=freshness, sensors=sensors)


def load_manifests(mesh: Mesh, target: str | None, *, stitch: bool) -> tuple[dict[str, Manifest], dict[str, str]]:
    """Each domain's manifest: a stale one re-parsed outside the domain (as `mesh docs` reads it); with
    ``stitch``, the domains without one stitched first, each under its lock (as `mesh stitch` does; one another
    run is building is left as it is). A domain that still has none is left out, with why (it shows as one
    asset)."""
    from mesh_tools.workflows.readers import current_view

    problems = _stitch_missing(mesh, target) if stitch else {}
    scratch: list[Path] = []
    try:
        viewed = current_view(mesh, list(mesh.order), lambda _text: None, scratch.append, str)
        manifests: dict[str, Manifest] = {}
        for name, domain in viewed.domains.items():
            found = domain.parsed_manifest or domain.manifest_path
            try:
                manifest = Manifest.read(found, name, missing_ok=True)
            except MeshError as exc:
                problems[name] = str(exc)
                manifest = None
            if manifest is not None:
                manifests[name] = manifest
                problems.pop(name, None)
        return manifests, problems
    finally:
        for folder in scratch:
            shutil.rmtree(folder, ignore_errors=True)


def _stitch_missing(mesh: Mesh, target: str | None) -> dict[str, str]:
    """Stitch the domains with no manifest whose locks are free; why each other one has none."""
    from mesh_tools.core import lock
    from mesh_tools.workflows.domain_run import SUCCESS
    from mesh_tools.workflows.locks import domain_locks
    from mesh_tools.workflows.scheduler import RunPlan, default_jobs, run_mesh

    missing = [n for n in mesh.order if not mesh.domains[n].manifest_path.is_file()]
    problems: dict[str, str] = {}
    free: list[str] = []
    with contextlib.ExitStack() as held:
        for name in missing:
            try:
                held.enter_context(lock.hold(mesh.root, domain_locks(mesh, [name]), "dagster: mesh stitch"))
            except BusyError as exc:
                problems[name] = f"{name} has no manifest yet and another run holds it ({exc}); reload the " \
                    "definitions when it is done"  # fmt: skip
                continue
            free.append(name)
        if free:
            plan = RunPlan("parse", free, target, mesh.defaults.jobs or default_jobs())
            for run in run_mesh(mesh, plan):
                if run.status != SUCCESS:
                    problems[run.domain] = f"{run.domain} could not be stitched: " + "; ".join(run.problems[:3])
    return problems


def asset_key(asset: Asset) -> dg.AssetKey:
    return dg.AssetKey(list(asset.key))


@functools.lru_cache(maxsize=4096)
def _accepted_owner(owner: str) -> bool:
    """Whether Dagster takes ``owner`` (it accepts only some e-mail addresses; a rejected one would keep the
    whole code location from loading)."""
    try:
        dg.AssetSpec(key="mesh_owner_probe", owners=[owner])
    except dg.DagsterInvalidDefinitionError:
        return False
    return True


def _owners(candidates: list[str]) -> list[str]:
    return next(([c] for c in candidates if _accepted_owner(c)), [])


def _spec(entry: DomainAssets, asset: Asset) -> dg.AssetSpec:
    metadata: dict[str, Any] = {"mesh/domain": asset.domain, "mesh/kind": asset.kind}
    if asset.product:
        metadata["mesh/product"] = asset.product
    if asset.columns:
        metadata["dagster/column_schema"] = dg.TableSchema(
            columns=[
                dg.TableColumn(
                    name=c["name"],
                    type=c["type"] or "unknown",
                    description=c["description"] or None,
                    constraints=dg.TableColumnConstraints(nullable=not c["not_null"], unique=c["unique"]),
                    tags={"pii": ""} if c["pii"] else None,
                )  # fmt: skip
                for c in asset.columns
            ]
        )
    if asset.contract:
        metadata["mesh/contract"] = dg.MetadataValue.json(asset.contract)
    if asset.relation:
        metadata["dagster/table_name"] = asset.relation
    if asset.slo_hours is not None:
        metadata["mesh/freshness_slo_hours"] = asset.slo_hours
    kinds = {"dbt"} | ({safe_name(entry.engine)} if entry.engine else set())
    return dg.AssetSpec(
        key=asset_key(asset), group_name=safe_name(entry.name), description=asset.description or None,
        owners=_owners(asset.owners), deps=[dg.AssetKey(list(k)) for k in asset.deps], kinds=kinds, tags=asset.tags,
        metadata=metadata, skippable=True,
    )  # fmt: skip


def _check_specs(asset: Asset) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            name=c.name,
            asset=asset_key(asset),
            description=c.description,
            blocking=c.blocking,
            metadata={"mesh/test": c.unique_id},
        )  # fmt: skip
        for c in asset.checks
    ]


def _step(entry: DomainAssets, settings: Settings) -> dg.AssetsDefinition:
    specs = [_spec(entry, a) for a in entry.assets]
    checks = [c for a in entry.assets for c in _check_specs(a)]

    @dg.multi_asset(name=entry.op_name, specs=specs, check_specs=checks, can_subset=True,
                    description=f"`mesh build {entry.name}`: state-aware, then publish its products")  # fmt: skip
    def _build(context: AssetExecutionContext) -> Iterator[Any]:
        try:
            build = build_domain(settings.root, entry.name, target=settings.target, channel_name=settings.channel,
                                 wait=settings.wait, after=False)  # fmt: skip
        except BusyError as exc:
            text = str(exc).replace("give --wait SECONDS", "give mesh_definitions(wait=SECONDS)")
            raise dg.Failure(description=bounded(f"{entry.name}: {text}")) from None
        try:  # what Dagster is told comes first: the health history and the docs site may wait for their locks
            yield from _outcome(entry, build, context)
        finally:
            if settings.after:
                after_build(build, settings.channel)
            for warning in build.warnings:
                context.log.warning(bounded(warning))

    return _build


def _outcome(entry: DomainAssets, build: DomainBuild, context: AssetExecutionContext) -> Iterator[Any]:
    """The step's check results, then its failure or its materializations."""
    yield from _check_results(entry, build, context.selected_asset_check_keys)
    if not build.ok:
        problems = build.run.problems or [f"{entry.name}: {build.run.status}"]
        raise dg.Failure(
            description=bounded(f"{entry.name} failed: " + "; ".join(problems)),
            metadata={"mesh/domain": entry.name, "mesh/status": build.run.status,
                      "mesh/problems": dg.MetadataValue.json([bounded(p, 1000) for p in problems[:20]])},
        )  # fmt: skip
    selected = context.selected_asset_keys
    for asset in entry.assets:
        if asset_key(asset) in selected:
            yield dg.MaterializeResult(asset_key=asset_key(asset), metadata=_materialized(asset, build))


def _check_results(entry: DomainAssets, build: DomainBuild, selected: Any) -> Iterator[dg.AssetCheckResult]:
    """A result for each check whose test this step's dbt ran (a reused product's tests did not run)."""
    for asset in entry.assets:
        for check in asset.checks:
            result = build.tests.get(check.unique_id)
            if result is None or dg.AssetCheckKey(asset_key(asset), check.name) not in selected:
                continue
            failed = result.status in ("fail", "error", "warn")
            severity = dg.AssetCheckSeverity.WARN if result.status == "warn" or not check.blocking else (
                dg.AssetCheckSeverity.ERROR)  # fmt: skip
            yield dg.AssetCheckResult(
                asset_key=asset_key(asset), check_name=check.name, passed=not failed, severity=severity,
                metadata={"dbt/status": result.status, "dbt/failures": result.failures,
                          "dbt/message": bounded(result.message or "", 1000)},
            )  # fmt: skip


def _materialized(asset: Asset, build: DomainBuild) -> dict[str, Any]:
    run = build.run
    own_ran = [u for u in build.ran if u.split(".")[1:2] == [run.domain]]
    metadata: dict[str, Any] = {
        "mesh/models_run": len(own_ran),
        "mesh/models_reused": len(build.reused),
        "mesh/reused": dg.MetadataValue.json(build.reused[:200]),
        "mesh/consumed": dg.MetadataValue.json(dict(sorted(run.consumed.items())[:200])),
    }
    if asset.kind == "model":
        metadata["mesh/ran"] = asset.unique_id in build.ran
    if asset.product is None:
        return metadata
    release = build.releases.get(asset.product)
    if release is None or release.release_id is None:
        metadata["mesh/release_problem"] = bounded(
            release.problem if release is not None and release.problem else "no current release in this channel"
        )
        return metadata
    metadata.update({
        RELEASE_ID: release.release_id,
        "mesh/channel": release.channel,
        "mesh/new_release": release.new,
        "dagster/row_count": release.rows,
        "mesh/sha256": dg.MetadataValue.json(release.sha256),
        "mesh/produced_at": release.produced_at,
        **({"mesh/confirmed_at": release.confirmed_at} if release.confirmed_at else {}),
        "mesh/contract_hash": release.contract_hash,
        "mesh/tests": dg.MetadataValue.json(release.tests),
    })  # fmt: skip
    return metadata


def _freshness_checks(catalog: Catalog) -> list[dg.AssetChecksDefinition]:
    """One last-update freshness check per product with an SLO (grouped by SLO)."""
    by_slo: dict[float, list[dg.AssetKey]] = {}
    for entry in catalog.domains:
        for asset in entry.assets:
            if asset.slo_hours is not None:
                by_slo.setdefault(asset.slo_hours, []).append(asset_key(asset))
    checks: list[dg.AssetChecksDefinition] = []
    for hours, keys in sorted(by_slo.items()):
        checks += dg.build_last_update_freshness_checks(assets=keys, lower_bound_delta=timedelta(hours=hours))
    return checks


_IN_PROGRESS = ("NOT_STARTED", "QUEUED", "STARTING", "STARTED", "CANCELING")


def _building(context: SensorEvaluationContext, by_product: dict[str, Asset]) -> frozenset[str]:
    """The products a run in progress on this instance is building (all of them for a run of the whole job)."""
    statuses = [dg.DagsterRunStatus[s] for s in _IN_PROGRESS]
    runs = context.instance.get_runs(filters=dg.RunsFilter(statuses=statuses), limit=1000)
    keys = {asset_key(a): p for p, a in by_product.items()}
    out: set[str] = set()
    for run in runs:
        selection = run.asset_selection
        if selection is None:  # a run of a whole job: of the asset job, every product; of another job, none
            if run.job_name.startswith("__ASSET_JOB"):
                return frozenset(by_product)
            continue
        out |= {keys[k] for k in selection if k in keys}
    return frozenset(out)


def _exchange_sensor(
    catalog: Catalog, settings: Settings, interval: int, status: dg.DefaultSensorStatus
) -> dg.SensorDefinition:
    by_product = catalog.by_product()
    keys = {entry.name: [asset_key(a) for a in entry.assets] for entry in catalog.domains}
    everything = [k for ks in keys.values() for k in ks]
    name = safe_name(f"mesh_exchange_{settings.channel or os.environ.get('MESH_ENV') or 'prod'}")

    @dg.sensor(name=name, minimum_interval_seconds=interval, asset_selection=everything, default_status=status,
               description="New releases in the exchange: a run of exactly their readers, once per release; a "
               "release published outside Dagster is reported as an external materialization.")  # fmt: skip
    def _watch(context: SensorEvaluationContext) -> dg.SensorResult:
        cursor, problem = read_cursor(context.cursor)
        if problem:
            context.log.warning(problem)
        # the channel is passed, never set in the environment: a daemon may evaluate sensors side by side
        mesh = load_mesh(Path(settings.root))
        seen = tick(mesh, cursor, _building(context, by_product), settings.channel)
        events = []
        for product, release_id in sorted(seen.new.items()):
            asset = by_product.get(product)
            if asset is None:  # a product the definitions do not know yet (reload them)
                continue
            latest = context.instance.get_latest_materialization_event(asset_key(asset))
            said = latest.asset_materialization.metadata.get(RELEASE_ID) if latest and latest.asset_materialization \
                else None  # fmt: skip
            if said is not None and getattr(said, "value", None) == release_id:
                continue  # Dagster's own step published it
            facts = describe(mesh, product, settings.channel) or {"release_id": release_id}
            events.append(dg.AssetMaterialization(
                asset_key=asset_key(asset), description="published outside Dagster (seen in the exchange)",
                metadata={RELEASE_ID: release_id, "mesh/external": True, "dagster/row_count": facts.get("rows"),
                          "mesh/produced_at": facts.get("produced_at"),
                          "mesh/sha256": dg.MetadataValue.json(facts.get("sha256") or [])},
            ))  # fmt: skip
        for problem_text in seen.problems:
            context.log.warning(bounded(problem_text))
        requests = []
        if seen.readers:
            selection = [k for reader in seen.readers for k in keys.get(reader, [])]
            if selection:
                requests.append(dg.RunRequest(run_key=seen.run_key, asset_selection=selection, tags={
                    "mesh/trigger": "exchange", "mesh/readers": ",".join(sorted(seen.readers))[:200]}))  # fmt: skip
        return dg.SensorResult(run_requests=requests, asset_events=events, cursor=seen.cursor())

    return _watch
