"""The exchange's trust rules on hand-built exchanges, without dbt: compare-and-swap in a folder, retention
across pins and channels, hash checks on every read path, descriptors about their own folder, the promotion
gate, and names (release ids, channels) checked one way everywhere."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mesh_tools.core.channels import check_channel
from mesh_tools.core.config import load_domain_file
from mesh_tools.core.errors import ArtifactError, ConfigError
from mesh_tools.core.mesh import Mesh, load_mesh
from mesh_tools.core.paths import safe_name, safe_release_id, safe_version
from mesh_tools.exchange.retention import apply_retention
from mesh_tools.model.release import Contract, ContractColumn, DataFile, ReleaseDescriptor
from mesh_tools.model.release import TestSummary as Summary
from mesh_tools.store.backends import Conflict, FolderBackend
from mesh_tools.store.exchange import Exchange
from mesh_tools.workflows.promote import promote
from tests.helpers import mesh_env, run_command, written_files

RELEASES = "products/shop/orders/v2/releases"


def rid(number: int) -> str:
    """Release ids in the order they are numbered (as publishing names them: by time)."""
    return f"r20260101T0000000000{number:02d}Z-abc{number:03x}"


def tiny_mesh(root: Path, *, retention: int = 1, reporting: str = "") -> Mesh:
    """Two domains, shop and reporting (which reads shop), with no dbt run: what the exchange code reads."""
    for name in ("shop", "reporting"):
        (root / name).mkdir(parents=True)
        (root / name / "dbt_project.yml").write_text(f"name: {name}\nprofile: {name}\n")
    (root / "reporting/dependencies.yml").write_text("projects:\n  - name: shop\n")
    (root / "reporting/mesh_domain.yml").write_text(reporting or "{}\n")
    (root / "mesh.yml").write_text(f"name: tiny\nexchange:\n  retention: {retention}\n")
    return load_mesh(root)


def publish(exchange: Exchange, number: int, *, channel: str | None = None, failed: int = 0) -> ReleaseDescriptor:
    """Place release ``number`` of shop.orders.v2 (64 bytes of data) and make it current in ``channel``."""
    data = bytes([number]) * 64
    contract = Contract(enforced=True, columns=[ContractColumn(name="id", data_type="integer")])
    d = ReleaseDescriptor(
        product="shop.orders.v2", project="shop", model="orders", version="2", latest_version="2",
        node="model.shop.orders.v2", release_id=rid(number), produced_at="2026-01-01T00:00:00+00:00",
        contract=contract, contract_hash=contract.fingerprint(), row_count=1,
        files=[DataFile(path="data.parquet", bytes=len(data), sha256="sha256:" + hashlib.sha256(data).hexdigest())],
        tests=Summary(passed=3 - failed, failed=failed),
    )  # fmt: skip
    scratch = exchange.root / ".tmp" / d.release_id
    scratch.mkdir(parents=True)
    (scratch / "data.parquet").write_bytes(data)
    (scratch / "release.json").write_text(d.model_dump_json())
    exchange.place(scratch, d)
    exchange.switch_current(d, channel)
    return d


def kept(exchange: Exchange) -> list[int]:
    """The numbers of the releases of shop.orders.v2 still in the exchange."""
    numbers = {rid(n): n for n in range(1, 20)}
    return [numbers[r] for r in exchange.release_ids("shop", "orders", "2")]


# -- the folder store's compare-and-swap (its S3 twin: tests/store/test_store.py)


def test_the_folder_store_writes_once_and_swaps_only_the_pointer_it_read(tmp_path: Path) -> None:
    store = FolderBackend(tmp_path)
    store.create("a/b.json", b"1")
    with pytest.raises(Conflict, match="already exists"):
        store.create("a/b.json", b"2")
    _, tag = store.read_tagged("a/b.json")
    store.swap("a/b.json", b"3", tag)
    with pytest.raises(Conflict, match="changed by another writer"):
        store.swap("a/b.json", b"4", tag)  # the tag read before the first swap is stale
    with pytest.raises(Conflict):
        store.swap("a/b.json", b"5", None)  # "it did not exist" is stale too
    store.swap("a/new.json", b"6", None)  # ... and right for a pointer that does not exist yet
    with pytest.raises(Conflict):
        store.swap("a/new.json", b"7", None)
    assert (store.read("a/b.json"), store.read("a/new.json")) == (b"3", b"6")


class _SlowDisk(FolderBackend):
    """A folder on a slow disk: each whole-object write takes 0.3 s, so two swaps begun together overlap."""

    def write(self, key: str, data: bytes) -> None:
        time.sleep(0.3)
        super().write(key, data)


def test_two_swaps_of_one_read_pointer_let_exactly_one_win(tmp_path: Path) -> None:
    store = _SlowDisk(tmp_path)
    store.create("p/current.json", b"old")
    _, tag = store.read_tagged("p/current.json")
    start, outcome = threading.Barrier(2), {}

    def swap(data: bytes) -> None:
        start.wait()
        try:
            store.swap("p/current.json", data, tag)
            outcome[data] = "won"
        except Conflict:
            outcome[data] = "conflict"

    threads = [threading.Thread(target=swap, args=(d,)) for d in (b"one", b"two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcome.values()) == ["conflict", "won"], outcome
    assert store.read("p/current.json") == next(d for d, o in outcome.items() if o == "won")


# -- retention


@pytest.mark.parametrize(
    "pins",
    ["pins:\n  shop.orders: {}\n", "environments:\n  dev:\n    pins:\n      shop.orders: {}\n"],
    ids=["domain-pin", "environment-pin"],
)
def test_retention_keeps_a_release_pinned_without_its_version(tmp_path: Path, pins: str) -> None:
    mesh = tiny_mesh(tmp_path / "mesh", reporting=pins.format(rid(1)))
    exchange = Exchange(mesh.exchange_path, env="prod")
    published = [publish(exchange, n) for n in (1, 2, 3)]
    expired = apply_retention(mesh, exchange, published[-1:])
    assert expired == [f"shop.orders.v2@{rid(2)}"]
    assert kept(exchange) == [1, 3]  # 1: reporting reads `shop.orders` (its latest version) at that release


def test_a_dev_publish_never_expires_a_release_current_in_another_channel(tmp_path: Path) -> None:
    mesh = tiny_mesh(tmp_path / "mesh")
    publish(Exchange(mesh.exchange_path, env="prod"), 1)
    publish(Exchange(mesh.exchange_path, env="qa"), 2)
    dev = Exchange(mesh.exchange_path, env="dev")
    # a pointer under a name no channel may take now (promoted `--to PROD` before names were checked alike):
    # nobody reads it, yet what it names is not deleted under it
    (mesh.exchange_path / "products/shop/orders/v2/channels/PROD.json").write_text(json.dumps({"release_id": rid(3)}))
    published = [publish(dev, n) for n in (3, 4, 5, 6)]
    assert apply_retention(mesh, dev, published[-1:]) == [f"shop.orders.v2@{rid(4)}", f"shop.orders.v2@{rid(5)}"]
    assert kept(dev) == [1, 2, 3, 6]  # prod's, qa's, the stray pointer's, dev's current (and newest)


# -- reading: every path verifies, and a release is read only from its own folder


@pytest.mark.parametrize("tampered", ["pinned", "current"])
def test_every_read_path_verifies_the_sha256(tmp_path: Path, tampered: str) -> None:
    exchange = Exchange(tmp_path / "exchange", env="prod")
    publish(exchange, 1)
    publish(exchange, 2)  # current; 1 is read through a pin
    ways = {"pinned": rid(1), "current": None}
    victim = rid(1) if tampered == "pinned" else rid(2)
    (tmp_path / "exchange" / RELEASES / victim / "data.parquet").write_bytes(bytes([99]) * 64)  # same size
    with pytest.raises(ArtifactError, match=f"{victim}/data.parquet: data file of release {victim} does not match"):
        exchange.resolve("shop", "orders", "2", ways.pop(tampered), "reporting/mesh_domain.yml:2")
    [(other, pin)] = ways.items()  # the control: the intact release is served on the other path
    release = exchange.resolve("shop", "orders", "2", pin, "reporting/mesh_domain.yml:2")
    assert release is not None and release.descriptor.release_id == (rid(1) if other == "pinned" else rid(2))


def test_a_release_changed_after_it_was_verified_is_not_served_by_the_same_process(tmp_path: Path) -> None:
    """A long-lived process (an orchestrator) hashes a release once; a same-size change that keeps the file's
    modification time (`cp -p`, `rsync -a`, `touch -r`) is still seen on its next read."""
    exchange = Exchange(tmp_path / "exchange", env="prod")
    publish(exchange, 1)
    exchange.resolve("shop", "orders", "2", rid(1), "pin")  # verified: its hash is remembered
    data = tmp_path / "exchange" / RELEASES / rid(1) / "data.parquet"
    before = data.stat()
    data.write_bytes(bytes([99]) * 64)
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(ArtifactError, match="does not match the SHA-256 its descriptor records"):
        exchange.resolve("shop", "orders", "2", rid(1), "pin")


@pytest.mark.parametrize("forgery", ["another-release-id", "another-version", "another-product"])
def test_a_descriptor_about_another_folder_is_refused(tmp_path: Path, forgery: str) -> None:
    exchange = Exchange(tmp_path / "exchange", env="prod")
    publish(exchange, 1)
    source = tmp_path / "exchange" / RELEASES / rid(1)
    version, release = "2", rid(1)
    if forgery == "another-release-id":  # a copy under a newer id: the old data would pass as a new release
        release = rid(7)
        shutil.copytree(source, source.with_name(release))
    elif forgery == "another-version":
        version = "1"
        shutil.copytree(source, tmp_path / "exchange/products/shop/orders/v1/releases" / release)
    else:  # every field but the product key is right
        raw = json.loads((source / "release.json").read_text())
        (source / "release.json").write_text(json.dumps({**raw, "product": "finance.revenue.v2"}))
    with pytest.raises(ArtifactError, match="A release is read only from its own folder"):
        exchange.load("shop", "orders", version, release)


# -- promotion


def test_promotion_refuses_failed_tests_when_governance_is_advisory(tmp_path: Path) -> None:
    mesh = tiny_mesh(tmp_path / "mesh")
    assert not mesh.governance.enforce  # advisory: a domain may publish with findings, not promote failed tests
    publish(Exchange(mesh.exchange_path, env="prod"), 1)
    dev = Exchange(mesh.exchange_path, env="dev")
    publish(dev, 2, channel="dev", failed=2)
    [step] = promote(mesh, "shop", "dev", "prod")
    assert step.problems == [f"2 data test(s) failed in the build of release {rid(2)}"] and not step.done
    assert dev.current_id("shop", "orders", "2", "prod") == rid(1)
    with pytest.raises(ConfigError, match="promote --to: 'PROD' cannot name an environment"):
        promote(mesh, "shop", "dev", "PROD")  # a library caller (an orchestrator) is told as the command line is
    publish(dev, 3, channel="dev")  # the control: a release whose tests passed moves
    [step] = promote(mesh, "shop", "dev", "prod")
    assert step.done and dev.current_id("shop", "orders", "2", "prod") == rid(3)


# -- names


REFUSED_NAMES = [".", "..", "x\n", "\n", "x/..", "a\nb", "", " x", "x" * 129]


@pytest.mark.parametrize("name", REFUSED_NAMES)
def test_a_name_that_is_no_file_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="cannot name a folder"):
        safe_name(name, "model", "manifest.json")
    with pytest.raises(ConfigError, match="cannot name a folder"):
        Exchange(Path("/nonexistent"), env="prod").product_prefix("shop", name, None)


@pytest.mark.parametrize("version", [".", "..", "1\n", "1/..", "1..2"])
def test_a_version_that_is_no_folder_name_is_refused(version: str) -> None:
    with pytest.raises(ConfigError, match="cannot name a folder"):
        safe_version(version, "manifest.json")


@pytest.mark.parametrize("tail", ["\n", "/../../v1/releases/x", "x", "/"])
def test_a_release_id_with_a_tail_is_refused(tmp_path: Path, tail: str) -> None:
    with pytest.raises(ConfigError, match="is not a release id"):
        safe_release_id(rid(1) + tail, "pin")
    exchange = Exchange(tmp_path / "exchange", env="prod")
    publish(exchange, 1)
    (tmp_path / "exchange/products/shop/orders/v2/current.json").write_text(json.dumps({"release_id": rid(1) + tail}))
    with pytest.raises(ArtifactError, match="current-release pointer is corrupt"):
        exchange.current_id("shop", "orders", "2")
    (tmp_path / "reporting").mkdir()
    (tmp_path / "reporting/mesh_domain.yml").write_text(f"pins:\n  shop.orders.v2: {json.dumps(rid(1) + tail)}\n")
    with pytest.raises(
        ConfigError, match=r"reporting/mesh_domain.yml:2: the pin of shop.orders.v2: .* is not a release"
    ):
        load_domain_file(tmp_path / "reporting")


def test_a_new_domain_or_a_product_key_ending_in_a_line_break_is_no_name() -> None:
    from mesh_tools.exchange.sync import split_key
    from mesh_tools.selfservice.template import check_name

    with pytest.raises(ConfigError, match="is not a valid domain name"):
        check_name("sales\n", SimpleNamespace(domains={}))  # type: ignore[arg-type]
    assert split_key("shop.orders.v2\n")[2] is None and split_key("shop.orders.v2")[2] == "2"


# -- channels: one rule, checked by every place that names one

CHANNELS = {"dev": True, "feature-x": True, "prod": True, "qa_2": True, "PROD": False, "Prod": False,
            "dev\n": False, ".": False, "..": False, "-x": False, "../x": False, "dev.json": False}  # fmt: skip


def _verdicts(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """Whether each place that reads a channel name accepts ``name`` (``--env``, ``--from``, ``--to`` on the
    command line: test_the_command_line_refuses_a_channel_nobody_reads)."""
    mesh = tiny_mesh(tmp_path / "mesh")
    exchange = tmp_path / "exchange"

    def domain_file(text: str) -> None:
        (mesh.root / "reporting/mesh_domain.yml").write_text(text)
        load_domain_file(mesh.root / "reporting")

    def mesh_env_variable() -> None:
        monkeypatch.setenv("MESH_ENV", name)
        Exchange(exchange)

    def promoted_to() -> None:
        try:
            promote(mesh, "shop", "nowhere", name)
        except ConfigError as exc:  # past the names, the domain has nothing to promote
            if "shop has no release current in 'nowhere'" not in str(exc):
                raise

    places = {
        "check_channel": lambda: check_channel(name, "here"),
        "mesh_domain.yml environments": lambda: domain_file(f"environments:\n  {json.dumps(name)}: {{}}\n"),
        "mesh_domain.yml channels": lambda: domain_file(f"environments:\n  dev:\n    channels:\n      shop: {json.dumps(name)}\n"),
        "MESH_ENV": mesh_env_variable,
        "Exchange(env=)": lambda: Exchange(exchange, env=name),
        "pointer": lambda: Exchange(exchange, env="prod").pointer_key("shop", "orders", "2", name),
        "interface": lambda: Exchange(exchange, env="prod").interface_key("shop", name),
        "receipt": lambda: Exchange(exchange, env="prod").receipt_key("reporting", name),
        "promote --to": promoted_to,
    }  # fmt: skip
    verdicts = {}
    for place, read in places.items():
        try:
            read()
            verdicts[place] = True
        except ConfigError:
            verdicts[place] = False
    return verdicts


@pytest.mark.parametrize(("name", "accepted"), CHANNELS.items(), ids=repr)
def test_a_channel_name_is_judged_alike_everywhere(
    name: str, accepted: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verdicts = _verdicts(name, tmp_path, monkeypatch)
    assert verdicts == dict.fromkeys(verdicts, accepted), verdicts


def test_a_channel_in_mesh_domain_yml_is_refused_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "mesh_domain.yml").write_text("environments:\n  dev:\n    channels:\n      shop: [dev, Prod]\n")
    with pytest.raises(
        ConfigError, match=r"mesh_domain.yml:4: 'Prod' cannot name an environment .*did you mean 'prod'"
    ):
        load_domain_file(tmp_path)


@pytest.mark.parametrize(
    "argv",
    [["promote", "shop", "--from", "dev", "--to", "PROD"], ["promote", "shop", "--from", "Prod"],
     ["promote", "shop", "--from", "dev", "--to", "qa\n"], ["--env", "dev\n", "status"]],
    ids=["to-PROD", "from-Prod", "to-newline", "env-newline"],
)  # fmt: skip
def test_the_command_line_refuses_a_channel_nobody_reads(argv: list[str], tmp_path: Path) -> None:
    mesh = tiny_mesh(tmp_path / "mesh")
    publish(Exchange(mesh.exchange_path, env="dev"), 1, channel="dev")  # what `--to PROD` would have promoted
    before = written_files(mesh.root)
    result = run_command(["mesh", *argv], mesh.root, mesh_env(), timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot name" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert written_files(mesh.root) == before  # no pointer of a channel nobody reads
