"""Judge every domain and data product from the history and the last collection.

Monitors: the last run (model errors, contract failures, skipped products), tests (with failure
streaks), source freshness, freshness against each product's SLO, volume against the band its
history predicts, schema changes, governance findings, refused publications; then impact: every
product downstream of a failing or stale one, across domains, is at risk and its owner named.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mesh_tools.artifacts import owner_label, public_model_nodes
from mesh_tools.core.config import HealthConfig
from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Mesh
from mesh_tools.health.collect import Collection, DomainArtifacts, attached_models
from mesh_tools.health.history import History
from mesh_tools.health.measure import key_columns
from mesh_tools.health.report import (
    RANK,
    Counts,
    DomainHealth,
    Freshness,
    HealthReport,
    HistoryInfo,
    Impacted,
    LastRun,
    Point,
    Problem,
    ProductHealth,
    SourceState,
    Tests,
    Volume,
    worst,
)

PENALTY = {"failing": 60, "stale": 40, "warning": 10, "no_data": 50}
TREND_POINTS = 60


@dataclass
class _Facts:
    """Everything the monitors read from the history, queried once per report."""

    last_success: dict[str, datetime] = field(default_factory=dict)  # model uid -> completed_at
    last_status: dict[str, str] = field(default_factory=dict)  # model uid -> status in its latest run
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


def _facts(history: History, collection: Collection, config: HealthConfig, now: datetime) -> _Facts:
    facts = _Facts()
    q = history.query
    for row in q(
        "select unique_id, max(completed_at) as at from node_results "
        "where resource_type = 'model' and status = 'success' group by 1"
    ):
        facts.last_success[row["unique_id"]] = row["at"]
    for row in q(
        "select unique_id, status from node_results where resource_type = 'model' "
        "qualify row_number() over (partition by unique_id order by completed_at desc) = 1"
    ):
        facts.last_status[row["unique_id"]] = row["status"]
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
    for row in q("select product, max(event_at) as at from publications where event = 'publish' group by 1"):
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


def _streaks(history: History, uids: list[str]) -> dict[str, tuple[int, datetime | None]]:
    """For each test: how many of its latest runs failed in a row, and since when."""
    if not uids:
        return {}
    rows = history.query(
        "select unique_id, status, completed_at from node_results where unique_id in (select unnest(?)) "
        "order by unique_id, completed_at desc",
        [uids],
    )
    streaks: dict[str, tuple[int, datetime | None]] = {}
    broken: set[str] = set()
    for row in rows:
        uid = row["unique_id"]
        if uid in broken:
            continue
        if row["status"] in ("fail", "error"):
            count, _ = streaks.get(uid, (0, None))
            streaks[uid] = (count + 1, row["completed_at"])
        else:
            broken.add(uid)
    return streaks


_HEADER = re.compile(r"^\w+ Error in \w+ \S+ \(.*\)$")


def _first_line(text: str | None, limit: int = 300) -> str:
    """The line of a dbt message that says what went wrong (not its "Runtime Error in model x" header)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    meaningful = [line for line in lines if not _HEADER.match(line)]
    line = (meaningful or lines or [""])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


def _label(uid: str) -> str:
    parts = uid.split(".")
    return ".".join(parts[2:]) if len(parts) > 2 else uid


class _Judge:
    """Builds the report for one collection."""

    def __init__(self, mesh: Mesh, history: History, collection: Collection, config: HealthConfig, now: datetime):
        self.mesh, self.history, self.collection, self.config, self.now = mesh, history, collection, config, now
        self.facts = _facts(history, collection, config, now)
        self.children: dict[str, set[str]] = defaultdict(set)
        self.products: dict[str, tuple[str, dict[str, Any], str]] = {}  # uid -> (domain, node, product key)
        self.owner_of: dict[str, str] = {}  # product uid -> owner
        for name, art in collection.domains.items():
            if art.manifest is None:
                continue
            for parent, kids in (art.manifest.get("child_map") or {}).items():
                self.children[parent].update(kids)
            groups = {g.get("name"): g for g in (art.manifest.get("groups") or {}).values()}
            for node in public_model_nodes(name, art.manifest):
                key = _product_key(name, node)
                self.products[node["unique_id"]] = (name, node, key)
                group = groups.get(node.get("group")) or {}
                self.owner_of[node["unique_id"]] = owner_label(group.get("owner")) or self.domain_owner(name)

    def _broken_release(self, domain: str, node: dict[str, Any]) -> str | None:
        """Why the product's current release cannot be read (a dangling pointer, a missing, partial or
        altered release), or None: consumers would fail on it, so it is never reported as healthy."""
        from mesh_tools.store.exchange import Exchange

        version = None if node.get("version") is None else str(node["version"])
        try:
            Exchange(self.mesh.exchange_path).current(domain, node["name"], version)
        except MeshError as exc:
            return str(exc)
        return None

    def domain_owner(self, name: str) -> str:
        owner = self.mesh.domains[name].owner
        return owner.label() if owner else ""

    # -- products
    def judge_product(self, name: str, art: DomainArtifacts, node: dict[str, Any], key: str) -> ProductHealth:
        uid = node["unique_id"]
        owner = self.owner_of[uid]
        results = {r.get("unique_id"): r for r in (art.run_results or {}).get("results", [])}
        problems: list[Problem] = []

        def problem(kind: str, status: str, message: str, **extra: Any) -> None:
            problems.append(
                Problem(kind=kind, status=status, domain=name, product=key, message=message, owner=owner, **extra)
            )

        contract = (node.get("config") or {}).get("contract") or node.get("contract") or {}
        contract_ok: bool | None = None
        result = results.get(uid)
        if result is not None:
            status, message = result.get("status"), result.get("message") or ""
            if status == "error":
                is_contract = "contract" in message.lower()
                contract_ok = False if is_contract else None
                kind = "contract" if is_contract else "model_error"
                problem(kind, "failing", f"{_label(uid)} failed in the last run: {_first_line(message)}", node=uid)
            elif status == "skipped":
                problem("not_built", "failing", "not built in the last run: a node upstream of it failed", node=uid)
            elif status == "success":
                contract_ok = True if contract.get("enforced") else None
        broken = self._broken_release(name, node)
        if broken:
            problem("release_broken", "failing", broken)
        tests = Tests()
        for test_uid, test in self._tests_of(art, uid):
            tr = results.get(test_uid)
            if tr is None:
                continue
            st = tr.get("status")
            if st == "pass":
                tests.passed += 1
            elif st == "warn":
                tests.warned += 1
                problem("test_failure", "warning", f"test {test.get('name')} warned: {_first_line(tr.get('message'))}",
                        node=test_uid)  # fmt: skip
            elif st in ("fail", "error"):
                tests.failed += 1
                self.failing_tests.append(test_uid)
                problem("test_failure", "failing", f"test {test.get('name')} {st}ed: {_first_line(tr.get('message'))}",
                        node=test_uid)  # fmt: skip
        sources = self._sources_of(art, uid)
        for state in sources:
            if state.status == "error":
                problem("source_freshness", "stale",
                        f"source {_label(state.source)} last loaded {state.age_hours or 0:.1f} h ago "
                        f"(error after {state.error_after_hours:g} h)", node=state.source)  # fmt: skip
            elif state.status == "warn":
                problem("source_freshness", "warning",
                        f"source {_label(state.source)} last loaded {state.age_hours or 0:.1f} h ago "
                        f"(warn after {state.warn_after_hours:g} h)", node=state.source)  # fmt: skip
            elif state.status == "runtime error":
                problem("source_freshness", "warning", f"freshness of source {_label(state.source)} could not be "
                        f"checked: {_first_line(self.facts.sources[state.source].get('message'))}",
                        node=state.source)  # fmt: skip
        freshness = self._freshness(key, node, uid, sources)
        if freshness.within_slo is False:
            problem("freshness_slo", "stale", f"data is {freshness.age_hours:.1f} h old; its SLO is "
                    f"{freshness.slo_hours:g} h", since=_since(freshness))  # fmt: skip
        if uid not in self.facts.last_success and result is None:
            problem("not_built", "failing", "never built successfully", node=uid)
        volume = self._volume(key, node, art, problem)
        for finding in self.facts.findings:
            if finding["domain"] == name and finding["node"] in (uid, node["name"], _label(uid)):
                if finding["severity"] in ("error", "warn"):
                    # an error finding fails a product only where governance is enforced (it then blocks its
                    # release); in an advisory mesh the product works and the finding is a warning
                    blocking = finding["severity"] == "error" and self.mesh.governance.enforce
                    status = "failing" if blocking else "warning"
                    problem("governance", status, f"{finding['code']} {finding['rule']}: {finding['message']}")
        published = self.facts.published.get(key)
        for refusal in self.facts.refused.get(name, []):
            if published is None or refusal["event_at"] > published:
                detail = json.loads(refusal["detail"] or "{}")
                problem("publish", "warning", f"not published since {_date(published)}: {detail.get('reason', '')}",
                        since=refusal["event_at"])  # fmt: skip
                break
        release = self._current_release(key)
        return ProductHealth(
            product=key,
            domain=name,
            model=node["name"],
            version=None if node.get("version") is None else str(node["version"]),
            node=uid,
            owner=owner,
            description=node.get("description") or "",
            status=worst([p.status for p in problems]),
            score=100,
            last_success=self.facts.last_success.get(uid),
            contract_enforced=bool(contract.get("enforced")),
            contract_ok=contract_ok,
            tests=tests,
            freshness=freshness,
            volume=volume,
            current_release=release,
            published_at=published,
            problems=problems,
            rows_trend=[
                Point(at=m["measured_at"], value=m["rows"]) for m in reversed(self.facts.measurements.get(key, []))
            ],
            score_trend=list(self.facts.score_trend.get(key, [])),
        )

    def _tests_of(self, art: DomainArtifacts, uid: str) -> list[tuple[str, dict[str, Any]]]:
        index = self._test_index.get(art.name)
        if index is None:
            index = defaultdict(list)
            manifest = art.manifest or {}
            for test_uid, test in {**manifest.get("nodes", {}), **manifest.get("unit_tests", {})}.items():
                if test.get("resource_type") in ("test", "unit_test"):
                    for model in attached_models(test):
                        index[model].append((test_uid, test))
            self._test_index[art.name] = index
        return index.get(uid, [])

    def _sources_of(self, art: DomainArtifacts, uid: str) -> list[SourceState]:
        parents = (art.manifest or {}).get("parent_map") or {}
        seen, queue, found = {uid}, deque([uid]), []
        while queue:
            for parent in parents.get(queue.popleft(), []):
                if parent in seen:
                    continue
                seen.add(parent)
                if parent.startswith("source."):
                    row = self.facts.sources.get(parent)
                    if row:
                        found.append(
                            SourceState(
                                source=parent,
                                status=row["status"] or "",
                                max_loaded_at=row["max_loaded_at"],
                                age_hours=None if row["age_hours"] is None else round(row["age_hours"], 2),
                                warn_after_hours=row["warn_after_hours"],
                                error_after_hours=row["error_after_hours"],
                            )
                        )
                elif parent.startswith("model.") and parent.split(".")[1] == art.name:
                    queue.append(parent)
        return sorted(found, key=lambda s: s.source)

    def _freshness(self, key: str, node: dict[str, Any], uid: str, sources: list[SourceState]) -> Freshness:
        meta = {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}
        slo = meta.get("freshness_slo_hours")
        slo_hours = float(slo) if isinstance(slo, (int, float)) and not isinstance(slo, bool) else None
        times = [self.facts.last_success[uid]] if uid in self.facts.last_success else []
        times += [s.max_loaded_at for s in sources if s.max_loaded_at is not None]
        as_of = min(times) if times else None
        age = _hours(self.now - as_of) if as_of else None
        within = None if slo_hours is None or age is None else age <= slo_hours
        ok, n = self.facts.compliance.get(key, (0, 0))
        if within is not None:
            ok, n = ok + int(within), n + 1
        return Freshness(
            slo_hours=slo_hours,
            data_as_of=as_of,
            age_hours=age,
            within_slo=within,
            slo_compliance=round(ok / n, 4) if n else None,
            sources=sources,
        )

    def _volume(self, key: str, node: dict[str, Any], art: DomainArtifacts, problem: Any) -> Volume:
        measured = self.facts.measurements.get(key, [])
        if not measured:
            return Volume(key_columns=key_columns(node, art.manifest or {}))
        latest, earlier = measured[0], measured[1 : 1 + self.config.volume_window]
        volume = Volume(
            rows=latest["rows"],
            history=len(earlier),
            key_columns=[k for k in (latest["key_columns"] or "").split(",") if k],
            key_null_rate=latest["key_null_rate"],
            schema_hash=latest["schema_hash"],
        )
        if len(earlier) >= self.config.volume_min_history:
            counts = [m["rows"] for m in earlier]
            median = statistics.median(counts)
            mad = statistics.median(abs(c - median) for c in counts)
            spread = max(self.config.volume_tolerance * median, 3 * 1.4826 * mad)
            volume.expected_low, volume.expected_high = max(0.0, median - spread), median + spread
            rows = latest["rows"]
            if rows == 0 and median > 0:
                problem("volume", "failing", f"empty: 0 rows where {median:,.0f} are usual")
            elif not volume.expected_low <= rows <= volume.expected_high:
                change = (rows - median) / median * 100 if median else 0.0
                problem("volume", "warning", f"row count {rows:,} is outside the expected "
                        f"{volume.expected_low:,.0f}–{volume.expected_high:,.0f} ({change:+.0f}% against the median "
                        f"of the last {len(counts)} measurements)", since=latest["measured_at"])  # fmt: skip
        if latest["key_null_rate"]:
            problem("volume", "warning", f"key column(s) {latest['key_columns']} hold nulls "
                    f"({latest['key_null_rate']:.1%} of rows)")  # fmt: skip
        changed = next(
            (i for i in range(len(measured) - 1) if measured[i]["schema_hash"] != measured[i + 1]["schema_hash"]), None
        )
        if changed is not None and all(m["schema_hash"] == latest["schema_hash"] for m in measured[:changed]):
            at = measured[changed]["measured_at"]
            if at >= self.now - timedelta(hours=self.config.schema_change_hours):
                diff = _schema_diff(measured[changed + 1]["columns"], measured[changed]["columns"])
                problem("schema_change", "warning", f"schema changed: {diff}", since=at)
        return volume

    def _current_release(self, key: str) -> str | None:
        measured = self.facts.measurements.get(key, [])
        return next((m["release_id"] for m in measured if m["release_id"]), None)

    # -- the whole report
    def report(self) -> HealthReport:
        self._test_index: dict[str, dict[str, list[tuple[str, dict[str, Any]]]]] = {}
        self.failing_tests: list[str] = []
        products: dict[str, ProductHealth] = {}
        domains: list[DomainHealth] = []
        domain_problems: dict[str, list[Problem]] = defaultdict(list)
        for name, art in self.collection.domains.items():
            if art.no_data is None:
                for node in sorted(public_model_nodes(name, art.manifest or {}), key=lambda n: n["unique_id"]):
                    judged = self.judge_product(name, art, node, _product_key(name, node))
                    products[judged.node] = judged
                domain_problems[name].extend(self._domain_only_problems(name, art))
        self._apply_streaks(list(products.values()), domain_problems)
        self._impact(products)
        for product in products.values():
            product.status = worst([p.status for p in product.problems])
            product.score = _score(product.problems)
        for name, art in self.collection.domains.items():
            domains.append(self._domain(name, art, [p for p in products.values() if p.domain == name],
                                        domain_problems[name]))  # fmt: skip
        everything = [p for d in domains for p in d.problems]
        everything.sort(key=lambda p: (-RANK[p.status], p.domain, p.product or "", p.message))
        ordered = sorted(products.values(), key=lambda p: (list(self.mesh.domains).index(p.domain), p.product))
        report = HealthReport(
            mesh=self.mesh.name,
            generated_at=self.now,
            collection_id=self.collection.collection_id,
            status=worst([p.status for p in ordered] + [d.status for d in domains]),
            products_by_status=_counts([p.status for p in ordered]),
            domains_by_status=_counts([d.status for d in domains]),
            domains=domains,
            products=ordered,
            problems=everything,
            history=HistoryInfo(
                path=str(self.history.path), collections=self.facts.collections, since=self.facts.since
            ),
            notes=list(self.collection.notes),
        )
        self._remember(report)
        return report

    def _domain_only_problems(self, name: str, art: DomainArtifacts) -> list[Problem]:
        """Failures on nodes that are not a product's: staging models, their tests, the run itself."""
        owner = self.domain_owner(name)
        problems = []
        product_uids = {uid for uid, (d, _, _) in self.products.items() if d == name}
        nodes = {**(art.manifest or {}).get("nodes", {}), **(art.manifest or {}).get("unit_tests", {})}
        for result in (art.run_results or {}).get("results", []):
            uid = str(result.get("unique_id", ""))
            kind, _, rest = uid.partition(".")
            if not rest.startswith(name + ".") or uid in product_uids:
                continue
            status = result.get("status")
            node = nodes.get(uid, {})
            if kind in ("test", "unit_test") and set(attached_models(node)) & product_uids:
                continue  # judged with its product
            if status in ("error", "fail"):
                if kind in ("test", "unit_test"):
                    self.failing_tests.append(uid)
                is_test = kind in ("test", "unit_test")
                label = f"{'test' if is_test else kind} {node.get('name') or _label(uid)}"
                message = f"{label} {status}ed: {_first_line(result.get('message'))}"
                kind_name = "test_failure" if is_test else "model_error"
                problems.append(
                    Problem(kind=kind_name, status="failing", domain=name, node=uid, owner=owner, message=message)
                )
        if art.stale:
            problems.append(Problem(kind="stale_artifacts", status="warning", domain=name, owner=owner,
                                    message=f"{art.stale}: this report describes its last build; rebuild it "
                                    f"with `mesh build {name}`"))  # fmt: skip
        run = self.facts.runs.get(name)
        if run and run["status"] == "skipped":
            reasons = "; ".join(json.loads(run["problems"] or "[]")) or "an upstream domain failed"
            problems.append(Problem(kind="upstream", status="warning", domain=name, owner=owner,
                                    message=f"last run skipped: {reasons}", since=run["finished_at"]))  # fmt: skip
        elif run and run["status"] != "success":
            for text in json.loads(run["problems"] or "[]"):
                if not text.startswith(("test ", "model ")):
                    problems.append(Problem(kind="model_error", status="failing", domain=name, owner=owner,
                                            message=f"last run failed: {_first_line(text)}",
                                            since=run["finished_at"]))  # fmt: skip
        return problems

    def _apply_streaks(self, products: list[ProductHealth], domain_problems: dict[str, list[Problem]]) -> None:
        streaks = _streaks(self.history, self.failing_tests)
        every = [p for product in products for p in product.problems] + [
            p for problems in domain_problems.values() for p in problems
        ]
        for problem in every:
            if problem.kind == "test_failure" and problem.node in streaks and problem.status == "failing":
                count, since = streaks[problem.node]
                problem.streak, problem.since = count, since
                if count >= self.config.failure_streak:
                    problem.message += f" (failing {count} runs in a row)"

    def _impact(self, products: dict[str, ProductHealth]) -> None:
        roots = [p for p in products.values() if RANK[worst([x.status for x in p.problems])] >= RANK["stale"]]
        for product in products.values():
            product.consumers = sorted(
                {
                    kid.split(".")[1]
                    for kid in self.children.get(product.node, ())
                    if kid.split(".")[1] != product.domain
                }
            )
        for root in roots:
            status = worst([x.status for x in root.problems])
            seen, queue = {root.node: 0}, deque([root.node])
            impacted: list[Impacted] = []
            while queue:
                uid = queue.popleft()
                for kid in sorted(self.children.get(uid, ())):
                    if kid in seen or not kid.startswith("model."):
                        continue
                    seen[kid] = seen[uid] + 1
                    queue.append(kid)
                    if kid in products:
                        downstream = products[kid]
                        impacted.append(Impacted(product=downstream.product, domain=downstream.domain,
                                                 owner=downstream.owner, distance=seen[kid]))  # fmt: skip
            for problem in root.problems:
                if problem.status in ("failing", "stale"):
                    problem.impact = impacted
            for hit in impacted:
                downstream = next(p for p in products.values() if p.product == hit.product)
                if root.product in downstream.at_risk_from:
                    continue
                downstream.at_risk_from.append(root.product)
                downstream.problems.append(
                    Problem(
                        kind="upstream",
                        status="warning",
                        domain=downstream.domain,
                        product=downstream.product,
                        owner=downstream.owner,
                        message=f"at risk: upstream {root.product} is {status} (owner {root.owner or 'unknown'})",
                    )  # fmt: skip
                )

    def _domain(
        self, name: str, art: DomainArtifacts, products: list[ProductHealth], own: list[Problem]
    ) -> DomainHealth:
        domain = self.mesh.domains[name]
        base = {
            "domain": name,
            "owner": self.domain_owner(name),
            "description": domain.description or "",
            "upstreams": list(domain.upstream_names),
            "notes": list(art.notes),
            "elapsed_trend": self.facts.elapsed_trend.get(name, []),
            "tests_failed_trend": self.facts.failed_trend.get(name, []),
            "last_success": self.facts.domain_success.get(name),
        }
        run = self.facts.runs.get(name)
        last_run = (
            LastRun(**{k: run[k] for k in LastRun.model_fields if k in run}) if run else None
        )  # fmt: skip
        if art.no_data is not None:
            problem = Problem(kind="no_data", status="no_data", domain=name, owner=base["owner"], message=art.no_data)
            return DomainHealth(**base, status="no_data", score=0, reason=art.no_data, last_run=last_run,
                                problems=[problem])  # fmt: skip
        problems = own + [p for product in products for p in product.problems]
        status = worst([p.status for p in problems])
        scores = [p.score for p in products]
        score = round(statistics.mean(scores)) if scores else 100
        score = max(0, score - sum(PENALTY[p.status] // 2 for p in own))
        compliance = [p.freshness.slo_compliance for p in products if p.freshness.slo_compliance is not None]
        return DomainHealth(**base, status=status, score=score, last_run=last_run, problems=problems,
                            products=[p.product for p in products],
                            slo_compliance=round(statistics.mean(compliance), 4) if compliance else None)  # fmt: skip

    def _remember(self, report: HealthReport) -> None:
        cid, at = report.collection_id, report.generated_at
        self.history.insert(
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
        self.history.insert(
            "domain_status",
            [
                {"collection_id": cid, "evaluated_at": at, "domain": d.domain, "status": d.status, "score": d.score}
                for d in report.domains
            ],
        )
        for product in report.products:
            product.score_trend.append(Point(at=at, value=product.score))


def _product_key(domain: str, node: dict[str, Any]) -> str:
    from mesh_tools.model.nodes import product_key

    return product_key(domain, node["name"], None if node.get("version") is None else str(node["version"]))


def _since(freshness: Freshness) -> datetime | None:
    if freshness.data_as_of is None or freshness.slo_hours is None:
        return None
    return freshness.data_as_of + timedelta(hours=freshness.slo_hours)


def _date(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "ever"


def _schema_diff(before: str | None, after: str | None) -> str:
    old = dict(json.loads(before or "[]"))
    new = dict(json.loads(after or "[]"))
    parts = [f"+{c} ({t})" for c, t in new.items() if c not in old]
    parts += [f"-{c}" for c in old if c not in new]
    parts += [f"{c} {old[c]} → {t}" for c, t in new.items() if c in old and old[c] != t]
    return ", ".join(parts) or "column order changed"


def _score(problems: list[Problem]) -> int:
    penalty = 0
    for status in ("failing", "stale", "no_data"):
        if any(p.status == status for p in problems):
            penalty += PENALTY[status]
    penalty += min(30, PENALTY["warning"] * sum(p.status == "warning" for p in problems))
    return max(0, 100 - penalty)


def _counts(statuses: list[str]) -> Counts:
    counts = Counts()
    for status in statuses:
        setattr(counts, status, getattr(counts, status) + 1)
    return counts


def evaluate(mesh: Mesh, history: History, collection: Collection, now: datetime | None = None) -> HealthReport:
    """Judge every domain and product, remember the statuses in the history, and return the report."""
    judge = _Judge(mesh, history, collection, mesh.health, now or collection.collected_at)
    return judge.report()
