"""What a producer declares reaches a consumer's storage as data and as names the mesh chose, never as SQL.

Two breaks a hostile tester found: a column ``data_type`` ran as SQL in every consumer (dbt's contract check
builds ``cast(null as <data_type>)`` on the consumer's connection), and a producer's alias named the stub view
in the consumer's storage, so the stub replaced, and a later revocation dropped, a table the consumer's team
made. Now a type must be a type (model/datatypes.py), a name that is not an identifier is quoted, constraints
(SQL) never reach a table's DDL, the stub view is named from the model and version, and the mesh never
replaces what it did not make (stitch/revoke.py ``claim``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from mesh_tools.core.errors import ArtifactError
from mesh_tools.core.mesh import load_mesh
from mesh_tools.exchange.publish import unsafe_contract
from mesh_tools.model.datatypes import NotAType, checked_type, column_quote
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node
from mesh_tools.stitch.revoke import LEDGER, load_ledger
from mesh_tools.stitch.stub import stub_files
from tests.helpers import FIXTURES, mesh_env, run_command, run_mesh

# ends dbt's `cast(null as ...` and the DESCRIBE around it, runs a statement, and opens them again
BREAKOUT = (
    "integer) as {column}) as t); create or replace table main.pwned as select current_database() as db; "
    "DESCRIBE (select * from (select cast(null as integer"
)


def relations(database: Path) -> dict[tuple[str, str], str]:
    with duckdb.connect(str(database), read_only=True) as con:
        rows = con.execute(
            "select schema_name, table_name, 'table' from duckdb_tables() union all "
            "select schema_name, view_name, 'view' from duckdb_views() where not internal"
        ).fetchall()
    return {(s, n): kind for s, n, kind in rows}


# -- B1: a data type is a type, a column name is quoted, constraints never run


@pytest.mark.slow
def test_a_data_type_that_is_sql_in_a_producers_manifest_never_runs_in_its_consumer(plain_mesh_copy: Path) -> None:
    """The consumer defends itself: the node it stitches from is another team's file (here the node stored with
    the release it reads, edited after the producer's publish, as a published interface or a dbt-loom manifest
    may be)."""
    root = plain_mesh_copy
    product = root / "exchange/products/shop/orders/v2"
    path = product / "releases" / json.loads((product / "current.json").read_text())["release_id"] / "release.json"
    data = json.loads(path.read_text())
    data["interface"]["node"]["columns"]["order_id"]["data_type"] = BREAKOUT.format(column="order_id")
    path.chmod(0o644)
    path.write_text(json.dumps(data))
    built = run_mesh("build", "reporting", "--no-state", cwd=root)
    out = built.stdout + built.stderr
    assert built.returncode == 3, out  # refused at the release it was edited in (issue 29), not shop's clean YAML
    assert f"error: {path.relative_to(root)}: the node stored with release " in out
    assert "is not the release's contract (column types that are not the release's: order_id). The release is " in out
    assert "schema.yml" not in out
    assert ("main", "pwned") not in relations(root / "reporting/reporting.duckdb")


@pytest.mark.slow
def test_a_producer_never_publishes_a_contract_whose_type_is_sql(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    (root / "shop/models/things.sql").write_text("select 1 as id\n")
    schema = root / "shop/models/schema.yml"
    schema.write_text(
        schema.read_text()
        + "  - name: things\n    config: {access: public, materialized: view, contract: {enforced: true}}\n"
        + f"    columns:\n      - name: id\n        data_type: {json.dumps(BREAKOUT.format(column='id'))}\n"
    )
    built = run_mesh("build", "shop", cwd=root)
    out = built.stdout + built.stderr
    assert built.returncode == 1, out
    assert (
        "publish refused: shop/models/schema.yml (shop.things): column 'id': data_type 'integer) as id) as t); " in out
    )
    assert "is not a data type (')' at character 8 where the end of the type was expected)" in out
    assert not (root / "exchange/products/shop/things").exists()


@pytest.mark.slow
def test_a_consumer_that_makes_its_stubs_tables_never_runs_a_producers_constraint(tmp_path: Path) -> None:
    """A root project's `+materialized: table` beats the stub package's own config, and a table's DDL would hold
    the producer's constraint expressions (SQL): the stub model stops before any DDL runs."""
    escape = "id > 0)); create table main.pwned as select 1 as x; create table main.ignored (y integer check (1 = 1"
    column = {"name": "id", "data_type": "integer", "constraints": [{"type": "check", "expression": escape}]}
    upstream = _manifest(_node("things", columns={"id": column}))
    consumer = tmp_path / "consumer"
    for rel, text in stub_files(upstream, {"model.shop.things": "select 1 as id"}).items():
        (consumer / "dbt_packages/shop" / rel).parent.mkdir(parents=True, exist_ok=True)
        (consumer / "dbt_packages/shop" / rel).write_text(text, encoding="utf-8")
    (consumer / "dbt_project.yml").write_text(
        "name: consumer\nprofile: consumer\nversion: '1.0.0'\nconfig-version: 2\n"
        "flags: {send_anonymous_usage_stats: false}\nmodels:\n  +materialized: table\n"
    )
    (consumer / "profiles.yml").write_text(
        "consumer:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: c.duckdb}\n"
    )
    done = run_command(["dbt", "run", "--profiles-dir", "."], consumer, mesh_env(), timeout=180)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "materializing it as table would run the constraints of shop.things (its producer's SQL" in out
    assert "set `+materialized: view` for package 'shop'" in out
    assert not {("main", "pwned"), ("main", "ignored")} & set(relations(consumer / "c.duckdb"))


# -- B2: the stub view's name is the mesh's, and nothing the mesh did not make is replaced or recorded


@pytest.mark.slow
def test_a_producers_alias_or_new_version_never_replaces_what_the_consumers_team_made(plain_mesh_copy: Path) -> None:
    root = plain_mesh_copy
    database = root / "billing/billing.duckdb"
    with duckdb.connect(str(database)) as con:  # the team's own tables, named as a producer might name its views
        con.execute("create table upstream_shop.team_table as select 1 as x")
        con.execute("create table upstream_shop.orders_v3 as select 3 as x")
    schema = root / "shop/models/schema.yml"
    text = schema.read_text()
    assert "      - v: 2\n" in text
    schema.write_text(
        text.replace("      - v: 2\n", "      - v: 2\n        config: {alias: team_table}\n      - v: 3\n")
    )
    shutil.copy(root / "shop/models/orders_v2.sql", root / "shop/models/orders_v3.sql")

    built = run_mesh("build", "shop", "billing", cwd=root)
    out = built.stdout + built.stderr
    assert built.returncode == 1, out
    assert (
        "billing/billing.duckdb: upstream_shop.orders_v3 is a table without the mark of the mesh's stub views, "
        "which the mesh did not make, and the stub view of shop.orders.v3 that stitching billing makes would "
        "replace it. The mesh never replaces what it did not make: rename it or move it out of schema "
        "upstream_shop" in out
    )
    assert "team_table" not in out  # the producer's alias names the producer's relation, never the consumer's
    found = relations(database)
    assert found[("upstream_shop", "team_table")] == "table" and found[("upstream_shop", "orders_v3")] == "table"
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("select x from upstream_shop.team_table").fetchall() == [(1,)]
        assert con.execute("select x from upstream_shop.orders_v3").fetchall() == [(3,)]
    domain = load_mesh(root).domains["billing"]
    ledger = load_ledger(domain)
    assert {("upstream_shop", "team_table"), ("upstream_shop", "orders_v3")}.isdisjoint(
        ledger.stitched | {r for checked in ledger.checked.values() for r in checked}
    )  # never recorded, so no revocation can drop them

    # the team moves its table away and loses the mesh's record (`dbt clean`): the stub views the mesh made
    # carry its mark, so they are the mesh's still, and the stitch goes through
    with duckdb.connect(str(database)) as con:
        con.execute("alter table upstream_shop.orders_v3 rename to my_orders")
    (domain.target_dir / LEDGER).unlink()
    shutil.rmtree(domain.packages_dir / "shop")
    stitched = run_mesh("stitch", "billing", cwd=root)
    assert stitched.returncode == 0, stitched.stdout + stitched.stderr
    properties = yaml.safe_load((domain.packages_dir / "shop/models/_public_models.yml").read_text())
    aliases = [v["config"]["alias"] for m in properties["models"] for v in m["versions"]]
    assert aliases == ["orders_v1", "orders_v2", "orders_v3"]
    ledger = load_ledger(domain)
    assert ledger.stitched == {("upstream_shop", f"orders_v{v}") for v in (1, 2, 3)}


def test_a_ledger_written_before_stub_views_were_marked_keeps_the_old_rule(plain_mesh: Path) -> None:
    """Without dbt: a consumer upgraded with views the mesh made unmarked is not refused (nor left undropped)."""
    domain = load_mesh(plain_mesh).domains["reporting"]
    domain.target_dir.mkdir(parents=True)
    path = domain.target_dir / LEDGER
    recorded = {("upstream_shop", "orders_v1"), ("upstream_shop", "orders_v2")}
    path.write_text(json.dumps({"stitched": sorted(recorded), "retired": [["upstream_shop", "gone", []]]}))
    ledger = load_ledger(domain)
    assert ledger.legacy == recorded | {("upstream_shop", "gone")} and ledger.checked == {}


# -- without dbt: the type grammar, names, aliases, the guard, the publish check


def _declared_types() -> list[str]:
    data = yaml.safe_load((FIXTURES / "type_matrix/producer/models/all_types.yml").read_text())
    return [c["data_type"] for m in data["models"] for c in m["columns"]]


OTHER_ENGINES = [  # PostgreSQL and Spark spellings
    "character varying(255)[]", "timestamp(3) with time zone", "double precision", "numeric(10, 2)", '"char"',
    "pg_catalog.int4", "bit varying(5)", "interval day to second(3)", "array<struct<a:int,b:string>>",
    "map<string, int>", "struct<`my field`:int>", 'struct("my field" integer)', "decimal(38,0)[][]",
    "enum('it''s', 'fine')", "string",
]  # fmt: skip


@pytest.mark.parametrize("text", _declared_types() + OTHER_ENGINES)
def test_every_type_a_contract_may_declare_is_a_type(text: str) -> None:
    assert checked_type(f" {text} ") == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (BREAKOUT.format(column="x"), "')' at character 8 where the end of the type was expected"),
        ("integer; drop table t", "';' at character 8 cannot be part of a type"),
        ("integer -- comment", "'-' at character 9 cannot be part of a type"),
        ("integer /* c */", "'/' at character 9 cannot be part of a type"),
        ("varchar(length('x') + 1)", "'+' at character 21 cannot be part of a type"),
        ("decimal((select 18), 2)", "'(' at character 9 where a type name was expected"),
        ("enum('a\\'), b')", '"\'" at character 6 cannot be part of a type'),
        ("integer $$", "'$' at character 9 cannot be part of a type"),
        ("decimal(10, 2", "it ends where ',' or ')' was expected"),
        ("struct<a:int", "it ends where ',' or '>' was expected"),
        ("", "it is empty"),
        ("list(" * 40 + "integer" + ")" * 40, "nested deeper than 32 levels"),
    ],
    ids=[
        "breakout",
        "statement",
        "line-comment",
        "block-comment",
        "expression",
        "subquery",
        "backslash",
        "dollar-quote",
        "unclosed",
        "unclosed-spark",
        "empty",
        "deep",
    ],  # fmt: skip
)
def test_what_is_not_a_type_is_refused_with_where(text: str, why: str) -> None:
    with pytest.raises(NotAType, match=re.escape(why)):
        checked_type(text)


def test_a_column_name_is_an_identifier_or_quoted_or_refused() -> None:
    assert column_quote("order_id", None) is None and column_quote("Order_ID", False) is False
    assert column_quote("order id); drop table t; --", None) is True  # any other name is quoted
    assert column_quote("x", True) is True
    for name in ('a"b', "a`b", "a\nb", ""):
        with pytest.raises(ValueError):
            column_quote(name, None)


def _node(name: str, version: int | None = None, **raw: Any) -> dict[str, Any]:
    uid = f"model.shop.{name}" + (f".v{version}" if version is not None else "")
    node = {
        "unique_id": uid, "resource_type": "model", "package_name": "shop", "name": name, "version": version,
        "latest_version": version, "access": "public", "alias": name, "patch_path": "shop://models/schema.yml",
        "config": {"access": "public", "contract": {"enforced": True}}, "columns": {},
    }  # fmt: skip
    return {**node, **raw}


def _manifest(*nodes: dict[str, Any]) -> Manifest:
    return Manifest.of({"metadata": {"project_name": "shop"}, "nodes": {n["unique_id"]: n for n in nodes}})


def test_the_stub_names_its_views_quotes_odd_names_and_guards_constraints() -> None:
    odd = {"name": "order id", "data_type": "integer"}
    checked = {"name": "id", "data_type": " decimal(10,2) ", "constraints": [{"type": "check", "expression": "id > 0"}]}
    upstream = _manifest(
        _node("orders", 2, alias="team_table", columns={"order id": odd}),
        _node("things", alias="main_things", columns={"id": checked}),
    )
    files = stub_files(upstream, {"model.shop.orders.v2": "select 1", "model.shop.things": "select 1"})
    models = {m["name"]: m for m in yaml.safe_load(files["models/_public_models.yml"])["models"]}
    orders, things = models["orders"]["versions"][0], models["things"]
    assert orders["config"]["alias"] == "orders_v2" and things["config"]["alias"] == "things"
    assert orders["columns"] == [{"name": "order id", "data_type": "integer", "quote": True}]
    assert things["columns"][0]["data_type"] == "decimal(10,2)"
    # the check expression stays (a view ignores it), and a table would be stopped before its DDL
    assert "model.config.materialized != 'view'" in files["models/things.sql"]
    assert "model.config.materialized" not in files["models/orders_v2.sql"]
    hooks = yaml.safe_load(files["dbt_project.yml"])["models"]["shop"]["+post-hook"]
    assert hooks == [
        "{% if target.type == 'duckdb' %}comment on view {{ this }} is 'mesh stub view of {{ this.schema }}."
        "{{ this.identifier }}, made by mesh stitch'{% endif %}"
    ]  # the mark that tells the mesh's views from the team's when its record is lost


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (
            {"name": "id", "data_type": "integer); select 1"},
            "column 'id': data_type 'integer); select 1' is not a data type",
        ),
        ({"name": 'a"b', "data_type": "integer"}, "column name 'a\"b': it cannot be quoted safely"),
    ],
    ids=["type", "name"],
)
def test_a_contract_that_is_sql_is_refused_by_the_stub_and_by_the_publish(column: dict[str, Any], message: str) -> None:
    node = _node("things", columns={column["name"]: column})
    with pytest.raises(
        ArtifactError,
        match="manifest.json \\(models/schema.yml\\) \\(shop.things\\): " + re.escape(message),
    ):
        stub_files(_manifest(node), {"model.shop.things": "select 1"})
    domain = type("D", (), {"name": "shop"})()
    refused = unsafe_contract(domain, [Node(node["unique_id"], node)])  # type: ignore[arg-type]
    assert refused is not None and refused.startswith(f"shop/models/schema.yml (shop.things): {message}")


def test_an_unenforced_contracts_type_that_is_not_a_type_is_left_out_not_refused() -> None:
    """Without an enforced contract a data type is documentation ("string, nullable"); a consumer that enforces
    every contract would still run it, so the stub leaves it out, and neither side refuses the product."""
    column = {"name": "id", "data_type": "string, nullable"}
    node = _node("things", columns={"id": column}, config={"access": "public", "contract": {"enforced": False}})
    files = stub_files(_manifest(node), {"model.shop.things": "select 1"})
    (model,) = yaml.safe_load(files["models/_public_models.yml"])["models"]
    assert model["columns"] == [{"name": "id"}]
    domain = type("D", (), {"name": "shop"})()
    assert unsafe_contract(domain, [Node(node["unique_id"], node)]) is None  # type: ignore[arg-type]
