"""Judge every domain and data product from the history and the last collection.

Monitors: the last run (model errors, contract failures, skipped products) and tests with failure
streaks (``results``), source freshness and freshness against each product's SLO (``freshness``),
volume against the band its history predicts and schema changes (``volume``), governance findings
and refused publications (here); then impact (``impact``): every product downstream of a failing
or stale one, across domains, is at risk and its owner named; then scores (``scoring``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mesh_tools.core.config import HealthConfig
from mesh_tools.core.errors import MeshError
from mesh_tools.core.mesh import Mesh
from mesh_tools.health.common import date, label
from mesh_tools.health.facts import Facts, read_facts, remember
from mesh_tools.health.freshness import judge_slo, judge_sources, product_freshness, sources_of
from mesh_tools.health.history import History
from mesh_tools.health.impact import impact
from mesh_tools.health.inputs import Collection, DomainArtifacts
from mesh_tools.health.report import (
    RANK,
    DomainHealth,
    HealthReport,
    HistoryInfo,
    Kind,
    LastRun,
    Point,
    Problem,
    ProductHealth,
    Status,
    worst,
)
from mesh_tools.health.results import (
    TestIndex,
    apply_streaks,
    domain_only_problems,
    domain_tests,
    judge_build,
    judge_tests,
)
from mesh_tools.health.scoring import counts, domain_score, score, slo_compliance
from mesh_tools.health.volume import judge_volume
from mesh_tools.model.nodes import Node, stub_id

if TYPE_CHECKING:
    from mesh_tools.store.verify import Checked, Verifier


class _Judge:
    """Builds the report for one collection."""

    def __init__(self, mesh: Mesh, history: History, collection: Collection, config: HealthConfig, now: datetime):
        self.mesh, self.history, self.collection, self.config, self.now = mesh, history, collection, config, now
        self.facts: Facts = read_facts(history, collection, config, now)
        self.children: dict[str, set[str]] = defaultdict(set)
        self.products: dict[str, str] = {}  # product uid -> its domain
        self.owner_of: dict[str, str] = {}  # product uid -> owner
        self.tests = TestIndex()
        self._verifier: Verifier | None = None  # one download budget for the whole report
        self.failing_tests: list[str] = []
        for name, art in collection.domains.items():
            if art.manifest is None:
                continue
            for uid in art.manifest.nodes:
                self.children[uid].update(art.manifest.children(uid))
            for node in art.manifest.products():
                self.products[node.unique_id] = name
                self.owner_of[node.unique_id] = art.manifest.owner_of(node) or self.domain_owner(name)
        for uid in self.products:  # a shared seed or snapshot is read through its consumers' stub models
            if stub_id(uid) != uid:
                self.children[uid] |= self.children.get(stub_id(uid), set())

    def _check_release(self, domain: str, node: Node) -> tuple[str | None, Checked | None]:
        """Why the product's current release cannot be read (a dangling pointer, a missing, partial or
        altered release: consumers would fail on it, so it is never reported as healthy), and how far its
        bytes were checked (``store.verify``: hashed as consumers hash them, or "unverified" and why)."""
        from mesh_tools.store.exchange import open_exchange
        from mesh_tools.store.verify import Verifier

        try:
            if self._verifier is None:
                self._verifier = Verifier(open_exchange(self.mesh))
            return None, self._verifier.current(domain, node.name, node.version)
        except MeshError as exc:
            return str(exc), None

    def last_build(self, name: str, art: DomainArtifacts) -> set[str]:
        """The dbt invocations of the domain's last build: none when it ran nothing (it reused every model) or
        failed before dbt ran; its earlier stages too when it was staged."""
        run = self.facts.runs.get(name)
        if run is None or run["invocation_id"] != art.invocation_id:
            return set()
        return {run["invocation_id"], *art.stages}

    def domain_owner(self, name: str) -> str:
        owner = self.mesh.domains[name].owner
        return owner.label() if owner else ""

    # -- products
    def judge_product(self, name: str, art: DomainArtifacts, node: Node) -> ProductHealth:
        assert art.manifest is not None
        uid, key = node.unique_id, node.key
        owner = self.owner_of[uid]
        results = art.run_results.by_id if art.run_results is not None else {}
        problems: list[Problem] = []

        def problem(kind: Kind, status: Status, message: str, **extra: Any) -> None:
            problems.append(
                Problem(kind=kind, status=status, domain=name, product=key, message=message, owner=owner, **extra)
            )

        result = results.get(uid)
        contract_ok = judge_build(node, result, problem)
        broken, checked = self._check_release(name, node)
        if broken:
            problem("release_broken", "failing", broken)
        tests = judge_tests(self.tests.of(name, art.manifest, uid), self.facts, self.last_build(name, art), problem,
                            self.failing_tests)  # fmt: skip
        sources = sources_of(art.manifest, name, uid, self.facts)
        judge_sources(sources, self.facts, problem)
        freshness = product_freshness(key, node, self.facts, self.now, sources)
        judge_slo(freshness, problem)
        if uid not in self.facts.last_success and result is None:
            problem("not_built", "failing", "never built successfully", node=uid)
        volume = judge_volume(key, node, art.manifest, self.facts, self.config, self.now, problem)
        for finding in self.facts.findings:
            if finding["domain"] == name and finding["node"] in (uid, node.name, label(uid)):
                if finding["severity"] in ("error", "warn"):
                    # an error finding fails a product only where governance is enforced (it then blocks its
                    # release); in an advisory mesh the product works and the finding is a warning
                    blocking = finding["severity"] == "error" and self.mesh.governance.enforce
                    status: Status = "failing" if blocking else "warning"
                    problem("governance", status, f"{finding['code']} {finding['rule']}: {finding['message']}")
        published = self.facts.published.get(key)
        refusal = self.facts.left_behind(name, key, uid)
        if refusal is not None:
            detail = json.loads(refusal["detail"] or "{}")
            problem("publish", "warning", f"not published since {date(published)}: {detail.get('reason', '')}",
                    since=refusal["event_at"])  # fmt: skip
        return ProductHealth(
            product=key,
            domain=name,
            model=node.name,
            version=node.version,
            node=uid,
            owner=owner,
            description=node.description,
            status=worst([p.status for p in problems]),
            score=100,
            last_success=self.facts.last_success.get(uid),
            contract_enforced=node.contract_enforced,
            contract_ok=contract_ok,
            tests=tests,
            freshness=freshness,
            volume=volume,
            current_release=self.facts.current_release(key),
            release_verified=checked.verified if checked else None,
            release_unverified=checked.unverified if checked else None,
            published_at=published,
            problems=problems,
            rows_trend=[
                Point(at=m["measured_at"], value=m["rows"]) for m in reversed(self.facts.measurements.get(key, []))
            ],
            score_trend=list(self.facts.score_trend.get(key, [])),
        )

    # -- the whole report
    def report(self) -> HealthReport:
        products: dict[str, ProductHealth] = {}
        domains: list[DomainHealth] = []
        domain_problems: dict[str, list[Problem]] = defaultdict(list)
        for name, art in self.collection.domains.items():
            if art.no_data is None and art.manifest is not None:
                for node in sorted(art.manifest.products(), key=lambda n: n.unique_id):
                    judged = self.judge_product(name, art, node)
                    products[judged.node] = judged
                own = {uid for uid, domain in self.products.items() if domain == name}
                domain_problems[name].extend(
                    domain_only_problems(name, art, own, self.domain_owner(name), self.facts, self.failing_tests)
                )
        every = [p for product in products.values() for p in product.problems]
        every += [p for problems in domain_problems.values() for p in problems]
        apply_streaks(self.history, self.failing_tests, every, self.config)
        impact(products, self.children)
        for product in products.values():
            product.status = worst([p.status for p in product.problems])
            product.score = score(product.problems)
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
            products_by_status=counts([p.status for p in ordered]),
            domains_by_status=counts([d.status for d in domains]),
            domains=domains,
            products=ordered,
            problems=everything,
            history=HistoryInfo(
                path=str(self.history.path), collections=self.facts.collections, since=self.facts.since
            ),
            notes=list(self.collection.notes),
        )
        remember(self.history, report)
        return report

    def _domain(
        self, name: str, art: DomainArtifacts, products: list[ProductHealth], own: list[Problem]
    ) -> DomainHealth:
        domain = self.mesh.domains[name]
        base: dict[str, Any] = {
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
        last_run = LastRun(**{k: run[k] for k in LastRun.model_fields if k in run}) if run else None
        if art.no_data is not None:
            # not built yet: no data; an artifact that is there but unreadable: failing (its build is broken)
            kind: Kind = "corrupt_artifact" if art.corrupt else "no_data"
            status: Status = "failing" if art.corrupt else "no_data"
            problem = Problem(kind=kind, status=status, domain=name, owner=base["owner"], message=art.no_data)
            return DomainHealth(**base, status=status, score=0, reason=art.no_data, last_run=last_run,
                                problems=[problem])  # fmt: skip
        problems = own + [p for product in products for p in product.problems]
        assert art.manifest is not None
        tests = domain_tests(name, art.manifest, self.facts, self.last_build(name, art))
        return DomainHealth(**base, status=worst([p.status for p in problems]), score=domain_score(products, own),
                            last_run=last_run, tests=tests, problems=problems, products=[p.product for p in products],
                            slo_compliance=slo_compliance(products))  # fmt: skip


def evaluate(mesh: Mesh, history: History, collection: Collection, now: datetime | None = None) -> HealthReport:
    """Judge every domain and product, remember the statuses in the history, and return the report."""
    judge = _Judge(mesh, history, collection, mesh.health, now or collection.collected_at)
    return judge.report()
