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
