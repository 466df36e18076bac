"""The health history: an embedded DuckDB database with a row per run, per result and per measurement.

Anyone can query it with SQL (``duckdb health/history.duckdb``); the tables are documented in
docs/how-to/health.md. Rows are only ever added (and pruned after ``history_days``); the
same dbt invocation or release is never stored twice, so collecting again is harmless.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ArtifactError, display_path
from mesh_tools.core.files import ensure_folder, refuse_link

SCHEMA_VERSION = 2  # 2: runs.models_reused (state-aware builds)

# table -> (column, DuckDB type); the order is the column order of the table.
TABLES: dict[str, list[tuple[str, str]]] = {
    "collections": [
        ("collection_id", "VARCHAR"),
        ("collected_at", "TIMESTAMPTZ"),
        ("trigger", "VARCHAR"),
        ("mesh", "VARCHAR"),
    ],
    "runs": [
        ("collection_id", "VARCHAR"),
        ("domain", "VARCHAR"),
        ("invocation_id", "VARCHAR"),
        ("command", "VARCHAR"),
        ("started_at", "TIMESTAMPTZ"),
        ("finished_at", "TIMESTAMPTZ"),
        ("elapsed_s", "DOUBLE"),
        ("status", "VARCHAR"),
        ("models", "INTEGER"),
        ("models_failed", "INTEGER"),
        ("tests_passed", "INTEGER"),
        ("tests_failed", "INTEGER"),
        ("tests_warned", "INTEGER"),
        ("dbt_version", "VARCHAR"),
        ("problems", "VARCHAR"),
        ("models_reused", "INTEGER"),
    ],
    "node_results": [
        ("collection_id", "VARCHAR"),
        ("domain", "VARCHAR"),
        ("invocation_id", "VARCHAR"),
        ("unique_id", "VARCHAR"),
        ("resource_type", "VARCHAR"),
        ("name", "VARCHAR"),
        ("attached_to", "VARCHAR"),
        ("status", "VARCHAR"),
        ("execution_time", "DOUBLE"),
        ("failures", "BIGINT"),
        ("message", "VARCHAR"),
        ("completed_at", "TIMESTAMPTZ"),
    ],
    "source_freshness": [
        ("collection_id", "VARCHAR"),
        ("domain", "VARCHAR"),
        ("unique_id", "VARCHAR"),
        ("max_loaded_at", "TIMESTAMPTZ"),
        ("snapshotted_at", "TIMESTAMPTZ"),
        ("age_hours", "DOUBLE"),
        ("status", "VARCHAR"),
        ("warn_after_hours", "DOUBLE"),
        ("error_after_hours", "DOUBLE"),
        ("message", "VARCHAR"),
    ],
    "findings": [
        ("collection_id", "VARCHAR"),
        ("domain", "VARCHAR"),
        ("code", "VARCHAR"),
        ("rule", "VARCHAR"),
        ("severity", "VARCHAR"),
        ("node", "VARCHAR"),
        ("message", "VARCHAR"),
    ],
    "publications": [
        ("event_at", "TIMESTAMPTZ"),
        ("event", "VARCHAR"),
        ("domain", "VARCHAR"),
        ("product", "VARCHAR"),
        ("release_id", "VARCHAR"),
        ("invocation_id", "VARCHAR"),
        ("rows", "BIGINT"),
        ("detail", "VARCHAR"),
    ],
    "measurements": [
        ("collection_id", "VARCHAR"),
        ("measured_at", "TIMESTAMPTZ"),
        ("domain", "VARCHAR"),
        ("product", "VARCHAR"),
        ("basis", "VARCHAR"),
        ("release_id", "VARCHAR"),
        ("invocation_id", "VARCHAR"),
        ("rows", "BIGINT"),
        ("key_columns", "VARCHAR"),
        ("key_null_rate", "DOUBLE"),
        ("schema_hash", "VARCHAR"),
        ("columns", "VARCHAR"),
    ],
    "product_status": [
        ("collection_id", "VARCHAR"),
        ("evaluated_at", "TIMESTAMPTZ"),
        ("domain", "VARCHAR"),
        ("product", "VARCHAR"),
        ("status", "VARCHAR"),
        ("score", "INTEGER"),
        ("age_hours", "DOUBLE"),
        ("slo_hours", "DOUBLE"),
        ("slo_ok", "BOOLEAN"),
        ("problems", "INTEGER"),
    ],
    "domain_status": [
        ("collection_id", "VARCHAR"),
        ("evaluated_at", "TIMESTAMPTZ"),
        ("domain", "VARCHAR"),
        ("status", "VARCHAR"),
        ("score", "INTEGER"),
    ],
}

# When a row is already there (same key), it is not stored again.
KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("domain", "invocation_id"),
    "node_results": ("invocation_id", "unique_id"),
    "source_freshness": ("domain", "unique_id", "snapshotted_at"),
    "publications": ("event_at", "event", "product", "domain"),
    "measurements": ("product", "basis"),
}

# Rows older than the retention window are pruned by this column.
AGE_COLUMN = {
    "collections": "collected_at",
    "runs": "finished_at",
    "node_results": "completed_at",
    "source_freshness": "snapshotted_at",
    "publications": "event_at",
    "measurements": "measured_at",
    "product_status": "evaluated_at",
    "domain_status": "evaluated_at",
}


class History:
    """An open history database (one writer at a time, as DuckDB allows)."""

    def __init__(self, con: Any, path: Path):
        self.con = con
        self.path = path

    def insert(self, table: str, rows: Iterable[dict[str, Any]]) -> int:
        """Add rows (dicts keyed by column name), skipping those whose key is already stored."""
        rows = list(rows)
        if not rows:
            return 0
        columns = TABLES[table]
        names = [c for c, _ in columns]
        handle, scratch = tempfile.mkstemp(suffix=".ndjson", prefix=f".{table}.", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                for row in rows:
                    out.write(json.dumps({n: row.get(n) for n in names}, default=str) + "\n")
            spec = "{" + ", ".join(f"'{c}': '{t}'" for c, t in columns) + "}"
            source = f"read_json('{_sql_path(scratch)}', format='newline_delimited', columns={spec})"
            key = KEYS.get(table)
            if key:
                join = " and ".join(f"h.{k} is not distinct from n.{k}" for k in key)
                dedup = f"select distinct on ({', '.join(key)}) * from {source} n"
                query = (
                    f"insert into {table} select * from ({dedup}) n "
                    f"where not exists (select 1 from {table} h where {join})"
                )
            else:
                query = f"insert into {table} select * from {source}"
            before = self._count(table)
            self.con.execute(query)
            return self._count(table) - before
        finally:
            os.unlink(scratch)

    def _count(self, table: str) -> int:
        return int(self.con.execute(f"select count(*) from {table}").fetchone()[0])

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cursor = self.con.execute(sql, params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def known(self, table: str, column: str) -> set[Any]:
        return {row[0] for row in self.con.execute(f"select distinct {column} from {table}").fetchall()}

    def prune(self, days: int) -> None:
        for table, column in AGE_COLUMN.items():
            self.con.execute(f"delete from {table} where {column} < now() - interval {int(days)} day")


def _sql_path(path: str | Path) -> str:
    return str(path).replace("'", "''")


@contextmanager
def open_history(path: Path, read_only: bool = False, *, below: Path | None = None) -> Iterator[History]:
    """Open (and on first use create) the history database at ``path``; with ``below``, no folder between it
    and the history may be a symbolic link (DuckDB opens the file by name: the folders are checked first)."""
    from mesh_tools.dbt import engines

    if read_only and not path.is_file():
        raise ArtifactError(f"{display_path(path)}: no health history yet. Run `mesh build` or `mesh health`.")
    if below is not None and not read_only:
        ensure_folder(path.parent, below)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    if not read_only:  # DuckDB writes through a link: a link planted at the history (or its log) is refused
        for written in (path, path.with_name(path.name + ".wal")):
            refuse_link(written)
    try:
        con = engines.connect_local(path, read_only=read_only)  # the history is a DuckDB file of the mesh's own
    except engines.DatabaseBusy as exc:
        raise ArtifactError(
            f"{display_path(path)}: cannot open the health history ({exc}). "
            "Another `mesh build` or `mesh health` may be writing it; run again when it ends."
        ) from None
    except engines.DatabaseUnreadable as exc:
        first = str(exc)
        raise ArtifactError(
            f"{display_path(path)}: the health history is not a readable DuckDB database ({first}). "
            "Move it away to start a new history."
        ) from None
    try:
        if not read_only:
            _create(con)
        yield History(con, path)
    finally:
        con.close()


def _create(con: Any) -> None:
    con.execute("create table if not exists history_meta (key varchar primary key, value varchar)")
    row = con.execute("select value from history_meta where key = 'schema_version'").fetchone()
    if row and int(row[0]) == 1:  # version 1 had no models_reused: every run then ran all its models
        con.execute("alter table runs add column if not exists models_reused integer default 0")
        con.execute("update history_meta set value = ? where key = 'schema_version'", [str(SCHEMA_VERSION)])
        row = (str(SCHEMA_VERSION),)
    if row and int(row[0]) != SCHEMA_VERSION:
        raise ArtifactError(
            f"the health history has schema version {row[0]}, this mesh_tools writes {SCHEMA_VERSION}. "
            "Move the old history away to start a new one."
        )
    for table, columns in TABLES.items():
        body = ", ".join(f"{name} {kind}" for name, kind in columns)
        con.execute(f"create table if not exists {table} ({body})")
    if not row:
        con.execute("insert into history_meta values ('schema_version', ?)", [str(SCHEMA_VERSION)])
