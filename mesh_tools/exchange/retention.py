"""Retention: keep the last N releases of each product, and every release someone still reads."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Mesh
from mesh_tools.model.release import ReleaseDescriptor
from mesh_tools.store.exchange import Exchange
from mesh_tools.store.receipts import read_lease, read_receipt


def protected_releases(mesh: Mesh, exchange: Exchange) -> set[tuple[str, str]]:
    """(product key, release id) pairs no one may delete: pinned, leased (stitched) or last read ones."""
    keep: set[tuple[str, str]] = set()
    for name, domain in mesh.domains.items():
        for product, release in domain.pins.items():
            keep.add((product, release))
        receipt = read_receipt(exchange, name) or {}
        keep |= set((receipt.get("releases") or {}).items())
        keep |= set(read_lease(exchange, name).items())
    return keep


def apply_retention(
    mesh: Mesh, exchange: Exchange, published: list[ReleaseDescriptor],
    drop: Callable[[list[ReleaseDescriptor]], None] | None = None,
) -> list[str]:  # fmt: skip
    """Delete releases beyond the newest ``retention`` of each product just published; return them.

    When who reads what cannot be known (a receipt or lease cannot be read), nothing is deleted.
    A release living in a warehouse has its tables dropped first (``drop``, on the producer's
    connection, given the descriptors: it derives the names itself); when that fails its folder
    stays, and the next publish tries again.
    """
    try:
        keep = protected_releases(mesh, exchange)
    except MeshError:
        return []
    doomed: list[tuple[ReleaseDescriptor, str, Path]] = []
    for descriptor in published:
        ids = exchange.release_ids(descriptor.project, descriptor.model, descriptor.version)
        current = exchange.current_id(descriptor.project, descriptor.model, descriptor.version)
        newest = set(ids[-mesh.exchange.retention :])
        unversioned_key = f"{descriptor.project}.{descriptor.model}"
        for release_id in ids:
            if release_id in newest or release_id == current:
                continue
            if (descriptor.product, release_id) in keep or (unversioned_key, release_id) in keep:
                continue
            folder = exchange.releases_dir(descriptor.project, descriptor.model, descriptor.version) / release_id
            doomed.append((descriptor, release_id, folder))
    in_warehouse: list[ReleaseDescriptor] = []
    for _descriptor, _release_id, folder in doomed:
        found = _descriptor_of(exchange, folder)
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
    for descriptor, release_id, folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
        exchange.append_log({"event": "expire", "product": descriptor.product, "release_id": release_id})
        expired.append(f"{descriptor.product}@{release_id}")
    return expired


def _descriptor_of(exchange: Exchange, folder: Path) -> ReleaseDescriptor | None:
    try:
        return exchange.load_release(folder, verify=False).descriptor
    except MeshError:
        return None
