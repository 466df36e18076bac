"""Each built-in rule, passing and failing, on in-memory manifests (no dbt: the whole file runs in well under 5 s)."""

from __future__ import annotations

import pytest

from mesh_tools.governance.registry import BUILTIN
from mesh_tools.governance.testing import MeshSpec, check_fails, check_passes, run_rule


def messages(mesh: MeshSpec, code: str, **context) -> list[tuple[str, str]]:
    return sorted((f.domain, f.message) for f in check_fails(mesh, code, **context))


@pytest.fixture
def mesh() -> MeshSpec:
    """crm publishes customers (PII readable by ads) and reads nothing; ads reads it, declared."""
    spec = MeshSpec()
    crm = spec.domain("crm")
    crm.product(
        "customers",
        columns={"customer_id": "integer", "email": {"data_type": "text", "pii": True}},
        meta={"pii_allowed_consumers": ["ads"], "freshness_slo_hours": 24},
    )
    crm.model("int_scores", path="models/intermediate/int_scores.sql")
    crm.source("raw", "events")
    ads = spec.domain("ads", upstreams=["crm"])
    ads.product("audience", refs=["crm.customers"], sql="select customer_id from {{ ref('crm', 'customers') }}")
    return spec


def test_the_clean_mesh_passes_every_rule_but_sql_style(mesh: MeshSpec):
    for code in sorted(set(BUILTIN) - {"GOV502"}):
        check_passes(mesh, code)


# -- products
def test_gov101_contract_enforced(mesh: MeshSpec):
    mesh.domains["crm"].product("orders", contract=False)
    assert messages(mesh, "GOV101") == [("crm", "public model 'orders' has no enforced contract")]


def test_gov102_column_types(mesh: MeshSpec):
    mesh.domains["crm"].product("orders", columns={"order_id": "integer", "amount": None})
    mesh.domains["crm"].model("bare", access="public")
    assert messages(mesh, "GOV102") == [
        ("crm", "public model 'bare' declares no columns"),
        ("crm", "public model 'orders': columns without data_type: amount"),
    ]


def test_gov103_description(mesh: MeshSpec):
    mesh.domains["crm"].product("orders", description="  ")
    assert messages(mesh, "GOV103") == [("crm", "public model 'orders' has no description")]


def test_gov104_owner(mesh: MeshSpec):
    crm = mesh.domains["crm"]
    crm.group("nobody", owner={})
    crm.product("orders", group="nobody")
    crm.model("loose", access="public")
    assert messages(mesh, "GOV104") == [
        ("crm", "group 'nobody' of 'orders' has no owner"),
        ("crm", "public model 'loose' belongs to no group"),
    ]


def test_gov104_an_owner_by_email_alone_is_enough(mesh: MeshSpec):
    mesh.domains["crm"].product("orders", group="mail_only", owner={"email": "crm@example.com"})
    check_passes(mesh, "GOV104")


def test_gov105_primary_key_tests(mesh: MeshSpec):
    crm = mesh.domains["crm"]
    crm.product("orders", tests={"order_id": ["not_null"]}, columns={"order_id": "integer"})
    crm.product(
        "lines",
        columns={"line_id": "integer", "order_id": "integer"},
        constraints=[{"type": "primary_key", "columns": ["line_id"]}],
        tests={"order_id": ["unique", "not_null"]},
    )
    assert messages(mesh, "GOV105") == [
        ("crm", "public model 'lines' has no unique + not_null tests on its key line_id"),
        ("crm", "public model 'orders' has no unique + not_null tests"),
    ]


def test_gov105_the_key_constraint_tested(mesh: MeshSpec):
    mesh.domains["crm"].product(
        "lines",
        columns={"line_id": "integer", "order_id": "integer"},
        constraints=[{"type": "primary_key", "columns": ["line_id"]}],
        key="line_id",
    )
    check_passes(mesh, "GOV105")


def test_gov106_column_descriptions(mesh: MeshSpec):
    mesh.domains["crm"].product(
        "orders", columns={"order_id": "integer", "amount": {"data_type": "int", "description": ""}}
    )
    assert messages(mesh, "GOV106") == [("crm", "public model 'orders': columns without description: amount")]


# -- access
def test_gov201_ref_to_a_non_public_model(mesh: MeshSpec):
    ads = mesh.domains["ads"]
    ads.model("scored", refs=["crm.int_scores"])
    ads.model("ghost", refs=["crm.nothing"])
    assert messages(mesh, "GOV201") == [
        ("ads", "'ghost' reads model.crm.nothing, which does not exist in crm"),
        ("ads", "'scored' reads model.crm.int_scores, which is protected in crm"),
    ]


def test_gov202_storage_bypass(mesh: MeshSpec):
    ads = mesh.domains["ads"]
    ads.source("landing", "orders", external_location="../crm/landing/orders.parquet")
    ads.model("sneaky", sql="select * from crm.main.customers -- {{ ref('x') }}")
    found = messages(mesh, "GOV202")
    assert ("ads", "'sneaky' reads crm's storage directly: crm.main.customers") in found
    assert any(
        m.startswith("source 'landing.orders' reads crm's storage (../crm/landing/orders.parquet") for _, m in found
    )


def test_gov202_comments_and_jinja_are_not_reads(mesh: MeshSpec):
    mesh.domains["ads"].model("fine", sql="-- from crm.main.customers\nselect * from {{ ref('crm', 'customers') }}")
    check_passes(mesh, "GOV202")


def test_gov203_undeclared_project(mesh: MeshSpec):
    billing = mesh.domain("billing")
    billing.model("invoices", refs=["crm.customers", "crm.customers"])
    assert messages(mesh, "GOV203") == [
        ("billing", "billing reads project 'crm' (model.crm.customers) without declaring it in dependencies.yml")
    ]


def test_gov204_domain_cycle(mesh: MeshSpec):
    mesh.domains["crm"].upstreams = ("ads",)
    assert messages(mesh, "GOV204") == [("ads", "cycle between domains: ads -> crm -> ads")]


def test_gov204_a_local_package_install_counts(mesh: MeshSpec):
    mesh.domains["crm"].local_packages = ("ads",)
    [(domain, message)] = messages(mesh, "GOV204")
    assert message.startswith("cycle between domains:") and "crm" in message and "ads" in message


def test_gov205_foreign_storage_write(mesh: MeshSpec):
    ads = mesh.domains["ads"]
    ads.hook("attach '../crm/crm.duckdb' as crm_db")
    ads.model("vips", post_hook=["insert into crm_db.main.events select 1"])
    ads.macro("leak", "copy (select 1) to '../exchange/products/crm/customers/forged.parquet'")
    assert messages(mesh, "GOV205") == [
        ("ads", "'vips' (post-hook) writes crm's storage: INSERT INTO crm_db.main.events SELECT 1"),
        ("ads", "macro 'leak' writes the exchange: '../exchange/products/crm/customers/forged.parquet'"),
        ("ads", "on-run-start hook attaches crm's storage: '../crm/crm.duckdb'"),
    ]


def test_gov205_an_attachment_listed_after_the_write_still_counts(mesh: MeshSpec):
    # the macro that attaches comes after the model in the manifest: the scan learns attachments first
    ads = mesh.domains["ads"]
    ads.model("vips", post_hook=["insert into crm_db.main.events select 1"])
    ads.macro("open_crm", "attach '../crm/crm.duckdb' as crm_db")
    assert ("ads", "'vips' (post-hook) writes crm's storage: INSERT INTO crm_db.main.events SELECT 1") in messages(
        mesh, "GOV205"
    )


def test_gov205_own_storage_and_dbt_macros_pass(mesh: MeshSpec):
    ads = mesh.domains["ads"]
    ads.hook("attach 'ads_extra.duckdb' as extra")
    ads.model("kept", post_hook=["insert into extra.main.log select 1"])
    ads.macro("noise", "copy (select 1) to '../crm/x.csv'", package="dbt_utils")
    check_passes(mesh, "GOV205")


# -- versions
CONTRACT = {
    "enforced": True,
    "columns": [
        {"name": "customer_id", "data_type": "integer", "constraints": []},
        {"name": "email", "data_type": "text", "constraints": []},
    ],
    "constraints": [],
}


def test_gov301_same_contract_passes(mesh: MeshSpec):
    check_passes(mesh, "GOV301", contracts={"crm.customers": CONTRACT})


def test_gov301_breaking_change_against_a_saved_contract(mesh: MeshSpec):
    crm = mesh.domains["crm"]
    crm.nodes.pop("model.crm.customers")
    crm.product("customers", columns={"id": "integer", "email": "varchar"}, meta={"pii_allowed_consumers": ["ads"]})
    found = messages(mesh, "GOV301", contracts={"crm.customers": {**CONTRACT, "release": "r1"}})
    assert found == [
        (
            "crm",
            "crm.customers: column 'customer_id' removed or renamed since release r1 without a new version; "
            "affected: ads.audience (selects 'customer_id')",
        ),
        (
            "crm",
            "crm.customers: column 'email' type changed text -> varchar since release r1 without a new version; "
            "affected: ads.audience (does not select 'email')",
        ),
    ]


def test_gov301_names_the_consumers_the_check_did_not_read(mesh: MeshSpec):
    """The publish gate loads the producer and its upstreams only: a reader it cannot see is not 'no reader'."""
    crm = mesh.domains["crm"]
    crm.nodes.pop("model.crm.customers")
    crm.product("customers", columns={"id": "integer", "email": "text"}, meta={"pii_allowed_consumers": ["ads"]})
    contracts = {"crm.customers": {**CONTRACT, "release": "r1"}}
    assert messages(mesh, "GOV301", contracts=contracts, loaded=["crm"]) == [
        (
            "crm",
            "crm.customers: column 'customer_id' removed or renamed since release r1 without a new version; "
            "not read in this check: ads (`mesh check` lists every reader)",
        )
    ]
    mesh.domains.pop("ads")  # no domain downstream at all: then nobody reads it
    assert messages(mesh, "GOV301", contracts=contracts)[0][1].endswith("; no consumer reads it today")


def test_gov302_old_version_deprecation_date(mesh: MeshSpec):
    crm = mesh.domains["crm"]
    crm.model("accounts", version=1, latest_version=2)
    crm.model("accounts", version=2, latest_version=2)
    assert messages(mesh, "GOV302") == [("crm", "'accounts' v1 is older than latest v2 but has no deprecation_date")]
    crm.nodes["model.crm.accounts.v1"]["deprecation_date"] = "2030-01-01"
    check_passes(mesh, "GOV302")


def test_gov303_consumer_on_deprecated_version(mesh: MeshSpec):
    crm = mesh.domains["crm"]
    crm.product("report", version=1, latest_version=2, deprecation_date="2020-01-01")
    crm.product("report", version=2, latest_version=2)
    crm.product("forecast", version=1, latest_version=2, deprecation_date="2999-01-01")
    ads = mesh.domains["ads"]
    ads.model("legacy", refs=["crm.report.v1"])
    ads.model("planning", refs=["crm.forecast.v1", "crm.report.v2"])
    assert messages(mesh, "GOV303") == [("ads", "'legacy' reads model.crm.report.v1, deprecated since 2020-01-01")]


# -- privacy
def test_gov401_pii_policy(mesh: MeshSpec):
    crm = mesh.domains["crm"]
    crm.product("leads", columns={"lead_id": "integer", "phone": {"data_type": "text", "meta": {"pii": "yes"}}})
    mesh.domain("billing", upstreams=["crm"]).model("invoices", refs=["crm.customers"])
    assert messages(mesh, "GOV401") == [
        ("billing", "'invoices' reads PII (email) of model.crm.customers, whose policy does not allow billing"),
        (
            "crm",
            "public model 'leads' exposes PII (phone) with no policy: set meta.pii_allowed_consumers "
            "(an empty list allows no other domain)",
        ),
    ]


def test_gov401_pii_false_is_not_pii(mesh: MeshSpec):
    mesh.domains["crm"].product("leads", columns={"lead_id": "integer", "phone": {"data_type": "text", "pii": "no"}})
    mesh.domain("billing", upstreams=["crm"]).model("invoices", refs=["crm.leads"])
    check_passes(mesh, "GOV401")


def test_gov402_restricted_consumers(mesh: MeshSpec):
    crm = mesh.domains["crm"]
    crm.product("vip_list", meta={"allowed_consumers": ["billing"]})
    crm.product("secret", meta={"allowed_consumers": []})
    ads = mesh.domains["ads"]
    ads.model("vips", refs=["crm.vip_list", "crm.secret"])
    mesh.domain("billing", upstreams=["crm"]).model("invoices", refs=["crm.vip_list"])
    assert messages(mesh, "GOV402") == [
        ("ads", "'vips' reads model.crm.secret, which crm restricts to: no one"),
        ("ads", "'vips' reads model.crm.vip_list, which crm restricts to: billing"),
    ]


def test_gov402_meta_in_config_counts(mesh: MeshSpec):
    node = mesh.domains["crm"].product("vip_list")
    node["config"]["meta"] = {"allowed_consumers": ["billing"]}
    mesh.domains["ads"].model("vips", refs=["crm.vip_list"])
    assert len(check_fails(mesh, "GOV402")) == 1


# -- conventions
def test_gov501_layer_prefixes(mesh: MeshSpec):
    crm = mesh.domains["crm"]
    crm.model("customers_clean", path="models/staging/customers_clean.sql")
    crm.model("stg_orders", path="models/marts/stg_orders.sql")
    crm.model("stg_events", path="models/staging/stg_events.sql")
    assert messages(mesh, "GOV501") == [
        ("crm", "'customers_clean' is in staging/ but is not named stg_*"),
        ("crm", "'stg_orders' is named stg_* outside staging/"),
    ]


def test_gov501_prefixes_are_options(mesh: MeshSpec):
    mesh.domains["crm"].model("src_events", path="models/source/src_events.sql")
    check_passes(mesh, "GOV501", options={"GOV501": {"prefixes": {"source": "src_"}}})
    assert messages(mesh, "GOV501", options={"GOV501": {"prefixes": {"source": "raw_"}}}) == [
        ("crm", "'src_events' is in source/ but is not named raw_*")
    ]


# -- freshness
def test_gov601_source_freshness(mesh: MeshSpec):
    crm = mesh.domains["crm"]
    crm.source("raw", "orders", freshness={})
    crm.source("raw", "payments", loaded_at_field=None)
    assert messages(mesh, "GOV601") == [
        ("crm", "source 'raw.orders' has no freshness threshold"),
        ("crm", "source 'raw.payments' has no loaded_at_field"),
    ]


def test_gov602_slo_not_tighter_than_upstream(mesh: MeshSpec):
    ads = mesh.domains["ads"]
    ads.model("int_base", refs=["crm.customers"], path="models/intermediate/int_base.sql")
    ads.product("hourly", refs=["int_base"], meta={"freshness_slo_hours": 1})
    ads.product("daily", refs=["int_base"], meta={"freshness_slo_hours": 48})
    assert messages(mesh, "GOV602") == [
        ("ads", "'hourly' promises 1 h freshness but reads model.crm.customers, which promises 24 h")
    ]


def test_gov602_a_boolean_is_no_slo(mesh: MeshSpec):
    mesh.domains["ads"].product("flagged", refs=["crm.customers"], meta={"freshness_slo_hours": True})
    check_passes(mesh, "GOV602")


def test_findings_point_at_the_node_and_its_file(mesh: MeshSpec):
    mesh.domains["crm"].product("orders", contract=False)
    [finding] = run_rule(mesh, "GOV101")
    assert finding.node == "model.crm.orders" and finding.model == "orders"
    assert finding.file == "crm/models/orders.sql"
