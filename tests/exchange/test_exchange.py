"""The exchange: releases, the gate, atomic switches under SIGKILL, pins, sync, retention, faults."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from tests.helpers import Built, mesh_env, run_mesh

PRODUCT = Path("exchange/products/shop/orders/v2")


def current_id(root: Path, product: Path = PRODUCT) -> str:
    return json.loads((root / product / "current.json").read_text())["release_id"]


def releases(root: Path, product: Path = PRODUCT) -> list[str]:
    return sorted(p.name for p in (root / product / "releases").iterdir())


def descriptor(root: Path, release_id: str, product: Path = PRODUCT) -> dict:
    return json.loads((root / product / "releases" / release_id / "release.json").read_text())


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _is_our_publisher(proc: Path, script: str, root: Path) -> bool:
    """A live process running ``script`` in ``root`` (the publisher or its worker, in a domain folder)."""
    if not proc.name.isdigit() or not _cmdline(proc).endswith(script.strip()[-40:]):
        return False
    try:
        return Path(os.readlink(proc / "cwd")).is_relative_to(root.resolve())
    except OSError:
        return False


def parquet_rows(path: Path) -> int:
    return duckdb.connect().execute(f"select count(*) from read_parquet('{path}')").fetchone()[0]


def test_build_publishes_every_public_model(plain_mesh_built: Built):
    root = plain_mesh_built.root
    release = descriptor(root, current_id(root))
    assert release["product"] == "shop.orders.v2" and release["version"] == "2" and release["latest_version"] == "2"
    assert (
        release["row_count"] == 3 == parquet_rows(root / PRODUCT / "releases" / release["release_id"] / "data.parquet")
    )
    assert [c["name"] for c in release["contract"]["columns"]] == ["order_id", "customer_id", "status", "amount"]
    assert release["contract"]["columns"][3]["data_type"] == "decimal(10,2)"
    assert release["contract_hash"].startswith("sha256:")
    assert release["owner"] == {"group": "shop_team", "name": "Shop Team", "email": "shop@example.test"}
    assert release["tests"] == {"passed": 2, "failed": 0, "warned": 0}
    assert release["build"]["invocation_id"]
    v1 = descriptor(
        root, current_id(root, Path("exchange/products/shop/orders/v1")), Path("exchange/products/shop/orders/v1")
    )
    assert v1["deprecation_date"].startswith("2020-01-01")
    # only public models: protected and private ones are never published
    assert sorted(p.name for p in (root / "exchange/products/shop").iterdir()) == ["orders"]
    events = [json.loads(line) for line in (root / "exchange/log.jsonl").read_text().splitlines()]
    assert {e["event"] for e in events} == {"publish", "consume"}


def test_consumer_reads_the_release_not_the_producer_database(plain_mesh_built: Built):
    root = plain_mesh_built.root
    stub = (root / "reporting/dbt_packages/shop/models/orders_v2.sql").read_text()
    assert f"read_parquet('{root / PRODUCT / 'releases' / current_id(root) / 'data.parquet'}')" in stub
    assert "shop.duckdb" not in stub
    receipt = json.loads((root / "exchange/receipts/reporting.json").read_text())
    assert receipt["releases"]["shop.orders.v2"] == current_id(root)
    assert receipt["used"] == ["shop.orders.v1", "shop.orders.v2"]


def test_publish_is_refused_when_the_build_failed(plain_mesh_copy: Path):
    root = plain_mesh_copy
    before, files = current_id(root), releases(root)
    (root / "shop/tests").mkdir()
    (root / "shop/tests/no_returns.sql").write_text("select * from {{ ref('orders') }} where status = 'returned'")
    build = run_mesh("build", "shop", cwd=root)
    assert build.returncode == 1
    assert "test test.shop.no_returns failed" in build.stdout
    result = run_mesh("publish", "shop", cwd=root)
    assert result.returncode == 1
    assert "shop: publish refused: the last build of shop did not pass: test.shop.no_returns (fail)." in result.stdout
    assert current_id(root) == before and releases(root) == files


def test_sigkill_mid_publish_leaves_the_previous_release_current(plain_mesh_copy: Path):
    root = plain_mesh_copy
    before = current_id(root)
    before_rows = descriptor(root, before)["row_count"]
    # the test's seam: `mesh publish` with the pointer switch stalled (its worker inherits it), so
    # the kill lands after the release is in place and before it is current
    script = (
        "import sys, time\nfrom mesh_tools.store.exchange import Exchange\n"
        "def stall(self, descriptor, *args, **kwargs):\n    print('before-switch', flush=True)\n    time.sleep(30)\n"
        "Exchange.switch_current = stall\n"
        "from mesh_tools.cli import main\nsys.argv = ['mesh', 'publish', 'shop']\nmain()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=root, env=mesh_env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "before-switch"
    assert len(releases(root)) == 2, "the new release should be in place, not yet current"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1)  # the worker dies with its parent; were it alive, it would switch the pointer after 30 s
    assert current_id(root) == before
    assert not [p for p in Path("/proc").iterdir() if _is_our_publisher(p, script, root)]
    assert parquet_rows(root / PRODUCT / "releases" / before / "data.parquet") == before_rows
    # consumers keep building on the previous release, and the next publish goes through
    build = run_mesh("build", "reporting", cwd=root)
    assert build.returncode == 0, build.stdout
    assert json.loads((root / "exchange/receipts/reporting.json").read_text())["releases"]["shop.orders.v2"] == before
    again = run_mesh("publish", "shop", "--new-release", cwd=root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert current_id(root) != before
    assert not any((root / "exchange/.tmp").iterdir())


def test_readers_racing_pointer_switches_see_only_complete_releases(plain_mesh_copy: Path):
    """The pointer switch publishing uses is atomic: a reader racing thousands of switches reads the
    old or the new release, never a torn pointer (every read: pointer, descriptor, size, SHA-256)."""
    from mesh_tools.store.exchange import Exchange

    root = plain_mesh_copy
    assert run_mesh("publish", "shop", "--new-release", cwd=root).returncode == 0  # a second complete release
    ids = releases(root)[-2:]
    assert len(ids) == 2 and all(parquet_rows(root / PRODUCT / "releases" / i / "data.parquet") == 3 for i in ids)
    script = (
        "import sys\nfrom pathlib import Path\nfrom mesh_tools.store.exchange import Exchange\n"
        "exchange = Exchange(Path(sys.argv[1]))\n"
        "pair = [exchange.load_release(Path(a)).descriptor for a in sys.argv[2:]]\n"
        "for i in range(3000):\n    exchange.switch_current(pair[i % 2])\n"
    )
    folders = [str(root / PRODUCT / "releases" / i) for i in ids]
    switcher = subprocess.Popen([sys.executable, "-c", script, str(root / "exchange"), *folders], env=mesh_env())
    exchange, reads, seen = Exchange(root / "exchange"), 0, set()
    try:
        while switcher.poll() is None:
            release = exchange.current("shop", "orders", "2")  # raises on a torn pointer or a partial release
            assert release is not None and release.descriptor.row_count == 3
            seen.add(release.descriptor.release_id)
            reads += 1
    finally:
        assert switcher.wait(timeout=300) == 0
    assert reads > 100 and seen == set(ids), (reads, seen)


def test_a_second_writing_run_is_told_the_domain_is_busy(plain_mesh_copy: Path):
    from mesh_tools.core.lock import domain, hold

    root = plain_mesh_copy
    before = releases(root)
    # the holder: a real process holding shop's lock, as a running `mesh build` of shop does
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\nfrom mesh_tools.core.lock import domain, hold\n"
         "with hold(Path(sys.argv[1]), [domain('shop')], 'mesh build'):\n    print('held', flush=True)\n"
         "    time.sleep(60)\n", str(root)],
        stdout=subprocess.PIPE, text=True, env=mesh_env(),
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        for command in (("build",), ("publish", "shop"), ("stitch", "shop")):
            result = run_mesh(*command, cwd=root)
            assert result.returncode == 2, result.stdout + result.stderr
            assert f"domain shop is busy: `mesh build` (pid {holder.pid}, since " in result.stderr
            assert "Traceback" not in result.stderr
        assert run_mesh("status", cwd=root).returncode == 0  # reading commands are never blocked
    finally:
        holder.kill()  # kill -9: the kernel releases the lock with its holder
        holder.wait()
    assert releases(root) == before
    with hold(root, [domain("shop")], "test"):  # a dead holder never blocks the next run
        pass
    assert run_mesh("publish", "shop", cwd=root).returncode == 0


def test_pinned_consumer_keeps_its_release(plain_mesh_copy: Path):
    root = plain_mesh_copy
    pinned = current_id(root)
    (root / "reporting/mesh_domain.yml").write_text(f"pins:\n  shop.orders.v2: {pinned}\n")
    for _ in range(2):
        assert run_mesh("publish", "shop", "--new-release", cwd=root).returncode == 0
    assert current_id(root) != pinned
    result = run_mesh("build", "reporting", cwd=root)
    assert result.returncode == 0, result.stdout
    receipt = json.loads((root / "exchange/receipts/reporting.json").read_text())
    assert receipt["releases"]["shop.orders.v2"] == pinned
    assert receipt["releases"]["shop.orders.v1"] == current_id(root, Path("exchange/products/shop/orders/v1"))
    assert run_mesh("sync", "--dry-run", cwd=root).stdout.count("reporting:") == 0


def test_pin_to_a_missing_release_lists_the_available_ones(plain_mesh_copy: Path):
    root = plain_mesh_copy
    (root / "reporting/mesh_domain.yml").write_text("pins:\n  shop.orders.v2: r20200101T000000000000Z-abcdef\n")
    result = run_mesh("build", "reporting", cwd=root)
    assert result.returncode == 2
    assert (
        "reporting/mesh_domain.yml: pinned release 'r20200101T000000000000Z-abcdef' of shop.orders.v2 does not exist"
        in result.stderr
    )
    assert f"Available releases (newest last): {current_id(root)}" in result.stderr


def test_pin_to_an_unknown_product(plain_mesh_copy: Path):
    (plain_mesh_copy / "reporting/mesh_domain.yml").write_text(
        "pins:\n  shop.order.v2: r20200101T000000000000Z-abcdef\n"
    )
    result = run_mesh("build", "reporting", cwd=plain_mesh_copy)
    assert result.returncode == 2
    assert (
        "pin 'shop.order.v2' names no public product of reporting's upstreams. Did you mean 'shop.orders.v2'?"
        in result.stderr
    )


def test_sync_rebuilds_exactly_the_consumers_of_a_new_release(plain_mesh_copy: Path):
    root = plain_mesh_copy
    # the copy holds the session build's receipts, which name releases of this copy's exchange
    idle = run_mesh("sync", cwd=root)
    assert idle.returncode == 0 and "every consumer is up to date" in idle.stdout and "dbt not run" in idle.stdout
    assert run_mesh("publish", "shop", "--new-release", cwd=root).returncode == 0
    dry = run_mesh("sync", "--dry-run", cwd=root)
    assert [line.split(":")[0] for line in dry.stdout.splitlines()[:-1]] == ["audit", "billing", "reporting"]
    status = json.loads(run_mesh("status", "--format", "json", cwd=root).stdout)
    behind = {d["domain"]: d["is_behind"] for d in status["domains"]}
    assert behind == {"hr": False, "shop": False, "audit": True, "billing": True, "reporting": True}
    text = run_mesh("status", cwd=root).stdout
    assert re.search(r"^reporting: last run: dbt build ok at \S+; BEHIND$", text, re.M), text
    assert re.search(r"^  consumed  shop\.orders\.v2 @ r\S+  -> newer: r\S+$", text, re.M), text
    assert re.search(r"^hr: last run: dbt build ok at \S+; up to date$", text, re.M), text
    # a product a consumer has a stub of but none of its models reads is "stitched", not "consumed"
    unused = [(d["domain"], p, r) for d in status["domains"] for p, r in d["consumed"].items() if p not in d["used"]]
    assert unused, status  # the fixture's consumers each read only some of shop's products
    for _, product, release in unused:
        assert f"  stitched  {product} @ {release} (none of its models reads it)" in text, text
    for d in status["domains"]:
        for product in d["used"]:
            assert f"  consumed  {product} @ {d['consumed'][product]}" in text, text
    result = run_mesh("sync", cwd=root)
    assert result.returncode == 0, result.stdout
    assert "mesh sync: 3 of 3 domains succeeded" in result.stdout
    assert "shop: started" not in result.stdout and "hr: started" not in result.stdout
    assert "every consumer is up to date" in run_mesh("sync", cwd=root).stdout
    # only what a consumer's models read counts: a new v1 alone leaves audit and billing (which
    # stitch v1 but read only v2) up to date, and makes reporting (which reads v1) behind
    from mesh_tools.store.exchange import Exchange

    exchange = Exchange(root / "exchange")
    v2 = exchange.current("shop", "orders", "2")
    assert run_mesh("publish", "shop", "--new-release", cwd=root).returncode == 0
    exchange.switch_current(v2.descriptor)  # v2 rolled back to the release everyone read
    dry = run_mesh("sync", "--dry-run", cwd=root)
    assert [line.split(":")[0] for line in dry.stdout.splitlines()[:-1]] == ["reporting"], dry.stdout


def test_retention_keeps_the_newest_and_what_consumers_read(plain_mesh_copy: Path):
    root = plain_mesh_copy
    (root / "mesh.yml").write_text("name: plain\nexchange:\n  retention: 2\n")
    read_by_reporting = current_id(root)
    for _ in range(4):
        assert run_mesh("publish", "shop", "--new-release", cwd=root).returncode == 0
    kept = releases(root)
    assert read_by_reporting in kept  # consumers' last builds still read it
    assert len(kept) == 3  # the newest two, plus the one consumers read
    events = [json.loads(line) for line in (root / "exchange/log.jsonl").read_text().splitlines()]
    assert any(e["event"] == "expire" for e in events)


def test_retention_never_deletes_a_pinned_a_leased_or_a_last_read_release(plain_mesh_copy: Path):
    from mesh_tools.store.exchange import Exchange
    from mesh_tools.store.receipts import write_lease

    root = plain_mesh_copy
    (root / "mesh.yml").write_text("name: plain\nexchange:\n  retention: 1\n")
    read = current_id(root)  # in reporting's receipt
    for _ in range(2):
        assert run_mesh("publish", "shop", "--new-release", cwd=root).returncode == 0
    pinned, leased = releases(root)[-2:]
    (root / "reporting/mesh_domain.yml").write_text(
        f"pins:\n  shop.orders.v1: {current_id(root, Path('exchange/products/shop/orders/v1'))}\n  shop.orders.v2: {pinned}\n"
    )
    write_lease(Exchange(root / "exchange"), "hr", {"shop.orders.v2": leased})  # hr's views point at it
    for _ in range(2):
        assert run_mesh("publish", "shop", "--new-release", cwd=root).returncode == 0
    kept = releases(root)
    assert {read, pinned, leased, current_id(root)} == set(kept), kept  # the one in between expired
    # a lease that cannot be read: who reads what is unknown, so nothing is deleted
    (root / "exchange/leases/hr.json").write_text("{torn")
    before = releases(root)
    assert run_mesh("publish", "shop", "--new-release", cwd=root).returncode == 0
    assert set(before) <= set(releases(root))


def test_corrupt_descriptor_is_a_clear_error(plain_mesh_copy: Path):
    root = plain_mesh_copy
    (root / PRODUCT / "releases" / current_id(root) / "release.json").write_text("{not json")
    result = run_mesh("build", "reporting", cwd=root)
    assert result.returncode == 3
    assert "release.json: release descriptor is corrupt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_truncated_data_file_is_never_served(plain_mesh_copy: Path):
    root = plain_mesh_copy
    data = root / PRODUCT / "releases" / current_id(root) / "data.parquet"
    data.write_bytes(data.read_bytes()[:100])
    result = run_mesh("build", "reporting", cwd=root)
    assert result.returncode == 3
    assert "is missing or truncated" in result.stderr and "does not serve partial releases" in result.stderr


def test_corrupt_log_line_names_the_line(plain_mesh_copy: Path):
    root = plain_mesh_copy
    log = root / "exchange/log.jsonl"
    lines = log.read_text().splitlines()
    lines.insert(1, "{garbage")
    log.write_text("\n".join(lines) + "\n")
    sys.path.insert(0, str(root))
    from mesh_tools.core.errors import ArtifactError
    from mesh_tools.store.exchange import Exchange

    with pytest.raises(ArtifactError, match=r"log\.jsonl:2: publication log entry is corrupt"):
        list(Exchange(root / "exchange").read_log())
