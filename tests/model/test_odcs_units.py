"""The ODCS mapping on models other teams write: odd types, quoted names, masked keys, foreign contracts."""

from __future__ import annotations

from mesh_tools.governance.rules.versions import breaking_changes
from mesh_tools.lineage.openlineage import redact
from mesh_tools.model import odcs
from mesh_tools.model.nodes import Node
from mesh_tools.model.release import Contract, DataFile, ReleaseColumn, ReleaseDescriptor


def model(columns: dict, constraints: list | None = None, meta: dict | None = None) -> Node:
    return Node("model.lab.things", {
        "unique_id": "model.lab.things", "name": "things", "package_name": "lab", "resource_type": "model",
        "access": "public", "config": {"contract": {"enforced": True}, "meta": meta or {}},
        "columns": {k: {"name": k, **v} for k, v in columns.items()}, "constraints": constraints or [],
    })  # fmt: skip


def dbt_test(name: str, column: str, **config: object) -> Node:
    return Node(f"test.lab.{name}_{column}", {
        "unique_id": f"test.lab.{name}_{column}", "name": f"{name}_{column}", "resource_type": "test",
        "column_name": column, "test_metadata": {"name": name, "kwargs": {"column_name": column}}, "config": config,
    })  # fmt: skip


def release(node: Node, columns: list[tuple[str, str, str]], pii: list[str] = ()) -> ReleaseDescriptor:
    contract = Contract.of(node)
    return ReleaseDescriptor(
        product="lab.things", project="lab", model="things", node=node.unique_id, release_id="r1", produced_at="",
        contract=contract, contract_hash=contract.fingerprint(), row_count=2, pii_columns=list(pii),
        columns=[ReleaseColumn(name=n, type=t, parquet_type=p) for n, t, p in columns],
        files=[DataFile(path="data.parquet", bytes=1, sha256="00")],
    )  # fmt: skip


def test_every_type_gets_a_logical_type_the_standard_accepts() -> None:
    node = model({"m": {"data_type": "map(varchar, integer)"}, "b": {"data_type": "blob"},
                  "i": {"data_type": "interval"}, "u": {}, "s": {"data_type": "struct(a integer)"},
                  "h": {"data_type": "hugeint"}})  # fmt: skip
    columns = [("m", "MAP(VARCHAR, INTEGER)", "MAP(VARCHAR, INTEGER)"), ("b", "BLOB", "BLOB"),
               ("i", "INTERVAL", "INTERVAL"), ("u", "VARCHAR", "VARCHAR"), ("s", "STRUCT(a INTEGER)", "STRUCT(a INTEGER)"),
               ("h", "HUGEINT", "DECIMAL(38,0)")]  # fmt: skip
    contract = odcs.build_contract(release(node, columns), node)
    assert odcs.schema_problems(contract) == []
    props = {p["name"]: p for p in contract["schema"][0]["properties"]}
    assert {n: p["logicalType"] for n, p in props.items()} == {
        "m": "object", "b": "string", "i": "string", "u": "string", "s": "object", "h": "integer"}  # fmt: skip
    extra = {i["property"]: i["value"] for i in props["h"]["customProperties"]}
    assert props["h"]["physicalType"] == "HUGEINT" and extra["parquetType"] == "DECIMAL(38,0)"
    proposed = odcs.build_contract(None, node)  # never built: a column declared without a type is a string too
    assert odcs.schema_problems(proposed) == [] and proposed["status"] == "proposed"


def test_a_masked_key_promises_nothing_and_quoted_test_columns_attach() -> None:
    node = model({"email": {"data_type": "varchar", "meta": {"pii": True}, "constraints": [{"type": "primary_key"}]},
                  "Order ID": {"data_type": "integer"}})  # fmt: skip
    tests = [dbt_test("not_null", "email"), dbt_test("unique", '"Order ID"'), dbt_test("not_null", '"Order ID"')]
    contract = odcs.build_contract(release(node, [("email", "VARCHAR", "VARCHAR"), ("Order ID", "INTEGER", "INTEGER")],
                                           pii=["email"]), node, tests)  # fmt: skip
    props = {p["name"]: p for p in contract["schema"][0]["properties"]}
    assert not {"primaryKey", "required", "unique", "quality"} & set(props["email"])  # NULL for consumers
    assert props["Order ID"]["unique"] and props["Order ID"]["required"] and len(props["Order ID"]["quality"]) == 2


def test_a_where_test_becomes_the_same_rows_sql_check() -> None:
    node = model({"code": {"data_type": "integer"}})
    accepted = dbt_test("accepted_values", "code", where="code > 0")
    accepted.raw["test_metadata"]["kwargs"]["values"] = [1, 2, "it's"]
    (check,) = odcs.build_contract(release(node, [("code", "INTEGER", "INTEGER")]), node, [accepted])[
        "schema"][0]["properties"][0]["quality"]  # fmt: skip
    assert check["type"] == "sql" and check["mustBe"] == 0
    assert check["query"] == "SELECT COUNT(*) FROM things WHERE (code > 0) AND \"code\" NOT IN (1, 2, 'it''s')"


def test_our_contracts_compare_dbt_with_dbt_and_foreign_ones_by_name_and_logical_type() -> None:
    node = model({"id": {}, "status": {"data_type": "varchar"}})  # a column declared without a type
    ours = odcs.baseline_of(odcs.build_contract(None, node))
    assert breaking_changes(ours, node) == []
    foreign = {"schema": [{"name": "things", "properties": [
        {"name": "ID", "logicalType": "integer", "required": False},
        {"name": "Status", "logicalType": "string"},
        {"name": "gone", "logicalType": "string"},
    ]}]}  # fmt: skip
    changes = [c for c, _ in breaking_changes(odcs.baseline_of(foreign), node)]
    assert changes == ["column 'gone' removed"]


def test_secrets_never_reach_a_warning(monkeypatch) -> None:  # noqa: ANN001 - pytest's fixture
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__AUTH__API_KEY", "tok-123456")
    text = redact("http://admin:pw@host:1/api?apikey=abc&x=1 sent tok-123456")
    assert "pw" not in text and "abc" not in text and "tok-123456" not in text and "host:1" in text
