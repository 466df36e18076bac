"""Write a domain's data products as new releases, atomically (the gate is workflows/release.py).

A release is written completely (data, then descriptor) into a scratch folder, moved into
place with one rename, logged, and only then made current by replacing ``current.json``. A
publisher killed at any point leaves the previous release current and intact.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ConfigError
from mesh_tools.core.files import file_sha256, fsync_dir
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.core.paths import safe_name, safe_version
from mesh_tools.dbt import engines
from mesh_tools.dbt.engines import duckdb as duckdb_engine
from mesh_tools.exchange.retention import apply_retention
from mesh_tools.model.nodes import Node
from mesh_tools.model.release import (
    BuildInfo,
    Contract,
    DataFile,
    Owner,
    ReleaseColumn,
    ReleaseDescriptor,
    TestSummary,
)
from mesh_tools.store.exchange import Exchange, new_release_id

CLEAR_FILE = "data.pii.parquet"  # a release's PII in clear, for the consumers its policy names


@dataclass
class PublishOutcome:
    domain: str
    releases: list[ReleaseDescriptor] = field(default_factory=list)
    refused: str | None = None
    expired: list[str] = field(default_factory=list)
    findings: dict[str, int] = field(default_factory=dict)  # governance findings by severity
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(r.row_count for r in self.releases)


@dataclass(frozen=True)
class BuildFacts:
    """What a passed gate knows about the build the releases come from."""

    products: list[Node]
    tests: dict[str, TestSummary]
    invocation_id: str | None
    dbt_version: str | None
    built_at: str | None
    groups: dict[str, dict[str, Any]]
    adapter: str | None = None


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


def log_refusal(mesh: Mesh, domain: Domain, reason: str, invocation_id: str | None = None) -> None:
    """A refused publication is an event too: health reports it with the products left behind."""
    event: dict[str, Any] = {"event": "refused", "domain": domain.name, "reason": reason}
    if invocation_id:
        event["invocation_id"] = invocation_id
    Exchange(mesh.exchange_path).append_log(event)


def unsafe_product_name(domain: Domain, products: list[Node]) -> str | None:
    """Why a product's name or version cannot name its release folder, located in the domain's files."""
    for node in products:
        where = f"{domain.name}/{node.properties_file or node.file or node.unique_id}"
        try:
            safe_name(node.raw.get("name"), "model name", where)
            if node.version is not None:
                safe_version(node.raw["version"], where)
        except ConfigError as exc:
            return str(exc)
    return None


def write_releases(mesh: Mesh, domain: Domain, facts: BuildFacts, target: str | None, outcome: PublishOutcome) -> None:
    """Write, place and make current one release per product of a build that passed its gate.

    Runs inside the domain's worker process (its folder is the working directory): the data is
    read through the domain's own dbt connection. A refusal (a name that is a path, a value no
    release can carry) is ``outcome.refused``, logged; nothing of it is left in the exchange.
    """
    start = time.perf_counter()
    exchange = Exchange(mesh.exchange_path)
    products = sorted(facts.products, key=lambda n: n["unique_id"])
    unsafe = unsafe_product_name(domain, products)
    if unsafe:  # a name that would leave the product's folder: nothing is written
        outcome.refused = unsafe
        log_refusal(mesh, domain, unsafe, facts.invocation_id)
        return outcome
    exchange.tmp_dir.mkdir(parents=True, exist_ok=True)
    _cleanup_scratch(exchange)
    scratches = []
    for node in products:
        release_id = new_release_id(node.key)
        scratch = exchange.tmp_dir / f"{release_id}.{os.getpid()}"
        scratch.mkdir(parents=True)
        scratches.append((release_id, scratch))
    try:
        paths = [scratch / "data.parquet" for _, scratch in scratches]
        exported = engines.export(domain, facts.adapter, products, paths, target, mesh.profiles_dir)
    except engines.UnpublishableData as exc:
        for _, scratch in scratches:
            shutil.rmtree(scratch, ignore_errors=True)
        outcome.refused = str(exc)
        log_refusal(mesh, domain, outcome.refused, facts.invocation_id)
        return outcome
    except BaseException:
        for _, scratch in scratches:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    placed: list[ReleaseDescriptor] = []
    made_current: set[str] = set()
    try:
        for node, (release_id, scratch), (rows, columns) in zip(products, scratches, exported, strict=True):
            placed.append(_place_release(exchange, domain, facts, node, release_id, scratch, rows, columns))
        for descriptor in placed:
            exchange.append_log(
                {
                    "event": "publish",
                    "product": descriptor.product,
                    "release_id": descriptor.release_id,
                    "rows": descriptor.row_count,
                    "contract_hash": descriptor.contract_hash,
                    "invocation_id": facts.invocation_id,
                }
            )
            exchange.switch_current(descriptor)
            made_current.add(descriptor.release_id)
            outcome.releases.append(descriptor)
    except BaseException as exc:
        # a full disk, an I/O error, a kill: what this run wrote and never made current goes, so
        # nothing it leaves behind is read, kept by retention, or in the way of the next try
        for _, scratch in scratches:
            shutil.rmtree(scratch, ignore_errors=True)
        for d in placed:
            if d.release_id not in made_current:
                shutil.rmtree(exchange.releases_dir(d.project, d.model, d.version) / d.release_id, ignore_errors=True)
        if isinstance(exc, OSError) and not exc.filename:  # a write or sync that names no file: the exchange
            raise OSError(exc.errno, exc.strerror, str(exchange.root)) from exc
        raise
    outcome.expired = apply_retention(mesh, exchange, placed)
    outcome.seconds = time.perf_counter() - start
    return outcome


def _place_release(
    exchange: Exchange, domain: Domain, facts: BuildFacts, node: Node, release_id: str, scratch: Path,
    rows: int, columns: list[ReleaseColumn],
) -> ReleaseDescriptor:  # fmt: skip
    """Mask PII, write the descriptor, then move the complete release into place (not yet current)."""
    version = node.version
    data = scratch / "data.parquet"
    pii, readers = pii_policy(node)
    masked = mask_pii(data, columns, pii, readers)
    files = [DataFile(path="data.parquet", bytes=data.stat().st_size, sha256=file_sha256(data))]
    if masked and readers:
        clear = scratch / CLEAR_FILE
        files.append(DataFile(path=CLEAR_FILE, bytes=clear.stat().st_size, sha256=file_sha256(clear), readers=readers))
    group = facts.groups.get(node.group or "", {})
    owner = group.get("owner") or {}
    contract = Contract.of(node)
    descriptor = ReleaseDescriptor(
        product=node.key,
        project=domain.name,
        model=node.name,
        version=version,
        latest_version=node.latest_version,
        node=node.unique_id,
        release_id=release_id,
        produced_at=datetime.now(UTC).isoformat(),
        description=node.description,
        owner=Owner(group=node.group, name=owner.get("name"), email=owner.get("email")),
        deprecation_date=node.deprecation_date,
        contract=contract,
        contract_hash=contract.fingerprint(),
        row_count=rows,
        engine=facts.adapter,
        columns=columns,
        files=files,
        pii_columns=masked,
        build=BuildInfo(invocation_id=facts.invocation_id, dbt_version=facts.dbt_version, built_at=facts.built_at),
        tests=facts.tests.get(node.unique_id, TestSummary()),
    )
    with open(scratch / "release.json", "w", encoding="utf-8") as handle:
        handle.write(descriptor.model_dump_json(indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    releases = exchange.releases_dir(domain.name, node.name, version)
    releases.mkdir(parents=True, exist_ok=True)
    os.rename(scratch, releases / release_id)  # complete, immutable, not yet current
    fsync_dir(releases)
    return descriptor


def pii_policy(node: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The product's PII columns (``meta: {pii: ...}``, failing closed) and the consumers allowed to read
    them in clear: ``meta.pii_allowed_consumers`` on the model; absent, or anything but a list, allows no one.
    """
    typed = node if isinstance(node, Node) else Node(str(node.get("unique_id") or "model.?.?"), node)
    return typed.pii_columns, sorted(set(typed.pii_readers or []))


def mask_pii(data: Path, columns: list[ReleaseColumn], pii: list[str], readers: list[str]) -> list[str]:
    """Rewrite ``data`` with its PII columns NULL (same names and types); keep the clear file for ``readers``.

    Returns the columns masked. The clear copy, when the policy names readers, is ``CLEAR_FILE``
    beside ``data``; with no reader it is deleted before the release is placed.
    """
    import duckdb

    by_name = {c.name.lower(): c for c in columns}
    hit = [by_name[name.lower()] for name in dict.fromkeys(pii) if name.lower() in by_name]
    if not hit:
        return []
    clear = data.with_name(CLEAR_FILE)
    os.replace(data, clear)
    nulls = ", ".join(f"cast(null as {c.parquet_type}) as {duckdb_engine.quote(c.name)}" for c in hit)
    con = duckdb.connect()
    try:
        source, target = duckdb_engine.literal(str(clear)), duckdb_engine.literal(str(data))
        copy = f"copy (select * replace ({nulls}) from read_parquet({source})) to {target}"
        engines.write_file(con, f"{copy} (format parquet, compression zstd)", data)
    finally:
        con.close()
    if not readers:
        clear.unlink()
    return [c.name for c in hit]
