"""What every monitor shares: how it reports a problem, and the words of its messages."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

from mesh_tools.model.nodes import NodeId

# Reports one problem of the product being judged: (kind, status, message, **Problem fields).
Report = Callable[..., None]

_HEADER = re.compile(r"^\w+ Error in \w+ \S+ \(.*\)$")


def first_line(text: str | None, limit: int = 300) -> str:
    """The line of a dbt message that says what went wrong (not its "Runtime Error in model x" header)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    meaningful = [line for line in lines if not _HEADER.match(line)]
    line = (meaningful or lines or [""])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


def label(uid: str) -> str:
    """A unique_id without its resource type and project (``raw.tickets``, ``fct_orders.v2``)."""
    node = NodeId.read(uid)
    return node.local if node is not None else uid


def date(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "ever"
