"""A producer's metadata is data, never code, in its consumers: Jinja planted in every field a producer
controls reaches the consumer's dbt, docs, state and lineage as the literal text, never as its result."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_tools.core.credentials import redact_urls, url_place
from mesh_tools.core.errors import ArtifactError, ConfigError
from mesh_tools.dbt.engines import duckdb as duckdb_engine
from mesh_tools.dbt.literal import jinja_text, yaml_text
from mesh_tools.model.manifest import Manifest
from mesh_tools.stitch import stub
from mesh_tools.stitch.stub import read_parquet_sql, relation_sql, stub_files
from tests.helpers import manifest, mesh_env, run_command

SECRET = "pl4nted-s3cret-v4lue"
# each of these, rendered, would leak the secret, stop every consumer's parse, or never end
PLANTS = (
    "{{ env_var('MESH_PLANTED_SECRET') }}",
    "{{ exceptions.raise_compiler_error('boom') }}",
    "{% for i in range(99999) %}{% for j in range(99999) %}.{% endfor %}{% endfor %}",
    "{% raw %}raw{% endraw %} endraw {% endraw %}",
    "{# comment #} }} %} #} {{{ '{' }}} {%- if true -%}",
)
HOSTILE = " | ".join(PLANTS)


def secret_env(**extra: str) -> dict[str, str]:
    return {**mesh_env(), "MESH_PLANTED_SECRET": SECRET, **extra}


def files_holding(root: Path, needle: str) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()
    )


# -- the escaping, through dbt's own renderer


def _dbt_rendered(text: str, native: bool, ctx: dict[str, Any] | None = None) -> Any:
    from dbt.clients.jinja import get_rendered

    return get_rendered(text, ctx or {}, native=native)


_TEXT = st.text(alphabet="{}%#\r\n '\"\\-ab1=()~+.", max_size=40)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(_TEXT)
def test_escaped_text_renders_back_to_itself(text: str) -> None:
    # a description is rendered as a plain template, everything else natively; SQL as a piece of a template
    assert _dbt_rendered(yaml_text(text, description=True), native=False) == text
    assert _dbt_rendered(yaml_text(text), native=True) == text
    assert _dbt_rendered(f"select {jinja_text(text)} from x", native=False) == f"select {text} from x"


@pytest.mark.parametrize("text", [*PLANTS, HOSTILE, "{{", "{%", "{#", "x\n", "a\r\nb {{ c }}\n", "123", "True", ""])
def test_planted_jinja_is_shown_never_run(text: str) -> None:
    assert _dbt_rendered(yaml_text(text, description=True), native=False) == text
    assert _dbt_rendered(yaml_text(text), native=True) == text
    assert _dbt_rendered(f"-- {jinja_text(text)}\nselect 1", native=False) == f"-- {text}\nselect 1"


def test_sql_bodies_from_a_manifest_or_a_release_stay_text() -> None:
    planted = "{{ env_var('MESH_PLANTED_SECRET') }}{% endraw %}"
    # a relation name another team's manifest gives, quoted, may hold anything
    node = SimpleNamespace(unique_id="model.ext.t", raw={"relation_name": f'"db"."{planted}"."t"'})
    assert _dbt_rendered(relation_sql(node), native=False) == f'select * from "db"."{planted}"."t"'  # type: ignore[arg-type]
    # a release path and column names (the old `{% raw %}` wrapper refused 'endraw': a producer could stop consumers)
    path, columns = Path(f"/x/{planted}/data.parquet"), [(planted, "INTEGER")]
    body = read_parquet_sql(path, columns)
    rendered = _dbt_rendered(body, native=False, ctx={"target": {"type": "duckdb"}})
    assert rendered == duckdb_engine.read_release_sql(str(path), columns)
    # a view that fails with a message shows the message as it is
    raised: list[str] = []

    def raise_compiler_error(message: str) -> None:
        raised.append(message)

    message = f'{HOSTILE} "quoted" \\ back\\slash'
    ctx = {"execute": True, "exceptions": SimpleNamespace(raise_compiler_error=raise_compiler_error)}
    _dbt_rendered(stub._failing_sql(message, "not_published"), native=False, ctx=ctx)
    assert raised == [message]


# -- the stub package: every field a producer controls, parsed and compiled by the consumer's real dbt


def _column(name: str, label: str) -> dict[str, Any]:
    return {
        "name": name, "description": f"{label} description {HOSTILE}\n", "data_type": "integer",
        "meta": {"note": f"{label} meta {HOSTILE}", "nested": [{"deeper": f"{label} nested {HOSTILE}"}], "pii": True},
        "tags": [f"{label} tag {HOSTILE}"],
        "constraints": [{"type": "check", "name": f"{label} constraint {HOSTILE}",
                         "expression": f"{label} check {HOSTILE}"}],
    }  # fmt: skip


def _node(name: str, version: int | None, label: str) -> dict[str, Any]:
    uid = f"model.shop.{name}" + (f".v{version}" if version is not None else "")
    return {
        "unique_id": uid, "resource_type": "model", "package_name": "shop", "name": name,
        "alias": name + (f"_v{version}" if version is not None else ""),
        "version": version, "latest_version": 2 if version is not None else None, "access": "public",
        "group": "shop_team", "description": f"{label} model {HOSTILE}",
        "config": {
            "access": "public", "group": "shop_team", "contract": {"enforced": True, "alias_types": True},
            "meta": {"owner_note": f"{label} model meta {HOSTILE}", "description": f"{label} meta key {HOSTILE}"},
            "tags": [f"{label} model tag {HOSTILE}"], "docs": {"show": True, "node_color": "#1f77b4"},
        },
        "constraints": [{"type": "check", "name": f"{label} model constraint {HOSTILE}",
                         "expression": f"{label} model check {HOSTILE}"}],
        "columns": {"id": _column("id", f"{label} id"), PLANTS[0]: _column(PLANTS[0], f"{label} planted")},
    }  # fmt: skip


def hostile_manifest() -> Manifest:
    nodes = {
        n["unique_id"]: n for n in (_node("orders", 1, "v1"), _node("orders", 2, "v2"), _node("things", None, "t"))
    }
    group = {"name": "shop_team", "package_name": "shop", "description": f"group {HOSTILE}",
             "owner": {"name": f"owner {HOSTILE}", "email": "shop@example.test", "slack": f"#shop {HOSTILE}"}}  # fmt: skip
    return Manifest.of(
        {"metadata": {"project_name": "shop"}, "nodes": nodes, "groups": {"group.shop.shop_team": group}}
    )


def test_a_stub_carrying_jinja_everywhere_reaches_dbt_as_the_literal_text(tmp_path: Path) -> None:
    upstream = hostile_manifest()
    release = Path(f"/nowhere/{PLANTS[0]}/data.parquet")
    columns = [("id", "INTEGER"), (PLANTS[0], "INTEGER")]
    bodies = {uid: read_parquet_sql(release, columns) for uid in upstream.nodes}
    consumer = tmp_path / "consumer"
    for rel, text in stub_files(upstream, bodies).items():
        (consumer / "dbt_packages" / "shop" / rel).parent.mkdir(parents=True, exist_ok=True)
        (consumer / "dbt_packages" / "shop" / rel).write_text(text, encoding="utf-8")
    (consumer / "dbt_project.yml").write_text("name: consumer\nprofile: consumer\nversion: '1.0.0'\nconfig-version: 2\n"
                                              "flags: {send_anonymous_usage_stats: false}\n")  # fmt: skip
    (consumer / "profiles.yml").write_text(
        "consumer:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: c.duckdb}\n"
    )
    done = run_command(["dbt", "compile", "--profiles-dir", "."], consumer, secret_env(), timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert SECRET not in done.stdout + done.stderr
    assert files_holding(consumer, SECRET) == []

    seen = manifest(consumer)
    group = seen["groups"]["group.shop.shop_team"]
    assert group["description"] == f"group {HOSTILE}"  # dbt does not render it: written as it is
    assert group["owner"] == {"name": f"owner {HOSTILE}", "email": "shop@example.test", "slack": f"#shop {HOSTILE}"}
    for uid, sent in upstream.nodes.items():
        got = seen["nodes"][uid]
        assert got["description"] == sent["description"], uid
        assert got["config"]["meta"] == sent["config"]["meta"]
        assert got["tags"] == sent["config"]["tags"]
        assert [(c["name"], c["expression"]) for c in got["constraints"]] == [
            (c["name"], c["expression"]) for c in sent["constraints"]
        ]
        assert set(got["columns"]) == set(sent["columns"])
        for name, column in sent["columns"].items():
            mine = got["columns"][name]
            assert (mine["name"], mine["description"], mine["meta"], mine["tags"]) == (
                column["name"], column["description"], column["meta"], column["tags"])  # fmt: skip
            assert [(c["name"], c["expression"]) for c in mine["constraints"]] == [
                (c["name"], c["expression"]) for c in column["constraints"]
            ]
        # the view's SQL is the release read, path and column names as they are
        compiled = (consumer / "target/compiled/shop/models" / f"{Path(got['original_file_path']).name}").read_text()
        assert duckdb_engine.read_release_sql(str(release), columns) in compiled


# -- bounds


def _one_model(**changes: Any) -> Manifest:
    node = _node("things", None, "t")
    for key, value in changes.items():
        node[key] = value
    return Manifest.of({"metadata": {"project_name": "shop"}, "nodes": {node["unique_id"]: node}, "groups": {}})


def _properties(upstream: Manifest) -> dict[str, Any]:
    files = stub_files(upstream, {uid: "select 1" for uid in upstream.nodes})
    return yaml.safe_load(files["models/_public_models.yml"])


def test_what_a_stub_carries_is_bounded() -> None:
    deep: Any = "bottom"
    for _ in range(60):
        deep = {"a": deep}
    huge = {"pii": True, "sla": 4, "blob": "x" * 60_000, "more": ["y" * 30_000] * 3, "deep": deep}
    column = {"name": "id", "description": "d" * 100_000, "meta": huge, "tags": ["t" * 50_000]}
    config = {"access": "public", "meta": huge, "docs": {"show": True, "node_color": "{{ x }}"}}
    model = _properties(_one_model(columns={"id": column}, config=config, deprecation_date="not a date"))["models"][0]
    (col,) = model["columns"]
    # a long text is cut, visibly, at TEXT_LIMIT characters
    assert col["description"].startswith("d" * stub.TEXT_LIMIT + " … [cut by mesh stitch: 100,000 characters")
    assert len(col["description"]) < stub.TEXT_LIMIT + 100
    assert len(col["tags"][0]) < stub.TEXT_LIMIT + 100
    # meta over META_LIMIT: the largest values left out and named, the small flags kept
    for meta in (col["meta"], model["config"]["meta"]):
        assert len(json.dumps(meta)) <= stub.META_LIMIT
        assert meta["pii"] is True and meta["sla"] == 4 and "more" not in meta
        assert meta["mesh_cut"].endswith("left out: more")
        # nesting deeper than DEPTH_LIMIT is cut
        level, depth = meta["deep"], 1
        while isinstance(level, dict):
            level, depth = level["a"], depth + 1
        assert depth == stub.DEPTH_LIMIT and level.startswith("[cut by mesh stitch: nested deeper than")
    # values dbt would refuse are left out rather than breaking every consumer's parse
    assert "node_color" not in model["config"]["docs"] and "deprecation_date" not in model


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"name": "../../escape"}, "model '../../escape' cannot name a folder"),
        ({"name": "orders{{ env_var('X') }}"}, "cannot name a folder"),
        ({"version": "1/../../2", "latest_version": "1/../../2"}, "model version '1/../../2' cannot name a folder"),
    ],
)
def test_names_from_an_upstream_are_names(changes: dict[str, Any], says: str) -> None:
    with pytest.raises(ArtifactError, match="manifest.json") as refused:
        _properties(_one_model(**changes))
    assert says in str(refused.value) and not isinstance(refused.value, ConfigError)


# -- credentials in URLs


def test_a_url_is_written_as_its_place_and_a_message_masks_credentials() -> None:
    assert url_place("http://alice:s3cret@minio:9000/?X-Amz-Security-Token=t0k#f") == "http://minio:9000/"
    assert url_place("http://alice:pa/ss@minio:9000/p") == "http://minio:9000/p"  # an unescaped '/' in a password
    assert url_place("s3://bucket/prefix/key.parquet") == "s3://bucket/prefix/key.parquet"
    said = redact_urls("endpoint `http://alice:s3cret@127.0.0.1:9/?X-Amz-Security-Token=t0k` unreachable")
    assert "s3cret" not in said and "t0k" not in said and "127.0.0.1:9" in said
    # every error the mesh raises says its URLs without their credentials
    assert "s3cret" not in str(ArtifactError("cannot reach http://alice:s3cret@host:1/x"))


def test_lineage_names_places_and_errors_without_credentials() -> None:
    from mesh_tools.lineage.openlineage import _error, relation_namespace

    profile = SimpleNamespace(connection={"host": "alice:s3cret@db.example", "port": 5433})
    assert relation_namespace(None, "postgres", profile) == "postgres://db.example:5433"  # type: ignore[arg-type]
    facet = _error(["reporting: cannot reach http://alice:s3cret@minio:9000/x?token=t0k"])["errorMessage"]
    assert "s3cret" not in facet.message and "t0k" not in facet.message and "minio:9000" in facet.message


# -- end to end: a producer in the same checkout, real `mesh build`, OpenLineage to a file


def _plant(schema: Path) -> dict[str, str]:
    """Plant Jinja in the producer's YAML: shop's own dbt renders its YAML, so the planted text is wrapped in
    `{% raw %}` where shop's dbt renders (its manifest then holds the Jinja as text, as a hostile or careless
    producer's would); a group's description it does not render."""
    shown = {
        "model": f"orders model {HOSTILE}",
        "column": f"order id {HOSTILE}",
        "meta": f"meta {HOSTILE}",
        "tag": f"tag {PLANTS[0]}",
        "column_meta": f"column meta {HOSTILE}",
        "group": f"group {HOSTILE}",
        "owner": f"Shop Team {PLANTS[0]}",
    }

    def raw(key: str) -> str:
        return json.dumps("{% raw %}" + shown[key].replace("{% endraw %}", "{% endraw %}{{ '{% endraw %}' }}{% raw %}")
                          + "{% endraw %}")  # fmt: skip

    text = schema.read_text()
    for old, new in (
        ("description: Orders of the shop, one row per order.", f"description: {raw('model')}"),
        ("description: Order id.", f"description: {raw('column')}"),
        ("meta: {data_product: true, pii_allowed_consumers: [audit]}",
         f"meta: {{data_product: true, pii_allowed_consumers: [audit], note: {raw('meta')}}}\n      tags: [{raw('tag')}]"),
        ("meta: {pii: true}", f"meta: {{pii: true, note: {raw('column_meta')}}}"),
        ("description: Runs the shop.", f"description: {json.dumps(shown['group'])}"),
        ("owner: {name: Shop Team,", f"owner: {{name: {raw('owner')},"),
    ):  # fmt: skip
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    schema.write_text(text)
    return shown


@pytest.mark.slow
def test_jinja_a_producer_plants_is_text_in_the_consumers_manifest_state_and_lineage(
    plain_mesh_copy: Path, tmp_path: Path
) -> None:
    root = plain_mesh_copy
    shown = _plant(root / "shop/models/schema.yml")
    events = tmp_path / "events.ndjson"
    env = secret_env(OPENLINEAGE__TRANSPORT__TYPE="file", OPENLINEAGE__TRANSPORT__LOG_FILE_PATH=str(events),
                     OPENLINEAGE__TRANSPORT__APPEND="true")  # fmt: skip
    env = {k: v for k, v in env.items() if not k.startswith("OPENLINEAGE") or k.startswith("OPENLINEAGE__TRANSPORT")}
    built = run_command(["mesh", "build", "+reporting"], root, env, timeout=300)
    output = built.stdout + built.stderr
    assert built.returncode == 0, output[-4000:]
    assert SECRET not in output
    # the secret is nowhere: not in the consumer's manifest, state, stub, logs, docs or health, nor the exchange
    assert files_holding(root, SECRET) == []
    assert files_holding(tmp_path, SECRET) == []

    producer = manifest(root / "shop")["nodes"]["model.shop.orders.v2"]
    assert producer["description"] == shown["model"]  # the producer's manifest holds the Jinja as text
    seen = manifest(root / "reporting")
    node = seen["nodes"]["model.shop.orders.v2"]
    assert node["description"] == shown["model"]
    assert node["columns"]["order_id"]["description"] == shown["column"]
    assert node["columns"]["customer_id"]["meta"] == {"pii": True, "note": shown["column_meta"]}
    assert node["config"]["meta"]["note"] == shown["meta"] and node["tags"] == [shown["tag"]]
    group = seen["groups"]["group.shop.shop_team"]
    assert (group["description"], group["owner"]["name"]) == (shown["group"], shown["owner"])
    # the build state keeps the manifest it built with: the same text
    states = [json.loads(p.read_text()) for p in (root / "reporting/target/mesh-state").rglob("manifest.json")]
    assert states and all(s["nodes"]["model.shop.orders.v2"]["description"] == shown["model"] for s in states)
    # lineage: the consumer's read of the release carries the producer's column descriptions as text
    sent = [json.loads(line) for line in events.read_text().splitlines()]
    (consume,) = [e for e in sent if e["job"]["name"] == "reporting.consume.shop.orders.v2"
                  and e["eventType"] == "COMPLETE"]  # fmt: skip
    described = {f["name"]: f.get("description") for f in consume["outputs"][0]["facets"]["schema"]["fields"]}
    assert described["order_id"] == shown["column"]
