"""The engine registry and each engine's pure parts (mesh_tools/dbt/engines/): milliseconds each, no dbt run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlglot

from mesh_tools.core.errors import ConfigError
from mesh_tools.dbt import engines
from mesh_tools.dbt.engines import Engine, Storage
from mesh_tools.dbt.engines.postgres import release_table


def _engine_attributes() -> set[str]:
    names = {n for n in vars(Engine) if not n.startswith("_")}
    return names | set(Engine.__annotations__)


def test_the_registry_maps_each_adapter_to_one_engine_and_refuses_others_with_one_error() -> None:
    assert engines.SUPPORTED == ("duckdb", "spark", "postgres")
    for name in engines.SUPPORTED:
        engine = engines.engine_for(name)
        assert engine.name == name and engines.find_engine(name) is engine
        missing = {a for a in _engine_attributes() if not hasattr(engine, a)}
        assert not missing, f"{name} lacks {missing}"
    assert engines.engine_for(None).name == "duckdb"  # a manifest without an adapter type: the default
    assert engines.find_engine("snowflake") is None
    with pytest.raises(ConfigError) as raised:
        engines.engine_for("snowflake")
    said = str(raised.value)
    assert "'snowflake' is not an engine the mesh supports (duckdb, spark, postgres)" in said
    assert "`mesh build --no-publish`" in said and "publishing releases" in said
    with pytest.raises(engines.UnpublishableData, match="shop: the dbt adapter 'snowflake' is not an engine"):
        engines.export(SimpleNamespace(name="shop"), "snowflake", [], [], None)


def test_process_console_and_dialect_are_each_engines_own() -> None:
    assert [engines.owns_its_process(a) for a in ("duckdb", "spark", "postgres", "oracle", None)] == [
        False, True, False, False, False,
    ]  # fmt: skip
    assert engines.console_log("spark") == "spark.log" and engines.console_log("duckdb") is None
    assert [engines.sql_dialect(a) for a in ("duckdb", "spark", "postgres", None)] == [
        "duckdb", "spark", "postgres", "duckdb",
    ]  # fmt: skip
    # an adapter without an engine: sqlglot's dialect of its name when there is one, else DuckDB's
    assert engines.sql_dialect("databricks") == "databricks" and engines.sql_dialect("oracle_fork") == "duckdb"
    for name in engines.SUPPORTED:  # each dialect is one sqlglot reads
        sqlglot.parse_one("select 1 as x", read=engines.sql_dialect(name))


def test_a_stub_reads_a_release_in_the_consumers_engine_casting_back_only_its_own_types() -> None:
    columns = [("order id", "HUGEINT"), ("status", "ENUM('a', 'b')")]
    own = engines.read_release_jinja("/x/it's.parquet", "duckdb", columns)
    assert own.startswith("{% if target.type == 'spark' %}select * from parquet.`/x/it's.parquet`{% else %}")
    assert 'cast("order id" as HUGEINT) as "order id"' in own and "read_parquet('/x/it''s.parquet')" in own
    assert own.endswith("{% endif %}")
    spark_made = engines.read_release_jinja("/x/a.parquet", "spark", columns)
    assert "cast(" not in spark_made and "select * from read_parquet('/x/a.parquet')" in spark_made
    # a path is data: Jinja in it reaches the view as text, and a backtick cannot end Spark's quote
    odd = engines.read_release_jinja("/x/{{ var('a') }}/`b`.parquet", None, None)
    assert "{{ var('a') }}" not in odd and "parquet.`/x/" in odd and "``b``" in odd
    with pytest.raises(ValueError, match="not a DuckDB type"):
        engines.read_release_jinja("/x/a.parquet", "duckdb", [("a", "integer); drop table t; --")])


def test_the_stub_packages_engine_switches_come_from_the_registry() -> None:
    assert engines.by_target({}, "x") == "x"
    assert engines.by_target({"spark": "a", "postgres": "a", "duckdb": "b"}, "") == (
        "{% if target.type in ('spark', 'postgres') %}a{% elif target.type == 'duckdb' %}b{% endif %}"
    )
    # a stub's schema is its own only where each domain has its own storage: Spark (one metastore on a
    # cluster) and PostgreSQL prefix it with the consumer's target schema
    assert engines.stub_schema_test() == "target.type == 'duckdb'"
    assert engines.stub_mark_jinja("mesh stub view") == (
        "{% if target.type == 'duckdb' %}comment on view {{ this }} is 'mesh stub view of {{ this.schema }}."
        "{{ this.identifier }}, made by mesh stitch'{% endif %}"
    )


def test_a_warehouse_release_is_read_from_the_tables_its_product_and_id_make() -> None:
    postgres = engines.engine_for("postgres")
    table = release_table("fct_orders", "2", "r20261202T171844180278Z-fae9b0")
    clear = release_table("fct_orders", "2", "r20261202T171844180278Z-fae9b0", clear=True)
    where = SimpleNamespace(
        table=table, clear_table=clear, clear_readers=["marketing"], releases_schema="sales_releases",
        products_schema="sales_products", pointer="fct_orders_v2",
    )  # fmt: skip
    descriptor = SimpleNamespace(model="fct_orders", version="2", release_id="r20261202T171844180278Z-fae9b0",
                                 warehouse=where)  # fmt: skip
    assert postgres.read_table_release_sql(descriptor, "finance") == f'select * from "sales_releases"."{table}"'
    assert postgres.read_table_release_sql(descriptor, "marketing") == f'select * from "sales_releases"."{clear}"'
    assert engines.engine_for("duckdb").read_table_release_sql(descriptor, "finance") is None
    where.table = "payroll"
    with pytest.raises(ValueError, match="its table is 'payroll'"):
        postgres.read_table_release_sql(descriptor, "finance")


def test_each_engine_reads_its_storage_from_dbt_credentials(tmp_path: Path) -> None:
    attach = [SimpleNamespace(path="../sales/sales.duckdb", alias=None, read_only=True),
              SimpleNamespace(path="s3://b/x.duckdb", alias="x", read_only=False)]  # fmt: skip
    duck = engines.engine_for("duckdb").storage(tmp_path, SimpleNamespace(path="shop.duckdb", attach=attach))
    assert duck.files == ((tmp_path / "shop.duckdb").resolve(), (tmp_path / "../sales/sales.duckdb").resolve())
    assert duck.attached == ("sales = ../sales/sales.duckdb (read-only)", "x = s3://b/x.duckdb")
    assert duck.remote == ("s3://b/x.duckdb",)
    assert engines.engine_for("duckdb").storage(tmp_path, SimpleNamespace(path=":memory:")) == Storage()
    assert engines.engine_for("duckdb").storage(tmp_path, SimpleNamespace(path="md:shop")).remote == ("md:shop",)
    params = {"spark.sql.warehouse.dir": "wh"}
    spark = engines.engine_for("spark").storage(
        tmp_path, SimpleNamespace(method="session", server_side_parameters=params)
    )
    assert spark.warehouse == (tmp_path / "wh").resolve() and spark.files == (spark.warehouse,)
    assert engines.engine_for("spark").storage(tmp_path, SimpleNamespace(method="thrift")) == Storage()
    pg = engines.engine_for("postgres").storage(tmp_path, SimpleNamespace(
        host="db", port="5433", database="mesh", user="sales", password="", sslmode=None,
    ))  # fmt: skip
    assert pg.connection == {"host": "db", "port": 5433, "dbname": "mesh", "user": "sales", "connect_timeout": 10}
    assert pg.files == () and "password" not in repr(pg)


def test_what_each_engine_says_stops_a_build_or_a_publish(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.yml"
    duck, spark, pg = (engines.engine_for(n) for n in ("duckdb", "spark", "postgres"))
    [memory] = duck.profile_problems("shop", [], Storage(), profiles, "dev")
    assert memory.message == "builds into an in-memory DuckDB database" and "`path:`" in memory.fix
    assert duck.profile_problems("shop", [], Storage(files=(tmp_path / "a.duckdb",)), profiles, "dev") == []
    assert spark.profile_problems("shop", [], Storage(), profiles, "spark") == []
    assert pg.profile_problems("sales", ["customers"], Storage(), profiles, "postgres") == []
    [long] = pg.profile_problems("s" * 56, [], Storage(), profiles, "postgres")
    assert long.message.startswith(f"would make the schema {'s' * 56}_releases, longer than PostgreSQL's 63 bytes")
    assert not long.publish_only
    [odd] = pg.profile_problems("Sales-EU", [], Storage(), profiles, "postgres")
    assert odd.publish_only and "'Sales-EU', which is not a plain identifier" in odd.message


def test_measuring_lineage_and_errors_are_said_per_engine(tmp_path: Path) -> None:
    duck, spark, pg = (engines.engine_for(n) for n in ("duckdb", "spark", "postgres"))
    assert duck.measure_sql('"db"."s"."t"', ['a"b']) == [
        'describe "db"."s"."t"', 'select count(*), sum(case when "a""b" is null then 1 else 0 end) from "db"."s"."t"',
    ]  # fmt: skip
    assert spark.measure_sql('"s"."t"', ["id"]) == [
        "describe `s`.`t`", "select count(*), sum(case when `id` is null then 1 else 0 end) from `s`.`t`",
    ]  # fmt: skip
    assert pg.measure_sql('"s"."t"', ["id"]) is None  # measured from what its publish recorded
    assert duck.lineage_namespace(Storage(files=(tmp_path / "a.duckdb",))) == f"duckdb://{tmp_path / 'a.duckdb'}"
    assert spark.lineage_namespace(Storage(warehouse=tmp_path)) == f"spark://{tmp_path}"
    secret = Storage(connection={"host": "alice:s3cret@db.example", "port": 5433})
    assert pg.lineage_namespace(secret) == "postgres://db.example:5433"
    assert duck.lineage_namespace(Storage()) is None and pg.lineage_namespace(Storage()) is None
    denied = 'permission denied for schema "sales_releases"'
    assert "`mesh grants sales --target postgres`" in str(engines.explain_error(denied, "finance", "postgres"))
    download = 'Failed to download extension "httpfs" from extensions.duckdb.org'
    assert "extension 'httpfs'" in str(engines.explain_error(download, "finance", None))
    assert engines.explain_error("Binder Error: column x not found", "finance", None) is None
