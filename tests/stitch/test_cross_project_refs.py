"""Stitching on a plain dbt mesh (no mesh.yml): what the consumer's dbt sees of its upstream."""

from __future__ import annotations

import duckdb

from tests.helpers import Built, manifest, run_dbt


def test_plain_mesh_builds(plain_mesh_built: Built):
    assert plain_mesh_built.result.returncode == 0, plain_mesh_built.output
    for domain in ("shop", "reporting", "audit", "billing", "hr"):
        assert f"{domain}: ok" in plain_mesh_built.output


def test_contract_columns_cross_the_boundary(plain_mesh_built: Built):
    producer = manifest(plain_mesh_built.root / "shop")["nodes"]["model.shop.orders.v2"]
    consumer = manifest(plain_mesh_built.root / "reporting")
    node = consumer["nodes"]["model.shop.orders.v2"]
    assert (
        {c: v["data_type"] for c, v in node["columns"].items()}
        == {c: v["data_type"] for c, v in producer["columns"].items()}
        == {"order_id": "integer", "customer_id": "integer", "status": "varchar", "amount": "decimal(10,2)"}
    )
    assert {c: v["description"] for c, v in node["columns"].items()} == {
        c: v["description"] for c, v in producer["columns"].items()
    }
    assert node["contract"]["enforced"] is True
    assert node["access"] == "public"
    assert node["description"] == producer["description"]
    assert [c["type"] for c in node["columns"]["order_id"]["constraints"]] == ["not_null"]
    assert [c["type"] for c in node["constraints"]] == ["primary_key"]
    assert node["group"] == "shop_team"
    assert consumer["groups"]["group.shop.shop_team"]["owner"] == {"name": "Shop Team", "email": "shop@example.test"}
    assert node["latest_version"] == 2 and node["version"] == 2
    assert node["config"]["meta"] == {"data_product": True, "pii_allowed_consumers": ["audit"]}


def test_versions_and_deprecation_dates_cross_the_boundary(plain_mesh_built: Built):
    nodes = manifest(plain_mesh_built.root / "reporting")["nodes"]
    v1 = nodes["model.shop.orders.v1"]
    assert v1["deprecation_date"].startswith("2020-01-01")
    assert set(v1["columns"]) == {"order_id", "customer_id", "status"}
    assert nodes["model.reporting.legacy_orders"]["depends_on"]["nodes"] == ["model.shop.orders.v1"]
    assert nodes["model.reporting.order_summary"]["depends_on"]["nodes"] == ["model.shop.orders.v2"]


def test_deprecation_warning_reaches_the_consumer(plain_mesh_built: Built):
    out = plain_mesh_built.output
    assert "Found a reference to orders.v1, which was deprecated on '2020-01-01" in out
    # the stub's own deprecation is the producer's business: shown once, for shop, not per consumer
    assert out.count("Model orders.v1 has passed its deprecation date") == 1


def test_only_public_models_are_stitched(plain_mesh_built: Built):
    nodes = manifest(plain_mesh_built.root / "reporting")["nodes"]
    shop_nodes = sorted(uid for uid in nodes if uid.startswith("model.shop."))
    assert shop_nodes == ["model.shop.orders.v1", "model.shop.orders.v2"]


def test_consumer_reads_upstream_data_and_writes_only_its_own_file(plain_mesh_built: Built):
    root = plain_mesh_built.root
    con = duckdb.connect(str(root / "reporting" / "reporting.duckdb"), read_only=True)
    rows = con.execute("select status, orders, revenue from main.order_summary order by status").fetchall()
    assert [(s, n, float(r)) for s, n, r in rows] == [("completed", 2, 19.75), ("returned", 1, 3.0)]
    # the upstream's own file has no trace of its consumers
    shop = duckdb.connect(str(root / "shop" / "shop.duckdb"), read_only=True)
    schemas = {r[0] for r in shop.execute("select distinct table_schema from information_schema.tables").fetchall()}
    assert schemas == {"main"}


def test_unit_test_mocking_an_upstream_input_passes(plain_mesh_built: Built):
    import json

    results = json.loads((plain_mesh_built.root / "reporting" / "target" / "run_results.json").read_text())
    unit = [r for r in results["results"] if r["unique_id"].startswith("unit_test.reporting.")]
    assert [(r["unique_id"].split(".")[-1], r["status"]) for r in unit] == [
        ("summary_counts_orders_per_status", "pass")
    ]


def test_local_package_fallback_is_not_built_again(plain_mesh_built: Built):
    audit = plain_mesh_built.root / "audit"
    nodes = manifest(audit)["nodes"]
    assert "model.shop.customers_internal" not in nodes and "model.shop.secret_margin" not in nodes
    con = duckdb.connect(str(audit / "audit.duckdb"), read_only=True)
    tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    assert tables == {"audited_orders", "orders_v1", "orders_v2"}  # two upstream views, no shop tables
    assert not (audit / "dbt_packages" / "shop").is_symlink()
    assert (plain_mesh_built.root / "shop" / "models" / "orders_v2.sql").is_file()  # the link target survived


def test_upstream_declared_only_in_dbt_loom_config(plain_mesh_built: Built):
    billing = plain_mesh_built.root / "billing"
    assert not (billing / "dependencies.yml").exists()
    nodes = manifest(billing)["nodes"]
    assert nodes["model.billing.invoices"]["depends_on"]["nodes"] == ["model.shop.orders.v2"]


def test_daily_loop_plain_dbt_build_works_after_stitch(plain_mesh_copy):
    result = run_dbt("build", cwd=plain_mesh_copy / "reporting")
    assert result.returncode == 0, result.stdout
    assert "Completed successfully" in result.stdout
