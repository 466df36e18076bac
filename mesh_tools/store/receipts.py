"""Consumption receipts and leases: which upstream releases a consumer read, and is about to read.

A lease is written when a consumer is stitched (its views now point at those releases); a
receipt when its build succeeds. Retention never deletes a release held by either.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mesh_tools.core.errors import ArtifactError, display_path
from mesh_tools.core.files import write_atomic
from mesh_tools.store.exchange import Exchange


def write_receipt(
    exchange: Exchange, consumer: str, releases: dict[str, str], used: list[str], invocation: str | None
) -> None:
    """Record (and log) what ``consumer`` read in a build that succeeded."""
    receipt = {
        "consumer": consumer,
        "built_at": datetime.now(UTC).isoformat(),
        "invocation_id": invocation,
        "releases": dict(sorted(releases.items())),
        "used": sorted(used),
    }
    write_atomic(exchange.receipt_path(consumer), json.dumps(receipt, indent=2) + "\n")
    exchange.append_log({"event": "consume", "consumer": consumer, "releases": receipt["releases"]})


def read_receipt(exchange: Exchange, consumer: str) -> dict[str, Any] | None:
    path = exchange.receipt_path(consumer)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ArtifactError(
            f"{display_path(path)}: consumption receipt is corrupt ({exc}). Rebuild {consumer}."
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("releases"), dict):
        raise ArtifactError(f"{display_path(path)}: not a consumption receipt. Rebuild {consumer}.")
    return data


def write_lease(exchange: Exchange, consumer: str, releases: dict[str, str]) -> None:
    """Record the releases a consumer's views point at from now on (until its next stitch)."""
    write_atomic(
        exchange.lease_path(consumer),
        json.dumps({"consumer": consumer, "stitched_at": datetime.now(UTC).isoformat(), "releases": releases}) + "\n",
    )


def read_lease(exchange: Exchange, consumer: str) -> dict[str, str]:
    """The releases a consumer's views point at; none when it has no lease. A lease that cannot be
    read is an error, never "no lease": retention would delete releases in use."""
    path = exchange.lease_path(consumer)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        releases = data["releases"]
        if not isinstance(releases, dict):
            raise TypeError("'releases' is not a mapping")
        return {str(k): str(v) for k, v in releases.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{display_path(path)}: lease is corrupt ({exc}). Stitch {consumer} again.") from None
