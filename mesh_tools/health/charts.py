"""Trend charts as inline SVG: no script, no CDN, readable when the report is opened from disk."""

from __future__ import annotations

from html import escape

from mesh_tools.core.words import counted
from mesh_tools.health.report import Point


def sparkline(points: list[Point], title: str, width: int = 160, height: int = 36, unit: str = "") -> str:
    """A small line chart of ``points`` with the last value marked; an empty string for no points."""
    if len(points) < 2:
        return ""  # one point is no trend
    values = [p.value for p in points]
    low, high = min(values), max(values)
    span = (high - low) or (abs(high) or 1.0)
    pad = 3
    step = (width - 2 * pad) / max(1, len(values) - 1)

    def y(value: float) -> float:
        return round(height - pad - (value - low) / span * (height - 2 * pad), 1)

    coords = [(round(pad + i * step, 1), y(v)) for i, v in enumerate(values)]
    path = " ".join(f"{x},{yy}" for x, yy in coords)
    last_x, last_y = coords[-1]
    first, last = points[0], points[-1]
    label = (
        f"{title}: {counted(len(points), 'point')} from {first.at:%Y-%m-%d %H:%M} to {last.at:%Y-%m-%d %H:%M}; "
        f"last {_fmt(last.value)}{unit}, min {_fmt(low)}{unit}, max {_fmt(high)}{unit}"
    )
    return (
        f'<svg class="spark" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(label)}"><title>{escape(label)}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{path}"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2.5" fill="currentColor"/></svg>'
    )


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:,.2f}"
