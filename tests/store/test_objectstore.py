"""The exchange in an S3-compatible object store (moto's server on loopback; boto3 unmocked).

Two checkouts in separate folders share only the exchange URL: the producer's holds the `shop`
project, the consumer's the `reporting` project (plain_mesh). Neither can see the other's files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests import s3server
from tests.helpers import copy_tree
from tests.store.checkouts import PREFIX, V2, Pair, duck, mesh, ok, own_pair

pytestmark = [
    pytest.mark.slow,
    pytest.mark.s3,
    pytest.mark.skipif(not s3server.available(), reason="needs the s3 extra and moto[server]"),
]


def test_a_consumer_elsewhere_builds_from_the_store_alone(pair: Pair) -> None:
    store = pair.store
    v2 = store.current()
    descriptor = store.json(f"{V2}/releases/{v2}/release.json")
    # every release is complete in the store: data files as the descriptor records them, then the descriptor
    for release in store.releases():
        keys = store.keys(f"{V2}/releases/{release}/")
        recorded = store.json(f"{V2}/releases/{release}/release.json")["files"]
        written = sorted([f["path"] for f in recorded] + ["contract.odcs.yaml", "release.json"])
        assert sorted(k.rsplit("/", 1)[1] for k in keys) == written
    # its data contract (ODCS) names the shared file by its s3:// URL and the store's endpoint
    contract = yaml.safe_load(store.read(f"{V2}/releases/{v2}/contract.odcs.yaml"))
    (server,) = contract["servers"]
    assert server == {"server": "exchange", "type": "s3", "location": f"{store.url}/{V2}/releases/{v2}/data.parquet",
                      "format": "parquet", "endpointUrl": store.endpoint}  # fmt: skip
    # the consumer's receipt, in the store, names the release its build read, through prod
    receipt = store.json("receipts/reporting.json")
    assert receipt["releases"]["shop.orders.v2"] == v2 and receipt["channels"]["shop.orders.v2"] == "prod"
    rows = duck(pair.consumer / "reporting" / "reporting.duckdb", "select sum(orders) from order_summary")
    assert rows == descriptor["row_count"] == 3
    # it read a verified local copy, named by its SHA-256, and nothing of the producer's checkout
    stubs = "".join(p.read_text() for p in (pair.consumer / "reporting" / "dbt_packages" / "shop").rglob("*.sql"))
    digest = descriptor["files"][0]["sha256"].removeprefix("sha256:")
    assert digest in stubs and str(pair.producer) not in stubs
    # only the file its policy lets it read was fetched: never the clear PII file meant for audit
    clear = [f["sha256"].removeprefix("sha256:") for f in descriptor["files"] if f["readers"]]
    assert clear and not [p for p in (pair.consumer / ".mesh").rglob("*") if any(c in p.name for c in clear)]
    assert str(pair.producer) not in (pair.consumer / "reporting" / "target" / "manifest.json").read_text()
    # the log: one object per event, in order
    events = [store.json(k)["event"] for k in store.keys("log/")]
    assert events[:2] == ["publish", "publish"] and "consume" in events
    status = ok(mesh(store, pair.consumer, "status"))
    assert f"consumed  shop.orders.v2 @ {v2} (prod)" in status


def test_sync_compares_receipts_with_the_stores_pointers(pair: Pair, s3: s3server.Server, tmp_path: Path) -> None:
    mine = own_pair(pair, s3, tmp_path)
    ok(mesh(mine.store, mine.consumer, "build"))
    assert "every consumer is up to date" in ok(mesh(mine.store, mine.consumer, "sync", "--dry-run"))
    # the same build published again: its rows are the current releases', which the store confirms (early cutoff)
    confirmed = ok(mesh(mine.store, mine.producer, "publish", "shop"))
    assert f"confirmed shop.orders.v2 {mine.store.current()}" in confirmed, confirmed
    assert mine.store.json("products/shop/orders/v2/confirmed/prod.json")["release_id"] == mine.store.current()
    assert "every consumer is up to date" in ok(mesh(mine.store, mine.consumer, "sync", "--dry-run"))
    mine.store.put("leases/ghost.json", b"\xff not json")  # who reads what is unknown: nothing may be deleted
    # the same build again: its rows are the current releases' (early cutoff), so a new release is asked for
    published = ok(mesh(mine.store, mine.producer, "publish", "shop", "--new-release"))
    assert "warning: retention skipped, nothing deleted: " in published and "leases/ghost.json" in published
    mine.store.client.delete_object(Bucket=mine.store.bucket, Key=f"{PREFIX}/leases/ghost.json")
    newer = mine.store.current()
    plan = ok(mesh(mine.store, mine.consumer, "sync", "--dry-run"))
    assert "reporting: newer release of shop.orders.v1, shop.orders.v2" in plan
    ok(mesh(mine.store, mine.consumer, "sync"))
    assert mine.store.json("receipts/reporting.json")["releases"]["shop.orders.v2"] == newer


# a seam: the real method runs, after the test lets it (the file $MESH_TEST_GO appears; the publishing
# worker runs in the domain's folder, so the path is absolute)
WAIT = (
    "import os, sys, time\nfrom mesh_tools.store import exchange, backends\n"
    "def held(original, label):\n"
    "    def run(*args, **kwargs):\n"
    "        print(label, flush=True)\n"
    "        while not os.path.exists(os.environ['MESH_TEST_GO']):\n            time.sleep(0.05)\n"
    "        return original(*args, **kwargs)\n"
    "    return run\n"
)


def seam(target: str, label: str) -> str:
    return WAIT + f"{target} = held({target}, {label!r})\nfrom mesh_tools.cli import main\n" \
        "sys.argv = ['mesh', 'publish', 'shop']\nmain()\n"  # fmt: skip


def test_two_publishers_racing_one_wins_the_other_is_told(pair: Pair, s3: s3server.Server, tmp_path: Path) -> None:
    mine = own_pair(pair, s3, tmp_path)
    second = copy_tree(mine.producer, tmp_path / "second-machine")
    before = mine.store.current()
    script = seam("exchange.Exchange.switch_current", "before-switch")
    # both publish the same build: new releases are asked for (no early cutoff), so both race for the pointers
    slow = subprocess.Popen([sys.executable, "-c", script], cwd=mine.producer, env=mine.store.env(MESH_TEST_GO=str(tmp_path / "go"), MESH_NEW_RELEASE="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert slow.stdout.readline().strip() == "before-switch"  # its releases are in place, not current
    ok(mesh(mine.store, second, "publish", "shop", "--new-release"))  # the other machine publishes meanwhile, and wins
    winner = mine.store.current()
    assert winner != before
    (tmp_path / "go").touch()
    out, err = slow.communicate(timeout=120)
    assert slow.returncode == 3, out + err
    # the first pointer it tried (orders v1) had moved: it says which release won, and switches nothing
    winner_v1 = mine.store.current("products/shop/orders/v1")
    assert "another publish made release" in err and winner_v1 in err and "Traceback" not in err, err
    assert mine.store.current() == winner and mine.store.current("products/shop/orders/v1") == winner_v1
    # nothing lost: every release of both is whole; the loser's is gone, never current
    assert before in mine.store.releases() and winner in mine.store.releases()
    assert len(mine.store.releases()) == 2
    published = [mine.store.json(k) for k in mine.store.keys("log/")]
    assert [e["release_id"] for e in published if e["event"] == "publish" and e["product"] == "shop.orders.v2"][-1:] \
        == [winner]  # fmt: skip


def test_a_publisher_killed_mid_upload_leaves_nothing_visible(pair: Pair, s3: s3server.Server, tmp_path: Path) -> None:
    mine = own_pair(pair, s3, tmp_path)
    before, releases = mine.store.current(), mine.store.releases()
    script = seam("backends.S3Backend.create", "before-descriptor")  # data uploaded, descriptor not yet
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=mine.producer, env=mine.store.env(MESH_TEST_GO=str(tmp_path / "go"), MESH_NEW_RELEASE="1"),
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "before-descriptor"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1)
    orphans = [k for k in mine.store.keys("products/shop/") if "/releases/" in k and k.split("/")[5] not in releases]
    assert orphans, "the killed publisher had uploaded a data file"
    assert mine.store.releases() == releases and mine.store.current() == before  # nothing of it is a release
    ok(mesh(mine.store, mine.consumer, "build"))  # consumers keep reading the previous release
    assert mine.store.json("receipts/reporting.json")["releases"]["shop.orders.v2"] == before
    ok(mesh(mine.store, mine.producer, "publish", "shop", "--new-release"))  # and the next publish goes through
    assert mine.store.current() != before
    assert set(orphans) <= set(mine.store.keys("products/shop/")), "a recent upload may be a live publisher's"


def test_the_store_gone_mid_publish_is_one_clear_error(pair: Pair, s3: s3server.Server, tmp_path: Path) -> None:
    relay = s3server.Relay(s3.port)
    try:
        mine = own_pair(pair, s3, tmp_path, endpoint=relay.endpoint)
        before = mine.store.current()
        script = seam("backends.S3Backend.create", "before-descriptor")
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=mine.producer, env=mine.store.env(MESH_TEST_GO=str(tmp_path / "go")),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout.readline().strip() == "before-descriptor"
        relay.stop()  # the store vanishes for the publisher
        (tmp_path / "go").touch()
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 3, out + err
        assert "the object store cannot be reached" in err and "Traceback" not in err, err
        assert mine.store.current() == before  # read past the relay: the previous release is current
        relay.start()
        assert "shop.orders.v2 @ " + before in ok(mesh(mine.store, mine.producer, "status"))
    finally:
        relay.stop()


def test_dev_and_prod_channels_and_promotion(pair: Pair, s3: s3server.Server, tmp_path: Path) -> None:
    mine = own_pair(pair, s3, tmp_path)
    store, prod = mine.store, mine.store.current()
    data_objects = [k for k in store.keys() if k.endswith(".parquet")]
    ok(mesh(store, mine.consumer, "build"))  # the consumer in prod: a receipt of prod's releases
    # the producer builds a change in dev: prod's consumers do not see it
    orders = mine.producer / "shop" / "models" / "orders_v2.sql"
    orders.write_text(orders.read_text() + "\nunion all select 99, 1, 'dev', 9.99\n")
    ok(mesh(store, mine.producer, "build", "--env", "dev"))
    dev = store.current(channel="dev")
    assert dev != prod and store.current() == prod
    ok(mesh(store, mine.consumer, "build", "--env", "dev"))  # dev reads dev's release, prod's where dev has none
    lease = store.json("leases/dev/reporting.json")
    assert lease["releases"]["shop.orders.v2"] == dev and lease["channels"]["shop.orders.v2"] == "dev"
    assert store.json("receipts/dev/reporting.json")["releases"]["shop.orders.v2"] == dev
    assert "(dev)" in ok(mesh(store, mine.consumer, "status", "--env", "dev"))
    # per upstream: this consumer reads shop's prod releases even in dev; per pin: one release in dev
    settings = mine.consumer / "reporting" / "mesh_domain.yml"
    settings.write_text("environments:\n  dev:\n    channels: {shop: prod}\n")
    ok(mesh(store, mine.consumer, "stitch", "--env", "dev"))
    assert store.json("leases/dev/reporting.json")["releases"]["shop.orders.v2"] == prod
    settings.write_text(f"environments:\n  dev:\n    channels: {{shop: prod}}\n    pins: {{shop.orders.v2: {dev}}}\n")
    ok(mesh(store, mine.consumer, "stitch", "--env", "dev"))
    lease = store.json("leases/dev/reporting.json")
    assert lease["releases"]["shop.orders.v2"] == dev and lease["channels"]["shop.orders.v2"] == "pin"
    for held in ("leases", "receipts"):  # prod's untouched by dev's builds
        assert store.json(f"{held}/reporting.json")["releases"]["shop.orders.v2"] == prod
    # promotion moves prod's pointer to dev's release: no data copied
    uploads = len([k for k in store.keys() if k.endswith(".parquet")])
    assert "would promote shop.orders.v2" in ok(mesh(store, mine.producer, "promote", "shop", "--from", "dev",
                                                     "--dry-run"))  # fmt: skip
    assert store.current() == prod
    out = ok(mesh(store, mine.producer, "promote", "shop", "--from", "dev", "--to", "prod"))
    assert f"promoted shop.orders.v2 {dev} dev -> prod (was {prod})" in out
    assert store.current() == dev and len([k for k in store.keys() if k.endswith(".parquet")]) == uploads
    assert len(data_objects) < uploads
    settings.unlink()
    assert "newer release of shop.orders.v1, shop.orders.v2" in ok(mesh(store, mine.consumer, "sync", "--dry-run"))
    ok(mesh(store, mine.consumer, "sync"))
    assert duck(mine.consumer / "reporting" / "reporting.duckdb", "select sum(orders) from order_summary") == 4


def test_promotion_is_refused_by_the_gate(pair: Pair, s3: s3server.Server, tmp_path: Path) -> None:
    mine = own_pair(pair, s3, tmp_path)
    store = mine.store
    ok(mesh(store, mine.producer, "publish", "shop", "--env", "dev"))
    dev, prod = store.current(channel="dev"), store.current()
    # a dev release whose data was changed after publishing: refused, prod untouched
    data = f"{V2}/releases/{dev}/data.parquet"
    original = store.read(data)
    store.put(data, original[:-8] + b"tampered")
    refused = mesh(store, mine.producer, "promote", "shop", "--from", "dev")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "does not match the SHA-256 its descriptor records" in refused.stdout
    assert "promotion refused; prod's releases stay as they are" in refused.stdout
    assert store.current() == prod
    store.put(data, original)
    # prod moved on with a new column since: the dev release would remove it from prod's consumers
    schema = mine.producer / "shop" / "models" / "schema.yml"
    schema.write_text(schema.read_text().replace(
        "      - name: amount\n", "      - name: channel\n        data_type: varchar\n      - name: amount\n"
    ).replace("exclude: [amount]", "exclude: [amount, channel]"))  # fmt: skip
    orders = mine.producer / "shop" / "models" / "orders_v2.sql"
    orders.write_text(orders.read_text().replace("select", "select 'web' as channel,", 1))
    ok(mesh(store, mine.producer, "build"))
    newer = store.current()
    refused = mesh(store, mine.producer, "promote", "shop", "--from", "dev")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"column 'channel' removed since prod's release {newer}" in refused.stdout
    assert store.current() == newer


def test_a_tampered_object_is_never_read_and_a_changed_cache_is_fetched_again(
    pair: Pair, s3: s3server.Server, tmp_path: Path
) -> None:
    mine = own_pair(pair, s3, tmp_path)
    store, v2 = mine.store, mine.store.current()
    data = f"{V2}/releases/{v2}/data.parquet"
    original = store.read(data)
    store.put(data, original[:-8] + b"tampered")  # same size: only the hash tells
    refused = mesh(store, mine.consumer, "stitch")
    assert refused.returncode == 1, refused.stdout + refused.stderr  # the domain is not ready: one clear error
    assert f"{data}: data file of release {v2} does not match the SHA-256 its descriptor records" in refused.stdout
    cache = mine.consumer / ".mesh" / "exchange-cache" / "objects"
    recorded = store.json(f"{V2}/releases/{v2}/release.json")["files"][0]["sha256"].removeprefix("sha256:")
    assert not [p for p in cache.rglob("*") if recorded in p.name]  # nothing of the changed bytes kept
    store.put(data, original)
    ok(mesh(store, mine.consumer, "stitch"))
    cached = [p for p in cache.rglob("*.parquet")]
    assert cached
    for path in cached:  # a cached copy changed on disk is fetched again, never read as it is
        path.chmod(0o644)
        path.write_bytes(path.read_bytes()[:-8] + b"tampered")
    ok(mesh(store, mine.consumer, "build"))
    assert duck(mine.consumer / "reporting" / "reporting.duckdb", "select sum(orders) from order_summary") == 3
    import hashlib

    for path in cached:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name.removesuffix(".parquet")
