"""Publish a domain's data products as new releases, behind its quality gate, atomically.

A release is written completely (data, then descriptor) into a scratch folder, moved into
place with one rename, logged, and only then made current by replacing ``current.json``. A
publisher killed at any point leaves the previous release current and intact.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh_tools.artifacts import public_model_nodes, read_json
from mesh_tools.errors import ArtifactError
from mesh_tools.exchange.descriptor import (
    BuildInfo,
    Contract,
    ContractColumn,
    DataFile,
    Owner,
    ReleaseDescriptor,
    TestSummary,
)
from mesh_tools.exchange.retention import apply_retention
from mesh_tools.exchange.store import Exchange, fsync_dir, new_release_id, product_key, write_atomic
from mesh_tools.mesh import Domain, Mesh
from mesh_tools.profiles import storage_of
from mesh_tools.yamlfile import display_path

# Fault injection for tests: seconds to wait after the new releases are in place and before any
# becomes current (the window in which a killed publisher must leave the old release current).
PAUSE_ENV = "MESH_FAULT_PAUSE_BEFORE_SWITCH"


@dataclass
class PublishOutcome:
    domain: str
    releases: list[ReleaseDescriptor] = field(default_factory=list)
    refused: str | None = None
    expired: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(r.row_count for r in self.releases)


@dataclass(frozen=True)
class _Gate:
    products: list[dict[str, Any]]
    tests: dict[str, TestSummary]
    invocation_id: str | None
    dbt_version: str | None
    built_at: str | None
    groups: dict[str, dict[str, Any]]


def check_gate(domain: Domain) -> _Gate | str:
    """The products to publish, or why the domain may not publish (its last build is not good)."""
    manifest = read_json(domain.manifest_path, "manifest", f"Build the domain first: `mesh build {domain.name}`.")
    results_path = domain.target_dir / "run_results.json"
    if not results_path.is_file():
        return f"{domain.name} has no build results ({results_path.name} missing): run `mesh build {domain.name}`."
    results = read_json(results_path, "run results", f"Build the domain again: `mesh build {domain.name}`.")
    which = (results.get("args") or {}).get("which")
    if which != "build":
        return f"the last dbt command in {domain.name} was `{which}`, not `build`: run `mesh build {domain.name}`."
    run_id = results.get("metadata", {}).get("invocation_id")
    if run_id != manifest.get("metadata", {}).get("invocation_id"):
        return f"{domain.name}'s manifest and run results come from different dbt runs: run `mesh build {domain.name}`."
    by_id = {r["unique_id"]: r for r in results.get("results", [])}
    bad = [f"{uid} ({r['status']})" for uid, r in by_id.items() if r["status"] in ("error", "fail", "skipped")]
    if bad:
        return f"the last build of {domain.name} did not pass: {', '.join(sorted(bad)[:5])}."
    products = public_model_nodes(domain.name, manifest)
    missing = [n["unique_id"] for n in products if by_id.get(n["unique_id"], {}).get("status") != "success"]
    if missing:
        return f"data products not built by the last build of {domain.name}: {', '.join(missing)}."
    tests: dict[str, TestSummary] = {}
    for product in products:
        counts = {"pass": 0, "fail": 0, "warn": 0}
        for uid, node in manifest["nodes"].items():
            if node.get("resource_type") in ("test", "unit_test") and product["unique_id"] in (
                node.get("depends_on", {}).get("nodes", [])
            ):
                status = by_id.get(uid, {}).get("status")
                if status in counts:
                    counts[status] += 1
        for uid, node in manifest.get("unit_tests", {}).items():
            if product["unique_id"] in node.get("depends_on", {}).get("nodes", []):
                status = by_id.get(uid, {}).get("status")
                if status in counts:
                    counts[status] += 1
        tests[product["unique_id"]] = TestSummary(passed=counts["pass"], failed=counts["fail"], warned=counts["warn"])
    groups = {g["name"]: g for g in manifest.get("groups", {}).values() if g.get("package_name") == domain.name}
    return _Gate(
        products=products,
        tests=tests,
        invocation_id=run_id,
        dbt_version=manifest.get("metadata", {}).get("dbt_version"),
        built_at=results.get("metadata", {}).get("generated_at"),
        groups=groups,
    )


def governance_errors(mesh: Mesh, domain: Domain) -> list[str]:
    """Error-level `mesh check` findings of the domain (its upstreams loaded too): they block publishing.

    SQL style (GOV502) runs only when the mesh raised it to error: at warn it can block nothing.
    """
    from mesh_tools.governance.engine import run_check
    from mesh_tools.governance.rule import Severity

    style_blocks = str(mesh.governance.rules.get("GOV502", "")).endswith("error")
    upstreams = [u for u in domain.upstream_names if u in mesh.domains and mesh.domains[u].manifest_path.is_file()]
    report = run_check(mesh, [domain.name], sqlfluff=style_blocks, load=[domain.name, *upstreams])
    return [f"{v.code} {v.finding.message}" for v in report.violations if v.severity >= Severity.ERROR]


def contract_of(node: dict[str, Any]) -> Contract:
    return Contract(
        enforced=bool((node.get("contract") or {}).get("enforced")),
        columns=[
            ContractColumn(
                name=c["name"],
                data_type=c.get("data_type"),
                description=c.get("description") or "",
                constraints=[{k: v for k, v in x.items() if v not in (None, [], "")} for x in c.get("constraints", [])],
                meta=c.get("meta") or {},
            )
            for c in node.get("columns", {}).values()
        ],
        constraints=[{k: v for k, v in x.items() if v not in (None, [], "")} for x in node.get("constraints", [])],
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cleanup_scratch(exchange: Exchange) -> None:
    """Remove scratch folders of publishers that died (their pid is gone)."""
    if not exchange.tmp_dir.is_dir():
        return
    for entry in exchange.tmp_dir.iterdir():
        pid = entry.name.rsplit(".", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(entry, ignore_errors=True)
            except PermissionError:
                pass


def _spark_files(warehouse: Path, node: dict[str, Any]) -> str:
    """The Parquet files of a Spark table (file_format parquet) in the session's warehouse folder."""
    folder = warehouse / f"{str(node['schema']).lower()}.db" / str(node["alias"]).lower()
    if not any(folder.glob("*.parquet")):
        raise ArtifactError(
            f"{display_path(folder)}: no Parquet files for {node['unique_id']}. Publishing from Spark reads the "
            "table's files: materialize products as tables with `file_format: parquet` in a local warehouse."
        )
    return "read_parquet('" + str(folder / "*.parquet").replace("'", "''") + "')"


def _log_refusal(mesh: Mesh, domain: Domain, reason: str, invocation_id: str | None = None) -> None:
    """A refused publication is an event too: health reports it with the products left behind."""
    event: dict[str, Any] = {"event": "refused", "domain": domain.name, "reason": reason}
    if invocation_id:
        event["invocation_id"] = invocation_id
    Exchange(mesh.exchange_path).append_log(event)


def publish_domain(mesh: Mesh, domain: Domain, target: str | None = None) -> PublishOutcome:
    """Publish every public model of ``domain`` from its last build, or refuse with the reason."""
    import duckdb

    start = time.perf_counter()
    outcome = PublishOutcome(domain.name)
    gate = check_gate(domain)
    if isinstance(gate, str):
        outcome.refused = gate
        _log_refusal(mesh, domain, gate)
        return outcome
    blocking = governance_errors(mesh, domain)
    if blocking:
        outcome.refused = "error-level governance findings: " + "; ".join(blocking)
        _log_refusal(mesh, domain, outcome.refused, gate.invocation_id)
        return outcome
    storage = storage_of(domain, target)
    spark = storage is not None and storage.adapter == "spark"
    if storage is None or storage.path is None or not (storage.path.is_dir() if spark else storage.path.is_file()):
        what = "Spark warehouse folder" if spark else "DuckDB storage"
        raise ArtifactError(f"{domain.name}: its {what} was not found; build the domain first.")
    exchange = Exchange(mesh.exchange_path)
    exchange.tmp_dir.mkdir(parents=True, exist_ok=True)
    _cleanup_scratch(exchange)
    placed: list[tuple[dict[str, Any], ReleaseDescriptor]] = []
    # DuckDB reads the domain's own file; on Spark, the table's Parquet files in the warehouse
    con = duckdb.connect() if spark else duckdb.connect(str(storage.path), read_only=True)
    try:
        for node in sorted(gate.products, key=lambda n: n["unique_id"]):
            version = None if node.get("version") is None else str(node["version"])
            key = product_key(domain.name, node["name"], version)
            release_id = new_release_id(key)
            scratch = exchange.tmp_dir / f"{release_id}.{os.getpid()}"
            scratch.mkdir(parents=True)
            data = scratch / "data.parquet"
            relation = _spark_files(storage.path, node) if spark else f'"{node["schema"]}"."{node["alias"]}"'
            target_sql = str(data).replace("'", "''")
            copied = con.execute(
                f"copy (select * from {relation}) to '{target_sql}' (format parquet, compression zstd)"
            ).fetchone()
            rows = int(copied[0]) if copied else 0
            group = gate.groups.get(node.get("group") or "", {})
            owner = group.get("owner") or {}
            contract = contract_of(node)
            descriptor = ReleaseDescriptor(
                product=key,
                project=domain.name,
                model=node["name"],
                version=version,
                latest_version=None if node.get("latest_version") is None else str(node["latest_version"]),
                node=node["unique_id"],
                release_id=release_id,
                produced_at=datetime.now(UTC).isoformat(),
                description=node.get("description") or "",
                owner=Owner(group=node.get("group"), name=owner.get("name"), email=owner.get("email")),
                deprecation_date=node.get("deprecation_date"),
                contract=contract,
                contract_hash=contract.fingerprint(),
                row_count=rows,
                files=[DataFile(path="data.parquet", bytes=data.stat().st_size, sha256=_sha256(data))],
                build=BuildInfo(invocation_id=gate.invocation_id, dbt_version=gate.dbt_version, built_at=gate.built_at),
                tests=gate.tests.get(node["unique_id"], TestSummary()),
            )
            with open(scratch / "release.json", "w", encoding="utf-8") as handle:
                handle.write(descriptor.model_dump_json(indent=2) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            releases = exchange.releases_dir(domain.name, node["name"], version)
            releases.mkdir(parents=True, exist_ok=True)
            os.rename(scratch, releases / release_id)  # complete, immutable, not yet current
            fsync_dir(releases)
            placed.append((node, descriptor))
    finally:
        con.close()
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
    if pause:
        time.sleep(pause)
    for node, descriptor in placed:
        exchange.append_log(
            {
                "event": "publish",
                "product": descriptor.product,
                "release_id": descriptor.release_id,
                "rows": descriptor.row_count,
                "contract_hash": descriptor.contract_hash,
                "invocation_id": gate.invocation_id,
            }
        )
        write_atomic(
            exchange.product_dir(domain.name, node["name"], descriptor.version) / "current.json",
            f'{{"release_id": "{descriptor.release_id}", "product": "{descriptor.product}"}}\n',
        )
        outcome.releases.append(descriptor)
    outcome.expired = apply_retention(mesh, exchange, [d for _, d in placed])
    outcome.seconds = time.perf_counter() - start
    return outcome
