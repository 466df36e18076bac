"""The monitors over a real history, written by the collector's own functions from real artifacts of health_mesh:
which test results still apply after a state-aware build, and when a refused publish is over."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mesh_tools.core.config import HealthConfig
from mesh_tools.health import results
from mesh_tools.health.collect import _node_rows
from mesh_tools.health.facts import read_facts
from mesh_tools.health.history import open_history
from mesh_tools.health.inputs import Collection, DomainArtifacts
from mesh_tools.model.manifest import Manifest, RunResults
from tests.helpers import Built

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def _run(folder: Path, invocation: str, at: datetime, results: list[tuple[str, str]]) -> RunResults:
    """A dbt build's run_results.json that ran ``results`` (unique_id, status) in that order from ``at``."""
    rows = [
        {"unique_id": uid, "status": status, "message": None, "execution_time": 0.1,
         "timing": [{"name": "execute", "completed_at": (at + timedelta(seconds=i + 1)).isoformat()}]}
        for i, (uid, status) in enumerate(results)
    ]  # fmt: skip
    path = folder / f"{invocation}.json"
    metadata = {"invocation_id": invocation, "generated_at": (at + timedelta(minutes=1)).isoformat()}
    path.write_text(json.dumps({"metadata": metadata, "args": {"which": "build"}, "results": rows}))
    results_read = RunResults.read(path)
    assert results_read is not None
    return results_read


def test_a_reused_test_keeps_its_result_until_what_it_reads_is_rebuilt(health_mesh: Built, tmp_path: Path) -> None:
    manifest = Manifest.read(health_mesh.root / "finance/target/manifest.json", "finance", "")
    index = results.TestIndex()
    node = next(n for n in manifest.products() if len(index.of("finance", manifest, n.unique_id)) >= 2)
    tests = index.of("finance", manifest, node.unique_id)
    models = [
        u for u in manifest.nodes if manifest.nodes[u].resource_type == "model" and u.startswith("model.finance.")
    ]
    with open_history(tmp_path / "history.duckdb") as history:

        def collect(invocation: str, at: datetime, results: list[tuple[str, str]]) -> None:
            art = DomainArtifacts("finance", manifest, _run(tmp_path, invocation, at, results))
            history.insert("node_results", _node_rows(invocation, "finance", art))

        def judged(current: set[str]) -> tuple[Any, list[str]]:
            facts = read_facts(history, Collection("c", T0, {}), HealthConfig(), T0 + timedelta(days=1))
            problems: list[str] = []
            found = results.judge_tests(
                tests, facts, current, lambda kind, status, message, **_: problems.append(message), []
            )
            return found, problems

        # a full build: every model, then every test passes
        collect("full", T0, [(u, "success") for u in models] + [(t.unique_id, "pass") for t in tests])
        # a state-aware build that rebuilt nothing ran only its one changed test, which fails
        collect("one-test", T0 + timedelta(hours=1), [(tests[0].unique_id, "fail")])
        counted, problems = judged({"one-test"})
        assert (counted.passed, counted.failed, counted.earlier) == (len(tests) - 1, 1, len(tests) - 1)
        assert counted.as_of == T0 + timedelta(seconds=len(models) + 2)
        assert problems == [f"test {tests[0].name} failed: "]
        # a build that reused everything ran no dbt: every figure is from before it, the failure still stands
        counted, problems = judged(set())
        assert (counted.passed, counted.failed, counted.earlier) == (len(tests) - 1, 1, len(tests))
        assert problems == [f"test {tests[0].name} failed in the run of 2026-01-05 07:00 UTC: "]
        # `dbt run` rebuilt the product without its tests: no earlier result applies to the new data
        collect("run-only", T0 + timedelta(hours=2), [(node.unique_id, "success")])
        counted, problems = judged({"run-only"})
        assert (counted.passed, counted.failed, counted.warned, problems) == (0, 0, 0, [])


def test_a_refused_publish_leaves_behind_only_what_it_rebuilt_until_a_publish_or_confirmation(
    health_mesh: Built, tmp_path: Path
) -> None:
    manifest = Manifest.read(health_mesh.root / "finance/target/manifest.json", "finance", "")
    product = next(iter(manifest.products()))
    other = next(u for u, n in manifest.nodes.items() if n.resource_type == "model" and u != product.unique_id)
    with open_history(tmp_path / "history.duckdb") as history:

        def build(invocation: str, at: datetime, built: list[str], event: str) -> None:
            art = DomainArtifacts("finance", manifest, _run(tmp_path, invocation, at, [(u, "success") for u in built]))
            history.insert("node_results", _node_rows(invocation, "finance", art))
            gate = {
                "event_at": at + timedelta(minutes=2),
                "event": event,
                "domain": "finance",
                "invocation_id": invocation,
                "detail": json.dumps({"reason": "error-level governance findings"}),
            }
            history.insert("publications", [{**gate, "product": product.key if event != "refused" else None}])

        def behind() -> dict[str, Any] | None:
            facts = read_facts(history, Collection("c", T0, {}), HealthConfig(), T0 + timedelta(days=1))
            return facts.left_behind("finance", product.key, product.unique_id)

        build("full", T0, [product.unique_id, other], "publish")
        assert behind() is None
        build("refused-other", T0 + timedelta(hours=1), [other], "refused")  # the product's rows are its release's
        assert behind() is None
        build("refused-product", T0 + timedelta(hours=2), [product.unique_id], "refused")
        refusal = behind()
        assert refusal is not None and refusal["invocation_id"] == "refused-other"  # since the first refusal
        build("fixed", T0 + timedelta(hours=3), [product.unique_id], "confirm")  # same rows: confirmed
        assert behind() is None


def test_one_of_anything_is_singular_in_every_rendering(tmp_path: Path) -> None:
    from mesh_tools.health.render import to_html, to_markdown, to_text
    from mesh_tools.health.report import (
        Counts,
        DomainHealth,
        Freshness,
        HealthReport,
        HistoryInfo,
        Problem,
        ProductHealth,
        Volume,
    )
    from mesh_tools.health.results import apply_streaks

    failing = Problem(kind="test_failure", status="failing", domain="sales", product="sales.orders",
                      node="test.sales.t", message="test t failed")  # fmt: skip
    with open_history(tmp_path / "history.duckdb") as history:  # one failed run of test t
        history.insert("node_results", [{"invocation_id": "i", "unique_id": "test.sales.t", "status": "fail",
                                         "completed_at": T0}])  # fmt: skip
        apply_streaks(history, ["test.sales.t"], [failing], HealthConfig(failure_streak=1))
    product = ProductHealth(product="sales.orders", domain="sales", model="orders", node="model.sales.orders",
                            owner="", status="failing", score=50, freshness=Freshness(slo_hours=None, data_as_of=None),
                            volume=Volume(), problems=[failing])  # fmt: skip
    domain = DomainHealth(domain="sales", owner="", status="failing", score=50, products=["sales.orders"])
    report = HealthReport(mesh="m", generated_at=T0, collection_id="c", status="failing",
                          products_by_status=Counts(failing=1), domains_by_status=Counts(failing=1), domains=[domain],
                          products=[product], problems=[failing], history=HistoryInfo(path="h", collections=1))  # fmt: skip
    html = to_html(report)
    for text in (to_text(report), to_markdown(report), html):
        assert "(failing 1 run in a row)" in text
        assert not re.search(r"(?<![\d,.])1 (products|domains|runs|failing runs|collections|data products)\b", text)
    assert all("1 product: " in t and "; 1 domain: " in t for t in (to_text(report), to_markdown(report)))
    assert "1 domain · 1 data product · history of 1 collection since" in html
    assert "1 failing run in a row" in html
    assert (
        '<b id="count-failing">1</b><span class="muted">product · <span id="domains-failing">1</span> domain</span>'
        in html
    )
