"""The demo mesh on local Spark (`method: session`): same products, same consumers, same numbers as DuckDB.

Select it alone with `pytest -m spark`. It needs the spark extra (`pip install -e ".[spark]"`,
which `make test` installs) and Java 17.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.helpers import Built, copy_demo, run_mesh

pytestmark = [pytest.mark.slow, pytest.mark.spark]

# Two domains on Spark (each costs a JVM and about a CPU-second per node): customers publishes
# from Spark, marketing reads that release and sales' release published from DuckDB by the DuckDB
# demo build (its exchange is copied in): a Spark producer, a Spark consumer and a release crossing
# engines. `mesh build --target spark` builds all four domains (benchmarks/run.py's 'engines' does).
SPARK_DOMAINS = ("customers", "marketing")

# (domain, schema, table): every data product, and every model that reads another domain's product
RELATIONS = [
    ("customers", "marts", "dim_customers"),
    ("marketing", "intermediate", "int_customer_orders"),
    ("marketing", "marts", "campaign_performance"),
    ("marketing", "marts", "customer_segments"),
]


@pytest.fixture(scope="session")
def spark_built(tmp_path_factory: pytest.TempPathFactory, demo_built: Built) -> Built:
    assert demo_built.result.returncode == 0, demo_built.output
    root = copy_demo(tmp_path_factory.mktemp("spark") / "mesh")
    data = run_mesh("demo-data", cwd=root)
    assert data.returncode == 0, data.stdout + data.stderr
    # sales as the DuckDB build left it: its releases in the exchange, its manifest (what stitching reads)
    shutil.copytree(demo_built.root / "exchange", root / "exchange")
    shutil.copytree(demo_built.root / "projects/sales/target", root / "projects/sales/target")
    return Built(root, run_mesh("build", *SPARK_DOMAINS, "--target", "spark", cwd=root))


def spark_rows(root: Path, domain: str, schema: str, table: str, sql: str = "count(*)") -> object:
    # Spark's schemas carry the domain's prefix (one rule for a session and a cluster's shared metastore)
    files = root / "projects" / domain / "spark-warehouse" / f"{domain}_{schema}.db" / table / "*.parquet"
    return duckdb.connect().execute(f"select {sql} from read_parquet('{files}')").fetchone()[0]


def duckdb_rows(root: Path, domain: str, schema: str, table: str, sql: str = "count(*)") -> object:
    with duckdb.connect(str(root / "projects" / domain / f"{domain}.duckdb"), read_only=True) as con:
        return con.execute(f"select {sql} from {schema}.{table}").fetchone()[0]


def test_demo_mesh_builds_on_spark(spark_built: Built) -> None:
    assert spark_built.result.returncode == 0, spark_built.output
    assert "mesh build: 2 of 2 domains succeeded" in spark_built.output
    assert "WARN" not in spark_built.output  # the JVM's logging goes to target/spark.log
    for domain in SPARK_DOMAINS:
        assert not (spark_built.root / "projects" / domain / f"{domain}.duckdb").exists()
        assert (spark_built.root / "projects" / domain / "target" / "spark.log").is_file()


def test_products_and_consumers_hold_the_same_rows_as_on_duckdb(spark_built: Built, demo_built: Built) -> None:
    assert demo_built.result.returncode == 0, demo_built.output
    for domain, schema, table in RELATIONS:
        on_spark = spark_rows(spark_built.root, domain, schema, table)
        on_duckdb = duckdb_rows(demo_built.root, domain, schema, table)
        assert on_spark == on_duckdb > 0, (domain, table, on_spark, on_duckdb)
    total = "sum(lifetime_value)"  # marketing's sum of sales' amounts, per customers' customer
    assert spark_rows(spark_built.root, "marketing", "marts", "customer_segments", total) == duckdb_rows(
        demo_built.root, "marketing", "marts", "customer_segments", total
    )


def test_cross_project_refs_read_the_releases_spark_published(spark_built: Built) -> None:
    exchange = spark_built.root / "exchange"
    receipt = json.loads((exchange / "receipts" / "marketing.json").read_text())
    engines = {}
    for key, folder in (
        ("customers.dim_customers", "customers/dim_customers/unversioned"),
        ("sales.fct_orders.v2", "sales/fct_orders/v2"),
    ):
        current = json.loads((exchange / "products" / folder / "current.json").read_text())
        assert receipt["releases"][key] == current["release_id"]
        release = exchange / "products" / folder / "releases" / current["release_id"]
        descriptor = json.loads((release / "release.json").read_text())
        rows = (
            duckdb.connect().execute(f"select count(*) from read_parquet('{release / 'data.parquet'}')").fetchone()[0]
        )
        assert descriptor["row_count"] == rows > 0
        engines[key] = descriptor["engine"]
    # marketing read a release Spark published and one DuckDB published
    assert engines == {"customers.dim_customers": "spark", "sales.fct_orders.v2": "duckdb"}
    spark_release = receipt["releases"]["customers.dim_customers"]
    descriptor = json.loads(
        (
            exchange / "products/customers/dim_customers/unversioned/releases" / spark_release / "release.json"
        ).read_text()
    )
    assert descriptor["row_count"] == spark_rows(spark_built.root, "customers", "marts", "dim_customers")


def test_a_second_spark_build_with_nothing_changed_runs_no_dbt(spark_built: Built) -> None:
    exchange = spark_built.root / "exchange" / "products" / "customers" / "dim_customers" / "unversioned"
    before = (exchange / "current.json").read_text()
    again = run_mesh("build", *SPARK_DOMAINS, "--target", "spark", "--explain", cwd=spark_built.root)
    assert again.returncode == 0, again.stdout + again.stderr
    for domain in SPARK_DOMAINS:
        assert f"{domain}: nothing changed, no dbt run" in again.stdout, again.stdout
    assert "ran 0 of " in again.stdout
    assert (exchange / "current.json").read_text() == before  # nothing rebuilt, nothing published
