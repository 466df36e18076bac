"""Retention: keep the last N releases of each product, and every release someone still reads."""

from __future__ import annotations

import shutil

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


def apply_retention(mesh: Mesh, exchange: Exchange, published: list[ReleaseDescriptor]) -> list[str]:
    """Delete releases beyond the newest ``retention`` of each product just published; return them.

    When who reads what cannot be known (a receipt or lease cannot be read), nothing is deleted."""
    try:
        keep = protected_releases(mesh, exchange)
    except MeshError:
        return []
    expired: list[str] = []
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
            shutil.rmtree(folder, ignore_errors=True)
            exchange.append_log({"event": "expire", "product": descriptor.product, "release_id": release_id})
            expired.append(f"{descriptor.product}@{release_id}")
    return expired
