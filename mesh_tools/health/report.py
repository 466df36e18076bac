"""The health report's models: what `mesh health` writes as JSON (its schema is `mesh health --schema`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mesh_tools.core.words import counted

REPORT_SCHEMA_VERSION = 1

Status = Literal["healthy", "warning", "stale", "failing", "no_data"]
# Worst last; no_data ranks with warning for exit codes.
RANK: dict[str, int] = {"healthy": 0, "warning": 1, "no_data": 1, "stale": 2, "failing": 3}


Kind = Literal[
    "model_error",
    "contract",
    "test_failure",
    "not_built",
    "source_freshness",
    "freshness_slo",
    "volume",
    "schema_change",
    "governance",
    "publish",
    "no_data",
    "upstream",
    "stale_artifacts",
    "release_broken",
    "corrupt_artifact",
]


def worst(statuses: Sequence[Status], default: Status = "healthy") -> Status:
    return max(statuses, key=lambda s: RANK[s], default=default)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Impacted(_Model):
    """A downstream data product at risk from a problem upstream."""

    product: str
    domain: str
    owner: str = Field(description="Who to tell: the product's group owner, else the domain's owner.")
    distance: int = Field(description="1 when it reads the failing product directly, 2+ through other models.")


class Problem(_Model):
    """One open problem, with who owns it and what it puts at risk."""

    kind: Kind
    status: Status = Field(description="What the problem makes its product or domain: warning, stale or failing.")
    domain: str
    product: str | None = None
    node: str | None = Field(default=None, description="The dbt unique_id at fault, when there is one.")
    message: str
    owner: str = ""
    since: datetime | None = Field(default=None, description="First run of the current streak or state.")
    streak: int | None = Field(default=None, description="Consecutive runs with this test failing.")
    impact: list[Impacted] = Field(default_factory=list)


class SourceState(_Model):
    source: str
    status: str
    max_loaded_at: datetime | None = None
    age_hours: float | None = None
    warn_after_hours: float | None = None
    error_after_hours: float | None = None


class Freshness(_Model):
    slo_hours: float | None = Field(description="meta.freshness_slo_hours of the public model.")
    data_as_of: datetime | None = Field(description="Older of: last successful build, oldest source load it read.")
    age_hours: float | None = None
    within_slo: bool | None = None
    slo_compliance: float | None = Field(
        default=None, description="Share of evaluations within the SLO over the window (0..1)."
    )
    sources: list[SourceState] = Field(default_factory=list)


class Volume(_Model):
    rows: int | None = None
    expected_low: float | None = None
    expected_high: float | None = None
    history: int = Field(default=0, description="Earlier measurements the band is drawn from.")
    key_columns: list[str] = Field(default_factory=list)
    key_null_rate: float | None = None
    schema_hash: str | None = None


class Tests(_Model):
    """Each test's latest result that still applies: a test a state-aware build did not run again (what it reads
    did not change) keeps its result from the run that last ran it."""

    passed: int = 0
    failed: int = 0
    warned: int = 0
    earlier: int = Field(default=0, description="How many of these results come from a run before the last one.")
    as_of: datetime | None = Field(default=None, description="When the oldest of those earlier results was taken.")

    def count(self, status: str, at: datetime | None, earlier: bool) -> None:
        """Count one result (pass, warn, fail or error; others are not counted)."""
        if status not in ("pass", "warn", "fail", "error"):
            return
        self.passed += status == "pass"
        self.warned += status == "warn"
        self.failed += status in ("fail", "error")
        if earlier:
            self.earlier += 1
            if at is not None and (self.as_of is None or at < self.as_of):
                self.as_of = at


class Point(_Model):
    at: datetime
    value: float


class ProductHealth(_Model):
    product: str = Field(description="project.model[.vN]")
    domain: str
    model: str
    version: str | None = None
    node: str
    owner: str
    description: str = ""
    status: Status
    score: int = Field(description="0..100; 100 is a product with no open problem.")
    last_success: datetime | None = None
    contract_enforced: bool = False
    contract_ok: bool | None = Field(default=None, description="None when the model was not built in the last run.")
    tests: Tests = Field(default_factory=Tests)
    freshness: Freshness
    volume: Volume
    current_release: str | None = None
    release_verified: bool | None = Field(
        default=None,
        description="True: the current release's bytes match its recorded SHA-256 (checked now, or before for the "
        "same stored bytes); false: only their sizes were checked (see release_unverified); null: no release.",
    )
    release_unverified: str | None = Field(default=None, description="Why the release's bytes were not checked.")
    published_at: datetime | None = None
    consumers: list[str] = Field(default_factory=list, description="Domains whose models read this product.")
    at_risk_from: list[str] = Field(default_factory=list, description="Failing or stale products upstream of it.")
    problems: list[Problem] = Field(default_factory=list)
    rows_trend: list[Point] = Field(default_factory=list)
    score_trend: list[Point] = Field(default_factory=list)


class LastRun(_Model):
    invocation_id: str | None = None
    command: str | None = None
    finished_at: datetime | None = None
    status: str | None = None
    elapsed_s: float | None = None
    models: int = 0
    tests_passed: int = 0
    tests_failed: int = 0
    tests_warned: int = 0


class DomainHealth(_Model):
    domain: str
    owner: str
    description: str = ""
    status: Status
    score: int
    reason: str | None = Field(
        default=None,
        description="Why it could not be judged: no data yet (status no_data), or an artifact that is there but "
        "cannot be read (status failing).",
    )
    last_run: LastRun | None = None
    tests: Tests = Field(default_factory=Tests, description="Every test of the domain, as products' tests are counted.")
    last_success: datetime | None = None
    slo_compliance: float | None = Field(default=None, description="Mean SLO compliance of its products (0..1).")
    products: list[str] = Field(default_factory=list)
    upstreams: list[str] = Field(default_factory=list)
    problems: list[Problem] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    elapsed_trend: list[Point] = Field(default_factory=list)
    tests_failed_trend: list[Point] = Field(default_factory=list)


class Counts(_Model):
    healthy: int = 0
    warning: int = 0
    stale: int = 0
    failing: int = 0
    no_data: int = 0


class HistoryInfo(_Model):
    path: str
    collections: int
    since: datetime | None = None


class HealthReport(_Model):
    """Health of every domain and data product of a mesh, at one point in time."""

    schema_version: int = REPORT_SCHEMA_VERSION
    mesh: str
    generated_at: datetime
    collection_id: str
    status: Status = Field(description="The worst product or domain status.")
    products_by_status: Counts
    domains_by_status: Counts
    domains: list[DomainHealth]
    products: list[ProductHealth]
    problems: list[Problem] = Field(description="Every open problem, worst first.")
    history: HistoryInfo
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    def counts_line(self) -> str:
        """The counts behind ``status``: products, then domains (a domain can fail with every product healthy,
        e.g. its last build failed), so the summary never contradicts its numbers."""
        p, d = self.products_by_status, self.domains_by_status
        products = (
            f"{counted(len(self.products), 'product')}: {p.healthy} healthy, {p.warning} warning, {p.stale} stale, "
            f"{p.failing} failing" + (f", {p.no_data} no data" if p.no_data else "")
        )
        bad = [(getattr(d, s), s.replace("_", " ")) for s in ("warning", "stale", "failing", "no_data")]
        shown = [f"{d.healthy} healthy"] + [f"{n} {s}" for n, s in bad if n]
        return f"{products}; {counted(len(self.domains), 'domain')}: {', '.join(shown)}"

    def summary(self) -> str:
        """``failing (2 products: 2 healthy, ...; 5 domains: 4 healthy, 1 failing)``."""
        return f"{self.status.replace('_', ' ')} ({self.counts_line()})"

    def fails(self, threshold: str) -> bool:
        """Whether a product or a domain is at least as bad as ``threshold`` (failing, stale, warning; never)."""
        if threshold == "never":
            return False
        statuses: list[Status] = [p.status for p in self.products] + [d.status for d in self.domains]
        return any(RANK[s] >= RANK[threshold] for s in statuses)
