"""Who may read which product, as warehouse roles: the mesh's policy, for the database to enforce.

A consumer domain may read a producer's product when it declares the producer as an upstream
(``dependencies.yml``) and the product does not restrict its consumers to others
(``meta.allowed_consumers``). It reads PII columns in clear only when the product's
``meta.pii_allowed_consumers`` names it. Each domain is one login role: the ``user`` of its
profile's target. A role that is not a domain's own is refused as a consumer, with the profile that
names it, and granted nothing: no user, a name that is not a plain identifier, a name PostgreSQL
reserves or reads as PUBLIC (``public``, ``pg_*``, in any case), a role two domains share, the
producer's own role, and a superuser (it reads everything, whatever the policy says).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Mesh
from mesh_tools.model.nodes import Node


@dataclass(frozen=True)
class Readers:
    consumers: tuple[str, ...]  # domains that read the product (its PII masked)
    clear: tuple[str, ...]  # of those, the ones that read its PII in clear


def readers_of(mesh: Mesh, producer: str, node: Node) -> Readers:
    """The domains of the mesh allowed to read ``node`` of ``producer``."""
    consumers = sorted(
        name for name, domain in mesh.domains.items()
        if name != producer and producer in domain.upstream_names and node.readable_by(name)
    )  # fmt: skip
    clear = sorted(set(node.pii_readers or []) & set(consumers))
    return Readers(tuple(consumers), tuple(clear))


class Roles(dict[str, str]):
    """The login role of each domain on a warehouse (domain -> role), and the domains whose role is refused.

    A refused domain is not in the mapping, so nothing is ever granted to its role; ``refused`` says why,
    located at the profiles.yml and target that name the role.
    """

    def __init__(
        self, roles: dict[str, str] | None = None, refused: dict[str, str] | None = None,
        where: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(roles or {})
        self.refused: dict[str, str] = dict(refused or {})
        self.where: dict[str, str] = dict(where or {})  # domain -> "its profiles.yml, target ..."


def warehouse_roles(mesh: Mesh, target: str | None, profiles_dir: Path | None) -> Roles:
    """The login role of every domain whose ``target`` is on an engine that keeps releases in its warehouse
    (domains elsewhere read nothing there); roles that are not one domain's own are refused (``Roles.refused``)."""
    from mesh_tools.core.errors import display_path
    from mesh_tools.dbt import engines, profiles

    named: dict[str, tuple[str, str]] = {}  # domain -> (role, where)
    refused: dict[str, str] = {}
    for name, domain in mesh.domains.items():
        try:
            profile = profiles.load_profile(domain.path, target, profiles_dir, require_env=False)  # names only
        except MeshError:
            continue
        engine = engines.find_engine(profile.adapter)
        if engine is None or not engine.releases_in_warehouse:
            continue
        where = f"{display_path(profile.profiles_file)}, target {profile.target}"
        role = "" if profile.user is None else str(profile.user)
        why = role_problem(role)
        if why:
            refused[name] = _refusal(name, where, why)
        else:
            named[name] = (role, where)
    by_role: dict[str, list[str]] = {}
    for name, (role, _) in named.items():
        by_role.setdefault(role.casefold(), []).append(name)
    for names in by_role.values():
        if len(names) > 1:  # one role for two domains would read what either may read
            for name in names:
                others = "; ".join(f"{o} ({named[o][1]})" for o in names if o != name)
                why = (
                    f"names the role {named[name][0]!r}, which {others} names too (each domain needs a role of its own)"
                )
                refused[name] = _refusal(name, named[name][1], why)
    accepted = {n: r for n, (r, _) in named.items() if n not in refused}
    return Roles(accepted, refused, {n: w for n, (_, w) in named.items()})


def role_problem(role: str) -> str | None:
    """Why ``role`` (a profile's user) can be no domain's own login role, as "names ..." (or None)."""
    from mesh_tools.dbt.engines.postgres import plain_identifier, reserved_role

    if not role.strip():
        return "names no user (login role)"
    if not plain_identifier(role):
        return (
            f"names the role {role[:80]!r}, which is not a plain identifier (letters, digits and underscores, "
            "not starting with a digit, at most 63 bytes)"
        )
    reserved = reserved_role(role)
    return f"names the role {role!r}: {reserved}" if reserved else None


def _refusal(domain: str, where: str, why: str) -> str:
    return (
        f"{where}: {domain} {why}. The mesh refuses it as a consumer on the warehouse and grants it nothing. "
        f"Give {domain} a login role of its own in that profile (`user:`); `mesh grants --bootstrap` prints the "
        "SQL that creates it, `mesh grants` then grants what the policy allows."
    )


def role_names(domains: tuple[str, ...], roles: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted({str(roles[d]) for d in domains if d in roles}))


def consumer_roles(producer: str, roles: dict[str, str], superusers: frozenset[str] = frozenset()) -> Roles:
    """The roles ``producer`` may grant to: ``roles`` without its own role (in any case) and without superusers;
    each one left out is refused with the reason (and the refusals ``roles`` already carries)."""
    refused = dict(getattr(roles, "refused", {}))
    where: dict[str, str] = dict(getattr(roles, "where", {}))
    own = roles.get(producer)
    accepted: dict[str, str] = {}
    for name, role in roles.items():
        located = where.get(name, f"the profile of {name}")
        if name == producer:
            continue
        if own is not None and role.casefold() == own.casefold():
            refused[name] = _refusal(name, located, f"names the role {role!r}, {producer}'s own role")
        elif role in superusers:
            why = (
                f"names the role {role!r}, a superuser: it reads everything on the warehouse, whatever the policy says"
            )
            refused[name] = _refusal(name, located, why)
        else:
            accepted[name] = role
    return Roles(accepted, refused, where)


# (schema, relation or None for the schema, column or None, privilege, grantee role)
Privilege = tuple[str, str | None, str | None, str, str]


@dataclass(frozen=True)
class Published:
    """A release being published in the warehouse, not yet in the exchange."""

    release_id: str
    table: str
    clear_table: str | None


@dataclass
class Policy:
    """What a domain's role should grant on its releases and products schemas."""

    grants: set[Privilege]
    pointers: dict[str, str]  # pointer view -> the release table it must read
    problems: list[str]
    refused: list[str] = field(default_factory=list)  # consumers granted nothing: their role is refused (also problems)


def desired(
    mesh: Mesh, domain: Any, prefix: str, roles: dict[str, str], published: dict[str, Published] | None = None,
    superusers: frozenset[str] = frozenset(),
) -> Policy:  # fmt: skip
    """The policy's privileges on every kept release of the domain's products (and ``published``, by product
    key, which become current). A descriptor naming other tables than its product and id make is a problem,
    never granted; so is a consumer whose role is refused (``consumer_roles``), which is granted nothing."""
    from mesh_tools.dbt.engines import postgres
    from mesh_tools.model.manifest import Manifest
    from mesh_tools.store.exchange import open_exchange

    policy = Policy(set(), {}, [])
    roles = consumer_roles(domain.name, roles, superusers)
    releases, products = postgres.releases_schema(prefix), postgres.products_schema(prefix)
    exchange = open_exchange(mesh)
    try:
        manifest = Manifest.load(domain.manifest_path, domain.name, "Build it first: `mesh build`.")
    except MeshError as exc:
        policy.problems.append(str(exc))
        return policy
    for node in manifest.products(domain.name):
        readers = readers_of(mesh, domain.name, node)
        policy.refused += [roles.refused[d] for d in readers.consumers if d in roles.refused]
        consumers, clear = role_names(readers.consumers, roles), role_names(readers.clear, roles)
        kept: list[tuple[str, str, str | None]] = []
        try:
            ids = exchange.release_ids(domain.name, node.name, node.version)
            current = exchange.current_id(domain.name, node.name, node.version)
        except MeshError as exc:
            policy.problems.append(str(exc))
            continue
        for release_id in ids:
            try:
                descriptor = exchange.load(domain.name, node.name, node.version, release_id, verify=False).descriptor
            except MeshError as exc:
                policy.problems.append(str(exc))
                continue
            if descriptor.warehouse is None:
                continue
            try:
                postgres.check_location(descriptor, prefix)
            except ValueError as exc:
                policy.problems.append(f"release {release_id} of {node.key} is refused: {exc}")
                continue
            kept.append((release_id, descriptor.warehouse.table, descriptor.warehouse.clear_table))
        new = (published or {}).get(node.key)
        if new is not None:
            kept.append((new.release_id, new.table, new.clear_table))
            current = new.release_id
        for release_id, table, clear_table in kept:
            policy.grants |= {(releases, table, None, "SELECT", role) for role in consumers}
            if clear_table:
                policy.grants |= {(releases, clear_table, None, "SELECT", role) for role in clear}
            if release_id != current:
                continue
            pointer = postgres.pointer_view(node.name, node.version)
            policy.pointers[pointer] = table
            policy.grants |= {(products, pointer, None, "SELECT", role) for role in consumers}
            if clear_table:
                clear_view = postgres.pointer_view(node.name, node.version, clear=True)
                policy.pointers[clear_view] = clear_table
                policy.grants |= {(products, clear_view, None, "SELECT", role) for role in clear}
        if kept:
            for role in consumers:
                policy.grants |= {(releases, None, None, "USAGE", role), (products, None, None, "USAGE", role)}
    policy.refused = list(dict.fromkeys(policy.refused))
    policy.problems = list(dict.fromkeys(policy.refused + policy.problems))
    return policy
