"""PostgreSQL grants: the SQL that reads what a domain's role grants, and that grants and revokes it.

Who may read what is the mesh's policy (exchange/access.py, exchange/grants.py); this module only
says it in PostgreSQL, names as literals or quoted identifiers (postgres.py's rules). A grantee the
server would read as PUBLIC, or that is no plain identifier, is never granted to.
"""

from __future__ import annotations

import re

from mesh_tools.dbt.engines.postgres import (
    MAX_IDENTIFIER,
    do_block,
    literal,
    plain_identifier,
    qualified,
    quote,
    reserved_role,
)

# Every privilege a role holds through others on objects the domain's role owns (PUBLIC included).
ACTUAL_SQL = """
with me as (select oid from pg_roles where rolname = current_user)
select n.nspname, null, null, a.privilege_type,
       case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee) end
from pg_namespace n cross join lateral aclexplode(n.nspacl) a
where n.nspowner = (select oid from me) and a.grantee <> n.nspowner
union all
select n.nspname, c.relname, null, a.privilege_type,
       case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee) end
from pg_class c join pg_namespace n on n.oid = c.relnamespace cross join lateral aclexplode(c.relacl) a
where c.relowner = (select oid from me) and a.grantee <> c.relowner and c.relkind in ('r', 'v', 'm', 'p', 'f')
union all
select n.nspname, c.relname, t.attname, a.privilege_type,
       case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee) end
from pg_attribute t join pg_class c on c.oid = t.attrelid join pg_namespace n on n.oid = c.relnamespace
cross join lateral aclexplode(t.attacl) a
where c.relowner = (select oid from me) and a.grantee <> c.relowner and t.attnum > 0
order by 1, 2, 3, 4, 5
"""


# Superusers read everything whatever they are granted: a consumer whose role is one is refused.
SUPERUSERS_SQL = "select rolname from pg_roles where rolsuper order by 1"


# Which relations each view of a schema reads (its rewrite rule's dependencies): exact, never by name.
def view_reads_sql(schema: str) -> str:
    return (
        "select v.relname, tn.nspname, t.relname from pg_class v "
        "join pg_namespace vn on vn.oid = v.relnamespace "
        "join pg_rewrite r on r.ev_class = v.oid "
        "join pg_depend d on d.objid = r.oid and d.classid = 'pg_rewrite'::regclass "
        "and d.refclassid = 'pg_class'::regclass "
        "join pg_class t on t.oid = d.refobjid and t.oid <> v.oid "
        "join pg_namespace tn on tn.oid = t.relnamespace "
        f"where vn.nspname = {literal(schema)} and v.relkind = 'v' group by 1, 2, 3 order by 1, 2, 3"
    )


def relations_sql(schemas: tuple[str, str]) -> str:
    names = ", ".join(literal(x) for x in schemas)
    return (
        "select n.nspname, c.relname, pg_get_userbyid(c.relowner) from pg_class c join pg_namespace n "
        f"on n.oid = c.relnamespace where n.nspname in ({names}) and c.relkind in ('r', 'v') "
        "union all select n.nspname, null, pg_get_userbyid(n.nspowner) from pg_namespace n "
        f"where n.nspname in ({names})"
    )


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


# -- the bootstrap an administrator runs once

# A database name as the bootstrap writes it into SQL and into a comment line.
_DATABASE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def plain_database(name: str) -> bool:
    """Whether ``name`` is a database name the bootstrap writes (letters, digits, ``_``, ``-``; 63 bytes)."""
    return bool(_DATABASE.fullmatch(name)) and len(name.encode()) <= MAX_IDENTIFIER


def bootstrap_statements(database: str, roles: dict[str, str]) -> list[str]:
    """The lines an administrator of ``database`` runs once: its privileges, then per domain (name -> role)
    its login role (kept when it exists) and what it may do in the database."""
    db = quote(database)
    lines: list[str] = []
    lines.append(f"-- run once as an administrator of {database}; then `\\password <role>` for each role")
    lines.append(f"revoke all on database {db} from public;")
    lines.append("revoke create on schema public from public;")
    for name, role in roles.items():  # again with a new domain: roles that exist are kept
        lines.append(f"-- {name if plain_identifier(name) else repr(name)}")
        lines.append(create_role_sql(role) + ";")
        lines.append(f"grant connect, create, temporary on database {db} to {quote(role)};")
    return lines


def create_role_sql(role: str) -> str:
    """Create the login role ``role`` unless it exists: the name reaches the server as a literal only, and
    ``format('%I')`` makes the statement (whatever the name, it cannot end the block or add statements)."""
    return do_block(
        f"begin if not exists (select from pg_roles where rolname = {literal(role)}) then "
        f"execute format('create role %I login', {literal(role)}); end if; end"
    )
