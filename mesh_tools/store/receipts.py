"""Consumption receipts and leases: which upstream releases a consumer read, and is about to read.

A lease is written when a consumer is stitched (its views now point at those releases); a
receipt when its build succeeds. Retention never deletes a release held by either.

Both hold each product's key structured (``reads``: domain, model and version as fields, with the release and the
channel), so no reader parses a dotted key back; the dotted ``releases`` map stays beside it for readers of the
previous version, and a receipt or lease written by that version (``releases`` only) is read by parsing its keys
once, in ``model.nodes.ProductKey``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mesh_tools.core.errors import ArtifactError
from mesh_tools.core.jsonfile import loads
from mesh_tools.model.nodes import ProductKey
from mesh_tools.store.exchange import Exchange

HOLDER_VERSION = 2  # 2: the structured ``reads`` and ``used_products``; 1 (none written): dotted keys only


@dataclass(frozen=True)
class Receipt:
    """What a consumer's last good build read: each product's release and the channel it came through, and the
    products its own nodes use (a receipt from before ``used`` was kept: every product it read)."""

    consumer: str
    releases: dict[ProductKey, str] = field(default_factory=dict)
    channels: dict[ProductKey, str] = field(default_factory=dict)
    used: list[ProductKey] = field(default_factory=list)


def _product(entry: Mapping[str, Any]) -> ProductKey:
    """A structured key as a receipt or lease holds it (TypeError when it is not one)."""
    domain, model, version = entry.get("domain"), entry.get("model"), entry.get("version")
    if not isinstance(domain, str) or not isinstance(model, str) or not isinstance(version, str | None):
        raise TypeError(f"an entry of 'reads' is no product ({str(dict(entry))[:120]})")
    return ProductKey(domain, model, version)


def _key_fields(key: ProductKey) -> dict[str, str | None]:
    return {"domain": key.domain, "model": key.model, "version": key.version}


def _reads(releases: Mapping[str, str], channels: Mapping[str, str]) -> list[dict[str, str | None]]:
    """The structured ``reads`` of a receipt or lease, in key order."""
    return [
        {**_key_fields(ProductKey.parse(k)), "release_id": releases[k],
         **({"channel": str(channels[k])} if k in channels else {})}
        for k in sorted(releases)
    ]  # fmt: skip


def _read_releases(data: Mapping[str, Any]) -> tuple[dict[ProductKey, str], dict[ProductKey, str]]:
    """The releases (and channels) a receipt or lease holds: its structured ``reads``, or, written by the previous
    version, its dotted ``releases`` and ``channels`` maps."""
    reads = data.get("reads")
    if reads is None:
        held = data.get("channels")
        channels: Mapping[str, Any] = held if isinstance(held, dict) else {}
        return (
            {ProductKey.parse(str(k)): str(v) for k, v in data["releases"].items()},
            {ProductKey.parse(str(k)): str(v) for k, v in channels.items()},
        )
    if not isinstance(reads, list) or not all(isinstance(r, dict) for r in reads):
        raise TypeError("'reads' is not a list of products")
    releases = {_product(r): str(r.get("release_id")) for r in reads}
    return releases, {_product(r): str(r["channel"]) for r in reads if r.get("channel") is not None}


def write_receipt(
    exchange: Exchange, consumer: str, releases: dict[str, str], used: list[str], invocation: str | None
) -> None:
    """Record (and log) what ``consumer`` read in a build that succeeded, with the channel each came
    through (from the lease its stitch wrote: the resolution that build read)."""
    channels = _read_holder(exchange, "lease", exchange.lease_key(consumer), consumer).get("channels") or {}
    receipt = {
        "consumer": consumer,
        "env": exchange.env,
        "built_at": datetime.now(UTC).isoformat(),
        "invocation_id": invocation,
        "releases": dict(sorted(releases.items())),
        "channels": {k: str(channels[k]) for k in sorted(releases) if isinstance(channels, dict) and k in channels},
        "used": sorted(used),
        "holder_version": HOLDER_VERSION,
        "reads": _reads(releases, channels if isinstance(channels, dict) else {}),
        "used_products": [_key_fields(ProductKey.parse(k)) for k in sorted(used)],
    }
    exchange.backend.write(exchange.receipt_key(consumer), (json.dumps(receipt, indent=2) + "\n").encode("utf-8"))
    exchange.append_log({"event": "consume", "consumer": consumer, "releases": receipt["releases"]})


def _read_holder(exchange: Exchange, kind: str, key: str, consumer: str) -> dict[str, Any]:
    """A receipt or lease as a mapping with a ``releases`` mapping ({} when there is none); one that cannot
    be read is an error, never "none": retention would delete releases in use."""
    try:
        raw = exchange.backend.read(key)
        if raw is None:
            return {}
        data = loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("releases"), dict):
            raise TypeError("'releases' is not a mapping")
        return data
    except (OSError, ValueError, TypeError) as exc:
        raise _corrupt(exchange, kind, key, consumer, exc) from None


def _corrupt(exchange: Exchange, kind: str, key: str, consumer: str, exc: Exception) -> ArtifactError:
    fix = f"Rebuild {consumer}." if kind == "receipt" else f"Stitch {consumer} again."
    return ArtifactError(f"{exchange.backend.display(key)}: {kind} is corrupt ({exc}). {fix}")


def read_receipt(exchange: Exchange, consumer: str, env: str | None = None) -> Receipt | None:
    """What ``consumer``'s last good build read (None when it never built); a corrupt receipt is an error."""
    key = exchange.receipt_key(consumer, env)
    data = _read_holder(exchange, "receipt", key, consumer)
    if not data:
        return None
    try:
        releases, channels = _read_releases(data)
        used_products = data.get("used_products")
        if used_products is not None:
            if not isinstance(used_products, list) or not all(isinstance(u, dict) for u in used_products):
                raise TypeError("'used_products' is not a list of products")
            used = [_product(u) for u in used_products]
        else:  # written by the previous version: dotted keys
            used = [ProductKey.parse(str(u)) for u in data.get("used") or []]
        used = used or list(releases)  # none recorded: every product it read
    except (TypeError, KeyError) as exc:
        raise _corrupt(exchange, "receipt", key, consumer, exc) from None
    return Receipt(consumer, releases, channels, used)


def write_lease(
    exchange: Exchange, consumer: str, releases: dict[str, str], channels: dict[str, str] | None = None
) -> None:
    """Record the releases a consumer's views point at from now on (until its next stitch)."""
    lease = {"consumer": consumer, "env": exchange.env, "stitched_at": datetime.now(UTC).isoformat(),
             "releases": releases, "channels": channels or {}, "holder_version": HOLDER_VERSION,
             "reads": _reads(releases, channels or {})}  # fmt: skip
    exchange.backend.write(exchange.lease_key(consumer), (json.dumps(lease) + "\n").encode("utf-8"))


def read_lease(exchange: Exchange, consumer: str, env: str | None = None) -> dict[str, str]:
    """The releases a consumer's views point at; none when it has no lease (a corrupt one is an error)."""
    key = exchange.lease_key(consumer, env)
    data = _read_holder(exchange, "lease", key, consumer)
    try:
        releases, _channels = _read_releases(data) if data else ({}, {})
    except (TypeError, KeyError) as exc:
        raise _corrupt(exchange, "lease", key, consumer, exc) from None
    return {str(k): v for k, v in releases.items()}


def every_hold(exchange: Exchange) -> set[tuple[str, str]]:
    """(product, release id) of every receipt and lease of every consumer in every environment."""
    keep: set[tuple[str, str]] = set()
    for kind in ("receipts", "leases"):
        for key in exchange.holders(kind):
            data = _read_holder(exchange, kind[:-1], key, key.rsplit("/", 1)[-1].removesuffix(".json"))
            keep |= {(str(k), str(v)) for k, v in (data.get("releases") or {}).items()}
    return keep
