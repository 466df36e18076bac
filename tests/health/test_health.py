"""`mesh health` on a real mesh: plant a failing test, a stale source, a volume drop and a schema change."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from tests.browser import chromium_page, screenshot
from tests.helpers import Built, copy_fixture, run_mesh

pytestmark = pytest.mark.slow


def health_json(root: Path, *args: str) -> tuple[dict, int]:
    result = run_mesh("health", "--format", "json", *args, cwd=root)
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout), result.returncode


def by_product(report: dict) -> dict[str, dict]:
    return {p["product"]: p for p in report["products"]}


def kinds(product: dict) -> dict[str, str]:
    return {p["kind"]: p["status"] for p in product["problems"]}


def test_build_updates_history_and_says_where_the_report_is(health_mesh: Built) -> None:
    assert "report: health/report.html" in health_mesh.output
    for name in ("report.html", "report.json", "report.md", "history.duckdb"):
        assert (health_mesh.root / "health" / name).is_file()
    with duckdb.connect(str(health_mesh.root / "health/history.duckdb"), read_only=True) as con:
        builds = con.execute("select count(*) from collections where trigger = 'build'").fetchone()[0]
        runs = con.execute("select domain, count(*) from runs group by 1 order by 1").fetchall()
        measured = con.execute(
            "select rows from measurements where product = 'orders.fct_orders' order by measured_at"
        ).fetchall()
        freshness = con.execute(
            "select status from source_freshness where unique_id = 'source.support.raw.tickets' "
            "order by snapshotted_at desc limit 1"
        ).fetchone()
        failing = con.execute(
            "select count(*) from node_results where name = 'revenue_is_never_positive' and status = 'fail'"
        ).fetchone()[0]
    assert builds == 4
    # a row per dbt invocation, and one per build where exec was skipped (its upstream finance failed)
    assert dict(runs) == {"exec": 4, "finance": 4, "orders": 4, "support": 4}
    assert [r[0] for r in measured] == [200, 200, 20, 20]  # one per release
    assert freshness == ("error",)
    assert failing == 2


def test_report_states_each_planted_problem_with_status_and_impact(health_mesh: Built) -> None:
    report, code = health_json(health_mesh.root)
    assert code == 1  # a product is failing
    products = by_product(report)

    revenue = products["finance.revenue"]
    assert revenue["status"] == "failing"
    failure = next(p for p in revenue["problems"] if p["kind"] == "test_failure")
    assert "revenue_is_never_positive" in failure["message"]
    assert failure["streak"] == 2 and "(failing 2 runs in a row)" in failure["message"]
    assert failure["owner"] == "Finance Team <finance@example.test>"
    assert [(i["product"], i["owner"], i["distance"]) for i in failure["impact"]] == [
        ("exec.kpis", "Exec Office <exec@example.test>", 1)
    ]

    tickets = products["support.ticket_stats"]
    assert tickets["status"] == "stale"
    assert kinds(tickets)["source_freshness"] == "stale"
    assert kinds(tickets)["freshness_slo"] == "stale"
    assert tickets["freshness"]["within_slo"] is False and tickets["freshness"]["age_hours"] > 71
    stale = next(p for p in tickets["problems"] if p["kind"] == "source_freshness")
    assert "raw.tickets last loaded 72" in stale["message"] and "error after 24 h" in stale["message"]
    assert [i["product"] for i in stale["impact"]] == ["exec.kpis"]

    orders = products["orders.fct_orders"]
    assert orders["status"] == "warning"
    assert kinds(orders) == {"volume": "warning", "schema_change": "warning"}
    volume = next(p for p in orders["problems"] if p["kind"] == "volume")
    assert "row count 20 is outside the expected 160–240" in volume["message"]
    assert orders["volume"]["rows"] == 20 and orders["volume"]["history"] >= 2
    change = next(p for p in orders["problems"] if p["kind"] == "schema_change")
    assert change["message"] == "schema changed: +channel (VARCHAR)"
    assert all(not p["impact"] for p in orders["problems"])  # warnings put nobody at risk

    kpis = products["exec.kpis"]
    assert kpis["status"] == "warning"
    assert sorted(kpis["at_risk_from"]) == ["finance.revenue", "support.ticket_stats"]
    assert kinds(kpis) == {"upstream": "warning"}

    domains = {d["domain"]: d for d in report["domains"]}
    assert {n: d["status"] for n, d in domains.items()} == {
        "orders": "warning",
        "support": "stale",
        "finance": "failing",
        "exec": "warning",
    }
    assert report["products_by_status"] == {"healthy": 0, "warning": 2, "stale": 1, "failing": 1, "no_data": 0}
    assert revenue["score"] < tickets["score"] < orders["score"] < 100
    assert orders["freshness"]["slo_compliance"] == 1.0
    assert tickets["freshness"]["slo_compliance"] < 1.0
    assert domains["support"]["slo_compliance"] == tickets["freshness"]["slo_compliance"]
    assert domains["exec"]["slo_compliance"] is None  # kpis declares no SLO


def test_fail_on_threshold(health_mesh: Built) -> None:
    assert run_mesh("health", "--fail-on", "never", cwd=health_mesh.root).returncode == 0
    assert run_mesh("health", "--fail-on", "warning", cwd=health_mesh.root).returncode == 1
    result = run_mesh("health", "--fail-on", "sometimes", cwd=health_mesh.root)
    assert result.returncode == 2 and "sometimes" in result.stderr


def test_markdown_summary_for_a_pull_request(health_mesh: Built) -> None:
    result = run_mesh("health", "--format", "markdown", cwd=health_mesh.root)
    text = result.stdout
    assert text.startswith("### 🔴 Mesh health: health_demo is **failing**")
    assert "| Status | Where | Problem | Owner | At risk downstream |" in text
    revenue_row = next(line for line in text.splitlines() if line.startswith("| 🔴 failing | finance.revenue |"))
    assert "Finance Team <finance@example.test> | exec.kpis |" in revenue_row
    assert (health_mesh.root / "health/report.md").read_text() == text


def test_a_corrupt_artifact_fails_a_missing_one_is_no_data_and_the_rest_still_renders(
    health_mesh: Built, tmp_path: Path
) -> None:
    root = shutil.copytree(health_mesh.root, tmp_path / "mesh")
    (root / "support/target/run_results.json").write_text('{"results": [')
    (root / "exec/target/manifest.json").unlink()
    report, code = health_json(root)
    domains = {d["domain"]: d for d in report["domains"]}
    assert domains["support"]["status"] == "failing"  # there but unreadable: its build is broken
    assert domains["support"]["reason"].startswith("support/target/run_results.json:1:")
    assert "run results is corrupt" in domains["support"]["reason"]
    assert domains["exec"]["status"] == "no_data" and "manifest not found" in domains["exec"]["reason"]
    assert domains["finance"]["status"] == "failing" and domains["orders"]["status"] == "warning"
    assert code == 1
    assert (root / "health/report.html").stat().st_mtime >= (root / "health/report.json").stat().st_mtime - 1


def test_schema_of_the_json_report(health_mesh: Built) -> None:
    result = run_mesh("health", "--schema", cwd=health_mesh.root)
    schema = json.loads(result.stdout)
    assert schema["title"] == "HealthReport"
    assert {"products", "domains", "problems", "status"} <= set(schema["required"])
    documented = Path(__file__).resolve().parents[2] / "docs" / "health-report.schema.json"
    assert json.loads(documented.read_text()) == schema, (
        "regenerate: mesh health --schema > docs/health-report.schema.json"
    )


def test_html_report_in_headless_chromium(health_mesh: Built) -> None:
    report = json.loads((health_mesh.root / "health/report.json").read_text())
    requested: list[str] = []
    with chromium_page() as page:
        page.on("request", lambda request: requested.append(request.url))
        page.goto((health_mesh.root / "health/report.html").as_uri())
        assert page.inner_text("#mesh-status") == "failing"
        for status, count in report["products_by_status"].items():
            assert page.inner_text(f"#count-{status}") == str(count)
        revenue = page.locator('#products tr[data-product="finance.revenue"]')
        assert revenue.get_attribute("data-status") == "failing"
        orders = page.locator('#products tr[data-product="orders.fct_orders"]')
        assert orders.locator(".rows").inner_text() == "20"
        assert orders.locator("svg.spark").count() == 1  # the row-count trend, drawn inline
        products = {p["product"]: p for p in report["products"]}
        assert orders.locator(".score").inner_text() == str(products["orders.fct_orders"]["score"])
        impacted = page.locator('.problem[data-product="finance.revenue"] li.impacted')
        assert impacted.all_inner_texts() == ["exec.kpis (exec, owner Exec Office <exec@example.test>)"]
        screenshot(page, "health-report.png")
    assert requested and all(url.startswith("file://") for url in requested), requested


def test_output_dir_takes_the_reports_and_the_history_stays(health_mesh: Built, tmp_path: Path) -> None:
    history = health_mesh.root / "health/history.duckdb"
    with duckdb.connect(str(history), read_only=True) as con:
        before = con.execute("select count(*) from collections").fetchone()[0]
    result = run_mesh("health", "-o", str(tmp_path / "out"), "--fail-on", "never", cwd=health_mesh.root)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json", "report.md"]
    with duckdb.connect(str(history), read_only=True) as con:
        assert con.execute("select count(*) from collections").fetchone()[0] == before + 1


def test_a_history_of_schema_version_1_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    from mesh_tools.health.history import SCHEMA_VERSION, TABLES, open_history

    path = tmp_path / "history.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create table history_meta (key varchar primary key, value varchar)")
    con.execute("insert into history_meta values ('schema_version', '1')")
    v1 = [(c, t) for c, t in TABLES["runs"] if c != "models_reused"]
    con.execute(f"create table runs ({', '.join(f'{c} {t}' for c, t in v1)})")
    con.execute("insert into runs (domain, invocation_id, status, models) values ('sales', 'i1', 'success', 7)")
    con.close()
    with open_history(path) as history:
        rows = history.query("select domain, models, models_reused from runs")
        history.insert("runs", [{"domain": "sales", "invocation_id": "i2", "status": "success", "models_reused": 5}])
        reused = history.query("select models_reused from runs where invocation_id = 'i2'")
    assert rows == [{"domain": "sales", "models": 7, "models_reused": 0}]
    assert reused == [{"models_reused": 5}]
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("select value from history_meta").fetchone() == (str(SCHEMA_VERSION),)
    con.close()


def test_runs_left_for_the_next_collection_never_grow_without_bound(tmp_path: Path) -> None:
    from mesh_tools.core.mesh import load_mesh
    from mesh_tools.health.inputs import RunEvent
    from mesh_tools.health.pending import KEEP_BYTES, KEEP_LINES, PENDING, defer_runs, pending_runs

    mesh = load_mesh(copy_fixture("state_mesh", tmp_path))
    events = [RunEvent(name, "success", (), 0.01, None, 3) for name in ("shop", "report")]
    start = datetime.now(UTC)
    sizes = [0, 0]
    while sizes[-1] >= sizes[-2]:  # until the file shrinks: once it passed its bound
        defer_runs(mesh, events, start + timedelta(minutes=len(sizes) - 2))
        sizes.append((mesh.health_path / PENDING).stat().st_size)
        assert len(sizes) < 10_000, "the file never shrank"
    writes = len(sizes) - 2
    kept = pending_runs(mesh)
    assert (mesh.health_path / PENDING).stat().st_size < KEEP_BYTES
    assert len(kept) == KEEP_LINES and kept[-1][2] == start + timedelta(minutes=writes - 1)  # the newest stay
