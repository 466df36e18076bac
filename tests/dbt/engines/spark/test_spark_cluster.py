"""The demo mesh on the session's Spark cluster, through Thrift and through Spark Connect: the same products as on DuckDB.

One cluster for the session (tests/conftest.py ``spark_cluster``). The demo's four domains build on it once:
sales, customers and finance through Thrift (publishing through the cluster); Connect builds marketing, a consumer of the releases DuckDB published
(sales' and customers', copied in) that publishes its own product through Connect; a DuckDB consumer then reads
the releases the cluster published. Select them alone with `pytest -m spark`.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import duckdb
import pytest

from tests.helpers import Built, copy_demo, mesh_env, run_command

pytestmark = [pytest.mark.slow, pytest.mark.spark]

THRIFT_DOMAINS = ("sales", "customers", "finance")
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
def connect_built(tmp_path_factory: pytest.TempPathFactory, spark_cluster: object, demo_built: Built) -> Built:
    assert demo_built.result.returncode == 0, demo_built.output
    root = copy_demo(tmp_path_factory.mktemp("connect") / "mesh")
    env = _env(spark_cluster)
    data = run_command(["mesh", "demo-data"], root, env=env)
    assert data.returncode == 0, data.stdout + data.stderr
    # sales and customers as the DuckDB build left them: releases in the exchange, manifests (what stitching reads)
    shutil.copytree(demo_built.root / "exchange", root / "exchange")
    for producer in ("sales", "customers"):
        shutil.copytree(demo_built.root / f"projects/{producer}/target", root / f"projects/{producer}/target")
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
    assert "mesh build: 3 of 3 domains succeeded" in thrift_built.output
    on_duckdb, on_spark = current_releases(demo_built.root), current_releases(thrift_built.root)
    assert set(on_spark) == {k for k in on_duckdb if not k.startswith("marketing/")} and len(on_spark) == 5
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


def test_a_spark_consumer_on_connect_reads_a_duckdb_release(connect_built: Built, demo_built: Built) -> None:
    assert connect_built.result.returncode == 0, connect_built.output
    assert "mesh build: 1 of 1 domains succeeded" in connect_built.output
    assert "UserWarning" not in connect_built.output  # pyspark's client warnings go to target/spark.log
    engines = {}
    for key, (descriptor, _) in current_releases(connect_built.root).items():
        engines[key] = descriptor["engine"]
    assert engines["customers/dim_customers/unversioned"] == engines["sales/fct_orders/v2"] == "duckdb"
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
