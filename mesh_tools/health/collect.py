"""Collect what every domain's last run left on disk into the health history.

Inputs are files only: each domain's manifest.json, run_results.json and sources.json, the
exchange's log and releases, and the governance check over the manifests. A domain whose
artifacts are missing or corrupt is recorded as "no data" with the reason; the others still count.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mesh_tools.artifacts import read_json
from mesh_tools.core.errors import MeshError, display_path
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.health.history import History

RUN_COMMANDS = {"build", "run", "test", "seed", "snapshot", "retry", None}
PERIOD_HOURS = {"minute": 1 / 60, "hour": 1.0, "day": 24.0}


@dataclass
class DomainArtifacts:
    """One domain's artifacts as read for this collection, or why they could not be read."""

    name: str
    manifest: dict[str, Any] | None = None
    run_results: dict[str, Any] | None = None
    sources: dict[str, Any] | None = None
    no_data: str | None = None  # the reason, when the domain cannot be judged
    stale: str | None = None  # why its manifest no longer describes its files, when it does not
    notes: list[str] = field(default_factory=list)

    @property
    def invocation_id(self) -> str | None:
        return (self.run_results or {}).get("metadata", {}).get("invocation_id")


@dataclass
class Collection:
    """What one collection read: its id and time, and every domain's artifacts."""

    collection_id: str
    collected_at: datetime
    domains: dict[str, DomainArtifacts]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunEvent:
    """What `mesh build` knows that the artifacts do not: a failure before dbt ran, a refused publish."""

    domain: str
    status: str
    problems: tuple[str, ...]
    seconds: float
    invocation_id: str | None = None  # None: dbt wrote no results in this run


def parse_time(value: Any) -> datetime | None:
    """dbt's ISO timestamps (with ``Z`` or an offset, or naive meaning UTC) as aware datetimes."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _artifact(path: Path, what: str, key: str, kind: type, fix: str) -> dict[str, Any]:
    """A dbt JSON artifact that must be an object holding ``key`` of type ``kind``."""
    data = read_json(path, what, fix)
    if not isinstance(data, dict) or not isinstance(data.get(key), kind):
        raise MeshError(f"{display_path(path)}: not dbt {what} (no '{key}'). {fix}")
    return data


def read_domain(domain: Domain, others: tuple[Path, ...] = ()) -> DomainArtifacts:
    """Read one domain's artifacts; never raises for a missing or corrupt file."""
    from mesh_tools.dbt.staleness import changed_since_manifest, stale_message

    found = DomainArtifacts(domain.name)
    target = domain.target_dir
    fix = f"Build it with `mesh build {domain.name}`."
    try:
        found.manifest = _artifact(target / "manifest.json", "manifest", "nodes", dict, fix)
        found.run_results = _artifact(target / "run_results.json", "run results", "results", list, fix)
    except MeshError as exc:
        found.no_data = str(exc)
        return found
    changed = changed_since_manifest(domain, others)
    if changed is not None:
        found.stale = stale_message(domain, changed)
    command = (found.run_results.get("args") or {}).get("which")
    if command not in RUN_COMMANDS:
        # `dbt compile`, `dbt docs generate` and the like: nothing ran; judge from the history
        found.notes.append(f"the last dbt command in {domain.name} was `{command}`: its results are not runs")
        found.run_results = None
    path = target / "sources.json"
    if path.is_file():
        try:
            found.sources = _artifact(path, "source freshness results", "results", list, "Build the domain again.")
        except MeshError as exc:
            found.notes.append(str(exc))
    return found


def collect(
    mesh: Mesh,
    history: History,
    trigger: str,
    events: list[RunEvent] | None = None,
    now: datetime | None = None,
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
        event = by_domain.get(name)
        if event and (event.invocation_id is None or event.invocation_id != art.invocation_id):
            # the run failed before dbt wrote results (stitching, deps): still a run to remember
            runs.append(_failed_run_row(cid, name, event, now))
        if art.sources is not None:
            freshness.extend(_freshness_rows(cid, name, art))
    history.insert("runs", runs)
    history.insert("node_results", nodes)
    history.insert("source_freshness", freshness)
    _collect_findings(mesh, history, collection)
    _collect_publications(mesh, history, collection)
    from mesh_tools.health.measure import measure_products

    measure_products(mesh, history, collection)
    return collection


def _counts(results: list[dict[str, Any]], domain: str) -> dict[str, int]:
    counts = {"models": 0, "models_failed": 0, "tests_passed": 0, "tests_failed": 0, "tests_warned": 0}
    for result in results:
        uid = str(result.get("unique_id", ""))
        kind, _, rest = uid.partition(".")
        if not rest.startswith(domain + "."):
            continue
        status = result.get("status")
        if kind == "model":
            counts["models"] += 1
            counts["models_failed"] += status == "error"
        elif kind in ("test", "unit_test"):
            counts["tests_passed"] += status == "pass"
            counts["tests_failed"] += status in ("fail", "error")
            counts["tests_warned"] += status == "warn"
    return counts


def _run_row(cid: str, name: str, art: DomainArtifacts, event: RunEvent | None) -> dict[str, Any]:
    results = art.run_results or {}
    meta = results.get("metadata", {})
    finished = parse_time(meta.get("generated_at"))
    elapsed = float(results.get("elapsed_time") or 0.0)
    started = parse_time(meta.get("invocation_started_at")) or (
        finished - timedelta(seconds=elapsed) if finished else None
    )
    counts = _counts(results.get("results", []), name)
    failed = (
        counts["models_failed"]
        or counts["tests_failed"]
        or any(r.get("status") in ("error", "fail", "runtime error") for r in results.get("results", []))
    )
    problems = list(event.problems) if event else []
    return {
        "collection_id": cid,
        "domain": name,
        "invocation_id": meta.get("invocation_id"),
        "command": (results.get("args") or {}).get("which"),
        "started_at": started,
        "finished_at": finished,
        "elapsed_s": elapsed,
        "status": "failed" if failed or (event and event.status != "success") else "success",
        **counts,
        "dbt_version": meta.get("dbt_version"),
        "problems": json.dumps(problems),
    }


def _failed_run_row(cid: str, name: str, event: RunEvent, now: datetime) -> dict[str, Any]:
    return {
        "collection_id": cid,
        "domain": name,
        "invocation_id": f"mesh-{cid}-{name}",
        "command": "build",
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
    }


def attached_models(node: dict[str, Any]) -> list[str]:
    """The models a test judges: its attached node, else every model it depends on."""
    attached = node.get("attached_node")
    if attached:
        return [attached]
    return [p for p in node.get("depends_on", {}).get("nodes", []) if p.startswith("model.")]


def _node_rows(cid: str, name: str, art: DomainArtifacts) -> list[dict[str, Any]]:
    manifest = art.manifest or {}
    known = {**manifest.get("nodes", {}), **manifest.get("unit_tests", {})}
    invocation = art.invocation_id
    finished = (art.run_results or {}).get("metadata", {}).get("generated_at")
    rows = []
    for result in (art.run_results or {}).get("results", []):
        uid = str(result.get("unique_id", ""))
        kind, _, rest = uid.partition(".")
        if not rest.startswith(name + "."):
            continue  # a stub view of an upstream product: the producer's health, not ours
        node = known.get(uid, {})
        timing = result.get("timing") or []
        completed = timing[-1].get("completed_at") if timing else finished
        attached = attached_models(node) if kind in ("test", "unit_test") else []
        if kind == "unit_test" and not attached:
            attached = [p for p in node.get("depends_on", {}).get("nodes", []) if p.startswith("model.")]
        rows.append(
            {
                "collection_id": cid,
                "domain": name,
                "invocation_id": invocation,
                "unique_id": uid,
                "resource_type": kind,
                "name": node.get("name") or uid.split(".")[-1],
                "attached_to": attached[0] if attached else None,
                "status": result.get("status"),
                "execution_time": result.get("execution_time"),
                "failures": result.get("failures"),
                "message": (result.get("message") or "")[:2000] or None,
                "completed_at": completed or finished,
            }
        )
    return rows


def _hours(rule: dict[str, Any] | None) -> float | None:
    if not rule or not rule.get("count") or not rule.get("period"):
        return None
    return float(rule["count"]) * PERIOD_HOURS.get(str(rule["period"]), 1.0)


def _freshness_rows(cid: str, name: str, art: DomainArtifacts) -> list[dict[str, Any]]:
    rows = []
    for result in (art.sources or {}).get("results", []):
        uid = str(result.get("unique_id", ""))
        if not uid.startswith(f"source.{name}."):
            continue
        criteria = result.get("criteria") or {}
        age = result.get("max_loaded_at_time_ago_in_s")
        rows.append(
            {
                "collection_id": cid,
                "domain": name,
                "unique_id": uid,
                "max_loaded_at": result.get("max_loaded_at"),
                "snapshotted_at": result.get("snapshotted_at")
                or (art.sources or {}).get("metadata", {}).get("generated_at"),
                "age_hours": None if age is None else float(age) / 3600,
                "status": result.get("status"),
                "warn_after_hours": _hours(criteria.get("warn_after")),
                "error_after_hours": _hours(criteria.get("error_after")),
                "message": (result.get("error") or result.get("message") or None),
            }
        )
    return rows


def _collect_findings(mesh: Mesh, history: History, collection: Collection) -> None:
    """The governance check over every domain with a manifest (sqlfluff style rules left out)."""
    from mesh_tools.governance.engine import run_check

    readable = [n for n, art in collection.domains.items() if art.manifest is not None]
    if not readable:
        return
    try:
        report = run_check(mesh, readable, sqlfluff=False, load=readable)
    except MeshError as exc:
        collection.notes.append(f"governance not evaluated: {exc}")
        return
    history.insert(
        "findings",
        [
            {
                "collection_id": collection.collection_id,
                "domain": v.finding.domain,
                "code": v.code,
                "rule": v.rule,
                "severity": v.severity.name.lower(),
                "node": v.finding.node,
                "message": v.finding.message,
            }
            for v in report.violations
        ],
    )


def _collect_publications(mesh: Mesh, history: History, collection: Collection) -> None:
    """New events of the exchange's log: publish, consume, expire, refused."""
    from mesh_tools.store.exchange import Exchange

    exchange = Exchange(mesh.exchange_path)
    last = history.con.execute("select max(event_at) from publications").fetchone()[0]
    rows = []
    try:
        for event in exchange.read_log():
            at = parse_time(event.get("at"))
            if at is None or (last is not None and at <= last):
                continue
            kind = str(event.get("event", ""))
            product = event.get("product")
            domain = event.get("consumer") or event.get("domain") or (str(product).split(".")[0] if product else None)
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


def schema_hash(columns: list[tuple[str, str]]) -> str:
    shape = json.dumps([[n.lower(), t.lower()] for n, t in columns])
    return "sha256:" + hashlib.sha256(shape.encode()).hexdigest()[:16]


def sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
