"""Measure each data product: row count, null rate of its key columns, schema hash.

A product is measured once per release, from the release's Parquet file (metadata only: row
counts and null counts are in the footer). A product built but not published (``--no-publish``)
is measured right after its build, through the domain's own dbt connection (so attached
databases and settings apply as in dbt), into ``target/mesh_measurements.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import MeshError
from mesh_tools.core.jsonfile import loads
from mesh_tools.core.mesh import Mesh
from mesh_tools.health.history import History
from mesh_tools.health.inputs import Collection, DomainArtifacts
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node

MEASUREMENTS = "mesh_measurements.json"


def key_columns(node: Node, manifest: Manifest) -> list[str]:
    """Primary-key columns from the contract, else the columns with a `unique` test."""
    keys = [
        name for name, column in node.columns.items() if any(c.get("type") == "primary_key" for c in column.constraints)
    ]
    for constraint in node.constraints:
        if constraint.get("type") == "primary_key":
            keys.extend(constraint.get("columns") or [])
    if keys:
        return list(dict.fromkeys(keys))
    for test in manifest.tests_of(node.unique_id, data_only=True):
        if test.test_name == "unique" and test.attached_node == node.unique_id and test.column_name:
            keys.append(test.column_name)
    return list(dict.fromkeys(keys))


def schema_hash(columns: list[tuple[str, str]]) -> str:
    shape = json.dumps([[n.lower(), t.lower()] for n, t in columns])
    return "sha256:" + hashlib.sha256(shape.encode()).hexdigest()[:16]


def sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def measure_products(mesh: Mesh, history: History, collection: Collection) -> None:
    from mesh_tools.dbt import engines
    from mesh_tools.store.exchange import open_exchange

    exchange = open_exchange(mesh)
    measured = history.known("measurements", "basis")
    rows: list[dict[str, Any]] = []
    con = engines.connect_local()  # reads the release files
    try:
        for name, art in collection.domains.items():
            if art.manifest is None:
                continue
            unpublished: list[tuple[str, Node]] = []
            for node in art.manifest.products():
                key = node.key
                keys = key_columns(node, art.manifest)
                try:
                    # in an object store the descriptor is read, not the data (measured from what it records)
                    release = exchange.current(name, node.name, node.version, verify=exchange.local)
                except MeshError as exc:
                    art.notes.append(str(exc))
                    release = None
                built_now = art.run_results is not None and art.run_results.status_of(node.unique_id) == "success"
                confirmed = f"confirm:{art.invocation_id}"
                if release is not None and release.descriptor.build.invocation_id != art.invocation_id \
                        and exchange.vouches(release.descriptor, art.invocation_id):  # fmt: skip
                    # rebuilt with the same rows (early cutoff): a measurement of the confirmed release, now
                    if confirmed not in measured:
                        row = _from_release(con, collection, name, key, keys, release)
                        rows.append({**row, "basis": confirmed, "invocation_id": art.invocation_id})
                elif release is not None and release.descriptor.build.invocation_id == art.invocation_id:
                    if release.descriptor.release_id not in measured:
                        rows.append(_from_release(con, collection, name, key, keys, release))
                elif built_now and f"invocation:{art.invocation_id}" not in measured:
                    unpublished.append((key, node))
                elif release is not None and release.descriptor.release_id not in measured:
                    rows.append(_from_release(con, collection, name, key, keys, release))
            if unpublished:
                rows.extend(_from_storage(mesh, collection, art, unpublished))
    finally:
        con.close()
    history.insert("measurements", rows)


def _row(
    collection: Collection,
    domain: str,
    key: str,
    basis: str,
    release_id: str | None,
    invocation: str | None,
    rows: int,
    keys: list[str],
    nulls: dict[str, int],
    columns: list[tuple[str, str]],
) -> dict[str, Any]:
    rates = [nulls.get(k, 0) / rows for k in keys if rows]
    return {
        "collection_id": collection.collection_id,
        "measured_at": collection.collected_at,
        "domain": domain,
        "product": key,
        "basis": basis,
        "release_id": release_id,
        "invocation_id": invocation,
        "rows": rows,
        "key_columns": ",".join(keys),
        "key_null_rate": max(rates) if rates else (0.0 if keys else None),
        "schema_hash": schema_hash(columns),
        "columns": json.dumps(columns),
    }


def _from_release(con: Any, collection: Collection, domain: str, key: str, keys: list[str], release: Any) -> dict:
    d = release.descriptor
    if d.warehouse is not None or release.folder is None:  # a warehouse table, an object: what its descriptor records
        row = _row(collection, domain, key, d.release_id, d.release_id, d.build.invocation_id, d.row_count, [], {},
                   [(c.name, c.type) for c in d.columns])  # fmt: skip
        row["key_columns"] = ",".join(keys)  # key null rates are not measured there
        return row
    path = sql_path(release.data_path)
    columns = [(str(r[0]), str(r[1])) for r in con.execute(f"describe select * from read_parquet('{path}')").fetchall()]
    nulls: dict[str, int] = {}
    if keys:
        for column, count in con.execute(
            f"select path_in_schema, sum(stats_null_count) from parquet_metadata('{path}') group by 1"
        ).fetchall():
            nulls[str(column)] = int(count or 0)
    d = release.descriptor
    return _row(
        collection, domain, key, d.release_id, d.release_id, d.build.invocation_id, d.row_count, keys, nulls, columns
    )


def measure_built_products(mesh: Mesh, domain: Any, target: str | None) -> list[str]:
    """Measure the domain's products as its last build left them (in its worker process); notes on failure.

    Written to ``target/mesh_measurements.json`` with the build's invocation id, for health to read.
    """
    from mesh_tools.core.files import write_atomic
    from mesh_tools.dbt import engines
    from mesh_tools.dbt import runner as dbt_runner
    from mesh_tools.dbt.runtime import install_runtime
    from mesh_tools.model.manifest import RunResults

    manifest = Manifest.load(domain.manifest_path, domain.name, "Build again.")
    results = RunResults.read(domain.run_results_path, "Build again.")
    invocation = results.invocation_id if results else None
    products = manifest.products()
    engine = engines.find_engine(manifest.adapter)
    if not products or engine is None:
        return []
    statements: list[str] = []
    keys_of = []
    for node in products:
        keys = key_columns(node, manifest)
        keys_of.append(keys)
        measure = engine.measure_sql(node.relation, keys)
        if measure is None:
            return []  # the engine's products are measured from what their publish recorded
        statements += measure
    try:
        install_runtime(domain)
        answers = dbt_runner.run_statements(domain.path, statements, target=target, profiles_dir=mesh.profiles_dir)
    except MeshError as exc:
        return [f"products not measured: {exc}"]
    measured = {}
    for index, node in enumerate(products):
        counted = answers[index * 2 + 1][0]
        described = answers[index * 2]
        columns = [(str(r[0]), str(r[1])) for r in described if r and r[0] and not str(r[0]).startswith("#")]
        measured[node.key] = {
            "rows": int(counted[0] or 0),
            "keys": keys_of[index],
            "nulls": {k: int(counted[i + 1] or 0) for i, k in enumerate(keys_of[index])},
            "columns": columns,
        }
    write_atomic(
        domain.target_dir / MEASUREMENTS,
        json.dumps({"invocation_id": invocation, "products": measured}, indent=2) + "\n",
    )
    return []


def _from_storage(
    mesh: Mesh, collection: Collection, art: DomainArtifacts, products: list[tuple[str, Node]]
) -> list[dict[str, Any]]:
    """Products measured right after an unpublished build (``measure_built_products``)."""
    domain = mesh.domains[art.name]
    try:
        data = loads((domain.target_dir / MEASUREMENTS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        art.notes.append(f"products not measured ({domain.target_dir / MEASUREMENTS}: {exc})")
        return []
    if not isinstance(data, dict) or data.get("invocation_id") != art.invocation_id:
        return []  # measured after another build: not this one's
    rows = []
    for key, node in products:
        found = (data.get("products") or {}).get(key)
        if not isinstance(found, dict):
            continue
        keys = key_columns(node, art.manifest) if art.manifest else []
        columns = [(str(c[0]), str(c[1])) for c in found.get("columns") or []]
        basis = f"invocation:{art.invocation_id}"
        rows.append(_row(collection, art.name, key, basis, None, art.invocation_id, int(found.get("rows") or 0),
                         keys, {k: int(v) for k, v in (found.get("nulls") or {}).items()}, columns))  # fmt: skip
    return rows
