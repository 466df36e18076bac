"""The mesh in Dagster: definitions from the mesh model, materializations that build and publish through the
library, the exchange sensor, a failing domain, and the webserver's asset graph in a real browser.

A real Dagster instance in a temporary folder, real dbt builds of the demo mesh, no mocks. The demo is built
once (tests/conftest.py unit "dagster") by materializing every asset; the tests that change it work on copies.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import Built, copy_fixture, copy_tree, run_mesh

dg = pytest.importorskip("dagster")

from mesh_tools.core.mesh import load_mesh  # noqa: E402
from mesh_tools.dagster import mesh_definitions  # noqa: E402
from mesh_tools.model.manifest import Manifest  # noqa: E402
from mesh_tools.model.nodes import ProductKey  # noqa: E402
from mesh_tools.store.exchange import open_exchange  # noqa: E402

HOSTILE = "<img src=x onerror=alert(1)> ![beacon](http://127.0.0.1:9/beacon.png)"


def _instance(home: Path) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(home))


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, raise_on_error=False)


def _products(root: Path) -> dict[str, tuple[str, ...]]:
    """Every demo product (from the domains' manifests): product key -> the asset key Dagster should show."""
    mesh = load_mesh(root)
    out = {}
    for name, domain in mesh.domains.items():
        manifest = Manifest.load(domain.manifest_path, name)
        for node in manifest.products():
            key = (name, f"{node.name}_v{node.version}") if node.version is not None else (name, node.name)
            out[node.key] = key
    return out


class Materialized:
    def __init__(self, root: Path, home: Path, before: dict[str, str | None], result: dg.ExecuteInProcessResult):
        self.root, self.home, self.before, self.result = root, home, before, result


def _current(root: Path) -> dict[str, str | None]:
    exchange = open_exchange(load_mesh(root))
    return {p: exchange.current_id(*ProductKey.parse(p).as_tuple()) for p in _products(root)}


@pytest.fixture(scope="session")
def dagster_demo(demo_built: Built, tmp_path_factory: pytest.TempPathFactory) -> Materialized:
    """A copy of the built demo whose sales changed one model, then every asset materialized on a Dagster
    instance of its own: sales and its readers rebuild and publish, customers is reused (state-aware)."""
    assert demo_built.result.returncode == 0, demo_built.output
    base = tmp_path_factory.mktemp("dagster")
    root = copy_tree(demo_built.root, base / "mesh")
    before = _current(root)
    model = root / "projects/sales/models/marts/fct_orders_v2.sql"
    model.write_text(model.read_text() + "\n-- changed for the Dagster test\n")
    # another team's description is data in every consumer's Dagster: HTML and a remote image, for the UI
    yml = root / "projects/sales/models/marts/_fct_orders.yml"
    yml.write_text(
        yml.read_text().replace("      Orders: one row per order", f"      {HOSTILE} Orders: one row per order")
    )
    defs = mesh_definitions(root)
    result = _materialize(defs, _instance(base / "home"))
    return Materialized(root, base / "home", before, result)


def test_definitions_show_every_demo_product_with_its_owner_contract_checks_and_reads(demo_built: Built) -> None:
    root = demo_built.root
    defs = mesh_definitions(root, stitch=False)  # read only: the demo's manifests are current
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    products = _products(root)
    assert len(products) >= 5, products
    keys = {tuple(k.path) for k in graph.get_all_asset_keys()}
    assert keys == set(products.values())  # every domain of the demo publishes: no domain asset, no private model
    mesh = load_mesh(root)
    for product, key in products.items():
        node = graph.get(dg.AssetKey(list(key)))
        domain = key[0]
        assert node.group_name == domain
        owner = mesh.domains[domain].owner
        assert owner is not None and owner.email in node.owners, (product, node.owners)
        schema = node.metadata["dagster/column_schema"]
        manifest = Manifest.load(mesh.domains[domain].manifest_path, domain)
        model = next(n for n in manifest.products() if n.key == product)
        assert [c.name for c in schema.columns] == list(model.columns)
        assert node.metadata["mesh/contract"].value["enforced"] is True
        assert node.metadata["mesh/product"] == product
    # cross-domain reads, from the products' lineage: marketing's segments read sales' orders and customers
    segments = graph.get(dg.AssetKey(["marketing", "customer_segments"]))
    assert {tuple(k.path) for k in segments.parent_keys} == {("sales", "fct_orders_v2"), ("customers", "dim_customers")}
    # data tests are checks, blocking where the publish gate blocks (severity error)
    checks = list(graph.asset_check_keys)
    assert any(c.asset_key.path[0] == "sales" and c.name.startswith("not_null") for c in checks), checks[:10]
    assert all(graph.get_check_spec(c).blocking for c in checks if c.name.startswith(("not_null", "unique")))
    # freshness SLOs are freshness checks, with their sensor beside the exchange's
    slo = [p for p, k in products.items() if graph.get(dg.AssetKey(list(k))).metadata.get("mesh/freshness_slo_hours")]
    assert slo, "the demo's products declare freshness SLOs"
    sensors = {s.name for s in defs.sensors}
    assert sensors == {"mesh_exchange_prod", "mesh_freshness"}


def test_materializing_builds_state_aware_and_the_metadata_matches_the_exchange(dagster_demo: Materialized) -> None:
    result, root = dagster_demo.result, dagster_demo.root
    assert result.success, [e.message for e in result.all_events if e.is_failure][:3]
    mesh = load_mesh(root)
    exchange = open_exchange(mesh)
    instance = _instance(dagster_demo.home)
    after = _current(root)
    readers = _readers_of(root, "sales")
    for product, key in _products(root).items():
        domain = key[0]
        release = exchange.current(*ProductKey.parse(product).as_tuple())
        assert release is not None, f"{product} has no release"
        d = release.descriptor
        event = instance.get_latest_materialization_event(dg.AssetKey(list(key)))
        assert event is not None and event.asset_materialization is not None, product
        md = {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}
        assert md["mesh/release_id"] == d.release_id == after[product]
        assert md["dagster/row_count"] == d.row_count
        assert md["mesh/sha256"] == [f.sha256 for f in d.files]
        assert md["mesh/channel"] == "prod"
        rebuilt = domain == "sales" or domain in readers
        assert md["mesh/new_release"] is rebuilt, (product, md)
        assert (after[product] != dagster_demo.before[product]) is rebuilt, product
        if not rebuilt:  # the state-aware build reused every model of a quiet domain
            assert md["mesh/models_run"] == 0 and md["mesh/models_reused"] > 0, md
    # the planted description arrives as text: no HTML, no image Dagster's Markdown would fetch
    spec = mesh_definitions(root, stitch=False).resolve_asset_graph().get(dg.AssetKey(["sales", "fct_orders_v2"]))
    assert "&lt;img src=x onerror=alert(1)&gt;" in spec.description and "<img" not in spec.description
    assert "!\\[beacon]" in spec.description and "![" not in spec.description
    evaluations = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert evaluations and all(e.passed for e in evaluations)
    # the data tests this run's dbt ran (a reused product's did not run: no result); freshness on every product
    tests = {e.asset_key.path[0] for e in evaluations if e.check_name != "freshness_check"}
    assert tests == {"sales", *readers}
    assert {tuple(e.asset_key.path) for e in evaluations if e.check_name == "freshness_check"} >= {
        ("customers", "dim_customers")
    }


def test_a_release_published_outside_dagster_wakes_exactly_its_readers_once(dagster_demo: Materialized,
                                                                            tmp_path: Path) -> None:  # fmt: skip
    root = copy_tree(dagster_demo.root, tmp_path / "mesh")
    home = copy_tree(dagster_demo.home, tmp_path / "home")
    instance = _instance(home)
    defs = mesh_definitions(root, stitch=False)
    sensor = defs.resolve_sensor_def("mesh_exchange_prod")
    # the first tick sees every current release; Dagster published them all: nothing external, nobody behind
    first = sensor(dg.build_sensor_context(instance=instance, cursor=None, definitions=defs))
    assert first.run_requests == [] and first.asset_events == []
    # sales' team publishes from its own CI (a new release of each sales product, outside Dagster)
    published = run_mesh("publish", "sales", cwd=root)
    assert published.returncode == 0, published.stdout + published.stderr
    start = time.perf_counter()
    second = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs))
    took = time.perf_counter() - start
    readers = _readers_of(root, "sales")
    assert readers, "someone reads sales"
    assert len(second.run_requests) == 1
    request = second.run_requests[0]
    woken = {k.path[0] for k in request.asset_selection}
    assert woken == readers, (woken, readers)
    assert {e.asset_key.path[0] for e in second.asset_events} == {"sales"}
    assert all(e.metadata["mesh/external"].value is True for e in second.asset_events)
    # the next tick: nothing new, nothing requested, nothing reported
    third = sensor(dg.build_sensor_context(instance=instance, cursor=second.cursor, definitions=defs))
    assert third.run_requests == [] and third.asset_events == []
    assert took < 30, took  # a generous bound: the tick reads JSON only (the benchmark is in the closing note)


def _readers_of(root: Path, producer: str) -> set[str]:
    """The domains whose receipts say they read one of ``producer``'s products (what `mesh sync` judges by)."""
    from mesh_tools.store.receipts import read_receipt

    mesh = load_mesh(root)
    exchange = open_exchange(mesh)
    out = set()
    for name in mesh.order:
        receipt = read_receipt(exchange, name)
        if receipt is not None and any(k.domain == producer for k in receipt.used):
            out.add(name)
    return out


def test_a_failing_domain_fails_its_assets_and_its_readers_do_not_run(dagster_demo: Materialized,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    root = copy_tree(dagster_demo.root, tmp_path / "mesh")
    home = copy_tree(dagster_demo.home, tmp_path / "home")
    broken = root / "projects" / "sales" / "models" / "broken_for_dagster.sql"
    broken.write_text("select * from a_table_that_does_not_exist\n")
    defs = mesh_definitions(root, stitch=False)
    before = _current(root)
    result = _materialize(defs, _instance(home))
    assert not result.success
    failed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    succeeded = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert failed == {"mesh_build_sales"}
    readers = {f"mesh_build_{r}" for r in _readers_of(root, "sales")}
    assert readers and not readers & started, (readers, started)  # Dagster did not start them
    assert "mesh_build_customers" in succeeded  # upstream of sales, not downstream: it ran
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "sales failed" in failure.event_specific_data.error.message
    assert "a_table_that_does_not_exist" in failure.event_specific_data.error.message
    # neither its assets nor its readers' materialized in this run: only customers' did
    materialized = {e.asset_key.path[0] for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert materialized == {"customers"}
    # nothing was published: every current release is the one before
    assert _current(root) == before


def test_a_foreign_mesh_without_mesh_yml_loads_its_products_as_assets(tmp_path: Path) -> None:
    root = copy_fixture("foreign_meshes", tmp_path) / "no_contracts"
    assert not (root / "mesh.yml").exists()
    defs = mesh_definitions(root)  # nothing built: the definitions stitch (parse) each domain
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {tuple(k.path) for k in graph.get_all_asset_keys()}
    producer = {k for k in keys if k[0] == "jaffle_shop"}
    assert producer, keys
    consumer = [k for k in keys if k[0] == "jaffle_analytics"]
    assert consumer, keys
    parents = {p.path[0] for k in consumer for p in graph.get(dg.AssetKey(list(k))).parent_keys}
    assert "jaffle_shop" in parents


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_webserver_asset_graph_shows_the_demo_products_in_a_browser(demo_built: Built, tmp_path: Path) -> None:
    from tests.browser import chromium_page, screenshot

    home = tmp_path / "home"
    _instance(home)
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "MESH_ROOT": str(demo_built.root)}
    webserver = Path(sys.executable).parent / "dagster-webserver"
    log = (tmp_path / "webserver.log").open("w")
    server = subprocess.Popen([str(webserver), "-m", "mesh_tools.dagster.location", "-h", "127.0.0.1", "-p", str(port)],
                              cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as answer:
                    json.loads(answer.read())
                    break
            except OSError:
                assert server.poll() is None, (tmp_path / "webserver.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "the webserver did not answer in 90 s"
                time.sleep(0.5)
        with chromium_page() as page:
            # the lineage of the mesh: one group per domain, the edges between them
            page.goto(f"http://127.0.0.1:{port}/asset-groups", timeout=60_000)
            page.wait_for_selector("text=Global asset lineage", timeout=60_000)
            for domain in ("customers", "sales", "marketing", "finance"):
                page.wait_for_selector(f"text={domain}", timeout=30_000)
            screenshot(page, "dagster-lineage.png")
            # a domain's group: its products, by name
            page.goto(f"http://127.0.0.1:{port}/locations/mesh_tools.dagster.location/asset-groups/sales", timeout=60_000)
            try:
                page.wait_for_selector("text=fct_orders_v2", timeout=60_000)
            finally:
                text = page.inner_text("body")
                screenshot(page, "dagster-sales-group.png")
        products = [k for k in _products(demo_built.root).values() if k[0] == "sales"]
        for key in products:
            assert key[1] in text, (key, text[:500])
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
