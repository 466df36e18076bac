"""Spark (dbt-spark), a local session: how a domain's products are read for a release, and how a consumer reads one.

A local session (``method: session`` without ``spark.remote``; a cluster is spark_cluster.py's)
keeps each table's Parquet files in its warehouse folder; publishing reads those files
(``file_format: parquet``) and writes the same single-file release a DuckDB domain writes. A Spark
consumer reads a release with ``parquet.`<path>```.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ArtifactError, display_path
from mesh_tools.dbt.engines.engine import Exported, FileEngine, ProfileProblem, Storage

NAME = "spark"
THRIFT_METHODS = ("thrift", "http", "odbc")


def credential(credentials: Any, key: str) -> Any:
    """One field of dbt's credentials, or of the connection facts a profile keeps (a mapping)."""
    if isinstance(credentials, Mapping):
        return credentials.get(key)
    return getattr(credentials, key, None)


def remote_url(credentials: Any) -> str | None:
    """The Spark Connect URL of a target (``server_side_parameters["spark.remote"]``), or None."""
    params = credential(credentials, "server_side_parameters") or {}
    url = params.get("spark.remote") if isinstance(params, Mapping) else None
    return str(url) if url else None


def is_cluster(credentials: Any) -> bool:
    """Whether dbt-spark ``credentials`` point at a cluster (a Thrift/HTTP/ODBC server, or Spark Connect)."""
    method = str(credential(credentials, "method") or "")
    return method in THRIFT_METHODS or (method == "session" and remote_url(credentials) is not None)


def read_release_sql(path: str) -> str:
    """A view over a release's file at its real path: a cluster follows none of this machine's links."""
    return "select * from parquet.`" + os.path.realpath(path).replace("`", "``") + "`"


def table_files(warehouse: Path, node: dict[str, Any]) -> str:
    """A DuckDB ``read_parquet`` over the Parquet files of a product's table in a local warehouse."""
    folder = warehouse / f"{str(node['schema']).lower()}.db" / str(node["alias"]).lower()
    if not any(folder.glob("*.parquet")):
        raise ArtifactError(
            f"{display_path(folder)}: no Parquet files for {node['unique_id']}. Publishing from Spark reads the "
            "table's files: materialize products as tables with `file_format: parquet` in a local warehouse."
        )
    return "read_parquet('" + str(folder / "*.parquet").replace("'", "''") + "')"


def export(domain: Any, products: list[Any], paths: list[Path], profile: Any) -> Exported:
    """From the Parquet files of each product's table in the local Spark warehouse."""
    import duckdb

    from mesh_tools.dbt.engines import duckdb as duckdb_engine
    from mesh_tools.dbt.engines.duckdb import write_file
    from mesh_tools.model.release import ReleaseColumn

    if profile.warehouse is None or not profile.warehouse.is_dir():
        raise ArtifactError(f"{domain.name}: its Spark warehouse folder was not found; build the domain first.")
    out = []
    con = duckdb.connect()
    try:
        for node, path in zip(products, paths, strict=True):
            relation = table_files(profile.warehouse, node)
            copied = write_file(
                con, f"copy (select * from {relation}) to {duckdb_engine.literal(str(path))} "
                "(format parquet, compression zstd)", path,
            ).fetchone()  # fmt: skip
            described = con.execute(
                f"select column_name, column_type from (describe select * from "
                f"read_parquet({duckdb_engine.literal(str(path))}))"
            ).fetchall()
            columns = [ReleaseColumn(name=n, type=t, parquet_type=t) for n, t in described]
            out.append((int(copied[0]) if copied else 0, columns))
    finally:
        con.close()
    return out


class Spark(FileEngine):
    """Spark through dbt-spark: one metastore and warehouse folder for every domain; releases are Parquet files."""

    name = NAME
    sql_dialect = "spark"
    owns_its_process = True  # a session's JVM, warehouse and metastore are bound to the process
    console_log: str | None = "spark.log"
    shared_storage = True
    catalog_per_file = False
    schema_per_domain = False  # one metastore (a cluster's) for every domain: schemas carry its prefix
    local_stub_views = False

    def accepts(self, credentials: Any) -> bool:
        return not is_cluster(credentials)  # a local session; a cluster is spark_cluster.py's

    def storage(self, project_dir: Path, credentials: Any) -> Storage:
        if str(getattr(credentials, "method", "")) != "session":
            return Storage()  # a cluster (thrift, http, odbc): spark_cluster.py's
        params = getattr(credentials, "server_side_parameters", None) or {}
        folder = Path(str(params.get("spark.sql.warehouse.dir", "spark-warehouse")))
        warehouse = folder if folder.is_absolute() else (project_dir / folder).resolve()
        return Storage(files=(warehouse,), warehouse=warehouse)

    def profile_problems(self, schema: str | None, upstreams: Sequence[str], storage: Storage,
                         profiles_file: Path, target: str | None,
                         domain: str | None = None) -> list[ProfileProblem]:  # fmt: skip
        return []

    def explain_error(self, message: str, consumer: str, target: str | None) -> str | None:
        return None

    def read_release_sql(self, path: str, producer: str | None, columns: list[tuple[str, str]] | None) -> str:
        return read_release_sql(path)

    def stub_mark_sql(self, mark: str) -> str | None:
        return None

    def measure_sql(self, relation: str, keys: Sequence[str]) -> list[str]:
        from mesh_tools.dbt.engines.duckdb import DuckDB

        # DuckDB's statements with Spark's quotes: dbt-spark names relations with backticks
        return [statement.replace('"', "`") for statement in DuckDB().measure_sql(relation, keys)]

    def lineage_namespace(self, storage: Storage) -> str | None:
        return f"spark://{Path(storage.warehouse).resolve()}" if storage.warehouse else None

    def export(self, domain: Any, products: list[Any], paths: list[Path], profile: Any) -> Exported:
        return export(domain, products, paths, profile)
