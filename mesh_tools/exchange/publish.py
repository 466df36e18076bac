"""Write a domain's data products as new releases, atomically (the gate is workflows/release.py).

A release is written completely (data, then descriptor) into a scratch folder, moved into
place with one rename, logged, and only then made current by replacing ``current.json``. A
publisher killed at any point leaves the previous release current and intact.

Early cutoff: a rebuilt product whose release would equal the channel's current one (the same rows, by an
order-free content hash that leaves out the product's audit columns, and the same everything a consumer
sees but the facts of the run) makes no new release: its scratch is discarded and the current release is
confirmed (a record beside its pointer and a ``confirm`` event), so its readers have nothing to rebuild.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from mesh_tools.core.errors import ConfigError, MeshError
from mesh_tools.core.files import file_sha256
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.core.paths import safe_name, safe_version
from mesh_tools.dbt import engines
from mesh_tools.dbt.engines import postgres as postgres_engine
from mesh_tools.dbt.engines import postgres_grants, postgres_publish
from mesh_tools.exchange.retention import apply_retention
from mesh_tools.model import odcs
from mesh_tools.model.datatypes import contract_problems
from mesh_tools.model.interface import PublishedInterface
from mesh_tools.model.nodes import Node
from mesh_tools.model.release import (
    BuildInfo,
    Confirmation,
    Contract,
    DataFile,
    Owner,
    ReleaseColumn,
    ReleaseDescriptor,
    ReleaseInterface,
    TestSummary,
)
from mesh_tools.store.exchange import Exchange, new_release_id, open_exchange

CLEAR_FILE = "data.pii.parquet"  # a release's PII in clear, for the consumers its policy names
NEW_RELEASE_VARIABLE = "MESH_NEW_RELEASE"  # set (`mesh build/publish --new-release`): no early cutoff
AUDIT_KEY = "audit_columns"  # meta.audit_columns: a product's run-fact columns, left out of its content hash


@dataclass
class PublishOutcome:
    domain: str
    releases: list[ReleaseDescriptor] = field(default_factory=list)
    confirmed: list[Confirmation] = field(default_factory=list)  # current releases this rebuild left current
    refused: str | None = None
    expired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the publisher should know (retention skipped ...)
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
    checks: Mapping[str, list[Node]] = field(default_factory=dict)  # each product's data tests (its ODCS quality)


def log_refusal(mesh: Mesh, domain: Domain, reason: str, invocation_id: str | None = None) -> None:
    """A refused publication is an event too: health reports it with the products left behind."""
    event: dict[str, Any] = {"event": "refused", "domain": domain.name, "reason": reason}
    if invocation_id:
        event["invocation_id"] = invocation_id
    open_exchange(mesh).append_log(event)


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


def unsafe_contract(domain: Domain, products: list[Node]) -> str | None:
    """Why a product's contract cannot cross to other domains, located: a column type that is not a type, or a
    column name no quoting holds (each consumer's dbt runs ``cast(null as <type>) as <name>``)."""
    for node in products:
        problems = contract_problems(node.raw.get("columns"), node.contract_enforced)
        if problems:
            return (
                f"{domain.name}/{node.properties_file or node.file or node.unique_id} ({node.key}): {problems[0]}. "
                "A contract's types and names run as SQL in every consumer's database: declare a type (integer, "
                "decimal(10,2), varchar, struct(a integer) ...) and a column name that can be quoted."
            )
    return None


def new_release_forced() -> bool:
    """Whether this run makes a new release of every product even when its rows are unchanged."""
    return os.environ.get(NEW_RELEASE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def audit_columns(node: Node) -> list[str]:
    """The product's declared audit columns (``meta.audit_columns``), as declared; [] when it declares none."""
    value = node.meta.get(AUDIT_KEY)
    return list(value) if isinstance(value, list) else []


def unsafe_audit_columns(
    domain: Domain, products: list[Node], columns: list[list[ReleaseColumn]] | None = None
) -> str | None:
    """Why a product's ``meta.audit_columns`` cannot be used, located: not a list of column names, or (with the
    exported ``columns``) a name that is not one of its columns. Refused at publish rather than ignored: a
    declaration that silently matched nothing would hash a run-fact column and never confirm a release."""
    for index, node in enumerate(products):
        value = node.meta.get(AUDIT_KEY)
        if value is None:
            continue
        where = f"{domain.name}/{node.properties_file or node.file or node.unique_id} ({node.key})"
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            return (
                f"{where}: meta.{AUDIT_KEY} is {str(value)[:80]!r}, not a list of column names. Declare the columns "
                f"that hold facts of the run, e.g. `meta: {{{AUDIT_KEY}: [_built_at, _invocation_id]}}` (in the "
                "model's config, or `+meta` in dbt_project.yml), or remove it."
            )
        if columns is not None:
            present = {c.name.lower() for c in columns[index]}
            unknown = [v for v in value if v.lower() not in present]
            if unknown:
                return (
                    f"{where}: meta.{AUDIT_KEY} names {unknown[0]!r}, which is not a column of the product (its "
                    f"columns: {', '.join(c.name for c in columns[index])[:200]}). Fix the name, or declare the "
                    "audit columns only on the products that have them."
                )
    return None


def write_releases(
    mesh: Mesh, domain: Domain, facts: BuildFacts, target: str | None, outcome: PublishOutcome
) -> PublishOutcome:
    """Write, place and make current one release per product of a build that passed its gate; ``outcome``, filled.

    Runs inside the domain's worker process (its folder is the working directory): the data is
    read through the domain's own dbt connection. A refusal (a name that is a path, a value no
    release can carry) is ``outcome.refused``, logged; nothing of it is left in the exchange.
    """
    start = time.perf_counter()
    exchange = open_exchange(mesh)
    products = sorted(facts.products, key=lambda n: n["unique_id"])
    unsafe = (unsafe_product_name(domain, products) or unsafe_contract(domain, products)
              or unsafe_audit_columns(domain, products))  # fmt: skip
    if unsafe:  # a name that would leave the product's folder, a type that is SQL: nothing is written
        outcome.refused = unsafe
        log_refusal(mesh, domain, unsafe, facts.invocation_id)
        return outcome
    exchange.tmp_dir.mkdir(parents=True, exist_ok=True)
    exchange.sweep(domain.name)
    # each pointer as the publish finds it: switched only if no other publish switched it meanwhile
    tags = {n.key: exchange.read_pointer(domain.name, n.name, n.version)[1] for n in products}
    engine = engines.find_engine(facts.adapter)
    if engine is not None and engine.releases_in_warehouse:
        return _write_warehouse_releases(mesh, domain, facts, target, outcome, products, exchange, start, tags)
    scratches = []
    for node in products:
        release_id = new_release_id(node.key)
        scratch = exchange.tmp_dir / f"{release_id}.{os.getpid()}"
        scratch.mkdir(parents=True)
        scratches.append((release_id, scratch))
    try:
        from mesh_tools.dbt import profiles

        paths = [scratch / "data.parquet" for _, scratch in scratches]
        profile = profiles.load_profile(domain.path, target, mesh.profiles_dir)
        exported = engines.export(domain, facts.adapter, products, paths, profile)
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
    unsafe = unsafe_audit_columns(domain, products, [columns for _, columns in exported])
    if unsafe:
        for _, scratch in scratches:
            shutil.rmtree(scratch, ignore_errors=True)
        outcome.refused = unsafe
        log_refusal(mesh, domain, unsafe, facts.invocation_id)
        return outcome
    placed: list[ReleaseDescriptor] = []
    confirmed: list[tuple[Confirmation, ReleaseDescriptor]] = []
    force = new_release_forced()
    try:
        for node, (release_id, scratch), (rows, columns) in zip(products, scratches, exported, strict=True):
            descriptor = _prepare_release(exchange, domain, facts, node, release_id, scratch, rows, columns,
                                          outcome.notes)  # fmt: skip
            checks = facts.checks.get(node.unique_id, [])
            current = None if force else _confirmable(exchange, descriptor, tags.get(node.key), node, checks)
            if current is not None:  # rows and all a consumer sees unchanged: nothing new to read
                shutil.rmtree(scratch, ignore_errors=True)
                confirmed.append((_confirmation(facts, current), current))
                continue
            exchange.place(scratch, descriptor)  # complete, immutable, not yet current
            placed.append(descriptor)
        publish_interface(exchange, domain)  # before any pointer moves: a failure here leaves everything current
    except BaseException as exc:
        _discard(exchange, scratches, placed, set())
        _raise_naming_exchange(exc, exchange)
    _make_current(mesh, exchange, facts, placed, scratches, outcome, tags)
    _confirm(exchange, confirmed, outcome)
    outcome.seconds = time.perf_counter() - start
    return outcome


def _confirmable(exchange: Exchange, descriptor: ReleaseDescriptor, tag: str | None, node: Node,
                 checks: list[Node]) -> ReleaseDescriptor | None:  # fmt: skip
    """The channel's current release, when ``descriptor`` would add nothing to it but a new id and it is intact
    (its descriptor loads, its files are there and match their SHA-256); else None (publish anew).

    Besides the descriptor, the data contract (ODCS) stored with the current release must be the one this
    build would write for it (``_contract_text`` of the new descriptor with the current one's run facts): a
    test added or dropped changes the contract's quality checks, which consumers read."""
    d = descriptor
    if d.content_hash is None or tag is None:
        return None
    try:
        current_id, now = exchange.read_pointer(d.project, d.model, d.version)
        if current_id is None or now != tag:  # moved since this publish began: publish over it as usual
            return None
        current = exchange.load(d.project, d.model, d.version, current_id, verify=True)
        if not exchange.local and not _store_files_verified(exchange, current):
            return None
    except (MeshError, OSError):
        return None  # damaged or gone: a new release replaces it
    c = current.descriptor
    if d.differences(c):
        return None
    same_run = d.model_copy(update={"release_id": c.release_id, "produced_at": c.produced_at, "build": c.build,
                                    "tests": c.tests, "files": c.files})  # fmt: skip
    try:
        stored = exchange.backend.read(f"{exchange.release_prefix(c.project, c.model, c.version, c.release_id)}/"
                                       f"{odcs.CONTRACT_FILE}")  # fmt: skip
    except (MeshError, OSError):
        return None
    wanted = _contract_text(exchange, same_run, node, checks)
    return c if (stored is None and wanted is None) or (stored is not None and stored.decode() == wanted) else None


def _contract_text(exchange: Exchange, descriptor: ReleaseDescriptor, node: Node, checks: list[Node]) -> str | None:
    """The data contract (ODCS YAML) of a release as `_prepare_release` writes it, or None when the standard's
    schema refuses it (then none is written)."""
    contract = odcs.build_contract(descriptor, node, checks, exchange.release_server(descriptor))
    return None if odcs.schema_problems(contract) else odcs.to_yaml(contract)


def _store_files_verified(exchange: Exchange, release: Any) -> bool:
    """Whether an object store still holds a release's files with the bytes its descriptor records (the way
    `mesh status` checks them: a download within its budget, or the ETag of bytes already found good)."""
    from mesh_tools.store.verify import Verifier

    return Verifier(exchange)._check_store(release).verified


def _confirmation(facts: BuildFacts, current: ReleaseDescriptor) -> Confirmation:
    return Confirmation(product=current.product, release_id=current.release_id,
                        confirmed_at=datetime.now(UTC).isoformat(), invocation_id=facts.invocation_id,
                        built_at=facts.built_at, content_hash=current.content_hash)  # fmt: skip


def _confirm(exchange: Exchange, confirmed: list[tuple[Confirmation, ReleaseDescriptor]],
             outcome: PublishOutcome) -> None:  # fmt: skip
    """Log each confirmation, then record it beside the product's pointer. The record names the release, so a
    pointer moved by another publish meanwhile leaves it confirming nothing (never another release)."""
    for record, current in confirmed:
        exchange.append_log({"event": "confirm", "product": record.product, "release_id": record.release_id,
                             "rows": current.row_count, "content_hash": record.content_hash,
                             "invocation_id": record.invocation_id})  # fmt: skip
        exchange.confirm(record, current)
        outcome.confirmed.append(record)


def publish_interface(exchange: Exchange, domain: Domain) -> None:
    """Put the domain's public interface (its public models', seeds' and snapshots' nodes, without SQL, and groups)
    in the exchange, folder or object store: the list of products its last publish offers in this channel (a
    product left out of it was withdrawn), and what consumers on machines without the domain's project read
    for a product that has no release yet. Each release carries its own node (``ReleaseDescriptor.interface``)."""
    import json

    data = json.loads(domain.manifest_path.read_text(encoding="utf-8"))
    interface = PublishedInterface.of_manifest(data, domain.name)
    key = exchange.interface_key(domain.name)
    if interface.nodes or exchange.backend.read(key) is not None:  # a domain that never offered a product has none
        exchange.backend.write(key, interface.to_bytes())


def _discard(exchange: Exchange, scratches: list[tuple[str, Path]], placed: list[ReleaseDescriptor],
             made_current: set[str]) -> None:  # fmt: skip
    """Remove what a failed publish wrote and never made current, so nothing of it is read or kept."""
    for _, scratch in scratches:
        shutil.rmtree(scratch, ignore_errors=True)
    for d in placed:
        if d.release_id not in made_current:
            try:
                exchange.discard(d)
            except Exception:  # noqa: BLE001 - an unreachable store: the next publish's sweep removes it
                pass


def _raise_naming_exchange(exc: BaseException, exchange: Exchange) -> NoReturn:
    """Raise ``exc`` again; a write or sync that names no file names the exchange."""
    if isinstance(exc, OSError) and not exc.filename:
        raise OSError(exc.errno, exc.strerror, str(exchange.root)) from exc
    raise exc


def _make_current(mesh: Mesh, exchange: Exchange, facts: BuildFacts, placed: list[ReleaseDescriptor],
                  scratches: list[tuple[str, Path]], outcome: PublishOutcome, tags: dict[str, str | None],
                  drop: Any = None) -> None:  # fmt: skip
    """Log each placed release and make it current in this run's channel, if its pointer is still the one
    the publish began with (``tags``); then apply retention (``drop``: a warehouse's tables)."""
    made_current: set[str] = set()
    try:
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
            exchange.switch_current(descriptor, expected=tags.get(descriptor.product))
            made_current.add(descriptor.release_id)
            outcome.releases.append(descriptor)
    except BaseException as exc:
        # a full disk, an I/O error, a kill: what this run wrote and never made current goes, so
        # nothing it leaves behind is read, kept by retention, or in the way of the next try
        _discard(exchange, scratches, placed, made_current)
        _raise_naming_exchange(exc, exchange)
    outcome.expired = apply_retention(mesh, exchange, placed, drop, outcome.notes)


def _write_warehouse_releases(
    mesh: Mesh, domain: Domain, facts: BuildFacts, target: str | None, outcome: PublishOutcome,
    products: list[Node], exchange: Exchange, start: float, tags: dict[str, str | None],
) -> PublishOutcome:  # fmt: skip
    """Publish into the warehouse (engines/postgres.py): release tables, pointer views and grants in
    one transaction on the domain's connection; then the descriptors, placed and made current as for files.

    Killed before the commit, the warehouse rolls everything back. Killed after it, release tables
    nobody recorded are left: a later publish of the domain drops them once an hour old (``sweep_sql``).
    """
    from mesh_tools.dbt import profiles
    from mesh_tools.exchange.access import Published, desired, readers_of, role_names, warehouse_roles
    from mesh_tools.model.release import WarehouseLocation
    from mesh_tools.store.exchange import PROD

    if exchange.env != PROD:  # its pointer views are prod's: a dev release would replace what prod reads
        outcome.refused = (
            f"{domain.name}: publishing to channel {exchange.env!r} on a warehouse target is not supported: the "
            "warehouse's pointer views are prod's. Build with `--no-publish`, or on a file target (DuckDB, Spark)."
        )
        log_refusal(mesh, domain, outcome.refused, facts.invocation_id)
        return outcome
    profile = profiles.load_profile(domain.path, target, mesh.profiles_dir)
    roles = warehouse_roles(mesh, target, mesh.profiles_dir)
    prefix = str(profile.schema or domain.name)
    refusal = _unsafe_warehouse_names(domain, exchange, prefix, products)
    if refusal:
        outcome.refused = refusal
        log_refusal(mesh, domain, refusal, facts.invocation_id)
        return outcome
    recorded = sorted(r for m, v in exchange.products_of(domain.name) for r in exchange.release_ids(domain.name, m, v))
    hour_ago = f"r{datetime.fromtimestamp(time.time() - 3600, UTC):%Y%m%dT%H%M%S%f}Z"
    exports, clear_readers = [], []
    for node in products:
        readers = readers_of(mesh, domain.name, node)
        clear_readers.append(list(readers.clear))
        pii, _ = pii_policy(node)
        exports.append(postgres_publish.Export(
            relation=node.relation, prefix=prefix, model=node.name, version=node.version,
            release_id=new_release_id(node.key), pii=tuple(dict.fromkeys(pii)),
            readers=role_names(readers.clear, roles),
        ))  # fmt: skip
    keys = [n.key for n in products]
    # every kept release's grants, set again from the policy as it is now, in the same transaction
    published = {k: Published(e.release_id, e.table, e.clear_table) for k, e in zip(keys, exports, strict=True)}
    policy = desired(mesh, domain, prefix, roles, published)
    outcome.notes += policy.refused  # consumers whose role is refused are granted nothing: said, with the profile
    grants = [postgres_grants.privilege_sql(p) for p in sorted(policy.grants, key=str)]
    try:
        sweep = postgres_publish.sweep_sql(postgres_engine.releases_schema(prefix), recorded, hour_ago)
        exported = postgres_publish.export(
            domain, exports, keys, target, mesh.profiles_dir, before=[sweep], grants=grants
        )
    except engines.UnpublishableData as exc:
        outcome.refused = str(exc)
        log_refusal(mesh, domain, outcome.refused, facts.invocation_id)
        return outcome
    placed: list[ReleaseDescriptor] = []
    scratches: list[tuple[str, Path]] = []
    try:
        for node, export, (rows, columns), clear in zip(products, exports, exported, clear_readers, strict=True):
            scratch = exchange.tmp_dir / f"{export.release_id}.{os.getpid()}"
            scratch.mkdir(parents=True)
            scratches.append((export.release_id, scratch))
            location = WarehouseLocation(
                engine=profile.adapter, database=profile.database,
                releases_schema=postgres_engine.releases_schema(prefix), table=export.table,
                clear_table=export.clear_table, clear_readers=clear if export.clear_table else [],
                products_schema=postgres_engine.products_schema(prefix),
                pointer=postgres_engine.pointer_view(node.name, node.version),
            )  # fmt: skip
            server = postgres_engine.odcs_server(profile.connection, location.database, location.releases_schema)
            placed.append(_place_release(exchange, domain, facts, node, export.release_id, scratch, rows, columns,
                                         outcome.notes, warehouse=location, server=server))  # fmt: skip
        publish_interface(exchange, domain)  # before any pointer moves: a failure here leaves everything current
    except BaseException as exc:
        _discard(exchange, scratches, placed, set())
        _raise_naming_exchange(exc, exchange)

    def drop(expired: list[ReleaseDescriptor]) -> None:
        """Drop the tables expired releases make in this domain's own releases schema (names derived, never
        read from the descriptors)."""
        tables = []
        for d in expired:
            for clear in (False, True):
                tables.append((postgres_engine.releases_schema(prefix),
                               postgres_engine.release_table(d.model, d.version, d.release_id, clear)))  # fmt: skip
        postgres_engine.run(domain, postgres_publish.drop_statements(tables), target, mesh.profiles_dir)

    _make_current(mesh, exchange, facts, placed, scratches, outcome, tags, drop)
    outcome.seconds = time.perf_counter() - start
    return outcome


def _unsafe_warehouse_names(domain: Domain, exchange: Exchange, prefix: str, products: list[Node]) -> str | None:
    """Why the warehouse names of a publish would be cut or shared: a schema past 63 bytes, or two
    products (the ones published and those in the exchange) whose pointer views would have one name."""
    long = postgres_engine.long_names(prefix, [])
    if long:
        return (
            f"{domain.name}: schema {long[0]} would be longer than PostgreSQL's 63 bytes and be cut: give the "
            "domain's postgres target a shorter `schema` in its profiles.yml."
        )
    owners: dict[str, str] = {}
    known = [(n.name, n.version) for n in products] + exchange.products_of(domain.name)
    for model, version in dict.fromkeys(known):
        key = f"{model} v{version}" if version is not None else model
        for clear in (False, True):
            view = postgres_engine.pointer_view(model, version, clear)
            other = owners.setdefault(view, key)
            if other != key:
                return (
                    f"{domain.name}: products {other} and {key} would share the pointer view "
                    f"{postgres_engine.products_schema(prefix)}.{view} on the warehouse: rename one of the models."
                )
    return None


def _place_release(
    exchange: Exchange, domain: Domain, facts: BuildFacts, node: Node, release_id: str, scratch: Path,
    rows: int, columns: list[ReleaseColumn], notes: list[str], warehouse: Any = None,
    server: dict[str, Any] | None = None,
) -> ReleaseDescriptor:  # fmt: skip
    """Prepare a release (``_prepare_release``), then move it into place (not yet current)."""
    descriptor = _prepare_release(exchange, domain, facts, node, release_id, scratch, rows, columns, notes,
                                  warehouse, server)  # fmt: skip
    exchange.place(scratch, descriptor)  # complete, immutable, not yet current
    return descriptor


def _prepare_release(
    exchange: Exchange, domain: Domain, facts: BuildFacts, node: Node, release_id: str, scratch: Path,
    rows: int, columns: list[ReleaseColumn], notes: list[str], warehouse: Any = None,
    server: dict[str, Any] | None = None,
) -> ReleaseDescriptor:  # fmt: skip
    """Mask PII, hash the rows as released (``content_hash``), write the descriptor and data contract into the
    scratch folder.

    A release in a warehouse (``warehouse``) has no files: its tables were masked when written, and it has no
    content hash (a warehouse release is never confirmed: every publish makes a new one).
    """
    version = node.version
    pii, readers = pii_policy(node)
    files: list[DataFile] = []
    audit = audit_columns(node)
    content_hash = None
    if warehouse is not None:
        present = {c.name.lower() for c in columns}
        masked = [c for c in dict.fromkeys(pii) if c.lower() in present]
    else:
        data = scratch / "data.parquet"
        masked = mask_pii(data, columns, pii, readers)
        files = [DataFile(path="data.parquet", bytes=data.stat().st_size, sha256=file_sha256(data))]
        if masked and readers:
            clear = scratch / CLEAR_FILE
            files.append(
                DataFile(path=CLEAR_FILE, bytes=clear.stat().st_size, sha256=file_sha256(clear), readers=readers)
            )
        content_hash = "|".join(engines.content_hash(scratch / f.path, audit) for f in files)
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
        format="table" if warehouse is not None else "parquet",
        files=files,
        warehouse=warehouse,
        pii_columns=masked,
        build=BuildInfo(invocation_id=facts.invocation_id, dbt_version=facts.dbt_version, built_at=facts.built_at),
        tests=facts.tests.get(node.unique_id, TestSummary()),
        interface=ReleaseInterface.of(node.raw, group or None),  # what its consumers stitch from
        content_hash=content_hash,
        audit_columns=audit,
    )
    with open(scratch / "release.json", "w", encoding="utf-8") as handle:
        handle.write(descriptor.model_dump_json(indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    # its data contract (ODCS), beside the descriptor and as immutable: where it is, what it holds; one
    # the standard's schema refuses (a `meta.odcs_quality` check written wrong) is not shipped, and said
    odcs_contract = odcs.build_contract(descriptor, node, facts.checks.get(node.unique_id, []),
                                        server or exchange.release_server(descriptor))  # fmt: skip
    problems = odcs.schema_problems(odcs_contract)
    if problems:
        notes.append(f"{descriptor.product}: released without its ODCS contract, which the standard's schema "
                     f"refuses: {problems[0]}")  # fmt: skip
    else:
        with open(scratch / odcs.CONTRACT_FILE, "w", encoding="utf-8") as handle:
            handle.write(odcs.to_yaml(odcs_contract))
            handle.flush()
            os.fsync(handle.fileno())
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
    by_name = {c.name.lower(): c for c in columns}
    hit = [by_name[name.lower()] for name in dict.fromkeys(pii) if name.lower() in by_name]
    if not hit:
        return []
    clear = data.with_name(CLEAR_FILE)
    os.replace(data, clear)
    engines.mask_columns(clear, data, [(c.name, c.parquet_type) for c in hit])
    if not readers:
        clear.unlink()
    return [c.name for c in hit]
