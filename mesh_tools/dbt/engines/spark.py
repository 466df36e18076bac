"""Spark (dbt-spark): how a Spark domain's products are read for a release, and how a Spark consumer reads one.

A local session (``method: session``) keeps each table's Parquet files in its warehouse folder;
publishing reads those files (``file_format: parquet``) and writes the same single-file release
a DuckDB domain writes. A Spark consumer reads a release with ``parquet.`<path>```.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ArtifactError, display_path

NAME = "spark"


def read_release_sql(path: str) -> str:
    return "select * from parquet.`" + path.replace("`", "``") + "`"


def table_files(warehouse: Path, node: dict[str, Any]) -> str:
    """A DuckDB ``read_parquet`` over the Parquet files of a product's table in a local warehouse."""
    folder = warehouse / f"{str(node['schema']).lower()}.db" / str(node["alias"]).lower()
    if not any(folder.glob("*.parquet")):
        raise ArtifactError(
            f"{display_path(folder)}: no Parquet files for {node['unique_id']}. Publishing from Spark reads the "
            "table's files: materialize products as tables with `file_format: parquet` in a local warehouse."
        )
    return "read_parquet('" + str(folder / "*.parquet").replace("'", "''") + "')"


def export(
    domain: Any, products: list[Any], paths: list[Path], target: str | None, profiles_dir: Path | None
) -> list[tuple[int, list[Any]]]:
    """From the Parquet files of each product's table in the local Spark warehouse."""
    import duckdb

    from mesh_tools.dbt import profiles
    from mesh_tools.dbt.engines import duckdb as duckdb_engine
    from mesh_tools.dbt.engines import write_file
    from mesh_tools.model.release import ReleaseColumn

    profile = profiles.load_profile(domain.path, target, profiles_dir)
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
