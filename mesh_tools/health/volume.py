"""Volume and schema: the latest row count against the band the product's history predicts, nulls in
its key columns, and a recent change of its columns."""

from __future__ import annotations

import json
import statistics
from datetime import datetime, timedelta

from mesh_tools.core.config import HealthConfig
from mesh_tools.core.words import counted
from mesh_tools.health.common import Report
from mesh_tools.health.facts import Facts
from mesh_tools.health.measure import key_columns
from mesh_tools.health.report import Volume
from mesh_tools.model.manifest import Manifest
from mesh_tools.model.nodes import Node


def judge_volume(
    key: str, node: Node, manifest: Manifest, facts: Facts, config: HealthConfig, now: datetime, problem: Report
) -> Volume:
    measured = facts.measurements.get(key, [])
    if not measured:
        return Volume(key_columns=key_columns(node, manifest))
    latest, earlier = measured[0], measured[1 : 1 + config.volume_window]
    volume = Volume(
        rows=latest["rows"],
        history=len(earlier),
        key_columns=[k for k in (latest["key_columns"] or "").split(",") if k],
        key_null_rate=latest["key_null_rate"],
        schema_hash=latest["schema_hash"],
    )
    if len(earlier) >= config.volume_min_history:
        counts = [m["rows"] for m in earlier]
        median = statistics.median(counts)
        mad = statistics.median(abs(c - median) for c in counts)
        spread = max(config.volume_tolerance * median, 3 * 1.4826 * mad)
        volume.expected_low, volume.expected_high = max(0.0, median - spread), median + spread
        rows = latest["rows"]
        if rows == 0 and median > 0:
            problem("volume", "failing", f"empty: 0 rows where {median:,.0f} are usual")
        elif not volume.expected_low <= rows <= volume.expected_high:
            change = (rows - median) / median * 100 if median else 0.0
            problem("volume", "warning", f"row count {rows:,} is outside the expected "
                    f"{volume.expected_low:,.0f}–{volume.expected_high:,.0f} ({change:+.0f}% against the median "
                    f"of the last {counted(len(counts), 'measurement')})", since=latest["measured_at"])  # fmt: skip
    if latest["key_null_rate"]:
        problem("volume", "warning", f"key column(s) {latest['key_columns']} hold nulls "
                f"({latest['key_null_rate']:.1%} of rows)")  # fmt: skip
    judge_schema(measured, config, now, problem)
    return volume


def judge_schema(measured: list[dict], config: HealthConfig, now: datetime, problem: Report) -> None:
    """A schema change within ``schema_change_hours``, when the schema has held since (newest first)."""
    latest = measured[0]
    changed = next(
        (i for i in range(len(measured) - 1) if measured[i]["schema_hash"] != measured[i + 1]["schema_hash"]), None
    )
    if changed is not None and all(m["schema_hash"] == latest["schema_hash"] for m in measured[:changed]):
        at = measured[changed]["measured_at"]
        if at >= now - timedelta(hours=config.schema_change_hours):
            diff = schema_diff(measured[changed + 1]["columns"], measured[changed]["columns"])
            problem("schema_change", "warning", f"schema changed: {diff}", since=at)


def schema_diff(before: str | None, after: str | None) -> str:
    old = dict(json.loads(before or "[]"))
    new = dict(json.loads(after or "[]"))
    parts = [f"+{c} ({t})" for c, t in new.items() if c not in old]
    parts += [f"-{c}" for c in old if c not in new]
    parts += [f"{c} {old[c]} → {t}" for c, t in new.items() if c in old and old[c] != t]
    return ", ".join(parts) or "column order changed"
