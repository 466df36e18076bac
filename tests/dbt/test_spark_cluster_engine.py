"""The Spark cluster engine without a cluster: which engine a target gets, its storage, its rules and its words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mesh_tools.dbt import engines
from mesh_tools.dbt.engines import spark_cluster
from mesh_tools.dbt.engines.spark import Spark
from mesh_tools.dbt.engines.spark_cluster import Footprint, SparkCluster
from mesh_tools.model.manifest import Manifest

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
    assert [name for name, _ in clashes] == ["finance"] and "as sales does" in clashes[0][1].message


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


# -- one metastore for every domain: whose schema is whose, read from the domains' manifests (in memory here)


def _manifest(project: str, custom: dict[str, str] = {}, landing: dict[str, str | None] = {}) -> Manifest:  # noqa: B006
    """A manifest of ``project``: models (name -> custom schema) and sources ("schema.table" -> landing file or None:
    a lake table of the user's, read in place)."""
    nodes = {
        f"model.{project}.{name}": {
            "resource_type": "model",
            "package_name": project,
            "name": name,
            "config": {"schema": schema or None},
        }
        for name, schema in custom.items()
    }
    sources = {}
    for relation, file in landing.items():
        schema, table = relation.split(".")
        meta = {"external_location": f"read_parquet('{file}')"} if file else {}
        sources[f"source.{project}.{schema}.{table}"] = {
            "resource_type": "source",
            "package_name": project,
            "name": table,
            "source_name": schema,
            "schema": schema,
            "identifier": table,
            "meta": meta,
            "source_meta": {},
        }
    return Manifest.of({"metadata": {"project_name": project}, "nodes": nodes, "sources": sources}, project)


def _clashes(**domains: tuple[str, Footprint]) -> list[tuple[str, str]]:
    """(domain, message) of the domains (name=(target schema, footprint)) on one Thrift server."""
    found = spark_cluster.shared_schema_problems(
        [(name, schema, "thrift://h:1") for name, (schema, _) in domains.items()],
        {name: footprint for name, (_, footprint) in domains.items()},
    )
    return [(name, problem.message) for name, problem in found]


def test_a_schema_is_the_domain_s_whose_name_it_carries_the_longest_one() -> None:
    names = ["sales", "sales_eu", "finance"]
    assert spark_cluster.schema_owner("sales_marts", names) == "sales"
    assert spark_cluster.schema_owner("SALES_EU", names) == "sales_eu"
    assert spark_cluster.schema_owner("sales_eu_marts", names) == "sales_eu"
    assert spark_cluster.schema_owner("salesforce", names) is None and spark_cluster.schema_owner("shop", names) is None


def test_a_footprint_is_every_schema_the_domain_builds_and_each_landing_view() -> None:
    manifest = _manifest("sales", {"stg_orders": "staging", "fct_orders": "marts", "orders": ""},
                         {"shop.orders": "landing/{name}.parquet", "lake.customers": None})  # fmt: skip
    footprint = Footprint.of(manifest, ["customers"])
    assert footprint.schemas("sales") == {
        "sales": "its target schema", "sales_marts": "fct_orders with `schema: marts`",
        "sales_staging": "stg_orders with `schema: staging`", "sales_upstream_customers": "its stubs of customers's products",
    }  # fmt: skip
    # the user's own lake table (no external_location) is read in place: never created, so not the domain's
    assert footprint.landing == ("shop.orders",)
    assert Footprint.of(None).schemas("sales") == {"sales": "its target schema"}
    # a versioned model is one name, however many versions ask for the schema
    versions = {f"model.sales.fct.v{v}": {"resource_type": "model", "package_name": "sales", "name": "fct",
                                          "config": {"schema": "marts"}} for v in (1, 2)}  # fmt: skip
    versioned = Manifest.of({"metadata": {"project_name": "sales"}, "nodes": versions}, "sales")
    assert Footprint.of(versioned).schemas("sales")["sales_marts"] == "fct with `schema: marts`"


def test_sales_custom_schema_eu_and_domain_sales_eu_are_one_conflict_naming_both() -> None:
    sales = ("sales", Footprint.of(_manifest("sales", {"orders_eu": "eu", "fct_orders": "marts"})))
    sales_eu = ("sales_eu", Footprint.of(_manifest("sales_eu", {"orders": "", "fct": "marts"})))
    (clash,) = _clashes(sales=sales, sales_eu=sales_eu)
    assert clash == ("sales", "builds into schema sales_eu on thrift://h:1 (orders_eu with `schema: eu`): a schema "
                              "named for domain sales_eu, which builds it too (its target schema)")  # fmt: skip
    # in either order, and sales_eu's own schemas (sales_eu, sales_eu_marts) are never held against sales
    assert _clashes(sales_eu=sales_eu, sales=sales) == [clash]
    assert _clashes(sales=("sales", Footprint.of(_manifest("sales", {"fct_orders": "marts"}))), sales_eu=sales_eu) == []
    # a domain whose target schema carries another domain's longer name
    (target,) = spark_cluster.shared_schema_problems([("sales", "sales_eu", "thrift://h:1"), ("sales_eu", "sales_eu",
                                                                                              "thrift://h:1")])  # fmt: skip
    assert target[0] == "sales" and "which builds it too (its target schema)" in target[1].message
    assert "Give sales's target `schema: sales` (its own name)." in target[1].fix
    # on two clusters nothing is shared
    apart = spark_cluster.shared_schema_problems([("sales", "sales_eu", "thrift://a:1"), ("sales_eu", "sales_eu",
                                                                                          "thrift://b:1")])  # fmt: skip
    assert apart == []


def test_two_domains_landing_the_same_relation_are_named_with_the_fix() -> None:
    sales = ("sales", Footprint.of(_manifest("sales", landing={"raw.orders": "landing/orders.parquet"})))
    customers = ("customers", Footprint.of(_manifest("customers", landing={"raw.orders": "/data/orders.parquet",
                                                                            "raw.customers": "/data/c.parquet"})))  # fmt: skip
    found = spark_cluster.shared_schema_problems(
        [("sales", "sales", "sc://h:2"), ("customers", "customers", "sc://h:2")],
        {"sales": sales[1], "customers": customers[1]},
    )
    assert [(name, problem.message) for name, problem in found] == [
        ("customers", "registers the landing view raw.orders on sc://h:2, as sales does")
    ]
    assert "`schema: customers_raw` on the source" in found[0][1].fix
    # landing in a schema another domain builds, or one named for another domain
    finance = ("finance", Footprint.of(_manifest("finance", landing={"sales_marts.refunds": "r.parquet",
                                                                     "customers_raw.x": "x.parquet"})))  # fmt: skip
    marts = ("sales", Footprint.of(_manifest("sales", {"fct": "marts"})))
    assert _clashes(sales=marts, customers=("customers", Footprint()), finance=finance) == [
        ("finance", "registers the landing view customers_raw.x on thrift://h:1, in schema customers_raw: domain "
                    "customers's"),
        ("finance", "registers the landing view sales_marts.refunds on thrift://h:1, in schema sales_marts: domain "
                    "sales's"),
    ]  # fmt: skip


def test_session_settings_a_thrift_server_ignores_are_a_doctor_warning() -> None:
    """Spark's Thrift server applies only `set:hiveconf:<key>` settings: plain keys in a Thrift target are named
    (dbt-spark's own spark.sql.ansi.enabled is not the profile's); Connect keeps its settings, no warning."""
    plain = {**THRIFT, "server_side_parameters": {"spark.sql.timestampType": "TIMESTAMP_NTZ",
                                                   "spark.sql.ansi.enabled": "false",
                                                   "set:hiveconf:spark.sql.shuffle.partitions": "2"}}  # fmt: skip
    storage = SparkCluster().storage(Path("/p"), plain)
    [warning] = engines.profile_warnings("spark", storage)
    assert warning.message == "sends session settings Spark's Thrift server ignores: spark.sql.timestampType"
    assert '"set:hiveconf:spark.sql.timestampType": ...' in warning.fix
    assert engines.profile_warnings("spark", SparkCluster(connect=True).storage(Path("/p"), CONNECT)) == []
    # the demo's and the template's Thrift targets send every setting so
    import yaml

    repo = Path(__file__).resolve().parents[2]
    for path in [*repo.glob("projects/*/profiles.yml"), repo / "mesh_tools/selfservice/template/files/profiles.yml"]:
        text = re.sub(r"\[\[ *\w+ *\]\]", "x", path.read_text())  # the template's placeholders
        outputs = next(iter(yaml.safe_load(text).values()))["outputs"]
        params = outputs["spark_thrift"]["server_side_parameters"]
        assert params and spark_cluster.ignored_thrift_settings(params) == (), path
