"""DuckDB: the SQL the mesh runs on a DuckDB domain, and how each DuckDB type crosses a Parquet release.

Parquet does not hold every DuckDB type one-to-one. Most types come back exactly; a few come
back as another type that casts back exactly (ENUM, BIT and BIGNUM as VARCHAR, TIMESTAMP_S/MS
as TIMESTAMP, fixed-size arrays as lists); some would lose data and are written as a *carrier*
type instead (HUGEINT and UHUGEINT would come back as DOUBLE: written as DECIMAL(38,0), which
refuses values it cannot hold; TIME WITH TIME ZONE would lose its offset: written as text).
What neither covers (UNION, ...) is refused at publish with the column and the fix. The
release records each column's DuckDB type, and a DuckDB consumer's stub casts back to it.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh_tools.core.errors import ArtifactError, MeshError, StorageError, display_path
from mesh_tools.dbt.engines.engine import (
    Exported,
    FileEngine,
    ProfileProblem,
    Storage,
    UnpublishableData,
    local_file,
    storage_problem,
)

if TYPE_CHECKING:
    import duckdb

NAME = "duckdb"

# Scalar types Parquet would not give back exactly, and the type each is written as instead.
_CARRIERS = (
    (re.compile(r"\bU?HUGEINT\b"), "DECIMAL(38,0)"),
    (re.compile(r"\bTIME WITH TIME ZONE\b"), "VARCHAR"),
)
# Types with no exact carrier: the product must cast them in its own SQL.
_REFUSED = (
    (re.compile(r"\bUNION\("), "union", "cast it to a STRUCT or to VARCHAR in the model"),
    (re.compile(r"^GEOMETRY\b|[ (,]GEOMETRY\b"), "geometry", "convert it with ST_AsWKB() or ST_AsText() in the model"),
    (re.compile(r"\bVARIANT\b"), "variant", "cast it to JSON or to a typed column in the model"),
)
# How Parquet gives back a type that is not stored as such, and what casts back to it exactly.
_READBACK = (
    (re.compile(r"ENUM\((?:[^()']|'(?:[^']|'')*')*\)"), "VARCHAR"),
    (re.compile(r"\bBIT\b"), "VARCHAR"),
    (re.compile(r"\b(?:BIGNUM|VARINT)\b"), "VARCHAR"),
    (re.compile(r"\bTIMESTAMP_(?:S|MS)\b"), "TIMESTAMP"),
    (re.compile(r"\[\d+\]"), "[]"),
)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class UncarriableType(ValueError):
    """A column whose type no Parquet type carries exactly."""

    def __init__(self, column: str, type_: str, kind: str, fix: str):
        super().__init__(
            f"column '{column}' has type {type_} ({kind}), which a Parquet release cannot carry exactly: {fix}"
        )


def export_rules() -> dict[str, list[list[str]]]:
    """The type rules, as the runtime macro ``duckdb_export`` applies them (regular expressions)."""
    return {
        "carriers": [[pattern.pattern, replacement] for pattern, replacement in _CARRIERS],
        "refused": [[pattern.pattern, kind, fix] for pattern, kind, fix in _REFUSED],
    }


def readback(type_: str) -> str:
    """The type DuckDB reads a column of (carrier) type ``type_`` back from Parquet as."""
    out = type_
    for pattern, replacement in _READBACK:
        out = pattern.sub(replacement, out)
    return out


@functools.cache
def _parser(pid: int) -> Any:
    """An in-memory DuckDB for parsing types, one per process (a connection must not cross a fork)."""
    import duckdb

    return duckdb.connect()


def checked_type(type_: str) -> str:
    """``type_`` as DuckDB's own type parser spells it; ValueError when it is not a type.

    A release descriptor is data written by another domain: its types reach a consumer's SQL
    only after DuckDB has parsed them as types (never as SQL).
    """
    import duckdb

    try:
        return str(_parser(os.getpid()).type(type_))
    except (duckdb.Error, TypeError, ValueError) as exc:
        raise ValueError(f"not a DuckDB type: {type_!r} ({str(exc).splitlines()[0]})") from None


def read_release_sql(path: str, columns: list[tuple[str, str]] | None) -> str:
    """A stub's view over a release: every column cast back to the producer's own type."""
    source = f"read_parquet({literal(path)})"
    if not columns:
        return f"select * from {source}"
    select = ",\n  ".join(f"cast({quote(name)} as {checked_type(type_)}) as {quote(name)}" for name, type_ in columns)
    return f"select\n  {select}\nfrom {source}"


_WIDE_CAST = re.compile(r'as DECIMAL\(38,0\)\) as "((?:[^"]|"")+)"')


def explain_export_error(message: str) -> str:
    """A failed copy to a release, said in terms of the product's column when a carrier refused a value."""
    # DuckDB quotes the failing statement: the columns cast to DECIMAL(38,0) are the 128-bit ones
    wide = list(dict.fromkeys(m.replace('""', '"') for m in _WIDE_CAST.findall(message)))
    if wide and "Could not cast value" in message:
        return (
            f"a value of {', '.join(wide)} (HUGEINT or UHUGEINT) does not fit DECIMAL(38,0), the type a release "
            "carries such columns as (Parquet has no 128-bit integers). Cast the column to a smaller integer, a "
            f"decimal or varchar in the model. ({' '.join(message.split())[:300]})"
        )
    return " ".join(message.split())


_EXTENSION = re.compile(r'Failed to download extension "(?P<name>[^"]+)"')


def explain_error(message: str) -> str | None:
    """A clearer message for DuckDB failures people meet when adopting a mesh, or None."""
    match = _EXTENSION.search(message)
    if match:
        name = match["name"]
        return (
            f"DuckDB could not install the extension '{name}' listed under `extensions:` in the profile: it needs "
            "a download from extensions.duckdb.org, which this machine cannot reach (`dbt build` fails the same "
            f"way). Remove '{name}' from `extensions:` if DuckDB has it built in (json, parquet, icu), or install it "
            "beforehand and set `config_options: {extension_directory: <dir>, autoinstall_known_extensions: false}`."
        )
    return None


def export(domain: Any, products: list[Any], paths: list[Path], profile: Any) -> Exported:
    """Through the domain's own dbt connection, in one invocation: describe each product, copy it with carrier types.

    Then check, from the files alone, that every column comes back as its carrier type reads back.
    """
    import duckdb

    from mesh_tools.dbt import runner as dbt_runner
    from mesh_tools.dbt.runtime import install_runtime
    from mesh_tools.model.release import ReleaseColumn

    install_runtime(domain)
    exports = [{"relation": node.relation, "path": str(path)} for node, path in zip(products, paths, strict=True)]
    try:
        reported = dbt_runner.run_macro(
            domain.path, "duckdb_export", {"exports": exports, **export_rules()},
            target=profile.requested_target, profiles_dir=profile.requested_profiles_dir,
        )  # fmt: skip
    except MeshError as exc:
        storage = storage_problem(str(exc))
        if storage:
            where = display_path(paths[0].parent.parent)
            raise StorageError(f"{where}: cannot write the release data: {storage}") from None
        raise UnpublishableData(f"cannot write the release data: {explain_export_error(str(exc))}") from None
    out = []
    con = duckdb.connect()
    try:
        for node, path, result in zip(products, paths, reported, strict=False):
            if result.get("problem"):
                name, type_, kind, fix = result["problem"]
                raise UnpublishableData(f"{node.unique_id}: {UncarriableType(name, type_, kind, fix)}")
            back = dict(con.execute(f"select column_name, column_type from (describe select * from "
                                    f"read_parquet({literal(str(path))}))").fetchall())  # fmt: skip
            columns = []
            for name, type_, carried in result["columns"]:
                if readback(carried) != back.get(name):
                    raise UnpublishableData(
                        f"{node.unique_id}: column '{name}' has type {type_}, which comes back from Parquet as "
                        f"{back.get(name)}: a release cannot carry it exactly. Cast it in the model to a type "
                        "Parquet holds."
                    )
                columns.append(ReleaseColumn(name=name, type=type_, parquet_type=back[name]))
            out.append((int(result.get("rows") or 0), columns))
    finally:
        con.close()
    if len(out) != len(products):
        raise ArtifactError(f"{domain.name}: the export reported {len(out)} of {len(products)} products.")
    return out


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


# -- the mesh's own embedded database: Parquet files (releases, landing data) and the health history


class DatabaseBusy(MeshError):
    """Another process holds the DuckDB file for writing (one writer or many readers per file)."""


class DatabaseUnreadable(MeshError):
    """The file is not a DuckDB database this DuckDB can open."""


def connect_local(path: Path | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection of the mesh's own: in memory (reading and writing Parquet files), or on a file.

    DatabaseBusy or DatabaseUnreadable, with DuckDB's first line, when the file cannot be opened."""
    import duckdb

    try:
        return duckdb.connect(str(path) if path is not None else ":memory:", read_only=read_only)
    except duckdb.IOException as exc:
        raise DatabaseBusy(str(exc).splitlines()[0]) from None
    except duckdb.Error as exc:
        raise DatabaseUnreadable(str(exc).splitlines()[0]) from None


@contextmanager
def local_database(path: Path | None = None, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """``connect_local`` as a context: the connection is closed at its end."""
    con = connect_local(path, read_only)
    try:
        yield con
    finally:
        con.close()


def mask_columns(clear: Path, data: Path, columns: Sequence[tuple[str, str]]) -> None:
    """Write ``data`` as the Parquet file ``clear`` with ``columns`` (name, Parquet type) NULL, same names and types."""
    nulls = ", ".join(f"cast(null as {type_}) as {quote(name)}" for name, type_ in columns)
    with local_database() as con:
        copy = f"copy (select * replace ({nulls}) from read_parquet({literal(str(clear))})) to {literal(str(data))}"
        write_file(con, f"{copy} (format parquet, compression zstd)", data)


CONTENT_HASH_SALT = "mesh-cutoff"  # the second row hash starts from this value: independent of the first


def content_hash(path: Path, exclude: Sequence[str] = ()) -> str:
    """An order-free, duplicate-sensitive hash of the rows of the Parquet file ``path``, over its columns but
    ``exclude`` (names, any case): ``sum2x64-duckdb-<version>:<rows>:<sum1>:<sum2>``.

    Each row's two 64-bit hashes (``hash(c1, ..., cn)`` and the same started from a salt) cover the whole row
    with its columns in name order, so a value moved between columns or a reordered select hashes as itself;
    the sums are HUGEINT (no overflow) and count duplicates. Floating-point values are hashed as their exact
    text (DuckDB hashes -0.0 and 0.0 alike, which a consumer's arithmetic tells apart). The DuckDB version is
    part of the hash: a hash made by another version never matches (a new release: the safe direction)."""
    import duckdb

    skip = {name.lower() for name in exclude}
    with local_database() as con:
        source = f"read_parquet({literal(str(path))})"
        described = con.execute(f"describe select * from {source}").fetchall()
        kept = sorted((str(row[0]), str(row[1])) for row in described if str(row[0]).lower() not in skip)
        values = [
            f"cast({quote(name)} as varchar)" if re.search(r"\b(FLOAT|DOUBLE|REAL)\b", type_.upper()) else quote(name)
            for name, type_ in kept
        ]
        row = ", ".join(values) if values else "null"
        salt = literal(CONTENT_HASH_SALT)
        found = con.execute(
            f"select count(*), coalesce(sum(hash({row})::hugeint), 0), coalesce(sum(hash({salt}, {row})::hugeint), 0) "
            f"from {source}"
        ).fetchone()
    assert found is not None
    return f"sum2x64-duckdb-{duckdb.__version__}:{found[0]}:{int(found[1]):x}:{int(found[2]):x}"


def local_profile(path: str) -> dict[str, Any]:
    """A dbt target building into the DuckDB file ``path`` (relative to the project)."""
    return {"type": NAME, "path": path}


# -- the engine


class DuckDB(FileEngine):
    """DuckDB, embedded: one database file per domain; releases are Parquet files it writes and reads."""

    name = NAME
    sql_dialect = "duckdb"
    owns_its_process = False
    console_log: str | None = None
    shared_storage = False
    catalog_per_file = True
    schema_per_domain = True
    local_stub_views = True

    def storage(self, project_dir: Path, credentials: Any) -> Storage:
        files: list[Path] = []
        attached: list[str] = []
        remote: list[str] = []
        main = local_file(project_dir, getattr(credentials, "path", None))
        if main is not None:
            files.append(main)
        elif str(getattr(credentials, "path", "")) != ":memory:":
            remote.append(str(credentials.path))
        for attachment in getattr(credentials, "attach", None) or []:
            path = local_file(project_dir, attachment.path)
            alias = attachment.alias or (Path(str(attachment.path)).stem if path else str(attachment.path))
            mode = " (read-only)" if attachment.read_only else ""
            attached.append(f"{alias} = {attachment.path}{mode}")
            if path is not None:
                files.append(path)
            else:
                remote.append(str(attachment.path))
        return Storage(files=tuple(files), attached=tuple(attached), remote=tuple(remote))

    def profile_problems(self, schema: str | None, upstreams: Sequence[str], storage: Storage,
                         profiles_file: Path, target: str | None,
                         domain: str | None = None) -> list[ProfileProblem]:  # fmt: skip
        if storage.files or storage.remote:
            return []
        return [ProfileProblem(
            "builds into an in-memory DuckDB database",
            "Its products would be gone before they are published: give the target a `path:` (a .duckdb file).",
        )]  # fmt: skip

    def explain_error(self, message: str, consumer: str, target: str | None) -> str | None:
        return explain_error(message)

    def read_release_sql(self, path: str, producer: str | None, columns: list[tuple[str, str]] | None) -> str:
        # a DuckDB producer's types are cast back exactly; another engine's are what Parquet holds
        return read_release_sql(path, columns if producer == NAME else None)

    def stub_mark_sql(self, mark: str) -> str:
        return (
            "comment on view {{ this }} is '"
            + mark
            + " of {{ this.schema }}.{{ this.identifier }}, made by mesh stitch'"
        )

    def measure_sql(self, relation: str, keys: Sequence[str]) -> list[str]:
        nulls = "".join(f", sum(case when {quote(k)} is null then 1 else 0 end)" for k in keys)
        return [f"describe {relation}", f"select count(*){nulls} from {relation}"]

    def lineage_namespace(self, storage: Storage) -> str | None:
        return f"duckdb://{Path(storage.files[0]).resolve()}" if storage.files else None

    def export(self, domain: Any, products: list[Any], paths: list[Path], profile: Any) -> Exported:
        return export(domain, products, paths, profile)
