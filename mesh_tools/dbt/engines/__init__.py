"""Engines: one module per warehouse engine, answering every engine question the mesh asks.

``duckdb`` (the embedded default), ``spark`` (dbt-spark) and ``postgres`` (a shared warehouse,
releases as tables): how a stub reads a release, how a
product is written to a release and measured, which types cross a release exactly. The domain's
engine is dbt's own answer: the ``adapter_type`` of its manifest, or of its profile's target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ArtifactError, StorageError, display_path

# The engines the mesh publishes from; any other adapter builds, but cannot publish yet.
SUPPORTED = ("duckdb", "spark", "postgres")


class UnpublishableData(Exception):
    """A product cannot be written to a release as it is (a type no release carries, a value out of range)."""


def owns_its_process(adapter: str | None) -> bool:
    """Whether the engine lives in the worker process and is bound to one domain (a Spark session's JVM,
    its warehouse and metastore): each domain then needs a process of its own."""
    return adapter == "spark"


def console_log(adapter: str | None) -> str | None:
    """The file in the domain's target folder that takes an in-process engine's console output, if any."""
    return "spark.log" if adapter == "spark" else None


def sql_dialect(adapter: str | None) -> str:
    """The SQL dialect (sqlglot's name) of the engine's SQL."""
    return {"spark": "spark", "databricks": "databricks", "postgres": "postgres"}.get(str(adapter), "duckdb")


def export(domain: Any, adapter: str | None, products: list[Any], paths: list[Path], target: str | None,
           profiles_dir: Path | None) -> list[tuple[int, list[Any]]]:  # fmt: skip
    """Write each product to its data file; (rows, columns) of each. UnpublishableData with the column and fix."""
    from mesh_tools.dbt.engines import duckdb as duckdb_engine
    from mesh_tools.dbt.engines import spark as spark_engine

    if adapter == spark_engine.NAME:
        return spark_engine.export(domain, products, paths, target, profiles_dir)
    if adapter not in (None, duckdb_engine.NAME):
        raise UnpublishableData(
            f"{domain.name} builds on '{adapter}', which the mesh does not publish from yet "
            "(DuckDB and Spark are supported)."
        )
    return duckdb_engine.export(domain, products, paths, target, profiles_dir)


_STORAGE = {
    "No space left on device": "no space left on the device: free some space and publish again",
    "Disk quota exceeded": "disk quota exceeded: free some space and publish again",
    "Read-only file system": "the file system is read-only: publishing needs write access to the exchange",
    "Permission denied": "permission denied: run as a user who may write the exchange",
}


def write_file(con: Any, sql: str, path: Path) -> Any:
    """Run a statement that writes ``path``; a full or read-only disk is a StorageError naming it."""
    import duckdb

    try:
        return con.execute(sql)
    except duckdb.Error as exc:
        storage = storage_problem(str(exc))
        if storage:
            raise StorageError(f"{display_path(path)}: cannot write the release data: {storage}") from None
        detail = " ".join(str(exc).split())
        raise ArtifactError(f"{display_path(path)}: cannot write the release data: {detail}") from None


def storage_problem(message: str) -> str | None:
    """The file-system fault behind an engine's failed write (full, read-only, permission), in one phrase."""
    return next((what for needle, what in _STORAGE.items() if needle in message), None)
