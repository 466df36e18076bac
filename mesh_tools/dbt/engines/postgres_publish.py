"""PostgreSQL publishing: release tables, pointer views and grants, made in one transaction on the domain's connection.

The release tables are immutable; a pointer view per product always reads the current release and
is switched in the same transaction, never leaving a moment without it. A publisher killed before
the commit leaves nothing; one killed after it leaves release tables no descriptor records, which a
later publish drops (``sweep_sql``). Names follow postgres.py's rules (quoted identifiers, literals,
``format('%I')`` inside ``do_block``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import MeshError
from mesh_tools.dbt.engines.engine import Exported, UnpublishableData
from mesh_tools.dbt.engines.postgres import (
    RELEASE_COMMENT,
    do_block,
    literal,
    pointer_view,
    prefix_problem,
    products_schema,
    qualified,
    quote,
    release_table,
    releases_schema,
    run,
)
from mesh_tools.dbt.engines.postgres_grants import reset_grants_sql


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
