"""Consumption receipts and leases: which upstream releases a consumer read, and is about to read.

A lease is written when a consumer is stitched (its views now point at those releases); a
receipt when its build succeeds. Retention never deletes a release held by either.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mesh_tools.core.errors import ArtifactError
from mesh_tools.core.jsonfile import loads
from mesh_tools.store.exchange import Exchange


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
    }
    exchange.backend.write(exchange.receipt_key(consumer), (json.dumps(receipt, indent=2) + "\n").encode("utf-8"))
    exchange.append_log({"event": "consume", "consumer": consumer, "releases": receipt["releases"]})


def _read_holder(exchange: Exchange, kind: str, key: str, consumer: str) -> dict[str, Any]:
    """A receipt or lease as a mapping with a ``releases`` mapping ({} when there is none); one that cannot
    be read is an error, never "none": retention would delete releases in use."""
    fix = f"Rebuild {consumer}." if kind == "receipt" else f"Stitch {consumer} again."
    try:
        raw = exchange.backend.read(key)
        if raw is None:
            return {}
        data = loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("releases"), dict):
            raise TypeError("'releases' is not a mapping")
        return data
    except (OSError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{exchange.backend.display(key)}: {kind} is corrupt ({exc}). {fix}") from None


def read_receipt(exchange: Exchange, consumer: str, env: str | None = None) -> dict[str, Any] | None:
    return _read_holder(exchange, "receipt", exchange.receipt_key(consumer, env), consumer) or None


def write_lease(
    exchange: Exchange, consumer: str, releases: dict[str, str], channels: dict[str, str] | None = None
) -> None:
    """Record the releases a consumer's views point at from now on (until its next stitch)."""
    lease = {"consumer": consumer, "env": exchange.env, "stitched_at": datetime.now(UTC).isoformat(),
             "releases": releases, "channels": channels or {}}  # fmt: skip
    exchange.backend.write(exchange.lease_key(consumer), (json.dumps(lease) + "\n").encode("utf-8"))


def read_lease(exchange: Exchange, consumer: str, env: str | None = None) -> dict[str, str]:
    """The releases a consumer's views point at; none when it has no lease (a corrupt one is an error)."""
    data = _read_holder(exchange, "lease", exchange.lease_key(consumer, env), consumer)
    return {str(k): str(v) for k, v in (data.get("releases") or {}).items()}


def every_hold(exchange: Exchange) -> set[tuple[str, str]]:
    """(product, release id) of every receipt and lease of every consumer in every environment."""
    keep: set[tuple[str, str]] = set()
    for kind in ("receipts", "leases"):
        for key in exchange.holders(kind):
            data = _read_holder(exchange, kind[:-1], key, key.rsplit("/", 1)[-1].removesuffix(".json"))
            keep |= {(str(k), str(v)) for k, v in (data.get("releases") or {}).items()}
    return keep
