"""Scores (0..100) and counts: what each open problem costs a product, and a domain's score."""

from __future__ import annotations

import statistics

from mesh_tools.health.report import Counts, Problem, ProductHealth

PENALTY = {"failing": 60, "stale": 40, "warning": 10, "no_data": 50}


def score(problems: list[Problem]) -> int:
    """A product's score: 100 less the worst problems' penalties and up to 30 for warnings."""
    penalty = 0
    for status in ("failing", "stale", "no_data"):
        if any(p.status == status for p in problems):
            penalty += PENALTY[status]
    penalty += min(30, PENALTY["warning"] * sum(p.status == "warning" for p in problems))
    return max(0, 100 - penalty)


def domain_score(products: list[ProductHealth], own: list[Problem]) -> int:
    """The mean of its products' scores, less half the penalty of each problem not a product's."""
    scores = [p.score for p in products]
    value = round(statistics.mean(scores)) if scores else 100
    return max(0, value - sum(PENALTY[p.status] // 2 for p in own))


def slo_compliance(products: list[ProductHealth]) -> float | None:
    """The mean SLO compliance of the products that have an SLO."""
    compliance = [p.freshness.slo_compliance for p in products if p.freshness.slo_compliance is not None]
    return round(statistics.mean(compliance), 4) if compliance else None


def counts(statuses: list[str]) -> Counts:
    found = Counts()
    for status in statuses:
        setattr(found, status, getattr(found, status) + 1)
    return found
