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
            profile = profiles.load_profile(domain.path, target, profiles_dir)
        except MeshError:
            continue
        if profile.adapter == engine and profile.user:
            roles[name] = str(profile.user)
    return roles


def role_names(domains: tuple[str, ...], roles: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted({str(roles[d]) for d in domains if d in roles}))
