"""`mesh status`, `mesh health` and the docs check an object-store release's bytes as consumers do.

A same-size tampered data file used to pass them all (sizes only) while every consumer refused it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests import s3server
from tests.store.checkouts import V2, Pair, mesh, ok, own_pair

pytestmark = [
    pytest.mark.slow,
    pytest.mark.s3,
    pytest.mark.skipif(not s3server.available(), reason="needs the s3 extra and moto[server]"),
]


def releases(result) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    report = json.loads(result.stdout)
    return {r["product"]: r for d in report["domains"] for r in d["current_releases"]}


def test_a_same_size_tampered_release_is_a_problem_in_status_health_and_docs(
    pair: Pair, s3: s3server.Server, tmp_path: Path
) -> None:
    mine = own_pair(pair, s3, tmp_path)
    store, producer = mine.store, mine.producer
    v2 = store.current()
    data = f"{V2}/releases/{v2}/data.parquet"
    original = store.read(data)
    first = releases(ok_json := mesh(store, producer, "status", "--format", "json"))
    assert ok_json.returncode == 0, ok_json.stdout + ok_json.stderr
    assert first["shop.orders.v2"]["verified"] is True and "unverified" not in first["shop.orders.v2"]
    # checked once, remembered by the store's ETag: nothing is downloaded again while the bytes stay
    memo = json.loads((producer / ".mesh/exchange-cache/verified.json").read_text())
    assert any(key.endswith(data) for key in memo), memo

    store.put(data, original[:-8] + b"tampered")  # same size: only the hash tells
    # bytes the store changed since they were checked, and no download allowed: said to be unverified
    capped = mesh(store, producer, "status", "--format", "json", MESH_VERIFY_MB="0")
    unchecked = releases(capped)["shop.orders.v2"]
    assert capped.returncode == 0 and unchecked["verified"] is False, capped.stdout
    assert re.fullmatch(
        r"SHA-256 not checked for data\.parquet \(\d+ KB\): more than this command downloads to check "
        r"\(MESH_VERIFY_MB\); sizes match, and consumers verify the bytes when they read them",
        unchecked["unverified"],
    ), unchecked
    text = mesh(store, producer, "status", MESH_VERIFY_MB="0").stdout
    assert f"publishes shop.orders.v2 @ {v2} (3 rows, prod); bytes not verified: SHA-256 not checked" in text, text

    message = f"{data}: data file of release {v2} does not match the SHA-256 its descriptor records"
    status = mesh(store, producer, "status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert f"PROBLEM   shop.orders.v2: s3://{store.bucket}/acme-mesh/{message}" in status.stdout, status.stdout
    health = mesh(store, producer, "health", "--format", "json", "--fail-on", "never")
    [orders] = [p for p in json.loads(health.stdout)["products"] if p["product"] == "shop.orders.v2"]
    assert orders["status"] == "failing" and orders["release_verified"] is None
    assert [p["message"] for p in orders["problems"] if p["kind"] == "release_broken"] == [
        f"s3://{store.bucket}/acme-mesh/{message}: it was changed after publishing, and consumers refuse it. "
        "Publish again with `mesh publish shop`, or pin another release."
    ]
    ok(mesh(store, producer, "docs"))
    page = (producer / "site/products/shop.orders.v2.html").read_text()
    assert "cannot be read: consumers cannot build on it" in page and "does not match the SHA-256" in page

    # the very bytes checked before are back (the same ETag): known good without a download
    store.put(data, original)
    restored = mesh(store, producer, "status", "--format", "json", MESH_VERIFY_MB="0")
    assert releases(restored)["shop.orders.v2"]["verified"] is True, restored.stdout
