"""Retention: keep the last N releases of each product, and every release someone still reads."""

from __future__ import annotations

from collections.abc import Callable

from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Mesh
from mesh_tools.model.nodes import product_key
from mesh_tools.model.release import ReleaseDescriptor
from mesh_tools.store.exchange import Exchange
from mesh_tools.store.receipts import every_hold


def protected_releases(mesh: Mesh, exchange: Exchange) -> set[tuple[str, str]]:
    """(product key, release id) pairs no one may delete: pinned (in any environment), leased (stitched)
    or last read ones, by any consumer in any environment, including those on other machines."""
    keep: set[tuple[str, str]] = set()
    for domain in mesh.domains.values():
        for pins in [domain.pins, *(e.pins for e in domain.environments.values())]:
            keep |= set(pins.items())
    return keep | every_hold(exchange)


def apply_retention(
    mesh: Mesh, exchange: Exchange, published: list[ReleaseDescriptor],
    drop: Callable[[list[ReleaseDescriptor]], None] | None = None, problems: list[str] | None = None,
) -> list[str]:  # fmt: skip
    """Delete releases beyond the newest ``retention`` of each product just published; return them.

    When who reads what cannot be known (a receipt or lease cannot be read), nothing is deleted.
    A release living in a warehouse has its tables dropped first (``drop``, on the producer's
    connection, given the descriptors: it derives the names itself); when that fails its folder
    stays, and the next publish tries again.
    """
    try:
        keep = protected_releases(mesh, exchange)
    except MeshError as exc:  # who reads what is unknown: nothing is deleted, and the publisher is told why
        if problems is not None:
            problems.append(f"retention skipped, nothing deleted: {exc}")
        return []
    doomed: list[tuple[ReleaseDescriptor, str]] = []
    for descriptor in published:
        d = descriptor
        try:
            ids = exchange.release_ids(d.project, d.model, d.version)
            current = set(exchange.pointers(d.project, d.model, d.version).values())  # every channel's
        except MeshError:
            return []
        newest = set(ids[-mesh.exchange.retention :])
        unversioned_key = product_key(descriptor.project, descriptor.model, None)
        for release_id in ids:
            if release_id in newest or release_id in current:
                continue
            if (descriptor.product, release_id) in keep or (unversioned_key, release_id) in keep:
                continue
            doomed.append((descriptor, release_id))
    in_warehouse: list[ReleaseDescriptor] = []
    for d, release_id in doomed:
        found = _descriptor_of(exchange, d, release_id)
        if found is not None and found.warehouse is not None:
            in_warehouse.append(found)
    if in_warehouse:
        if drop is None:
            return []  # only the producer's own connection may drop them: its next publish will
        try:
            drop(in_warehouse)
        except MeshError:
            return []
    expired: list[str] = []
    for descriptor, release_id in doomed:
        gone = descriptor.model_copy(update={"release_id": release_id})
        try:
            exchange.discard(gone)
        except MeshError:
            continue  # the store refused: the next publish tries again
        exchange.append_log({"event": "expire", "product": descriptor.product, "release_id": release_id})
        expired.append(f"{descriptor.product}@{release_id}")
    return expired


def _descriptor_of(exchange: Exchange, d: ReleaseDescriptor, release_id: str) -> ReleaseDescriptor | None:
    try:
        return exchange.load(d.project, d.model, d.version, release_id, verify=False).descriptor
    except MeshError:
        return None
