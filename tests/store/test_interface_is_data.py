"""What crosses the object store is data: an interface another checkout published is bounded and reaches the
consumer's dbt as text, and no credential of AWS_ENDPOINT_URL is written into a contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh_tools.core.errors import ArtifactError
from mesh_tools.store import exchange as exchange_module
from mesh_tools.store.exchange import Exchange
from tests import s3server
from tests.helpers import manifest
from tests.stitch.test_metadata_is_data import HOSTILE, SECRET, files_holding
from tests.store.checkouts import Pair, mesh, ok, own_pair

pytestmark = [
    pytest.mark.s3,
    pytest.mark.skipif(not s3server.available(), reason="needs the s3 extra and moto[server]"),
]

PASSWORD = "pl4nted-s3cret"


def _plant(interface: dict[str, Any]) -> dict[str, str]:
    """Jinja in every text field of a published interface, as a hostile publisher (or anyone who can write the
    bucket) would put it; names and types stay, so the release still matches its contract."""
    shown = {"model": f"model {HOSTILE}", "column": f"column {HOSTILE}", "meta": f"meta {HOSTILE}",
             "tag": f"tag {HOSTILE}", "constraint": f"constraint {HOSTILE}", "group": f"group {HOSTILE}",
             "owner": f"owner {HOSTILE}"}  # fmt: skip
    for node in interface["nodes"].values():
        node["description"] = shown["model"]
        for holder in (node, node["config"]):
            holder["meta"] = {**(holder.get("meta") or {}), "note": shown["meta"]}
            holder["tags"] = [shown["tag"]]
        for column in node["columns"].values():
            column["description"] = shown["column"]
            column["meta"] = {**column["meta"], "note": shown["meta"]}
            column["tags"] = [shown["tag"]]
        for constraint in node["constraints"]:
            constraint["name"] = shown["constraint"]
    for group in interface["groups"].values():
        group["description"] = shown["group"]
        group["owner"]["name"] = shown["owner"]
    return shown


@pytest.mark.slow
def test_no_endpoint_credential_is_stored_and_a_planted_interface_is_text(
    pair: Pair, s3: s3server.Server, tmp_path: Path
) -> None:
    # the producer's AWS_ENDPOINT_URL carries a user and password: boto3 uses them, the mesh writes neither
    ours = own_pair(pair, s3, tmp_path, endpoint=s3.endpoint.replace("http://", f"http://alice:{PASSWORD}@"))
    store = ours.store
    contracts = [k for k in store.keys("products/") if k.endswith("/contract.odcs.yaml")]
    assert contracts
    for key in contracts:
        (server,) = yaml.safe_load(store.read(key))["servers"]
        assert server["endpointUrl"] == s3.endpoint  # the place, without alice's password
    assert [k for k in store.keys() if PASSWORD.encode() in store.read(k)] == []
    out = tmp_path / "exported"
    ok(mesh(store, ours.producer, "contracts", "export", "-o", str(out)))
    exported = sorted(out.rglob("*.odcs.yaml"))
    assert exported and all(yaml.safe_load(p.read_text())["servers"][0]["endpointUrl"] == s3.endpoint for p in exported)
    assert files_holding(out, PASSWORD) == []

    # someone plants Jinja in the interface shop published, and in the node stored with each release the consumer
    # reads (what its stub is made from); the consumer elsewhere builds with a secret set
    key = "interfaces/shop/prod.json"
    interface = store.json(key)
    shown = _plant(interface)
    store.put(key, json.dumps(interface).encode())
    for product in ("products/shop/orders/v1", "products/shop/orders/v2"):
        release = f"{product}/releases/{store.current(product)}/release.json"
        descriptor = store.json(release)
        stored = descriptor["interface"]
        _plant({"nodes": {"node": stored["node"]}, "groups": {"group": stored["group"]}})
        store.put(release, json.dumps(descriptor).encode())
    built = mesh(store, ours.consumer, "build", MESH_PLANTED_SECRET=SECRET)
    output = built.stdout + built.stderr
    assert built.returncode == 0, output[-4000:]
    assert SECRET not in output and PASSWORD not in output
    assert files_holding(ours.consumer, SECRET) == [] and files_holding(ours.consumer, PASSWORD) == []
    seen = manifest(ours.consumer / "reporting")
    node = seen["nodes"]["model.shop.orders.v2"]
    assert node["description"] == shown["model"]
    assert {c["description"] for c in node["columns"].values()} == {shown["column"]}
    assert node["columns"]["customer_id"]["meta"] == {"pii": True, "note": shown["meta"]}
    assert node["config"]["meta"]["note"] == shown["meta"] and node["tags"] == [shown["tag"]]
    assert [c["name"] for c in node["constraints"]] == [shown["constraint"]]
    group = seen["groups"]["group.shop.shop_team"]
    assert (group["description"], group["owner"]["name"]) == (shown["group"], shown["owner"])


def test_an_interface_over_the_limit_is_refused_before_it_is_read(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exchange_module, "INTERFACE_LIMIT", 4096)
    small = json.dumps({"metadata": {"project_name": "shop"}, "nodes": {}, "groups": {}}).encode()
    exchange.backend.write(exchange.interface_key("shop", "prod"), small)
    fetched = exchange.fetch_interface("shop", ["prod"])
    assert fetched is not None and fetched.read_bytes() == small
    exchange.backend.write(exchange.interface_key("shop", "prod"), small + b" " * 5000)
    with pytest.raises(ArtifactError) as refused:
        exchange.fetch_interface("shop", ["prod"])
    said = str(refused.value)
    assert "interfaces/shop/prod.json: the interface shop published is" in said and "over the limit of 4,096" in said
    assert "mesh publish shop" in said
    assert fetched.read_bytes() == small  # the cached copy is not replaced by what was refused
