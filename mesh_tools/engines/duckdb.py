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

import re
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Column:
    """A column of a product as the producer's DuckDB describes it, and how it is written to Parquet."""

    name: str
    type: str
    carrier: str  # the type written to the release (``type`` itself for most)


class UncarriableType(ValueError):
    """A column whose type no Parquet type carries exactly."""

    def __init__(self, column: str, type_: str, kind: str, fix: str):
        super().__init__(
            f"column '{column}' has type {type_} ({kind}), which a Parquet release cannot carry exactly: {fix}"
        )


def carrier(column: str, type_: str) -> str:
    """The type ``type_`` is written as in a release (UncarriableType when none carries it exactly)."""
    for pattern, kind, fix in _REFUSED:
        if pattern.search(type_):
            raise UncarriableType(column, type_, kind, fix)
    out = type_
    for pattern, replacement in _CARRIERS:
        out = pattern.sub(replacement, out)
    return out


def readback(type_: str) -> str:
    """The type DuckDB reads a column of (carrier) type ``type_`` back from Parquet as."""
    out = type_
    for pattern, replacement in _READBACK:
        out = pattern.sub(replacement, out)
    return out


def describe_sql(relation: str) -> str:
    return f"describe select * from {relation}"


def columns_from_describe(rows: list[list[str | None]]) -> list[Column]:
    """Columns from the rows of ``describe`` (name, type, ...); UncarriableType for a type no release holds."""
    return [Column(str(r[0]), str(r[1]), carrier(str(r[0]), str(r[1]))) for r in rows]


def export_sql(relation: str, columns: list[Column], path: str) -> str:
    """Write ``relation`` to one zstd Parquet file at ``path``, each column as its carrier type."""
    select = ", ".join(
        quote(c.name) if c.carrier == c.type else f"cast({quote(c.name)} as {c.carrier}) as {quote(c.name)}"
        for c in columns
    )
    return f"copy (select {select or '*'} from {relation}) to {literal(path)} (format parquet, compression zstd)"


def measure_sql(relation: str, keys: list[str]) -> str:
    """Row count and the null count of each key column."""
    nulls = "".join(f", count(*) filter (where {quote(k)} is null)" for k in keys)
    return f"select count(*){nulls} from {relation}"


def read_release_sql(path: str, columns: list[tuple[str, str]] | None) -> str:
    """A stub's view over a release: every column cast back to the producer's own type."""
    source = f"read_parquet({literal(path)})"
    if not columns:
        return f"select * from {source}"
    select = ",\n  ".join(f"cast({quote(name)} as {type_}) as {quote(name)}" for name, type_ in columns)
    return f"select\n  {select}\nfrom {source}"


def explain_export_error(message: str, columns: list[Column]) -> str:
    """A failed copy to a release, said in terms of the product's columns when a carrier refused a value."""
    wide = [c.name for c in columns if "DECIMAL(38,0)" in c.carrier and "DECIMAL(38,0)" not in c.type]
    quoted = [name for name in wide if quote(name) in message]  # DuckDB quotes the failing statement
    wide = quoted or wide
    if wide and "DECIMAL(38,0)" in message:
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
