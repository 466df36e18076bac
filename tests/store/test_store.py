"""The object-store back end and the exchange on it, without dbt: URLs, stray keys, interfaces, the log."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from mesh_tools.core.errors import ConfigError
from mesh_tools.store.backends import Conflict, S3Backend
from mesh_tools.store.exchange import Exchange, interface_channels

pytestmark = pytest.mark.s3


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://", "it is not s3://bucket/prefix"),
        ("s3:///acme", "it is not s3://bucket/prefix"),
        ("s3://Bad_Bucket!!/x", "is not a bucket name"),
        ("s3://mesh-a/../dd", "no '.' or '..'"),
        ("s3://mesh-a/./dd2/../../..", "no '.' or '..'"),
        ("s3://mesh-a/acme?versionId=1", "a query or fragment"),
        ("s3://mesh-a/acme#frag", "a query or fragment"),
    ],
)
def test_an_exchange_url_that_is_not_a_place_is_refused(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match="exchange url") as refused:
        S3Backend(url)
    assert says in str(refused.value)


def test_writes_once_and_swaps_only_what_it_read(exchange: Exchange) -> None:
    store = exchange.backend
    store.create("a/b.json", b"1")
    with pytest.raises(Conflict):
        store.create("a/b.json", b"2")
    _, tag = store.read_tagged("a/b.json")
    store.swap("a/b.json", b"3", tag)
    with pytest.raises(Conflict):
        store.swap("a/b.json", b"4", tag)  # the tag read before the first swap is stale
    with pytest.raises(Conflict):
        store.swap("a/b.json", b"5", None)  # "it did not exist" is stale too
    assert store.read("a/b.json") == b"3"


def test_a_stray_key_is_not_a_product(exchange: Exchange) -> None:
    pointer = json.dumps({"release_id": "r20260101T000000000000Z-abcdef"}).encode()
    for key in ("products/shop/orders/v2/current.json", "products/shop/%2e%2e/v2/current.json",
                "products/shop/orders/x/current.json", "products/shop/a b/unversioned/current.json"):  # fmt: skip
        exchange.backend.write(key, pointer)
    assert exchange.products_of("shop") == [("orders", "2")]


def test_the_log_is_one_object_per_event_read_in_order_and_kept_locally(exchange: Exchange) -> None:
    for number in range(5):
        exchange.append_log({"event": "publish", "n": number})
    assert [e["n"] for e in exchange.read_log()] == [0, 1, 2, 3, 4]
    assert len(list((exchange.root / "log").glob("*.json"))) == 5
    exchange.backend.write("log/00000000T000000000000Z-garbage.json", b"{not json")
    with pytest.raises(Exception, match="log/00000000T000000000000Z-garbage.json: publication log entry is corrupt"):
        list(exchange.read_log())


def test_promoting_keeps_the_targets_interface_for_products_not_promoted(exchange: Exchange) -> None:
    from mesh_tools.workflows.promote import _promote_interface

    def interface(*uids: str, tag: str) -> bytes:
        return json.dumps({"metadata": {}, "nodes": {u: {"from": tag} for u in uids}, "groups": {}}).encode()

    exchange.backend.write(exchange.interface_key("shop", "prod"), interface("v1", "v2", tag="prod"))
    exchange.backend.write(exchange.interface_key("shop", "dev"), interface("v2", "v3", tag="dev"))
    _promote_interface(exchange, "shop", "dev", "prod", ["v2"])
    nodes = json.loads(exchange.backend.read(exchange.interface_key("shop", "prod")))["nodes"]
    assert nodes == {"v1": {"from": "prod"}, "v2": {"from": "dev"}}  # v1 stays readable; v3 was not promoted


def test_the_interface_follows_the_channel_the_releases_come_from() -> None:
    settings = SimpleNamespace(channels={"shop": "prod", "billing": ["feature-x", "dev"]})
    domain = SimpleNamespace(environments={"dev": settings})
    assert interface_channels(domain, "shop", "dev") == ["prod"]  # type: ignore[arg-type]
    assert interface_channels(domain, "billing", "dev") == ["feature-x", "dev"]  # type: ignore[arg-type]
    assert interface_channels(domain, "hr", "dev") == ["dev", "prod"]  # type: ignore[arg-type]
    assert interface_channels(domain, "hr", "prod") == ["prod"]  # type: ignore[arg-type]


@pytest.mark.parametrize(("env", "says"), [("PROD", "did you mean 'prod'"), ("-x", "cannot name a folder"),
                                           ("../x", "cannot name a folder")])  # fmt: skip
def test_an_environment_that_is_not_a_channel_is_refused(env: str, says: str, tmp_path: Path) -> None:
    from tests.helpers import mesh_env, run_command

    result = run_command(["mesh", f"--env={env}", "status"], tmp_path, mesh_env(), timeout=60)
    assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr, result.stderr
