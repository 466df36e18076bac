"""What a model's compiled SQL reads besides its refs and sources: files, and relations no node defines.

A state-aware build skips a model only when it can prove that none of its inputs changed. dbt's
state comparison knows refs and sources; a ``read_csv('lookup/x.csv')``, a ``from 'rates.parquet'``,
a Spark ``parquet.`/path``` or a relation named by hand (a table an ``on-run-start`` hook creates,
another schema) are inputs it does not know. They are found here in the compiled SQL, parsed with
sqlglot, never pattern-matched, and sorted into what can be fingerprinted (local files, by their
content) and what cannot (a path computed at run time, a remote location, a relation no node
defines, SQL sqlglot cannot parse): such a model is *opaque* and runs in every build.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logging.getLogger("sqlglot").setLevel(logging.ERROR)

# Table functions that generate rows from their arguments alone: no input to observe.
_GENERATORS = {"range", "generate_series", "unnest", "values", "repeat_row", "generatedateseries"}
# A name in FROM that is a file, not a relation (DuckDB's `from 'x.csv'`, Spark's parquet.`path`).
_FILE_SUFFIX = re.compile(r"\.(?:csv|tsv|txt|parquet|json|jsonl|ndjson|xlsx|orc|avro|arrow|gz|zst|db|duckdb)$", re.I)
_FILE_FORMATS = {"parquet", "csv", "json", "orc", "text", "avro", "delta", "binaryfile"}
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
_CATALOG_SCHEMAS = {"information_schema", "pg_catalog", "duckdb_catalog"}
# Functions whose value changes from one run to the next with no input changing (the clock, chance).
_VOLATILE_NAMES = {"now", "today", "get_current_timestamp", "get_current_time", "current_localtimestamp",
                   "current_localtime", "random", "gen_random_uuid", "uuid", "setseed", "localtimestamp"}  # fmt: skip


@dataclass
class Reads:
    """What one piece of compiled SQL reads outside its refs and sources."""

    files: list[str] = field(default_factory=list)  # local paths or globs, as written (relative to the project)
    opaque: str | None = None  # why its inputs cannot be observed, or None

    def refuse(self, why: str) -> None:
        if self.opaque is None:
            self.opaque = why


def relation_key(*parts: Any) -> tuple[str, ...]:
    """A relation name as comparable parts: lower case, quotes taken off, empty parts dropped."""
    return tuple(str(p).strip().strip('"`').lower() for p in parts if p is not None and str(p).strip() != "")


def known_tails(relations: Iterable[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """Every relation and every shorter tail of it (``schema.table``, ``table``): how SQL may name it."""
    tails: set[tuple[str, ...]] = set()
    for parts in relations:
        for start in range(len(parts)):
            tails.add(tuple(parts[start:]))
    return tails


def sql_reads(sql: str, dialect: str, known: set[tuple[str, ...]]) -> Reads:
    """Files and unknown relations ``sql`` reads; ``known``: the tails (``known_tails``) of every relation a
    ref or source of the project resolves to."""
    import sqlglot
    from sqlglot import exp

    reads = Reads()
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except Exception:  # noqa: BLE001 - sqlglot raises many kinds; what it cannot read cannot be observed
        reads.refuse("its compiled SQL cannot be parsed, so what it reads cannot be observed")
        return reads
    for tree in statements:
        if isinstance(tree, exp.Command):
            reads.refuse(f"its SQL runs a statement the mesh cannot analyse ({tree.name[:40]})")
            continue
        ctes = {str(c.alias_or_name).lower() for c in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            _table_reads(table, dialect, known, ctes, reads)
        volatile = next((f for f in tree.walk() if _is_volatile(f) and not _is_stamp(f)), None)
        if volatile is not None:
            reads.refuse(
                f"it computes with {volatile.sql(dialect=dialect)[:40]}, which changes from one run to the next"
            )
    reads.files = list(dict.fromkeys(reads.files))
    return reads


def _table_reads(table: Any, dialect: str, known: set[tuple[str, ...]], ctes: set[str], reads: Reads) -> None:
    from sqlglot import exp

    this = table.this
    if isinstance(this, exp.Func):  # a table function: a generator, or a reader of files
        name = (this.sql_name() if not isinstance(this, exp.Anonymous) else str(this.name)).lower()
        if isinstance(this, exp.GenerateSeries | exp.Unnest) or name in _GENERATORS:
            return
        paths = _literal_paths(this)
        if not paths and paths is not None:
            reads.refuse(f"it reads {this.sql(dialect=dialect)[:80]}, a table function the mesh cannot observe")
            return
        if paths is None:
            reads.refuse(f"it reads {this.sql(dialect=dialect)[:80]}, whose path is computed when it runs")
            return
        for path in paths:
            _file(path, reads)
        return
    parts = relation_key(table.catalog, table.db, table.name)
    if not parts:
        reads.refuse(f"it reads {table.sql(dialect=dialect)[:80]}, which the mesh cannot resolve")
        return
    if len(parts) == 1 and parts[0] in ctes:
        return
    if table.db.lower() in _FILE_FORMATS and (_FILE_SUFFIX.search(table.name) or "/" in table.name):
        _file(table.name, reads)  # Spark: parquet.`/path/x.parquet`
        return
    if len(parts) == 1 and isinstance(table.this, exp.Identifier) and table.this.quoted:
        if _FILE_SUFFIX.search(table.name) or "/" in table.name:
            _file(table.name, reads)  # DuckDB: from 'landing/x.csv'
            return
    if parts in known:
        return
    if set(parts[:-1]) & _CATALOG_SCHEMAS:
        reads.refuse(f"it reads the catalog ({'.'.join(parts)}), which changes with anything in the database")
        return
    reads.refuse(f"it reads {'.'.join(parts)}, a relation no ref() or source() of the project names")


def _is_volatile(node: Any) -> bool:
    from sqlglot import exp

    if isinstance(node, exp.CurrentDate | exp.CurrentTimestamp | exp.CurrentTime | exp.Rand):
        return True
    name = str(node.name).lower() if isinstance(node, exp.Anonymous) else type(node).__name__.lower()
    return isinstance(node, exp.Func) and name in _VOLATILE_NAMES


def _is_stamp(node: Any) -> bool:
    """Whether a volatile call only stamps each row with when (or by which run) it was built: a column of the
    outermost select that is the call itself, maybe cast (``cast(now() as timestamp) as _built_at``). A skipped
    model keeps the stamp of the build that made its rows, which is what the stamp means."""
    from sqlglot import exp

    parent = node.parent
    while isinstance(parent, exp.Cast):
        parent = parent.parent
    if isinstance(parent, exp.Alias):
        parent = parent.parent
    return isinstance(parent, exp.Select) and parent.parent is None


def _literal_paths(func: Any) -> list[str] | None:
    """The string literals a table function is given as its first argument (a path or a list of paths),
    or None when that argument is computed."""
    from sqlglot import exp

    if isinstance(func, exp.Anonymous):  # its name is `this`; its arguments are the expressions
        first = func.expressions[0] if func.expressions else None
    else:
        first = func.this if func.this is not None else (func.expressions[0] if func.expressions else None)
    if first is None:
        return []
    items = first.expressions if isinstance(first, exp.Array) else [first]
    found = []
    for item in items:
        if not (isinstance(item, exp.Literal) and item.is_string):
            return None
        found.append(str(item.this))
    return found


def _file(path: str, reads: Reads) -> None:
    if _URL.match(path) and not path.lower().startswith("file://"):
        reads.refuse(f"it reads {path}, a remote location the mesh cannot fingerprint")
        return
    reads.files.append(path.removeprefix("file://"))


def resolve_files(base: Path, written: Iterable[str]) -> list[Path]:
    """The local files a list of paths or globs names, relative to ``base`` (the project's folder)."""
    found: list[Path] = []
    for text in written:
        path = Path(text).expanduser()
        path = path if path.is_absolute() else base / path
        if any(ch in str(path) for ch in "*?["):
            parts = path.parts
            first = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?["))
            anchor, pattern = Path(*parts[:first]), "/".join(parts[first:])
            found.extend(sorted(p for p in anchor.glob(pattern) if p.is_file()) if anchor.is_dir() else [])
        else:
            found.append(path)
    return found
