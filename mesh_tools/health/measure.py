"""Measure each data product: row count, null rate of its key columns, schema hash.

A product is measured once per release, from the release's Parquet file (metadata only: row
counts and null counts are in the footer). A product built but not published (``--no-publish``)
is measured from the domain's DuckDB file, read-only, once per dbt invocation.
"""

from __future__ import annotations

import json
from typing import Any

from mesh_tools.artifacts import public_model_nodes
from mesh_tools.errors import MeshError
from mesh_tools.health.collect import Collection, DomainArtifacts, schema_hash, sql_path
from mesh_tools.health.history import History
from mesh_tools.mesh import Mesh


def key_columns(node: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """Primary-key columns from the contract, else the columns with a `unique` test."""
    keys = [
        name
        for name, column in (node.get("columns") or {}).items()
        if any(c.get("type") == "primary_key" for c in column.get("constraints") or [])
    ]
    for constraint in node.get("constraints") or []:
        if constraint.get("type") == "primary_key":
            keys.extend(constraint.get("columns") or [])
    if keys:
        return list(dict.fromkeys(keys))
    uid = node.get("unique_id")
    for test in manifest.get("nodes", {}).values():
        meta = test.get("test_metadata") or {}
        if test.get("resource_type") == "test" and meta.get("name") == "unique" and test.get("attached_node") == uid:
            if test.get("column_name"):
                keys.append(str(test["column_name"]))
    return list(dict.fromkeys(keys))


def measure_products(mesh: Mesh, history: History, collection: Collection) -> None:
    import duckdb

    from mesh_tools.exchange.store import Exchange, product_key

    exchange = Exchange(mesh.exchange_path)
    measured = history.known("measurements", "basis")
    rows: list[dict[str, Any]] = []
    con = duckdb.connect()
    try:
        for name, art in collection.domains.items():
            if art.manifest is None:
                continue
            unpublished: list[tuple[str, dict[str, Any]]] = []
            for node in public_model_nodes(name, art.manifest):
                version = None if node.get("version") is None else str(node["version"])
                key = product_key(name, node["name"], version)
                keys = key_columns(node, art.manifest)
                try:
                    release = exchange.current(name, node["name"], version)
                except MeshError as exc:
                    art.notes.append(str(exc))
                    release = None
                built_now = _built(art, node["unique_id"])
                if release is not None and release.descriptor.build.invocation_id == art.invocation_id:
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


def _built(art: DomainArtifacts, uid: str) -> bool:
    return any(
        r.get("unique_id") == uid and r.get("status") == "success" for r in (art.run_results or {}).get("results", [])
    )


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


def _from_storage(
    mesh: Mesh, collection: Collection, art: DomainArtifacts, products: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    import duckdb

    from mesh_tools.profiles import storage_of

    domain = mesh.domains[art.name]
    try:
        storage = storage_of(domain, mesh.defaults.target)
    except MeshError as exc:
        art.notes.append(f"products not measured: {exc}")
        return []
    if storage is None or storage.path is None or not storage.path.is_file():
        return []  # not a DuckDB file: measured when published
    try:
        con = duckdb.connect(str(storage.path), read_only=True)
    except duckdb.Error as exc:
        art.notes.append(f"products not measured ({str(exc).splitlines()[0]})")
        return []
    rows = []
    try:
        for key, node in products:
            relation = f'"{node["schema"]}"."{node.get("alias") or node["name"]}"'
            keys = key_columns(node, art.manifest or {})
            try:
                columns = [(str(r[0]), str(r[1])) for r in con.execute(f"describe {relation}").fetchall()]
                nulls_sql = "".join(f', count(*) filter (where "{k}" is null)' for k in keys)
                counted = con.execute(f"select count(*){nulls_sql} from {relation}").fetchone() or (0,)
            except duckdb.Error as exc:
                art.notes.append(f"{key} not measured ({str(exc).splitlines()[0]})")
                continue
            nulls = {k: int(counted[i + 1]) for i, k in enumerate(keys)}
            basis = f"invocation:{art.invocation_id}"
            rows.append(_row(collection, art.name, key, basis, None, art.invocation_id, int(counted[0]), keys, nulls,
                             columns))  # fmt: skip
    finally:
        con.close()
    return rows
