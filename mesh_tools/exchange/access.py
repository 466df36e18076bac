"""Who may read which product, as warehouse roles: the mesh's policy, for the database to enforce.

A consumer domain may read a producer's product when it declares the producer as an upstream
(``dependencies.yml``) and the product does not restrict its consumers to others
(``meta.allowed_consumers``). It reads PII columns in clear only when the product's
``meta.pii_allowed_consumers`` names it. Each domain is one login role: the ``user`` of its
profile's target.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def warehouse_roles(mesh: Mesh, target: str | None, profiles_dir: Path | None, engine: str) -> dict[str, str]:
    """The login role of every domain whose ``target`` is on ``engine`` (domains elsewhere read nothing there)."""
    from mesh_tools.dbt import profiles

    roles: dict[str, str] = {}
    for name, domain in mesh.domains.items():
        try:
            profile = profiles.load_profile(domain.path, target, profiles_dir, require_env=False)  # names only
        except MeshError:
            continue
        if profile.adapter == engine and profile.user:
            roles[name] = str(profile.user)
    return roles


def role_names(domains: tuple[str, ...], roles: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted({str(roles[d]) for d in domains if d in roles}))


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


def desired(
    mesh: Mesh, domain: Any, prefix: str, roles: dict[str, str], published: dict[str, Published] | None = None
) -> Policy:
    """The policy's privileges on every kept release of the domain's products (and ``published``, by product
    key, which become current). A descriptor naming other tables than its product and id make is a problem,
    never granted."""
    from mesh_tools.dbt.engines import postgres
    from mesh_tools.model.manifest import Manifest
    from mesh_tools.store.exchange import open_exchange

    policy = Policy(set(), {}, [])
    releases, products = postgres.releases_schema(prefix), postgres.products_schema(prefix)
    exchange = open_exchange(mesh)
    try:
        manifest = Manifest.load(domain.manifest_path, domain.name, "Build it first: `mesh build`.")
    except MeshError as exc:
        policy.problems.append(str(exc))
        return policy
    for node in manifest.products(domain.name):
        readers = readers_of(mesh, domain.name, node)
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
    return policy
