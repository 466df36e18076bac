"""PostgreSQL (dbt-postgres): a mesh on one shared warehouse, releases and access in the database.

Each domain connects as its own login role and owns its schemas: its working schemas (dbt's,
prefixed with its target schema: ``sales``, ``sales_staging``, ...), ``<schema>_releases`` (one
immutable table per release) and ``<schema>_products`` (one pointer view per product, always the
current release). Publishing is one transaction on the domain's own dbt connection: the release
tables, the pointer views and the grants commit together or not at all (postgres_publish.py). A
consumer's stub view reads the release table it was stitched to, like a stub over a file release reads
one folder. The privileges are the policy's (postgres_grants.py).

PII: the release table every allowed consumer reads has the product's PII columns NULL; the
columns in clear are in a second table (``...__pii``) granted only to the consumers the policy
names. Who may read what is the mesh's policy (exchange/grants.py); the database enforces it.

Names: in the SQL made here a name is a quoted identifier (``quote``) or a literal (``literal``); in a
PL/pgSQL block only a literal, turned into an identifier by ``format('%I')``, in a block whose dollar
tag occurs nowhere inside it (``do_block``). Names from configuration (roles, the schema prefix) must
also be plain identifiers, and roles PostgreSQL reads as PUBLIC or reserves are never granted to.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mesh_tools.core.credentials import url_place
from mesh_tools.core.errors import ArtifactError, MeshError, display_path
from mesh_tools.dbt.engines.engine import Exported, ProfileProblem, Storage, UnpublishableData

NAME = "postgres"
MAX_IDENTIFIER = 63  # PostgreSQL silently truncates longer names: the mesh never makes one
RELEASE_COMMENT = "mesh release "  # the comment on every release table the mesh creates (and may drop)
CLEAR_SUFFIX = "__pii"


# A name the mesh puts into warehouse SQL from configuration (a role, a schema prefix): letters, digits and
# underscores, not starting with a digit, at most 63 bytes. Quoted anyway; the pattern keeps names that
# read the same to people and to the server, and nothing that could end a quote.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def plain_identifier(name: object) -> bool:
    """Whether ``name`` is a plain identifier (``IDENTIFIER``, within PostgreSQL's 63 bytes)."""
    return isinstance(name, str) and bool(IDENTIFIER.fullmatch(name)) and len(name.encode()) <= MAX_IDENTIFIER


# Role names PostgreSQL reserves or reads as something else than one role: PUBLIC (every role), NONE, the
# pg_ prefix, and the role-spec keywords; compared without case (``Public`` is a role of its own, but
# never one a domain should be taken for).
_RESERVED_ROLES = {"public", "none", "current_user", "current_role", "session_user", "all"}


def reserved_role(name: str) -> str | None:
    """Why ``name`` is reserved as a role (or None)."""
    folded = str(name).casefold()
    if folded in _RESERVED_ROLES:
        return "PUBLIC is every role of the database" if folded == "public" else "a name PostgreSQL reserves"
    if folded.startswith("pg_"):
        return "the pg_ prefix is PostgreSQL's own (predefined roles)"
    return None


def quote(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def literal(text: str) -> str:
    """A string literal that reads the same whatever ``standard_conforming_strings`` is (an escape string
    when the text holds a backslash)."""
    text = str(text).replace("'", "''")
    return "E'" + text.replace("\\", "\\\\") + "'" if "\\" in text else "'" + text + "'"


def do_block(body: str) -> str:
    """A PL/pgSQL ``do`` block around ``body``, quoted with a dollar tag that occurs nowhere in it.

    The body holds names only as literals (``literal``) or through ``format('%I', ...)``, never as SQL
    text; a name that contains the tag (``$mesh$``, ``$$``) could otherwise end the quote and run as
    statements of its own. The tag is chosen after the body is known, so nothing in it can end the block.
    """
    tag, n = "mesh", 0
    while f"${tag}$" in body:
        n += 1
        tag = f"mesh{n}"
    return f"do ${tag}$\n{body.strip(chr(10))}\n${tag}$"


def qualified(schema: str, name: str) -> str:
    return f"{quote(schema)}.{quote(name)}"


def prefix_problem(prefix: object, profiles_file: Path, target: str | None) -> str | None:
    """Why a domain's target ``schema`` cannot prefix the schemas the mesh makes from it (or None)."""
    if plain_identifier(prefix):
        return None
    return (
        f"{display_path(profiles_file)}, target {target or '(default)'}: schema {str(prefix)[:80]!r} is not a plain "
        "identifier (letters, digits and underscores, not starting with a digit, at most 63 bytes): the mesh makes "
        "its releases and products schemas from it. Give the target such a `schema`."
    )


def releases_schema(prefix: str) -> str:
    return f"{prefix}_releases"


def products_schema(prefix: str) -> str:
    return f"{prefix}_products"


def _fit(stem: str, suffix: str) -> str:
    """``stem + suffix`` within PostgreSQL's 63 bytes: a long stem is cut and keeps a hash of itself."""
    stem = stem.lower()
    if len((stem + suffix).encode()) <= MAX_IDENTIFIER:
        return stem + suffix
    digest = hashlib.sha256(stem.encode()).hexdigest()[:8]
    room = MAX_IDENTIFIER - len(suffix.encode()) - 9
    cut = stem.encode()[:room].decode("utf-8", errors="ignore")
    return f"{cut}_{digest}{suffix}"


def product_stem(model: str, version: str | None) -> str:
    return f"{model}_v{version}" if version is not None else model


def release_table(model: str, version: str | None, release_id: str, clear: bool = False) -> str:
    """The table holding one release (``clear``: its PII columns in clear)."""
    suffix = "__" + release_id.lower().replace("-", "_") + (CLEAR_SUFFIX if clear else "")
    return _fit(product_stem(model, version), suffix)


def pointer_view(model: str, version: str | None, clear: bool = False) -> str:
    """The view that always reads a product's current release (``clear``: with its PII)."""
    return _fit(product_stem(model, version), CLEAR_SUFFIX if clear else "")


def check_location(descriptor: Any, prefix: str | None = None) -> None:
    """A warehouse release's descriptor names exactly the tables its product, version and id make (and,
    with ``prefix``, the producer's own schemas): another domain's file is never trusted with SQL names."""
    where = descriptor.warehouse
    model, version, release_id = descriptor.model, descriptor.version, descriptor.release_id
    expected = {
        "table": release_table(model, version, release_id),
        "pointer": pointer_view(model, version),
    }
    if where.clear_table is not None:
        expected["clear_table"] = release_table(model, version, release_id, clear=True)
    for key, value in expected.items():
        if getattr(where, key) != value:
            raise ValueError(f"its {key} is {getattr(where, key)!r}, not {value!r} as its product and id make it")
    schema = where.releases_schema
    if not _CHECKED.fullmatch(schema) or not schema.endswith("_releases"):
        raise ValueError(f"its releases schema {schema!r} is not one the mesh makes")
    if where.products_schema != schema.removesuffix("_releases") + "_products":
        raise ValueError(f"its products schema {where.products_schema!r} does not go with {schema!r}")
    if prefix is not None and schema != releases_schema(prefix):
        raise ValueError(f"its releases schema {schema!r} is not the producer's ({releases_schema(prefix)!r})")


def long_names(prefix: str, upstreams: list[str]) -> list[str]:
    """Schema names the mesh would make from ``prefix`` that PostgreSQL would cut at 63 bytes."""
    names = [releases_schema(prefix), products_schema(prefix), *(f"{prefix}_upstream_{u}" for u in upstreams)]
    return [n for n in names if len(n.encode()) > MAX_IDENTIFIER]


def run(domain: Any, statements: list[str], target: str | None, profiles_dir: Path | None) -> list[list[list[Any]]]:
    """Run statements in one transaction on the domain's own dbt connection; the rows of each.

    dbt-postgres runs an operation's queries in autocommit mode, so the transaction is explicit:
    ``begin`` first, ``commit`` last. A statement that fails (or a connection that dies) before the
    commit leaves nothing of the others.
    """
    from mesh_tools.dbt import runner as dbt_runner
    from mesh_tools.dbt.profiles_dir import profiles_dir_for
    from mesh_tools.dbt.runtime import install_runtime

    install_runtime(domain)
    folder = profiles_dir_for(domain.path, profiles_dir)  # as dbt finds it run in the domain's folder
    results = dbt_runner.run_macro(
        domain.path, "run_statements", {"statements": ["begin", *statements, "commit"]}, target=target,
        profiles_dir=folder,
    )  # fmt: skip
    return results[1:-1]


_DENIED = re.compile(r'permission denied for schema "?(?P<schema>[A-Za-z0-9_$]+)_(?:releases|products)\b"?')


def explain_error(message: str, consumer: str, target: str | None) -> str | None:
    """A consumer's build denied a producer's release: who must grant it, and how (or None)."""
    found = _DENIED.search(message)
    if not found:
        return None
    producer = found["schema"]
    flag = f" --target {target}" if target else ""
    return (
        f"{consumer} may not read {producer}'s releases on the warehouse yet: its role has no grant there. "
        f"{producer}'s team grants what the mesh's policy allows with `mesh grants {producer}{flag}` (its next "
        f"publish does too); when the policy does not allow {consumer} (meta.allowed_consumers), change it first."
    )


# -- reading a release (a consumer's stub)

_CHECKED = re.compile(r"[A-Za-z0-9_$]+")


def read_release_sql(schema: str, table: str) -> str:
    """A stub's view body over a release table; only PostgreSQL consumers can read it."""
    for name in (schema, table):
        if not _CHECKED.fullmatch(name):
            raise ValueError(f"release table name {name!r} is not a plain identifier")
    return f"select * from {qualified(schema, table)}"


# -- landing files (sources dbt-duckdb reads in place) loaded into the warehouse

_TYPES = {  # DuckDB's name for a landing column's type -> PostgreSQL's (DECIMAL(p,s) is kept as it is)
    "TINYINT": "smallint", "SMALLINT": "smallint", "UTINYINT": "smallint",
    "INTEGER": "integer", "USMALLINT": "integer",
    "BIGINT": "bigint", "UINTEGER": "bigint",
    "UBIGINT": "numeric(38,0)", "HUGEINT": "numeric(38,0)", "UHUGEINT": "numeric(38,0)",
    "DOUBLE": "double precision", "FLOAT": "real", "REAL": "real",
    "BOOLEAN": "boolean", "DATE": "date", "TIME": "time", "UUID": "uuid", "BLOB": "bytea",
    "TIMESTAMP": "timestamp", "TIMESTAMP_S": "timestamp", "TIMESTAMP_MS": "timestamp", "TIMESTAMP_NS": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}  # fmt: skip


def pg_type(duckdb_type: str) -> str:
    if re.fullmatch(r"DECIMAL\(\d+,\d+\)", duckdb_type):
        return duckdb_type.lower()
    return _TYPES.get(duckdb_type, "text")


def connect(profile: Any) -> Any:
    """A connection of the mesh's own to the domain's warehouse, as its profile's role."""
    import psycopg2

    try:
        return psycopg2.connect(**profile.connection, application_name="mesh_tools")
    except psycopg2.Error as exc:
        raise MeshError(
            f"cannot connect to PostgreSQL as {profile.user!r} ({profile.profiles_file}, target {profile.target}): "
            f"{' '.join(str(exc).split())}"
        ) from None


def load_landing(profile: Any, sources: list[tuple[str, str, list[Path], str]]) -> list[str]:
    """Load each source's landing files into its table when they changed; the tables loaded.

    ``sources``: (schema, table, files, fingerprint). The table's comment keeps the fingerprint of
    the files it holds; a table the mesh did not load (no such comment) is never replaced.
    """
    import duckdb
    import psycopg2

    loaded = []
    con = connect(profile)
    try:
        for schema, table, files, fingerprint in sources:
            marker = "mesh landing " + hashlib.sha256(fingerprint.encode()).hexdigest()
            with con.cursor() as cur:
                cur.execute(
                    "select obj_description(c.oid, 'pg_class') from pg_class c join pg_namespace n "
                    "on n.oid = c.relnamespace where n.nspname = %s and c.relname = %s",
                    (schema, table),
                )
                found = cur.fetchone()
            if found is not None and found[0] == marker:
                continue
            if found is not None and not str(found[0] or "").startswith("mesh landing "):
                raise MeshError(
                    f"{schema}.{table} exists in the warehouse and was not loaded by the mesh: its landing files "
                    f"({display_path(files[0])}) are not loaded over it. Drop the source's `external_location`, "
                    "or the table."
                )
            reader = duckdb.connect()
            try:
                paths = ", ".join(literal(str(f)) for f in files)
                relation = reader.sql(f"select * from read_parquet([{paths}])")
                typed = zip(relation.columns, relation.types, strict=True)
                columns = [f"{quote(n)} {pg_type(str(t))}" for n, t in typed]
                with con.cursor() as cur:
                    cur.execute(f"create schema if not exists {quote(schema)}")
                    cur.execute(f"drop table if exists {qualified(schema, table)}")
                    cur.execute(f"create table {qualified(schema, table)} ({', '.join(columns)})")
                    with tempfile.TemporaryDirectory(prefix="mesh-landing-") as scratch:
                        csv = Path(scratch) / "rows.csv"
                        relation.write_csv(str(csv), header=False)
                        with open(csv, "rb") as handle:
                            cur.copy_expert(f"copy {qualified(schema, table)} from stdin with (format csv)", handle)
                    cur.execute(f"comment on table {qualified(schema, table)} is {literal(marker)}")
                con.commit()
            except psycopg2.Error as exc:
                con.rollback()
                raise ArtifactError(
                    f"{display_path(files[0])}: cannot load into {schema}.{table}: {' '.join(str(exc).split())}"
                ) from None
            finally:
                reader.close()
            loaded.append(f"{schema}.{table}")
    finally:
        con.close()
    return loaded


def odcs_server(connection: dict[str, Any], database: str | None, schema: str,
                environment: str | None = None) -> dict[str, Any]:  # fmt: skip
    """A release table in a PostgreSQL warehouse, as an ODCS server (no credentials: those are the reader's)."""
    server: dict[str, Any] = {
        "server": "warehouse", "type": "postgres", "host": str(connection.get("host") or "localhost"),
        "port": int(connection.get("port") or 5432), "database": str(database or connection.get("dbname") or ""),
        "schema": schema,
    }  # fmt: skip
    return {**server, "environment": environment} if environment else server


# -- the engine


class Postgres:
    """PostgreSQL through dbt-postgres: one shared warehouse; releases are tables in it, access is its grants."""

    name = NAME
    sql_dialect = "postgres"
    owns_its_process = False
    console_log: str | None = None
    releases_in_warehouse = True
    shared_storage = False  # each domain writes only its own schemas; the identity is watched, not a file
    catalog_per_file = False
    loads_landing = True  # a server reads no local files: the mesh loads landing files into tables
    schema_per_domain = False  # one database for every domain: a stub's schema is prefixed with the target's
    local_stub_views = False

    def accepts(self, credentials: Any) -> bool:
        return True  # the only engine of its adapter

    def server_problem(self, storage: Storage) -> str | None:
        return None  # a server that does not answer fails the build with psycopg2's own message

    def storage(self, project_dir: Path, credentials: Any) -> Storage:
        connection = {
            "host": credentials.host, "port": int(credentials.port), "dbname": credentials.database,
            "user": credentials.user, "password": credentials.password or None,
            "sslmode": getattr(credentials, "sslmode", None),
            "connect_timeout": getattr(credentials, "connect_timeout", 10),
        }  # fmt: skip
        return Storage(connection={k: v for k, v in connection.items() if v is not None})

    def profile_problems(self, schema: str | None, upstreams: Sequence[str], storage: Storage,
                         profiles_file: Path, target: str | None,
                         domain: str | None = None) -> list[ProfileProblem]:  # fmt: skip
        prefix = str(schema or "")
        problem = prefix_problem(prefix, profiles_file, target)
        if problem:
            return [ProfileProblem(
                f"has the target schema {prefix[:80]!r}, which is not a plain identifier (letters, digits and "
                "underscores, not starting with a digit, at most 63 bytes): the mesh makes its releases and "
                "products schemas from it",
                "Give the target such a `schema` in its profiles.yml.",
                publish_only=True,
            )]  # fmt: skip
        long = long_names(prefix, list(upstreams))
        if long:
            return [ProfileProblem(
                f"would make the schema {long[0]}, longer than PostgreSQL's 63 bytes: it would be cut (two could "
                "become one)",
                "Give the target a shorter `schema` in its profiles.yml.",
            )]  # fmt: skip
        return []

    def explain_error(self, message: str, consumer: str, target: str | None) -> str | None:
        return explain_error(message, consumer, target)

    def read_release_sql(self, path: str, producer: str | None, columns: list[tuple[str, str]] | None) -> None:
        return None  # a server reads no release file: a stub on it fails with the default reader's error

    def read_table_release_sql(self, descriptor: Any, consumer: str) -> str:
        check_location(descriptor)  # another domain's file names tables only as the mesh makes them
        location = descriptor.warehouse
        table = location.table
        if location.clear_table and consumer in location.clear_readers:
            table = location.clear_table  # the warehouse's grants decide in the end
        return read_release_sql(location.releases_schema, table)

    def stub_mark_sql(self, mark: str) -> None:
        return None

    def measure_sql(self, relation: str, keys: Sequence[str]) -> None:
        return None  # its releases are measured from what the publish recorded

    def lineage_namespace(self, storage: Storage) -> str | None:
        host = storage.connection.get("host")
        if not host:
            return None
        # the place, never a user or password in the host
        return url_place(f"postgres://{host}:{storage.connection.get('port') or 5432}")

    def load_landing(self, profile: Any, sources: list[tuple[str, str, list[Path], str]]) -> list[str]:
        return load_landing(profile, sources)

    def export(self, domain: Any, products: list[Any], paths: list[Path], profile: Any) -> Exported:
        raise UnpublishableData(
            f"{domain.name} builds on PostgreSQL, whose releases are tables in its warehouse, not files."
        )
