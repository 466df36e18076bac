"""The demo's customers domain on local Spark (`method: session`): it builds in a JVM of its own, publishes from
its warehouse's files the rows DuckDB has, and a second build with nothing changed runs no dbt.

The demo on a Spark cluster (Thrift and Connect: every domain, consumers across engines) is
tests/dbt/engines/spark/test_spark_cluster.py; this file keeps the one local session the cluster tests do not cover
(its publish reads the table's Parquet files in the local warehouse). Select both with `pytest -m spark`; they need
the spark extra (`pip install -e ".[spark]"`, which `make test` installs) and Java 17.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.helpers import Built, copy_demo, run_mesh

pytestmark = [pytest.mark.slow, pytest.mark.spark]

# One domain, one JVM (about a CPU-second per node): customers reads no other domain.
SPARK_DOMAINS = ("customers",)


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


def test_a_domain_builds_in_a_local_session(spark_built: Built) -> None:
    assert spark_built.result.returncode == 0, spark_built.output
    assert "mesh build: 1 of 1 domains succeeded" in spark_built.output
    assert "WARN" not in spark_built.output  # the JVM's logging goes to target/spark.log
    for domain in SPARK_DOMAINS:
        assert not (spark_built.root / "projects" / domain / f"{domain}.duckdb").exists()
        assert (spark_built.root / "projects" / domain / "target" / "spark.log").is_file()


def test_its_release_holds_the_rows_of_its_warehouse_table_and_of_duckdb(spark_built: Built, demo_built: Built) -> None:
    folder = spark_built.root / "exchange" / "products" / "customers" / "dim_customers" / "unversioned"
    release = folder / "releases" / json.loads((folder / "current.json").read_text())["release_id"]
    descriptor = json.loads((release / "release.json").read_text())
    data = str(release / "data.parquet").replace("'", "''")
    rows = duckdb.connect().execute(f"select count(*) from read_parquet('{data}')").fetchone()[0]
    assert descriptor["engine"] == "spark"
    on_spark = spark_rows(spark_built.root, "customers", "marts", "dim_customers")
    assert descriptor["row_count"] == rows == on_spark == duckdb_rows(demo_built.root, "customers", "marts",
                                                                      "dim_customers") > 0  # fmt: skip


def test_a_second_spark_build_with_nothing_changed_runs_no_dbt(spark_built: Built) -> None:
    exchange = spark_built.root / "exchange" / "products" / "customers" / "dim_customers" / "unversioned"
    before = (exchange / "current.json").read_text()
    again = run_mesh("build", *SPARK_DOMAINS, "--target", "spark", "--explain", cwd=spark_built.root)
    assert again.returncode == 0, again.stdout + again.stderr
    for domain in SPARK_DOMAINS:
        assert f"{domain}: nothing changed, no dbt run" in again.stdout, again.stdout
    assert "ran 0 of " in again.stdout
    assert (exchange / "current.json").read_text() == before  # nothing rebuilt, nothing published
