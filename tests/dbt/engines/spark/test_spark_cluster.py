"""The demo mesh on the session's Spark cluster, through Thrift and through Spark Connect: the same products as on DuckDB.

One cluster for the session (tests/conftest.py ``spark_cluster``). The demo's four domains build on it once:
sales and customers through Thrift (publishing through the cluster); Connect builds marketing, a consumer of
customers' release from DuckDB and sales' from the Thrift build (copied in), that publishes its own product through
Connect (a cluster consumer: Thrift and Connect read releases through the same engine code, so finance, a reader of
sales alone, is not built on Thrift too: that cost 20 s of the suite's CPU); a DuckDB consumer (finance) then reads
the releases the cluster published; an executor killed mid-build fails its
domain and the next build works. Select them alone with `pytest -m spark`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from mesh_tools.selfservice.spark_cluster import THRIFT_APP
from tests.helpers import Built, copy_demo, mesh_env, run_command

pytestmark = [pytest.mark.slow, pytest.mark.spark]

THRIFT_DOMAINS = ("sales", "customers")
CONNECT_DOMAINS = ("marketing",)


def _env(cluster: object) -> dict[str, str]:
    return {**mesh_env(), **cluster.env()}  # type: ignore[attr-defined]


def _mesh(root: Path, env: dict[str, str], *args: str) -> Built:
    return Built(root, run_command(["mesh", *args], root, env=env, timeout=900))


@pytest.fixture(scope="session")
def thrift_built(tmp_path_factory: pytest.TempPathFactory, spark_cluster: object) -> Built:
    root = copy_demo(tmp_path_factory.mktemp("thrift") / "mesh")
    env = _env(spark_cluster)
    data = run_command(["mesh", "demo-data"], root, env=env)
    assert data.returncode == 0, data.stdout + data.stderr
    return _mesh(root, env, "build", *THRIFT_DOMAINS, "--target", "spark_thrift")


@pytest.fixture(scope="session")
def connect_built(tmp_path_factory: pytest.TempPathFactory, spark_cluster: object, demo_built: Built,
                  thrift_built: Built) -> Built:  # fmt: skip
    assert demo_built.result.returncode == 0, demo_built.output
    assert thrift_built.result.returncode == 0, thrift_built.output
    root = copy_demo(tmp_path_factory.mktemp("connect") / "mesh")
    env = _env(spark_cluster)
    data = run_command(["mesh", "demo-data"], root, env=env)
    assert data.returncode == 0, data.stdout + data.stderr
    # customers as the DuckDB build left it, sales as the cluster's Thrift build did: their releases in the
    # exchange, their manifests (what stitching reads). Marketing reads both: Spark reads DuckDB's and Spark's.
    shutil.copytree(demo_built.root / "exchange", root / "exchange")
    shutil.rmtree(root / "exchange/products/sales")
    shutil.copytree(thrift_built.root / "exchange/products/sales", root / "exchange/products/sales")
    for producer, built in (("sales", thrift_built), ("customers", demo_built)):
        shutil.copytree(built.root / f"projects/{producer}/target", root / f"projects/{producer}/target")
    return _mesh(root, env, "build", *CONNECT_DOMAINS, "--target", "spark_connect")


def current_releases(root: Path) -> dict[str, tuple[dict, Path]]:
    """Every product's current release: key -> (descriptor, data file)."""
    out = {}
    for pointer in sorted((root / "exchange" / "products").glob("*/*/*/current.json")):
        release = pointer.parent / "releases" / json.loads(pointer.read_text())["release_id"]
        descriptor = json.loads((release / "release.json").read_text())
        out["/".join(pointer.parent.relative_to(root / "exchange" / "products").parts)] = (
            descriptor,
            release / "data.parquet",
        )
    return out


AUDIT = ("_built_at", "_invocation_id")  # when and by which dbt run: differ between any two builds


def fingerprint(data: Path, columns: list[dict]) -> tuple[int, int]:
    """Rows and an order-free hash of a release, every column cast to the DuckDB release's type."""
    cast = ", ".join(f'cast("{c["name"]}" as {c["parquet_type"]})' for c in columns if c["name"] not in AUDIT)
    with duckdb.connect() as con:
        rows, digest = con.execute(
            f"select count(*), coalesce(sum(hash({cast})::hugeint), 0) from read_parquet('{data}')"
        ).fetchone()
    return int(rows), int(digest)


def test_the_demo_builds_and_publishes_through_thrift_with_duckdbs_rows(thrift_built: Built, demo_built: Built) -> None:
    assert thrift_built.result.returncode == 0, thrift_built.output
    assert "mesh build: 2 of 2 domains succeeded" in thrift_built.output
    on_duckdb, on_spark = current_releases(demo_built.root), current_releases(thrift_built.root)
    assert set(on_spark) == {k for k in on_duckdb if k.split("/")[0] in THRIFT_DOMAINS} and len(on_spark) == 4
    for key, (descriptor, data) in on_spark.items():
        reference, reference_data = on_duckdb[key]
        assert descriptor["engine"] == "spark" and reference["engine"] == "duckdb"
        # the cluster wrote the file: Spark's own type names, no Hive type ids
        assert all(c["type"] == c["type"].lower() and "_TYPE" not in c["type"] for c in descriptor["columns"])
        assert descriptor["row_count"] == reference["row_count"] > 0, key
        assert fingerprint(data, reference["columns"]) == fingerprint(reference_data, reference["columns"]), key
    # nothing of the domains' relations is on this machine: the cluster's metastore keeps them, prefixed
    assert not list(thrift_built.root.glob("projects/*/spark-warehouse"))
    schemas = {n["schema"] for n in json.loads((thrift_built.root / "projects/sales/target/manifest.json")
                                                  .read_text())["nodes"].values() if n["package_name"] == "sales"}  # fmt: skip
    assert schemas and all(s == "sales" or s.startswith("sales_") for s in schemas), schemas


def test_a_duckdb_consumer_reads_the_releases_the_cluster_published(thrift_built: Built) -> None:
    assert thrift_built.result.returncode == 0, thrift_built.output
    again = _mesh(thrift_built.root, mesh_env(), "build", "finance", "--no-publish")
    assert again.result.returncode == 0, again.output
    receipt = json.loads((thrift_built.root / "exchange/receipts/finance.json").read_text())
    release = receipt["releases"]["sales.fct_orders.v2"]
    descriptor, _ = current_releases(thrift_built.root)["sales/fct_orders/v2"]
    assert descriptor["release_id"] == release and descriptor["engine"] == "spark"


def test_a_spark_consumer_on_connect_reads_a_duckdb_release_and_a_spark_one(connect_built: Built,
                                                                           demo_built: Built) -> None:  # fmt: skip
    assert connect_built.result.returncode == 0, connect_built.output
    assert "mesh build: 1 of 1 domains succeeded" in connect_built.output
    assert "UserWarning" not in connect_built.output  # pyspark's client warnings go to target/spark.log
    engines = {}
    for key, (descriptor, _) in current_releases(connect_built.root).items():
        engines[key] = descriptor["engine"]
    assert engines["customers/dim_customers/unversioned"] == "duckdb"
    # Thrift's session settings reached the server (`set:hiveconf:`): timestamps without time zone, as Connect's
    assert engines["sales/fct_orders/v2"] == "spark"
    sales = current_releases(connect_built.root)["sales/fct_orders/v2"][0]
    assert {c["name"]: c["type"] for c in sales["columns"]}["_built_at"] == "timestamp_ntz"
    marketing = current_releases(connect_built.root)["marketing/customer_segments/unversioned"]
    reference = current_releases(demo_built.root)["marketing/customer_segments/unversioned"]
    assert marketing[0]["engine"] == "spark"
    assert fingerprint(marketing[1], reference[0]["columns"]) == fingerprint(reference[1], reference[0]["columns"])


def test_a_thrift_server_that_does_not_answer_stops_the_build_naming_it(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = copy_demo(tmp_path / "mesh")
    env = {**mesh_env(), "MESH_SPARK_THRIFT_HOST": "127.0.0.1", "MESH_SPARK_THRIFT_PORT": str(port)}
    gone = run_command(["mesh", "build", "customers", "--target", "spark_thrift"], root, env=env)
    assert gone.returncode == 3, gone.stdout + gone.stderr
    assert f"the Spark Thrift server thrift://127.0.0.1:{port} does not answer" in gone.stderr
    assert "Traceback" not in gone.stderr and not (root / "exchange" / "products").exists()


def test_an_executor_killed_mid_build_fails_that_domain_and_the_next_build_works(
    thrift_built: Built, spark_cluster: object, tmp_path: Path
) -> None:
    """The executor process on a worker is killed (SIGKILL) while a model's task runs on it: the domain fails with
    one clear error and publishes nothing (the test cluster fails a task at its first loss: tests/sparkcluster.py);
    the worker starts another executor, and the next build works."""
    assert thrift_built.result.returncode == 0, thrift_built.output
    root = shutil.copytree(thrift_built.root, tmp_path / "mesh", symlinks=True)
    env = _env(spark_cluster)
    pointer = root / "exchange/products/customers/dim_customers/unversioned/current.json"
    before = pointer.read_text()
    slow = root / "projects/customers/models/marts/slow_lookup.sql"  # a task that runs for minutes on an executor
    slow.write_text("select cast(reflect('java.lang.Thread', 'sleep', cast(300000 as bigint)) as string) as slept "
                    "from range(1)\n")  # fmt: skip
    log = spark_cluster.state_dir / "logs" / "thrift.log"  # type: ignore[attr-defined]
    seen = log.stat().st_size
    build = subprocess.Popen([sys.executable, "-m", "mesh_tools.cli", "build", "customers", "--target", "spark_thrift"],
                             cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        _wait_for_task(log, seen, "java.lang.Thread", build)
        executor = _executor_of(spark_cluster, THRIFT_APP)
        os.kill(executor, signal.SIGKILL)
        out, _ = build.communicate(timeout=600)
    finally:
        build.kill()
    assert build.returncode == 1, out
    assert "customers: the Spark cluster lost the executors running this build" in out, out
    assert "Traceback" not in out
    assert pointer.read_text() == before  # nothing published: the previous release stays current
    # the model made quick: the next build runs it (a task again, on the executor the worker started in place of
    # the killed one), reuses the rest, and succeeds; the product's rows did not change, its release stays
    slow.write_text("select 'awake' as slept from range(1)\n")
    again = _mesh(root, env, "build", "customers", "--target", "spark_thrift")
    assert again.result.returncode == 0, again.output
    assert "ran 1 of 4 models, reused 3" in again.output and pointer.read_text() == before


def _wait_for_task(log: Path, offset: int, marker: str, build: subprocess.Popen[str]) -> None:
    """Until the Thrift server's log (from ``offset``) shows a query holding ``marker`` and then a task started."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
        submitted = text.find(marker)
        if submitted >= 0 and "Starting task" in text[submitted:]:
            time.sleep(2)  # the task's thread is in its sleep well before this ends
            return
        assert build.poll() is None, (
            f"the build ended before its slow model ran: {build.stdout and build.stdout.read()}"
        )
        time.sleep(0.5)
    raise AssertionError(f"no task of the slow model started within 300 s ({log})")


def _executor_of(cluster: object, app: str) -> int:
    """The pid of the executor the master granted to application ``app`` (its id from the master's JSON)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.master_ui_port}/json/", timeout=5) as response:  # type: ignore[attr-defined]
        apps = [a["id"] for a in json.loads(response.read())["activeapps"] if a["name"] == app]
    assert len(apps) == 1, apps
    found = []
    for entry in Path("/proc").iterdir():
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:  # gone meanwhile
            continue
        if b"org.apache.spark.executor.CoarseGrainedExecutorBackend" in words and apps[0].encode() in words:
            found.append(int(entry.name))
    assert len(found) == 1, found
    return found[0]


def test_a_domain_never_replaces_another_domains_landing_view_and_doctor_shows_each_domains_schemas(
    thrift_built: Built, spark_cluster: object, tmp_path: Path
) -> None:
    """One metastore for every domain: customers declaring sales's landing relation (shop.orders, over a file of its
    own) is refused by its on-run-start hook, naming sales and the fix, and sales's view stays; sales's own hook
    replaces its view again (the view is marked as sales's). Doctor shows the server and every domain's schemas."""
    assert thrift_built.result.returncode == 0, thrift_built.output
    root, env = thrift_built.root, _env(spark_cluster)
    register = ["dbt", "run-operation", "mesh_macros.register_landing", "--target", "spark_thrift"]
    clash = root / "projects/customers/models/staging/_clash.yml"
    clash.write_text(
        "sources:\n  - name: shop\n    config:\n      meta:\n"
        "        external_location: \"read_parquet('landing/{name}.parquet')\"\n    tables:\n      - name: orders\n"
    )
    try:
        refused = run_command([*register, "--target-path", str(tmp_path / "customers")], root / "projects/customers",
                              env=env)  # fmt: skip
    finally:
        clash.unlink()
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0, said
    assert "customers: the landing view shop.orders on this cluster belongs to domain sales" in " ".join(said.split())
    assert "`schema: customers_shop` on the source" in said
    again = run_command([*register, "--target-path", str(tmp_path / "sales")], root / "projects/sales", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    doctor = run_command(["mesh", "doctor", "--target", "spark_thrift"], root, env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    server = "thrift://{MESH_SPARK_THRIFT_HOST}:{MESH_SPARK_THRIFT_PORT}".format(**env)
    assert f"      on Spark cluster, Thrift server {server} (one metastore for every domain)\n" in doctor.stdout
    assert (
        "      schemas sales, sales_intermediate, sales_marts, sales_staging; "
        "landing views shop.order_items, shop.orders, shop.payments\n"
    ) in doctor.stdout, doctor.stdout
