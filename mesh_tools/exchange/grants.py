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
the warehouse's commit and the exchange's record) is pointed back at it. A consumer whose role is
not its own (PUBLIC, a pg_ role, one shared with another domain, the producer's, a superuser) is
refused and granted nothing (exchange/access.py): a grant it holds is drift like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh_tools.core.errors import ConfigError, MeshError
from mesh_tools.core.mesh import Mesh
from mesh_tools.dbt import engines
from mesh_tools.dbt.engines import postgres, postgres_grants, postgres_publish
from mesh_tools.exchange.access import Privilege, desired, warehouse_roles


@dataclass
class GrantPlan:
    """What one domain's role grants and should grant on the warehouse, and the SQL that reconciles them."""

    domain: str
    role: str
    target: str
    missing: list[Privilege] = field(default_factory=list)
    drift: list[Privilege] = field(default_factory=list)
    repoint: list[str] = field(default_factory=list)  # pointer views to point back at the current release
    problems: list[str] = field(default_factory=list)  # what the plan cannot fix
    refused: list[str] = field(default_factory=list)  # consumers granted nothing: their role is refused (a problem)
    statements: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.drift or self.repoint or self.problems)


def describe(privilege: Privilege) -> str:
    schema, name, column, what, grantee = privilege
    thing = f"schema {schema}" if name is None else f"{schema}.{name}" + (f"({column})" if column else "")
    return f"{what} on {thing} to {grantee}"


def plan_grants(mesh: Mesh, name: str, target: str | None, roles: dict[str, str] | None = None) -> GrantPlan | None:
    """The grant plan of one domain, read through its own connection; None when it is not on a warehouse.

    MeshError when the warehouse cannot be read (the connection, a missing server)."""
    from mesh_tools.dbt import profiles

    domain = mesh.domains[name]
    try:
        profile = profiles.load_profile(domain.path, target, mesh.profiles_dir)
    except MeshError:
        return None
    engine = engines.find_engine(profile.adapter)
    if engine is None or not engine.releases_in_warehouse or not profile.user:
        return None
    prefix = str(profile.schema or name)
    problem = postgres.prefix_problem(prefix, profile.profiles_file, profile.target)
    if problem:
        raise ConfigError(problem)
    if roles is None:
        roles = warehouse_roles(mesh, target, mesh.profiles_dir)
    releases, products = postgres.releases_schema(prefix), postgres.products_schema(prefix)
    queries = [postgres_grants.ACTUAL_SQL, postgres_grants.view_reads_sql(products),
               postgres_grants.relations_sql((releases, products)), postgres_grants.SUPERUSERS_SQL]  # fmt: skip
    rows = postgres.run(domain, queries, target, mesh.profiles_dir)
    policy = desired(mesh, domain, prefix, roles, superusers=frozenset(str(r[0]) for r in rows[3]))
    have: set[Privilege] = {(str(s), n, c, str(p), str(g)) for s, n, c, p, g in rows[0]}
    reads: dict[str, set[tuple[str, str]]] = {}
    for view, schema, table in rows[1]:
        reads.setdefault(str(view), set()).add((str(schema), str(table)))
    existing = {(str(s), n) for s, n, _ in rows[2]}
    plan = GrantPlan(name, str(profile.user), profile.target, problems=list(policy.problems), refused=policy.refused)
    for schema, relation, owner in rows[2]:
        if str(owner) != str(profile.user):
            what = f"schema {schema}" if relation is None else f"{schema}.{relation}"
            plan.problems.append(f"{what} belongs to role {owner}, not {profile.user}: an administrator gives it back")
    want = set()
    for privilege in policy.grants:
        if (privilege[0], privilege[1]) in existing:
            want.add(privilege)
        else:
            plan.problems.append(f"{privilege[0]}.{privilege[1]} is missing from the warehouse (its release is "
                                 "recorded in the exchange): publish the product again")  # fmt: skip
    plan.problems = list(dict.fromkeys(plan.problems))
    plan.drift = sorted(have - want, key=str)
    plan.missing = sorted(want - have, key=str)
    for view, table in sorted(policy.pointers.items()):
        if (products, view) in existing and (releases, table) in existing and reads.get(view) != {(releases, table)}:
            plan.repoint.append(view)
            plan.statements.append(postgres_publish.switch_pointer_sql((products, view), (releases, table)))
            plan.drift = [p for p in plan.drift if p[1] != view]  # the switch revokes them
            plan.missing += sorted(p for p in want if p[1] == view and p not in plan.missing)
    plan.statements += [postgres_grants.privilege_sql(p, grant=False) for p in plan.drift]
    plan.statements += [postgres_grants.privilege_sql(p, grant=True) for p in plan.missing]
    return plan


def apply(mesh: Mesh, plan: GrantPlan) -> None:
    """Run the plan's statements in one transaction on the domain's own connection."""
    if plan.statements:
        postgres.run(mesh.domains[plan.domain], plan.statements, plan.target, mesh.profiles_dir)


def reconcile(mesh: Mesh, names: list[str], target: str | None, dry_run: bool) -> list[tuple[str, GrantPlan | str]]:
    """Each selected domain on a warehouse, in order: its grant plan (applied unless ``dry_run``), or why its
    warehouse refused (one domain's refusal never stops the others)."""
    roles = warehouse_roles(mesh, target, mesh.profiles_dir)
    out: list[tuple[str, GrantPlan | str]] = []
    for name in names:
        try:
            plan = plan_grants(mesh, name, target, roles)
            if plan is not None and not dry_run:
                apply(mesh, plan)
        except MeshError as exc:
            out.append((name, str(exc)))
            continue
        if plan is not None:
            out.append((name, plan))
    return out


def grant_problems(mesh: Mesh, domains: list[str], target: str | None) -> dict[str, list[str]]:
    """Per domain on a warehouse: every grant beyond the policy, every grant it lacks (GOV206)."""
    if not target:
        return {}
    roles = warehouse_roles(mesh, target, mesh.profiles_dir)
    out: dict[str, list[str]] = {}
    for name in domains:
        try:
            plan = plan_grants(mesh, name, target, roles)
        except MeshError as exc:
            out[name] = [f"its warehouse grants cannot be read: {exc}"]
            continue
        if plan is None:
            continue
        problems = [f"the warehouse grants {describe(p)}, which the policy does not allow" for p in plan.drift]
        problems += [f"the warehouse lacks {describe(p)}, which the policy allows" for p in plan.missing]
        problems += [f"pointer view {v} does not read its product's current release" for v in plan.repoint]
        problems += plan.problems
        if problems:
            out[name] = problems
    return out


def bootstrap_sql(mesh: Mesh, target: str | None, database: str | None = None) -> list[str]:
    """What a warehouse administrator runs once: a login role per domain, the database's privileges.

    Passwords are never written: each role's is set with ``\\password <role>`` in psql (or the
    cloud console), and given to the domain's builds as the environment variable its profile reads.
    Every name is checked first (ConfigError naming each profile that names a refused role or database,
    and nothing printed); in the SQL a name is a quoted identifier or a literal that ``format('%I')``
    turns into one, never text inside a dollar-quoted block.
    """
    from mesh_tools.dbt import profiles

    roles = warehouse_roles(mesh, target, mesh.profiles_dir)
    problems = [roles.refused[n] for n in sorted(roles.refused)]
    where = "the command line"
    for name, domain in mesh.domains.items():
        if database is not None or name not in roles:
            continue
        try:
            profile = profiles.load_profile(domain.path, target, mesh.profiles_dir, require_env=False)
        except MeshError:
            continue
        database, where = (str(profile.database), roles.where[name]) if profile.database else (None, where)
    if database is not None and not postgres_grants.plain_database(database):
        problems.append(
            f"{where}: the database {database[:80]!r} is not a plain name (letters, digits, underscores and hyphens, "
            "not starting with a digit or hyphen, at most 63 bytes). Name the warehouse's database so."
        )
    if problems:
        raise ConfigError(
            "\n".join(problems) + "\nNothing was printed: an administrator runs the bootstrap once every role is "
            "one domain's own."
        )
    if not roles:
        return []
    return postgres_grants.bootstrap_statements(database or "mesh", dict(sorted(roles.items())))
