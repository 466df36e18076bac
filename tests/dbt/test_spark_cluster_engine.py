"""The Spark cluster engine without a cluster: which engine a target gets, its storage, its rules and its words."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh_tools.dbt import engines
from mesh_tools.dbt.engines import spark_cluster
from mesh_tools.dbt.engines.spark import Spark
from mesh_tools.dbt.engines.spark_cluster import SparkCluster

THRIFT = {"method": "thrift", "host": "127.0.0.1", "port": 10000}
CONNECT = {"method": "session", "host": "localhost", "server_side_parameters": {"spark.remote": "sc://10.0.0.7:15002"}}
SESSION = {"method": "session", "host": "localhost", "server_side_parameters": {"spark.sql.warehouse.dir": "wh"}}


def test_the_registry_chooses_among_one_adapters_engines_by_the_credentials() -> None:
    thrift, connect, session = (engines.find_engine("spark", c) for c in (THRIFT, CONNECT, SESSION))
    assert isinstance(thrift, SparkCluster) and not thrift.connect and not thrift.owns_its_process
    assert isinstance(connect, SparkCluster) and connect.connect and connect.owns_its_process
    assert type(session) is Spark and session.owns_its_process
    # without credentials (a manifest alone): the adapter's first engine, for what they share
    assert type(engines.find_engine("spark")) is Spark and engines.sql_dialect("spark") == "spark"
    assert engines.find_engine("duckdb", THRIFT) is engines.DEFAULT  # one engine of its adapter: always it
    assert engines.SUPPORTED == ("duckdb", "spark", "postgres")
    assert engines.console_log("spark", THRIFT) is None and engines.console_log("spark", SESSION) == "spark.log"


def test_a_cluster_keeps_nothing_on_this_machine_and_names_its_server() -> None:
    thrift = SparkCluster().storage(Path("/p"), type("Credentials", (), THRIFT)())
    assert thrift.files == () and thrift.warehouse is None and thrift.remote == ("thrift://127.0.0.1:10000",)
    assert SparkCluster().lineage_namespace(thrift) == "spark://127.0.0.1:10000"
    connect = SparkCluster(connect=True).storage(Path("/p"), CONNECT)
    assert connect.remote == ("sc://10.0.0.7:15002",) and connect.connection["host"] == "10.0.0.7"
    # what a profile keeps (its connection facts) chooses the same engine again
    assert isinstance(engines.find_engine("spark", connect.connection), SparkCluster)
    assert engines.find_engine("spark", connect.connection).connect  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("given", "spark"),
    [("BIGINT_TYPE", "bigint"), ("STRING_TYPE", "string"), ("TIMESTAMP_TYPE", "timestamp"),
     ("decimal(18,2)", "decimal(18,2)"), ("DECIMAL_TYPE", "decimal"), ("array<string>", "array<string>"),
     ("TIMESTAMP_NTZ", "timestamp_ntz"), ("int", "int")],
)  # fmt: skip
def test_hive_type_ids_are_spark_type_names(given: str, spark: str) -> None:
    assert spark_cluster.spark_type(given) == spark


def test_describe_rows_stop_at_the_partition_section() -> None:
    rows = [["id", "BIGINT_TYPE", None], ["d", "date", ""], ["", "", ""], ["# Partition Information", "", ""]]
    assert spark_cluster.described_columns(rows) == [("id", "bigint"), ("d", "date")]


def test_the_export_statement_quotes_the_folder_as_spark_reads_a_literal() -> None:
    insert, describe = spark_cluster.export_statements("`sales_marts`.`fct_orders`", Path("/x/it's\\a"))
    assert insert == (
        "insert overwrite directory '/x/it\\'s\\\\a' using parquet "
        "select /*+ REPARTITION(1) */ * from `sales_marts`.`fct_orders`"
    )
    assert describe == "describe `sales_marts`.`fct_orders`"


def test_a_domains_schema_on_a_cluster_must_be_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(spark_cluster.SHARED_DIR_ENV, raising=False)
    engine = SparkCluster()
    local = engine.storage(Path("/p"), THRIFT)
    args = ([], local, Path("/p/profiles.yml"), "spark_thrift")
    assert engine.profile_problems("sales", *args, domain="sales") == []
    assert engine.profile_problems("sales_eu", *args, domain="sales") == []
    (problem,) = engine.profile_problems("analytics", *args, domain="sales")
    assert "schema analytics on thrift://127.0.0.1:10000, which does not start with its name" in problem.message
    assert "`schema: sales`" in problem.fix
    clashes = engines.shared_schema_problems([
        ("sales", "spark", "shared", local), ("finance", "spark", "shared", local),
        ("marketing", "duckdb", "shared", engines.Storage()),
    ])  # fmt: skip
    assert list(clashes) == ["finance"] and "as sales does" in clashes["finance"].message


def test_a_cluster_on_another_machine_needs_the_shared_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    engine = SparkCluster(connect=True)
    remote = engine.storage(Path("/p"), CONNECT)
    monkeypatch.delenv(spark_cluster.SHARED_DIR_ENV, raising=False)
    (problem,) = engine.profile_problems("customers", [], remote, Path("p.yml"), "spark_connect", domain="customers")
    assert "sc://10.0.0.7:15002, another machine, and no shared folder is set" in problem.message
    assert f"export {spark_cluster.SHARED_DIR_ENV}=" in problem.fix
    monkeypatch.setenv(spark_cluster.SHARED_DIR_ENV, str(tmp_path))
    assert engine.profile_problems("customers", [], remote, Path("p.yml"), "spark_connect", domain="customers") == []


def test_cluster_failures_are_said_in_one_sentence() -> None:
    gone = engines.explain_error(
        "Database Error: failed to connect: Could not connect to any of [('127.0.0.1', 10000)]", "sales", "spark_thrift"
    )
    assert gone is not None and "server 127.0.0.1:10000 does not answer" in gone and "--target spark_thrift" in gone
    lost = engines.explain_error("Job aborted due to stage failure: ExecutorLostFailure (executor 0 exited)", "sales",
                                 None)  # fmt: skip
    assert lost is not None and "lost the executors" in lost and "previous release stays current" in lost
    contract = engines.explain_error("This model has an enforced contract that failed. | amount | BIGINT_TYPE |",
                                     "sales", None)  # fmt: skip
    assert contract is not None and "| bigint |" in contract
    # PostgreSQL's words are not a Spark server's
    refused = 'connection to server at "127.0.0.1", port 5432 failed: Connection refused'
    assert engines.explain_error(refused, "x", None) is None


def test_a_server_that_does_not_answer_is_found_once_before_the_build() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = SparkCluster().storage(Path("/p"), {**THRIFT, "port": port})
    problems = engines.server_problems([("spark", down), ("spark", down), ("duckdb", engines.Storage())])
    assert len(problems) == 1 and f"Spark Thrift server thrift://127.0.0.1:{port} does not answer" in problems[0]
