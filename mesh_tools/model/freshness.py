"""dbt's source freshness results (``sources.json``, written by `dbt source freshness`), typed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_tools.core.errors import ArtifactError, display_path
from mesh_tools.model.manifest import read_json

PERIOD_HOURS = {"minute": 1 / 60, "hour": 1.0, "day": 24.0}


def criterion_hours(rule: Any) -> float | None:
    """A freshness criterion (``{count: 12, period: hour}``) in hours; None when it sets none."""
    if not isinstance(rule, dict) or not rule.get("count") or not rule.get("period"):
        return None
    return float(rule["count"]) * PERIOD_HOURS.get(str(rule["period"]), 1.0)


@dataclass(frozen=True)
class SourceResult:
    """One source table's freshness as dbt measured it."""

    unique_id: str
    status: str | None
    max_loaded_at: str | None
    snapshotted_at: str | None
    age_hours: float | None
    warn_after_hours: float | None
    error_after_hours: float | None
    message: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class FreshnessResults:
    """One `dbt source freshness` invocation's sources.json."""

    path: Path
    metadata: dict[str, Any]
    results: tuple[SourceResult, ...]

    @classmethod
    def read(
        cls, path: Path, fix: str = "Run `dbt source freshness` again.", *, missing_ok: bool = False
    ) -> FreshnessResults | None:
        """The results at ``path``; None when missing and ``missing_ok``; ArtifactError when unreadable."""
        if missing_ok and not path.is_file():
            return None
        what = "source freshness results"
        data = read_json(path, what, fix)
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise ArtifactError(f"{display_path(path)}: not dbt {what} (no 'results'). {fix}")
        try:
            results = tuple(_result(r) for r in data["results"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{display_path(path)}: not dbt {what} ({exc}). {fix}") from None
        metadata = data.get("metadata")
        return cls(path, metadata if isinstance(metadata, dict) else {}, results)

    @property
    def generated_at(self) -> str | None:
        return self.metadata.get("generated_at")


def _result(raw: dict[str, Any]) -> SourceResult:
    found = raw.get("criteria")
    criteria: dict[str, Any] = found if isinstance(found, dict) else {}
    age = raw.get("max_loaded_at_time_ago_in_s")
    return SourceResult(
        unique_id=str(raw.get("unique_id", "")),
        status=raw.get("status"),
        max_loaded_at=raw.get("max_loaded_at"),
        snapshotted_at=raw.get("snapshotted_at"),
        age_hours=None if age is None else float(age) / 3600,
        warn_after_hours=criterion_hours(criteria.get("warn_after")),
        error_after_hours=criterion_hours(criteria.get("error_after")),
        message=raw.get("error") or raw.get("message") or None,
        raw=raw,
    )
