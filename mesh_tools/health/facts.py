"""The history as the monitors read it (queried once per report), and the statuses they write back."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mesh_tools.core.config import HealthConfig
from mesh_tools.health.history import History
from mesh_tools.health.inputs import Collection
from mesh_tools.health.report import HealthReport, Point
from mesh_tools.model.nodes import Node, package_of

TREND_POINTS = 60


@dataclass
class Facts:
    """Everything the monitors read from the history, queried once per report."""

    last_success: dict[str, datetime] = field(default_factory=dict)  # model, seed or snapshot uid -> completed_at
    last_status: dict[str, str] = field(default_factory=dict)  # model, seed or snapshot uid -> its latest status
    # model, seed or snapshot uid -> (completed_at, invocation_id) of the last run that built it (not skipped)
    rebuilt: dict[str, tuple[datetime | None, str | None]] = field(default_factory=dict)
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)  # test uid -> its latest result, whatever the run
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # domain -> latest run
    domain_success: dict[str, datetime] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # source uid -> latest freshness
    measurements: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))  # newest first
    findings: list[dict[str, Any]] = field(default_factory=list)
    published: dict[str, datetime] = field(default_factory=dict)  # product -> last publish
    refused: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    compliance: dict[str, tuple[int, int]] = field(default_factory=dict)  # product -> (within, evaluations)
    score_trend: dict[str, list[Point]] = field(default_factory=lambda: defaultdict(list))
    elapsed_trend: dict[str, list[Point]] = field(default_factory=lambda: defaultdict(list))
    failed_trend: dict[str, list[Point]] = field(default_factory=lambda: defaultdict(list))
    collections: int = 0
    since: datetime | None = None

    def test_result(self, test: Node) -> dict[str, Any] | None:
        """The latest result of ``test`` while it still applies: None when it never ran, or when a model, seed or
        snapshot of its own project it reads was built in a later run (the data changed and the test did not run
        on it: a state-aware build runs the tests of what it rebuilds, so a test it reused judged unchanged data)."""
        result = self.tests.get(test.unique_id)
        if result is None:
            return None
        at, invocation = result["completed_at"], result["invocation_id"]
        for uid in test.depends_on:
            if package_of(uid) != test.package or uid not in self.rebuilt:
                continue  # an upstream product's stub reads a fixed release: its producer's builds change nothing
            built_at, built_in = self.rebuilt[uid]
            # same run: its data tests ran after it (its unit tests before it, on the same code)
            if built_in != invocation and (at is None or built_at is None or built_at > at):
                return None
        return result

    def left_behind(self, domain: str, key: str, uid: str) -> dict[str, Any] | None:
        """The refused publish that left the product behind, if one did: the first refusal of its domain since
        the product's last publish or confirmation, when the product was built since then (its rows are not the
        release consumers read). A product a refused build did not rebuild still holds its release's rows, and
        the next build that passes the gate rebuilds and publishes a product it left behind
        (state/observe.py ``_unreleased``): then a publish or a confirmation follows that build."""
        published, built = self.published.get(key), self.last_success.get(uid)
        if published is not None and (built is None or built <= published):
            return None
        return next((r for r in self.refused.get(domain, []) if published is None or r["event_at"] > published), None)

    def current_release(self, key: str) -> str | None:
        """The release a product was last measured from."""
        return next((m["release_id"] for m in self.measurements.get(key, []) if m["release_id"]), None)


def read_facts(history: History, collection: Collection, config: HealthConfig, now: datetime) -> Facts:
    facts = Facts()
    q = history.query
    for row in q(
        "select unique_id, max(completed_at) as at from node_results "
        "where resource_type in ('model', 'seed', 'snapshot') and status = 'success' group by 1"
    ):
        facts.last_success[row["unique_id"]] = row["at"]
    for row in q(
        "select unique_id, status from node_results where resource_type in ('model', 'seed', 'snapshot') "
        "qualify row_number() over (partition by unique_id order by completed_at desc) = 1"
    ):
        facts.last_status[row["unique_id"]] = row["status"]
    for row in q(
        "select unique_id, completed_at, invocation_id from node_results "
        "where resource_type in ('model', 'seed', 'snapshot') and status <> 'skipped' "
        "qualify row_number() over (partition by unique_id order by completed_at desc nulls last) = 1"
    ):
        facts.rebuilt[row["unique_id"]] = (row["completed_at"], row["invocation_id"])
    for row in q(
        "select unique_id, status, message, completed_at, invocation_id from node_results "
        "where resource_type in ('test', 'unit_test') "
        "qualify row_number() over (partition by unique_id order by completed_at desc nulls last) = 1"
    ):
        facts.tests[row["unique_id"]] = row
    for row in q("select * from runs qualify row_number() over (partition by domain order by finished_at desc) = 1"):
        facts.runs[row["domain"]] = row
    for row in q("select domain, max(finished_at) as at from runs where status = 'success' group by 1"):
        facts.domain_success[row["domain"]] = row["at"]
    for row in q(
        "select * from source_freshness "
        "qualify row_number() over (partition by unique_id order by snapshotted_at desc) = 1"
    ):
        facts.sources[row["unique_id"]] = row
    keep = max(config.volume_window, 1) + 1
    for row in q(
        "select product, measured_at, rows, key_columns, key_null_rate, schema_hash, columns, release_id "
        "from measurements qualify row_number() over (partition by product order by measured_at desc) <= ? "
        "order by product, measured_at desc",
        [max(keep, TREND_POINTS)],
    ):
        facts.measurements[row["product"]].append(row)
    facts.findings = q("select * from findings where collection_id = ?", [collection.collection_id])
    # a confirmation (a rebuild with the same rows, early cutoff) is as good as a publish: the release is current
    for row in q("select product, max(event_at) as at from publications where event in ('publish', 'confirm') "
                 "group by 1"):  # fmt: skip
        facts.published[row["product"]] = row["at"]
    for row in q("select * from publications where event = 'refused' order by event_at"):
        facts.refused[row["domain"]].append(row)
    window = now - timedelta(days=config.slo_window_days)
    for row in q(
        "select product, count(*) filter (where slo_ok) as ok, count(*) as n from product_status "
        "where slo_hours is not null and evaluated_at >= ? group by 1",
        [window],
    ):
        facts.compliance[row["product"]] = (int(row["ok"]), int(row["n"]))
    for row in q(
        "select product, evaluated_at, score from product_status "
        "qualify row_number() over (partition by product order by evaluated_at desc) <= ? order by evaluated_at",
        [TREND_POINTS],
    ):
        facts.score_trend[row["product"]].append(Point(at=row["evaluated_at"], value=row["score"]))
    for row in q(
        "select domain, finished_at, elapsed_s, tests_failed + models_failed as failed from runs "
        "qualify row_number() over (partition by domain order by finished_at desc) <= ? order by finished_at",
        [TREND_POINTS],
    ):
        facts.elapsed_trend[row["domain"]].append(Point(at=row["finished_at"], value=row["elapsed_s"] or 0))
        facts.failed_trend[row["domain"]].append(Point(at=row["finished_at"], value=row["failed"] or 0))
    info = q("select count(*) as n, min(collected_at) as since from collections")[0]
    facts.collections, facts.since = int(info["n"]), info["since"]
    return facts


def streaks(history: History, uids: list[str]) -> dict[str, tuple[int, datetime | None]]:
    """For each test: how many of its latest runs failed in a row, and since when."""
    if not uids:
        return {}
    rows = history.query(
        "select unique_id, status, completed_at from node_results where unique_id in (select unnest(?)) "
        "order by unique_id, completed_at desc",
        [uids],
    )
    found: dict[str, tuple[int, datetime | None]] = {}
    broken: set[str] = set()
    for row in rows:
        uid = row["unique_id"]
        if uid in broken:
            continue
        if row["status"] in ("fail", "error"):
            count, _ = found.get(uid, (0, None))
            found[uid] = (count + 1, row["completed_at"])
        else:
            broken.add(uid)
    return found


def remember(history: History, report: HealthReport) -> None:
    """Store every product's and domain's status (the trends and SLO compliance of later reports)."""
    cid, at = report.collection_id, report.generated_at
    history.insert(
        "product_status",
        [
            {
                "collection_id": cid,
                "evaluated_at": at,
                "domain": p.domain,
                "product": p.product,
                "status": p.status,
                "score": p.score,
                "age_hours": p.freshness.age_hours,
                "slo_hours": p.freshness.slo_hours,
                "slo_ok": p.freshness.within_slo,
                "problems": len(p.problems),
            }
            for p in report.products
        ],
    )
    history.insert(
        "domain_status",
        [
            {"collection_id": cid, "evaluated_at": at, "domain": d.domain, "status": d.status, "score": d.score}
            for d in report.domains
        ],
    )
    for product in report.products:
        product.score_trend.append(Point(at=at, value=product.score))
