"""Collect what every domain's last run left on disk into the health history.

Inputs are files only: each domain's manifest.json, run_results.json and sources.json, the
exchange's log and releases, and the governance findings over the manifests (from the callable
the caller passes: health does not run governance itself). A domain whose artifacts are missing
or corrupt is recorded as "no data" with the reason; the others still count.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Mesh
from mesh_tools.health.history import History
from mesh_tools.health.inputs import (
    Collection,
    DomainArtifacts,
    RunEvent,
    attached_models,
    parse_time,
    read_domain,
    stage_results,
)
from mesh_tools.health.measure import measure_products
from mesh_tools.health.pending import clear_pending, pending_runs
from mesh_tools.model.manifest import Manifest, NodeResult
from mesh_tools.model.nodes import ProductKey, name_of, package_of, resource_type_of

# The governance findings over some domains, given as their manifests this collection read (by domain name,
# so they are not read twice), as rows of the history's ``findings`` table (domain, code, rule, severity, node,
# message); MeshError when they cannot be evaluated.
Findings = Callable[[dict[str, Manifest]], list[dict[str, Any]]]


def collect(
    mesh: Mesh,
    history: History,
    trigger: str,
    events: list[RunEvent] | None = None,
    now: datetime | None = None,
    findings: Findings | None = None,
) -> Collection:
    """Read every domain's artifacts and add what is new to ``history``."""
    now = now or datetime.now(UTC)
    others = tuple(d.path.resolve() for d in mesh.domains.values())
    collection = Collection(
        uuid.uuid4().hex[:16], now, {name: read_domain(d, others) for name, d in mesh.domains.items()}
    )
    cid = collection.collection_id
    history.insert("collections", [{"collection_id": cid, "collected_at": now, "trigger": trigger, "mesh": mesh.name}])
    by_domain = {e.domain: e for e in events or []}
    runs: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    freshness: list[dict[str, Any]] = []
    for name, art in collection.domains.items():
        if art.run_results is not None and art.manifest is not None:
            event = by_domain.get(name)
            runs.append(_run_row(cid, name, art, event if event and event.invocation_id == art.invocation_id else None))
            nodes.extend(_node_rows(cid, name, art))
            if event and event.invocation_id == art.invocation_id:  # a staged build: its earlier stages ran these
                for earlier in stage_results(mesh.domains[name], art.invocation_id):
                    if earlier.invocation_id:
                        art.stages.append(earlier.invocation_id)
                    nodes.extend(_node_rows(cid, name, dataclasses.replace(art, run_results=earlier)))
        event = by_domain.get(name)
        if event and (event.invocation_id is None or event.invocation_id != art.invocation_id):
            # the run failed before dbt wrote results (stitching, deps), or had nothing to run: still a run
            runs.append(_failed_run_row(cid, name, event, now))
        if art.sources is not None:
            freshness.extend(_freshness_rows(cid, name, art))
    for batch, pending, at in pending_runs(mesh):  # builds since the last collection that rebuilt nothing
        if pending.domain in mesh.domains:
            row = _failed_run_row(cid, pending.domain, pending, at)
            runs.append({**row, "invocation_id": f"mesh-{batch}-{pending.domain}"})
    history.insert("runs", runs)
    clear_pending(mesh)
    history.insert("node_results", nodes)
    history.insert("source_freshness", freshness)
    _collect_findings(history, collection, findings)
    _collect_publications(mesh, history, collection)
    measure_products(mesh, history, collection)
    return collection


def _counts(results: tuple[NodeResult, ...], domain: str) -> dict[str, int]:
    counts = {"models": 0, "models_failed": 0, "tests_passed": 0, "tests_failed": 0, "tests_warned": 0}
    for result in results:
        kind = resource_type_of(result.unique_id)
        if package_of(result.unique_id) != domain:
            continue
        status = result.status
        if kind == "model":
            counts["models"] += 1
            counts["models_failed"] += status == "error"
        elif kind in ("test", "unit_test"):
            counts["tests_passed"] += status == "pass"
            counts["tests_failed"] += status in ("fail", "error")
            counts["tests_warned"] += status == "warn"
    return counts


def _run_row(cid: str, name: str, art: DomainArtifacts, event: RunEvent | None) -> dict[str, Any]:
    results = art.run_results
    assert results is not None
    finished = parse_time(results.generated_at)
    elapsed = float(results.elapsed_time or 0.0)
    started = parse_time(results.started_at) or (finished - timedelta(seconds=elapsed) if finished else None)
    counts = _counts(results.results, name)
    failed = (
        counts["models_failed"]
        or counts["tests_failed"]
        or any(r.status in ("error", "fail", "runtime error") for r in results.results)
    )
    problems = list(event.problems) if event else []
    return {
        "collection_id": cid,
        "domain": name,
        "invocation_id": results.invocation_id,
        "command": results.command,
        "started_at": started,
        "finished_at": finished,
        "elapsed_s": elapsed,
        "status": "failed" if failed or (event and event.status != "success") else "success",
        **counts,
        "dbt_version": results.dbt_version,
        "problems": json.dumps(problems),
        "models_reused": event.models_reused if event else 0,
    }


def _failed_run_row(cid: str, name: str, event: RunEvent, now: datetime) -> dict[str, Any]:
    """A run without dbt results of its own: it failed before dbt ran, or it had nothing to run (reused)."""
    reused = event.status == "success"
    return {
        "collection_id": cid,
        "domain": name,
        "invocation_id": f"mesh-{cid}-{name}",
        "command": "reused" if reused else "build",
        "started_at": now - timedelta(seconds=event.seconds),
        "finished_at": now,
        "elapsed_s": event.seconds,
        "status": event.status,
        "models": 0,
        "models_failed": 0,
        "tests_passed": 0,
        "tests_failed": 0,
        "tests_warned": 0,
        "dbt_version": None,
        "problems": json.dumps(list(event.problems)),
        "models_reused": event.models_reused,
    }


def _node_rows(cid: str, name: str, art: DomainArtifacts) -> list[dict[str, Any]]:
    manifest, results = art.manifest, art.run_results
    assert manifest is not None and results is not None
    finished = results.generated_at
    rows = []
    for result in results.results:
        uid = result.unique_id
        kind = resource_type_of(uid)
        if package_of(uid) != name:
            continue  # a stub view of an upstream product: the producer's health, not ours
        node = manifest.nodes.get(uid) or manifest.unit_tests.get(uid)
        attached = attached_models(node) if kind in ("test", "unit_test") else []
        rows.append(
            {
                "collection_id": cid,
                "domain": name,
                "invocation_id": art.invocation_id,
                "unique_id": uid,
                "resource_type": kind,
                "name": node.name if node is not None else name_of(uid),
                "attached_to": attached[0] if attached else None,
                "status": result.status,
                "execution_time": result.execution_time,
                "failures": result.failures,
                "message": (result.message or "")[:2000] or None,
                "completed_at": result.completed_at or finished,
            }
        )
    return rows


def _freshness_rows(cid: str, name: str, art: DomainArtifacts) -> list[dict[str, Any]]:
    sources = art.sources
    assert sources is not None
    return [
        {
            "collection_id": cid,
            "domain": name,
            "unique_id": result.unique_id,
            "max_loaded_at": result.max_loaded_at,
            "snapshotted_at": result.snapshotted_at or sources.generated_at,
            "age_hours": result.age_hours,
            "status": result.status,
            "warn_after_hours": result.warn_after_hours,
            "error_after_hours": result.error_after_hours,
            "message": result.message,
        }
        for result in sources.results
        if result.unique_id.startswith(f"source.{name}.")
    ]


def _collect_findings(history: History, collection: Collection, findings: Findings | None) -> None:
    """The governance findings over every domain with a manifest, from the caller's ``findings``."""
    readable = {n: art.manifest for n, art in collection.domains.items() if art.manifest is not None}
    if findings is None or not readable:
        return
    try:
        rows = findings(readable)
    except MeshError as exc:
        collection.notes.append(f"governance not evaluated: {exc}")
        return
    history.insert("findings", [{**row, "collection_id": collection.collection_id} for row in rows])


def _collect_publications(mesh: Mesh, history: History, collection: Collection) -> None:
    """New events of the exchange's log: publish, consume, expire, refused."""
    from mesh_tools.store.exchange import open_exchange

    exchange = open_exchange(mesh)
    last = history.con.execute("select max(event_at) from publications").fetchone()[0]
    rows = []
    try:
        for event in exchange.read_log():
            at = parse_time(event.get("at"))
            if at is None or (last is not None and at <= last):
                continue
            kind = str(event.get("event", ""))
            product = event.get("product")
            producer = ProductKey.parse(str(product)).domain if product else None
            domain = event.get("consumer") or event.get("domain") or producer
            detail = {k: v for k, v in event.items() if k not in ("at", "event", "product", "release_id", "rows")}
            rows.append(
                {
                    "event_at": at,
                    "event": kind,
                    "domain": domain,
                    "product": product,
                    "release_id": event.get("release_id"),
                    "invocation_id": event.get("invocation_id"),
                    "rows": event.get("rows"),
                    "detail": json.dumps(detail, sort_keys=True) if detail else None,
                }
            )
    except MeshError as exc:
        collection.notes.append(f"publication log not fully read: {exc}")
    history.insert("publications", rows)
