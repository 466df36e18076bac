"""Warehouse grants from the mesh's policy: what each domain's role should grant, what it grants, the fix.

On a shared warehouse (PostgreSQL) each domain's role owns its schemas. It grants:
- USAGE on ``<schema>_releases`` and ``<schema>_products`` to the roles of the domains that read
  at least one of its products (they declare it upstream and the product allows them);
- SELECT on every kept release table and on the pointer view of a product to those roles;
- SELECT on the clear (PII) table and pointer only to the roles ``meta.pii_allowed_consumers`` names.

Nothing else: every other privilege on an object the role owns (a working table, a grant to
PUBLIC, a column privilege, a grant added by hand) is drift, reported and revoked. The domain's
own connection applies the fix (the owner may grant and revoke on what it owns: no superuser).
A pointer view that does not read its product's current release (a publisher killed between
the warehouse's commit and the exchange's record) is pointed back at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Domain, Mesh
from mesh_tools.dbt.engines import postgres
from mesh_tools.dbt.engines.postgres import literal, qualified, quote
from mesh_tools.exchange.access import readers_of, role_names, warehouse_roles
from mesh_tools.model.manifest import Manifest
from mesh_tools.store.exchange import Exchange

# (schema, object or None for the schema itself, column or None, privilege, grantee)
Privilege = tuple[str, str | None, str | None, str, str]

# Every privilege a role holds through others on objects the domain's role owns (PUBLIC included).
_ACTUAL_SQL = """
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


def _views_sql(schema: str) -> str:
    return (
        "select c.relname, pg_get_viewdef(c.oid) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        f"where n.nspname = {literal(schema)} and c.relkind = 'v' order by 1"
    )


@dataclass
class GrantPlan:
    """What one domain's role grants and should grant on the warehouse, and the SQL that reconciles them."""

    domain: str
    role: str
    target: str
    missing: list[Privilege] = field(default_factory=list)
    drift: list[Privilege] = field(default_factory=list)
    repoint: list[str] = field(default_factory=list)  # pointer views to point back at the current release
    statements: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.drift or self.repoint)


def describe(privilege: Privilege) -> str:
    schema, name, column, what, grantee = privilege
    thing = f"schema {schema}" if name is None else f"{schema}.{name}" + (f"({column})" if column else "")
    return f"{what} on {thing} to {grantee}"


def _statement(privilege: Privilege, grant: bool) -> str:
    """GRANT (or REVOKE) one privilege: on a schema, a table or view, or one column of one."""
    schema, name, column, what, grantee = privilege
    who = "public" if grantee == "PUBLIC" else quote(grantee)
    if name is None:
        on = f"{what.lower()} on schema {quote(schema)}"
    elif column is not None:
        on = f"{what.lower()} ({quote(column)}) on {qualified(schema, name)}"
    else:
        on = f"{what.lower()} on {qualified(schema, name)}"
    return f"grant {on} to {who}" if grant else f"revoke {on} from {who}"


def desired(mesh: Mesh, domain: Domain, prefix: str, roles: dict[str, str]) -> tuple[set[Privilege], dict[str, str]]:
    """The privileges the policy wants the domain's role to grant; and each pointer view's current table."""
    want: set[Privilege] = set()
    pointers: dict[str, str] = {}
    releases, products = postgres.releases_schema(prefix), postgres.products_schema(prefix)
    exchange = Exchange(mesh.exchange_path)
    try:
        manifest = Manifest.load(domain.manifest_path, domain.name, "Build it first: `mesh build`.")
    except MeshError:
        return want, pointers
    for node in manifest.products(domain.name):
        readers = readers_of(mesh, domain.name, node)
        consumers, clear = role_names(readers.consumers, roles), role_names(readers.clear, roles)
        try:
            ids = exchange.release_ids(domain.name, node.name, node.version)
            current = exchange.current_id(domain.name, node.name, node.version)
        except MeshError:
            continue
        for release_id in ids:
            folder = exchange.releases_dir(domain.name, node.name, node.version) / release_id
            try:
                location = exchange.load_release(folder, verify=False).descriptor.warehouse
            except MeshError:
                continue
            if location is None or location.releases_schema != releases:
                continue
            for role in consumers:
                want.add((releases, location.table, None, "SELECT", role))
            if location.clear_table:
                for role in clear:
                    want.add((releases, location.clear_table, None, "SELECT", role))
            if release_id == current:
                pointers[location.pointer] = location.table
                for role in consumers:
                    want.add((products, location.pointer, None, "SELECT", role))
                if location.clear_table:
                    clear_view = postgres.pointer_view(node.name, node.version, clear=True)
                    pointers[clear_view] = location.clear_table
                    for role in clear:
                        want.add((products, clear_view, None, "SELECT", role))
        for role in consumers:
            want.add((releases, None, None, "USAGE", role))
            want.add((products, None, None, "USAGE", role))
    return want, pointers


def plan_grants(mesh: Mesh, name: str, target: str | None) -> GrantPlan | None:
    """The grant plan of one domain, read through its own connection; None when it is not on a warehouse."""
    from mesh_tools.dbt import profiles

    domain = mesh.domains[name]
    try:
        profile = profiles.load_profile(domain.path, target, mesh.profiles_dir)
    except MeshError:
        return None
    if profile.adapter != postgres.NAME or not profile.user:
        return None
    prefix = str(profile.schema or name)
    roles = warehouse_roles(mesh, target, mesh.profiles_dir, postgres.NAME)
    want, pointers = desired(mesh, domain, prefix, roles)
    products = postgres.products_schema(prefix)
    rows = postgres.run(domain, [_ACTUAL_SQL, _views_sql(products)], target, mesh.profiles_dir)
    have: set[Privilege] = {(str(s), n, c, str(p), str(g)) for s, n, c, p, g in rows[0]}
    views = {str(n): str(d or "") for n, d in rows[1]}
    plan = GrantPlan(name, str(profile.user), profile.target)
    plan.drift = sorted(have - want, key=str)
    plan.missing = sorted(want - have, key=str)
    releases = postgres.releases_schema(prefix)
    for view, table in sorted(pointers.items()):
        if view in views and table not in views[view]:
            plan.repoint.append(view)
            plan.statements.append(postgres.switch_pointer_sql(qualified(products, view), qualified(releases, table)))
            plan.drift = [p for p in plan.drift if p[1] != view]  # the switch revokes them
            plan.missing += sorted(p for p in want if p[1] == view and p not in plan.missing)
    plan.statements += [_statement(p, grant=False) for p in plan.drift]
    plan.statements += [_statement(p, grant=True) for p in plan.missing]
    return plan


def apply(mesh: Mesh, plan: GrantPlan) -> None:
    """Run the plan's statements in one transaction on the domain's own connection."""
    if plan.statements:
        postgres.run(mesh.domains[plan.domain], plan.statements, plan.target, mesh.profiles_dir)


def bootstrap_sql(mesh: Mesh, target: str | None, database: str | None = None) -> list[str]:
    """What a warehouse administrator runs once: a login role per domain, the database's privileges.

    Passwords are never written: each role's is set with ``\\password <role>`` in psql (or the
    cloud console), and given to the domain's builds as the environment variable its profile reads.
    """
    from mesh_tools.dbt import profiles

    lines: list[str] = []
    names: dict[str, str] = {}
    for name, domain in mesh.domains.items():
        try:
            profile = profiles.load_profile(domain.path, target, mesh.profiles_dir, require_env=False)
        except MeshError:
            continue
        if profile.adapter == postgres.NAME and profile.user:
            names[name] = str(profile.user)
            database = database or profile.database
    if not names:
        return []
    db = quote(database or "mesh")
    lines.append(f"-- run once as an administrator of {database}; then `\\password <role>` for each role")
    lines.append(f"revoke all on database {db} from public;")
    lines.append("revoke create on schema public from public;")
    for name, role in sorted(names.items()):  # again with a new domain: roles that exist are kept
        lines.append(f"-- {name}")
        lines.append(
            f"do $$ begin if not exists (select from pg_roles where rolname = {literal(role)}) then "
            f"create role {quote(role)} login; end if; end $$;"
        )
        lines.append(f"grant connect, create, temporary on database {db} to {quote(role)};")
    return lines
