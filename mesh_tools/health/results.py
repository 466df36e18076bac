"""The last run's results: a product's model and its tests, failures on the domain's other nodes
(staging models, their tests, the run itself), and test failures in a row."""

from __future__ import annotations

import json
from collections import defaultdict

from mesh_tools.core.config import HealthConfig
from mesh_tools.core.words import counted
from mesh_tools.health.common import Report, date, first_line, label
from mesh_tools.health.facts import Facts, streaks
from mesh_tools.health.history import History
from mesh_tools.health.inputs import DomainArtifacts, attached_models
from mesh_tools.health.report import Kind, Problem, Tests
from mesh_tools.model.manifest import Manifest, NodeResult
from mesh_tools.model.nodes import Node, package_of, resource_type_of


class TestIndex:
    """The tests (data and unit) that judge each model, per domain, indexed on first use."""

    def __init__(self) -> None:
        self._index: dict[str, dict[str, list[Node]]] = {}

    def of(self, domain: str, manifest: Manifest, uid: str) -> list[Node]:
        index = self._index.get(domain)
        if index is None:
            index = defaultdict(list)
            for test in [*manifest.nodes.values(), *manifest.unit_tests.values()]:
                if test.resource_type in ("test", "unit_test"):
                    for model in attached_models(test):
                        index[model].append(test)
            self._index[domain] = index
        return index.get(uid, [])


def judge_build(node: Node, result: NodeResult | None, problem: Report) -> bool | None:
    """The product's model in the last run; whether its contract held (None: not known)."""
    if result is None:
        return None
    uid, message = node.unique_id, result.message or ""
    if result.status == "error":
        is_contract = "contract" in message.lower()
        kind = "contract" if is_contract else "model_error"
        problem(kind, "failing", f"{label(uid)} failed in the last run: {first_line(message)}", node=uid)
        return False if is_contract else None
    if result.status == "skipped":
        problem("not_built", "failing", "not built in the last run: a node upstream of it failed", node=uid)
    elif result.status == "success":
        return True if node.contract_enforced else None
    return None


def judge_tests(tests: list[Node], facts: Facts, current: set[str], problem: Report, failing: list[str]) -> Tests:
    """The product's tests, each by its latest result that still applies (``Facts.test_result``); a result from
    a run that is not one of ``current`` (the domain's last build) is counted as earlier. The failing ones are
    added to ``failing``."""
    counted = Tests()
    for test in tests:
        result = facts.test_result(test)
        if result is None:
            continue
        status, at = result["status"], result["completed_at"]
        earlier = result["invocation_id"] not in current
        counted.count(status, at, earlier)
        when = f" in the run of {date(at)}" if earlier else ""
        if status == "warn":
            problem("test_failure", "warning", f"test {test.name} warned{when}: {first_line(result['message'])}",
                    node=test.unique_id)  # fmt: skip
        elif status in ("fail", "error"):
            failing.append(test.unique_id)
            problem("test_failure", "failing", f"test {test.name} {status}ed{when}: {first_line(result['message'])}",
                    node=test.unique_id)  # fmt: skip
    return counted


def domain_tests(name: str, manifest: Manifest, facts: Facts, current: set[str]) -> Tests:
    """Every test of the domain's own project, counted as ``judge_tests`` counts a product's."""
    counted = Tests()
    for test in [*manifest.nodes.values(), *manifest.unit_tests.values()]:
        if test.resource_type in ("test", "unit_test") and test.package == name:
            result = facts.test_result(test)
            if result is not None:
                counted.count(result["status"], result["completed_at"], result["invocation_id"] not in current)
    return counted


def domain_only_problems(
    name: str, art: DomainArtifacts, products: set[str], owner: str, facts: Facts, failing: list[str]
) -> list[Problem]:
    """Failures on nodes that are not a product's: staging models, their tests, the run itself."""
    problems = []
    manifest, results = art.manifest, art.run_results
    for result in results.results if results is not None else ():
        uid = result.unique_id
        kind = resource_type_of(uid)
        if package_of(uid) != name or uid in products:
            continue
        node = (manifest.nodes.get(uid) or manifest.unit_tests.get(uid)) if manifest is not None else None
        is_test = kind in ("test", "unit_test")
        if is_test and set(attached_models(node)) & products:
            continue  # judged with its product
        if result.status in ("error", "fail"):
            if is_test:
                failing.append(uid)
            what = f"{'test' if is_test else kind} {node.name if node is not None else label(uid)}"
            message = f"{what} {result.status}ed: {first_line(result.message)}"
            kind_name: Kind = "test_failure" if is_test else "model_error"
            problems.append(
                Problem(kind=kind_name, status="failing", domain=name, node=uid, owner=owner, message=message)
            )
    if art.stale:
        problems.append(Problem(kind="stale_artifacts", status="warning", domain=name, owner=owner,
                                message=f"{art.stale}: this report describes its last build; rebuild it "
                                f"with `mesh build {name}`"))  # fmt: skip
    run = facts.runs.get(name)
    if run and run["status"] == "skipped":
        reasons = "; ".join(json.loads(run["problems"] or "[]")) or "an upstream domain failed"
        problems.append(Problem(kind="upstream", status="warning", domain=name, owner=owner,
                                message=f"last run skipped: {reasons}", since=run["finished_at"]))  # fmt: skip
    elif run and run["status"] != "success":
        for text in json.loads(run["problems"] or "[]"):
            if not text.startswith(("test ", "model ")):
                problems.append(Problem(kind="model_error", status="failing", domain=name, owner=owner,
                                        message=f"last run failed: {first_line(text)}",
                                        since=run["finished_at"]))  # fmt: skip
    return problems


def apply_streaks(history: History, failing: list[str], problems: list[Problem], config: HealthConfig) -> None:
    """Mark each failing test's problem with how many runs in a row it has failed, and since when."""
    found = streaks(history, failing)
    for problem in problems:
        if problem.kind == "test_failure" and problem.node in found and problem.status == "failing":
            count, since = found[problem.node]
            problem.streak, problem.since = count, since
            if count >= config.failure_streak:
                problem.message += f" (failing {counted(count, 'run')} in a row)"
