"""PostgreSQL (dbt-postgres): a mesh on one shared warehouse, releases and access in the database.

Each domain connects as its own login role and owns its schemas: its working schemas (dbt's,
prefixed with its target schema: ``sales``, ``sales_staging``, ...), ``<schema>_releases`` (one
immutable table per release) and ``<schema>_products`` (one pointer view per product, always the
current release). Publishing is one transaction on the domain's own dbt connection: the release
tables, the pointer views and the grants commit together or not at all. A consumer's stub view
reads the release table it was stitched to, like a stub over a file release reads one folder.

PII: the release table every allowed consumer reads has the product's PII columns NULL; the
columns in clear are in a second table (``...__pii``) granted only to the consumers the policy
names. Who may read what is the mesh's policy (workflows/grants.py); the database enforces it.

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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Export:
    """What publishing one product writes: a release table (and its clear twin), its pointer views."""

    relation: str  # the built relation, as dbt names it
    prefix: str  # the domain's target schema
    model: str
    version: str | None
    release_id: str
    pii: tuple[str, ...]  # columns NULL in the shared table
    readers: tuple[str, ...]  # roles that read the clear table

    @property
    def table(self) -> str:
        return release_table(self.model, self.version, self.release_id)

    @property
    def clear_table(self) -> str | None:
        clear = self.pii and self.readers  # with no reader, the PII in clear is never kept
        return release_table(self.model, self.version, self.release_id, clear=True) if clear else None


def publish_statements(exports: list[Export], product_keys: list[str], grants: list[str] | None = None) -> list[str]:
    """The SQL of one publish, in order: one transaction on the domain's connection.

    The schemas (refused when another role owns them), the release tables, the pointer views,
    then every privilege on the two schemas reset to ``grants`` (the policy's, for every kept
    release: a policy change reaches old releases too). Last, per export, a row count and a column
    list (what the release records).
    """
    out: list[str] = []
    for prefix in dict.fromkeys(e.prefix for e in exports):
        schemas = (releases_schema(prefix), products_schema(prefix))
        for schema in schemas:
            out.append(f"create schema if not exists {quote(schema)}")
        out.append(ownership_sql(schemas))
    for export, key in zip(exports, product_keys, strict=True):
        releases, products = releases_schema(export.prefix), products_schema(export.prefix)
        table = qualified(releases, export.table)
        out.append(f"create table {table} as select * from {export.relation}")
        clear_pointer = (products, pointer_view(export.model, export.version, clear=True))
        if export.clear_table:
            clear = qualified(releases, export.clear_table)
            out.append(f"create table {clear} as table {table}")
            out.append(f"comment on table {clear} is {literal(RELEASE_COMMENT + export.release_id + ' ' + key)}")
        if export.pii:
            out.append(mask_sql(table, export.pii))
        out.append(f"comment on table {table} is {literal(RELEASE_COMMENT + export.release_id + ' ' + key)}")
        pointer = (products, pointer_view(export.model, export.version))
        out.append(switch_pointer_sql(pointer, (releases, export.table)))
        if export.clear_table:
            out.append(switch_pointer_sql(clear_pointer, (releases, export.clear_table)))
        else:
            out.append(f"drop view if exists {qualified(*clear_pointer)}")
    if grants is not None:
        for prefix in dict.fromkeys(e.prefix for e in exports):
            out.append(reset_grants_sql((releases_schema(prefix), products_schema(prefix))))
        out += grants
        # a superuser reads everything whatever it is granted: the policy gives it nothing (`mesh grants` says so)
        for prefix in dict.fromkeys(e.prefix for e in exports):
            out.append(reset_grants_sql((releases_schema(prefix), products_schema(prefix)), superusers_only=True))
    for export in exports:
        table = qualified(releases_schema(export.prefix), export.table)
        out.append(f"select count(*) from {table}")
        out.append(
            "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a "
            f"where a.attrelid = {literal(table)}::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum"
        )
    return out


def mask_sql(table: str, columns: tuple[str, ...]) -> str:
    """Set a release table's PII ``columns`` NULL, each matched by name whatever its case.

    The properties may write ``Email`` for the column ``email`` the model makes: a quoted name would
    miss it (and fail the publish). Both sides are lowered by the server (one rule for every letter);
    the names arrive as literals, the statement is made by ``format('%I')``.
    """
    names = "array[" + ", ".join(literal(c) for c in columns) + "]::text[]"
    return do_block(f"""
declare sets text;
begin
  select string_agg(format('%I = null', a.attname), ', ' order by a.attnum) into sets from pg_attribute a
  where a.attrelid = {literal(table)}::regclass and a.attnum > 0 and not a.attisdropped
    and lower(a.attname) = any(array(select lower(x) from unnest({names}) x));
  if sets is not null then
    execute 'update ' || {literal(table)}::regclass::text || ' set ' || sets;
  end if;
end""")


def ownership_sql(schemas: tuple[str, ...]) -> str:
    """Stop the transaction when one of ``schemas`` belongs to another role (one made first, by someone else,
    would own what the domain publishes there and could replace it)."""
    names = "array[" + ", ".join(literal(x) for x in schemas) + "]::text[]"
    return do_block(f"""
declare owner text; name text;
begin
  select n.nspname, pg_get_userbyid(n.nspowner) into name, owner from pg_namespace n
  where n.nspname = any({names}) and n.nspowner <> (select oid from pg_roles where rolname = current_user) limit 1;
  if name is not null then
    raise exception 'mesh: schema % belongs to role %, not to %: a domain publishes only into schemas it owns. '
      'An administrator drops it (or gives it to %: alter schema % owner to %), then publish again.',
      name, owner, current_user, current_user, name, current_user;
  end if;
end""")


def reset_grants_sql(schemas: tuple[str, ...], superusers_only: bool = False) -> str:
    """Revoke every privilege any role but the owner (``superusers_only``: any superuser) holds on ``schemas``
    and on every relation in them."""
    names = "array[" + ", ".join(literal(x) for x in schemas) + "]::text[]"
    only = " and a.grantee in (select oid from pg_roles where rolsuper)" if superusers_only else ""
    return do_block(f"""
declare item record;
begin
  for item in
    select 'schema ' || quote_ident(n.nspname) as target,
           case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end as grantee
    from pg_namespace n cross join lateral aclexplode(n.nspacl) a
    where n.nspname = any({names}) and a.grantee <> n.nspowner{only}
    union
    select 'table ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
           case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end
    from pg_class c join pg_namespace n on n.oid = c.relnamespace cross join lateral aclexplode(c.relacl) a
    where n.nspname = any({names}) and a.grantee <> c.relowner{only}
    union
    select 'table ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
           case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end
    from pg_attribute t join pg_class c on c.oid = t.attrelid join pg_namespace n on n.oid = c.relnamespace
    cross join lateral aclexplode(t.attacl) a
    where n.nspname = any({names}) and a.grantee <> c.relowner and t.attnum > 0{only}
  loop
    execute 'revoke all on ' || item.target || ' from ' || item.grantee;
  end loop;
end""")


def privilege_sql(privilege: tuple[str, str | None, str | None, str, str], grant: bool = True) -> str:
    """GRANT (or REVOKE) one privilege (schema, relation or None, column or None, privilege, grantee).

    ``PUBLIC`` (as the catalog reports it) is every role: it is only ever revoked. A grantee the server
    would read as PUBLIC, or that is no plain identifier, is never granted to (ValueError): the policy
    refuses such roles before (exchange/access.py), this is the last line."""
    schema, name, column, what, grantee = privilege
    if grant and (grantee == "PUBLIC" or reserved_role(grantee) or not plain_identifier(grantee)):
        raise ValueError(f"refusing to grant {what} on {schema}.{name} to {grantee!r}: not a domain's own role")
    who = "public" if grantee == "PUBLIC" else quote(grantee)
    if name is None:
        on = f"{what.lower()} on schema {quote(schema)}"
    elif column is not None:
        on = f"{what.lower()} ({quote(column)}) on {qualified(schema, name)}"
    else:
        on = f"{what.lower()} on {qualified(schema, name)}"
    return f"grant {on} to {who}" if grant else f"revoke {on} from {who}"


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


def switch_pointer_sql(view: tuple[str, str], table: tuple[str, str]) -> str:
    """Point a view (schema, name) at a release table (schema, name), in the publishing transaction, never
    leaving a moment without it.

    ``create or replace view`` keeps the view (its identity, so a concurrent reader waits and then
    reads the new release); only when the columns changed (a new contract) is it dropped and
    created again. Either way every privilege on it is revoked: the grants that follow are the policy's.
    The names arrive as literals; the statements are made by ``format('%I')``.
    """
    return do_block(f"""
declare
  v text := format('%I.%I', {literal(view[0])}, {literal(view[1])});
  t text := format('%I.%I', {literal(table[0])}, {literal(table[1])});
  grantee text;
begin
  begin
    execute format('create or replace view %s as select * from %s', v, t);
  exception when others then
    begin
      execute format('drop view if exists %s', v);
    exception when dependent_objects_still_exist then
      raise exception 'mesh: the pointer view % cannot take the new release''s columns: objects of other roles '
        'depend on it (%). They drop them first, or the product changes its columns in a new version.',
        v, sqlerrm;
    end;
    execute format('create view %s as select * from %s', v, t);
  end;
  for grantee in
    select distinct case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end
    from pg_class c cross join lateral aclexplode(c.relacl) a
    where c.oid = v::regclass and a.grantee <> c.relowner
  loop
    execute format('revoke all on %s from %s', v, grantee);
  end loop;
end""")


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


def export(
    domain: Any, exports: list[Export], product_keys: list[str], target: str | None, profiles_dir: Path | None,
    before: list[str] | None = None, grants: list[str] | None = None,
) -> Exported:  # fmt: skip
    """Publish: release tables, pointers and grants in one transaction; (rows, columns) of each release.

    ``before``: statements of the same transaction that run once the schemas exist (the sweep);
    ``grants``: every privilege the policy gives on the domain's two schemas (all others are revoked)."""
    from mesh_tools.dbt.profiles_dir import profiles_dir_for
    from mesh_tools.model.release import ReleaseColumn

    for prefix in dict.fromkeys(e.prefix for e in exports):  # before any SQL is made from it
        problem = prefix_problem(prefix, profiles_dir_for(domain.path, profiles_dir) / "profiles.yml", target)
        if problem:
            raise UnpublishableData(problem)
    statements = publish_statements(exports, product_keys, grants)
    schemas = 3 * len({e.prefix for e in exports})  # two `create schema`, one ownership check per prefix
    statements[schemas:schemas] = list(before or [])
    try:
        results = run(domain, statements, target, profiles_dir)
    except MeshError as exc:
        raise UnpublishableData(f"cannot write the release tables: {' '.join(str(exc).split())[:600]}") from None
    tail = results[-2 * len(exports) :]
    out = []
    for index in range(len(exports)):
        count, described = tail[2 * index], tail[2 * index + 1]
        columns = [ReleaseColumn(name=str(n), type=str(t), parquet_type=str(t)) for n, t in described]
        out.append((int(count[0][0]), columns))
    return out


def drop_statements(tables: list[tuple[str, str]]) -> list[str]:
    """Drop release tables (schema, table) of expired releases; their pointer views never read them."""
    return [f"drop table if exists {qualified(schema, table)}" for schema, table in tables]


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


def sweep_sql(schema: str, recorded: list[str], older_than: str) -> str:
    """Drop the release tables no descriptor records (``recorded`` release ids) made before ``older_than``
    (a release id: ids sort by time): left by a publisher killed between the warehouse's commit and the
    exchange's record. Only tables whose comment says the mesh made them; one still read by a view
    someone made is kept."""
    known = "array[" + ", ".join(literal(r) for r in recorded) + "]::text[]"
    return do_block(f"""
declare t record; rid text;
begin
  for t in
    select c.relname, obj_description(c.oid, 'pg_class') as note from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = {literal(schema)} and c.relkind = 'r'
      and obj_description(c.oid, 'pg_class') like {literal(RELEASE_COMMENT + "%")}
  loop
    rid := split_part(substr(t.note, {len(RELEASE_COMMENT) + 1}), ' ', 1);
    if rid <> all({known}) and rid < {literal(older_than)} then
      begin
        execute format('drop table %I.%I', {literal(schema)}, t.relname);
      exception when dependent_objects_still_exist then null;
      end;
    end if;
  end loop;
end""")


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

    def storage(self, project_dir: Path, credentials: Any) -> Storage:
        connection = {
            "host": credentials.host, "port": int(credentials.port), "dbname": credentials.database,
            "user": credentials.user, "password": credentials.password or None,
            "sslmode": getattr(credentials, "sslmode", None),
            "connect_timeout": getattr(credentials, "connect_timeout", 10),
        }  # fmt: skip
        return Storage(connection={k: v for k, v in connection.items() if v is not None})

    def profile_problems(self, schema: str | None, upstreams: Sequence[str], storage: Storage,
                         profiles_file: Path, target: str | None) -> list[ProfileProblem]:  # fmt: skip
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
