"""Seeds and snapshots shared across projects the way dbt-loom shares them (``config: {access: public}``).

The end-to-end proof is the corpus mesh ``loom_seeds`` (built once per session by tests/foreign/conftest.py,
its figures and the refusal of its private seed checked by test_corpus.py); here, what its releases carry,
and the rules behind it on manifests shaped as dbt 1.11 writes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mesh_tools.docsite.lineage import Graph
from mesh_tools.governance.testing import MeshSpec, check_fails, check_passes
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node, stub_id
from mesh_tools.stitch.refs import explain
from tests.foreign.corpus import BuiltForeign, csv_rows


def _release(root: Path, project: str, name: str) -> dict[str, Any]:
    product = root / "exchange" / "products" / project / name / "unversioned"
    current = json.loads((product / "current.json").read_text())
    return json.loads((product / "releases" / current["release_id"] / "release.json").read_text())


def _types(database: Path, schema: str, table: str) -> list[tuple[str, str]]:
    import duckdb

    con = duckdb.connect(str(database), read_only=True)
    try:
        rows = con.execute(
            "select column_name, data_type from information_schema.columns where table_schema = ? and table_name = ? "
            "order by ordinal_position",
            [schema, table],
        ).fetchall()
    finally:
        con.close()
    return [(str(n), str(t)) for n, t in rows]


def test_a_public_seed_is_released_with_the_types_of_its_relation(corpus: dict[str, BuiltForeign]) -> None:
    built = corpus["loom_seeds"]
    assert built.result.returncode == 0, built.output
    descriptor = _release(built.root, "revenue", "integers")
    assert descriptor["node"] == "seed.revenue.integers"
    assert descriptor["row_count"] == csv_rows("loom_seeds/revenue/seeds/integers.csv")
    columns = [(c["name"], c["type"]) for c in descriptor["columns"]]
    # the types of the relation dbt loaded: column_types where the project sets them, DuckDB's inference elsewhere
    assert columns == _types(built.root / "revenue" / "revenue.duckdb", "main", "integers")
    assert ("amount", "DECIMAL(10,2)") in columns
    # the consumer's stub view reads the release with those types
    assert _types(built.root / "finance" / "finance.duckdb", "upstream_revenue", "integers") == columns
    # neither the private seed nor the seed behind the snapshot is a product
    assert not (built.root / "exchange" / "products" / "revenue" / "cost_centers").exists()
    assert not (built.root / "exchange" / "products" / "revenue" / "plans").exists()


def test_a_public_snapshot_is_released_with_dbt_s_snapshot_columns(corpus: dict[str, BuiltForeign]) -> None:
    built = corpus["loom_seeds"]
    descriptor = _release(built.root, "revenue", "plans_snapshot")
    assert descriptor["node"] == "snapshot.revenue.plans_snapshot"
    assert descriptor["row_count"] == csv_rows("loom_seeds/revenue/seeds/plans.csv")
    names = [c["name"] for c in descriptor["columns"]]
    assert names[:3] == ["plan_id", "plan_name", "monthly_price"]
    assert {"dbt_scd_id", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to"} <= set(names)
    types = dict((c["name"], c["type"]) for c in descriptor["columns"])
    assert types["dbt_valid_from"] == types["dbt_valid_to"] == "TIMESTAMP"


def test_shared_seeds_and_snapshots_are_products_in_health_with_their_consumers(
    corpus: dict[str, BuiltForeign],
) -> None:
    built = corpus["loom_seeds"]
    report = json.loads((built.root / "health" / "report.json").read_text())
    products = {p["product"]: p for p in report["products"]}
    assert sorted(products) == ["revenue.integers", "revenue.plans_snapshot"]
    for product in products.values():
        assert product["status"] == "healthy", product
        assert product["consumers"] == ["finance"]  # read through finance's stub models of their names
    assert "governance findings" not in built.output  # no GOV201: a stub's model id names the seed it stands for
    page = (built.root / "site" / "products" / "revenue.integers.html").read_text()
    assert "large_amounts" in page[page.index('id="consumers"') :]


# -- the rules behind it, on manifests shaped as dbt-core 1.11 writes them


def _seed(project: str, name: str, config: dict[str, Any], kind: str = "seed") -> dict[str, Any]:
    """A seed (or snapshot) node as dbt 1.11 writes it: no ``access`` of its own, whatever its YAML says."""
    return {
        "unique_id": f"{kind}.{project}.{name}",
        "resource_type": kind,
        "package_name": project,
        "name": name,
        "alias": name,
        "database": project,
        "schema": "main",
        "relation_name": f'"{project}"."main"."{name}"',
        "original_file_path": f"seeds/{name}.csv",
        "config": {"enabled": True, "materialized": kind, **config},
        "columns": {},
        "depends_on": {"nodes": [], "macros": []},
    }


def _manifest(*nodes: dict[str, Any], project: str = "revenue") -> Manifest:
    data = {"metadata": {"project_name": project}, "nodes": {n["unique_id"]: n for n in nodes}, "groups": {}}
    return Manifest.of(data, project)


def test_access_is_read_as_dbt_loom_reads_it() -> None:
    seed = Node("seed.revenue.integers", _seed("revenue", "integers", {"access": "public"}))
    assert seed.is_public and seed.access == "public" and seed.is_shareable
    assert Node("seed.revenue.plans", _seed("revenue", "plans", {})).access == "protected"
    # a model's own access wins over its config, as in dbt-loom
    model = Node(
        "model.revenue.orders", {"resource_type": "model", "access": "protected", "config": {"access": "public"}}
    )
    assert not model.is_public
    assert stub_id("seed.revenue.integers") == "model.revenue.integers"
    assert stub_id("model.sales.orders.v2") == "model.sales.orders.v2"


def test_the_manifest_shares_public_seeds_and_snapshots_and_no_other_node() -> None:
    manifest = _manifest(
        _seed("revenue", "integers", {"access": "public"}),
        _seed("revenue", "plans_snapshot", {"access": "public"}, kind="snapshot"),
        _seed("revenue", "cost_centers", {"access": "private", "group": "finance_team"}),
        _seed("revenue", "limited", {"access": "public", "meta": {"allowed_consumers": ["ads"]}}),
        {**_seed("revenue", "hook", {"access": "public"}), "resource_type": "operation", "unique_id": "operation.x.y"},
    )
    assert [n.key for n in manifest.products()] == ["revenue.integers", "revenue.plans_snapshot", "revenue.limited"]
    assert [n.unique_id for n in manifest.named("plans_snapshot")] == ["snapshot.revenue.plans_snapshot"]
    assert "revenue.limited" not in [n.key for n in manifest.for_consumer("finance").public()]
    assert manifest.models == ()  # models stay models
    shared = manifest.shared_node("model.revenue.integers")
    assert shared is not None and shared.unique_id == "seed.revenue.integers"
    assert manifest.shared_node("model.revenue.nothing") is None


def test_a_ref_to_a_private_seed_is_refused_with_its_kind_and_how_to_share_it() -> None:
    manifest = _manifest(
        _seed("revenue", "integers", {"access": "public"}),
        _seed("revenue", "cost_centers", {"access": "private", "group": "finance_team"}),
    )
    message = explain("revenue", "cost_centers", None, manifest, prefix="finance/models/x.sql:1: ref")
    assert message == (
        "finance/models/x.sql:1: ref: 'cost_centers' is a private seed of project 'revenue' "
        "(seed.revenue.cost_centers). Only public models can be referenced from another project, and so can public "
        "seeds and snapshots: ask its owner to make it public (`config: {access: public}` in its properties), or use "
        "a public seed. Public models, seeds and snapshots of revenue: integers."
    )
    assert explain("revenue", "integers", None, manifest, prefix="p") is None
    missing = explain("revenue", "integer", None, manifest, prefix="p")
    assert missing == (
        "p: project 'revenue' has no model 'integer'. Did you mean 'integers'? "
        "Public models, seeds and snapshots of revenue: integers."
    )


def test_governance_judges_a_read_of_a_shared_seed_by_the_seed() -> None:
    mesh = MeshSpec()
    revenue = mesh.domain("revenue")
    for node in (
        _seed("revenue", "integers", {"access": "public"}),
        _seed("revenue", "cost_centers", {"access": "protected"}),
    ):
        revenue.nodes[node["unique_id"]] = node
    finance = mesh.domain("finance", upstreams=["revenue"])
    finance.model("large_amounts", refs=["revenue.integers"])  # its stub: model.revenue.integers
    check_passes(mesh, "GOV201")
    finance.model("centers", refs=["revenue.cost_centers"])
    [finding] = check_fails(mesh, "GOV201")
    assert finding.message == "'centers' reads model.revenue.cost_centers, which is protected in revenue"
    # revenue installed as a plain package: dbt enforces access on models only, a read of its seed is still judged
    mesh = MeshSpec()
    mesh.domain("revenue").nodes["seed.revenue.cost_centers"] = _seed("revenue", "cost_centers", {})
    reader = mesh.domain("finance", upstreams=["revenue"]).model("centers")
    reader["depends_on"]["nodes"].append("seed.revenue.cost_centers")
    [finding] = check_fails(mesh, "GOV201")
    assert finding.message == "'centers' reads seed.revenue.cost_centers, which is protected in revenue"


def test_the_lineage_draws_a_shared_seed_once_whichever_project_comes_first() -> None:
    producer = _manifest(_seed("revenue", "integers", {"access": "public"}))
    reader = {
        "unique_id": "model.finance.large_amounts",
        "resource_type": "model",
        "package_name": "finance",
        "name": "large_amounts",
        "depends_on": {"nodes": ["model.revenue.integers"]},
    }
    consumer = _manifest(reader, project="finance")
    for order in ((producer, consumer), (consumer, producer)):
        graph = Graph()
        for manifest in order:
            graph.add_manifest(manifest.project, manifest)
        assert graph.children["seed.revenue.integers"] == {"model.finance.large_amounts"}
        assert graph.parents["model.finance.large_amounts"] == {"seed.revenue.integers"}
        assert "model.revenue.integers" not in graph.children


def test_the_health_history_knows_when_a_shared_seed_or_snapshot_last_built(
    corpus: dict[str, BuiltForeign], tmp_path: Path
) -> None:
    """A state-aware build that does not run a product leaves it to the history: a seed's or snapshot's last
    success is found there as a model's is (else health calls it 'never built successfully')."""
    from datetime import UTC, datetime

    from mesh_tools.core.config import HealthConfig
    from mesh_tools.health.facts import read_facts
    from mesh_tools.health.history import open_history
    from mesh_tools.health.inputs import Collection

    history_file = tmp_path / "history.duckdb"
    history_file.write_bytes((corpus["loom_seeds"].root / "health" / "history.duckdb").read_bytes())
    now = datetime.now(UTC)
    with open_history(history_file, read_only=True) as history:
        facts = read_facts(history, Collection("none", now, {}), HealthConfig(), now)
    for uid in ("seed.revenue.integers", "snapshot.revenue.plans_snapshot"):
        assert uid in facts.last_success and facts.last_status[uid] == "success", uid
