"""Server-side SVG line charts for the status page: no script, no external library, no CDN.

One function, `line_chart`: a few series of (epoch seconds, value | None) points on a shared time
axis, drawn as polylines (a None breaks the line: no data is not zero), with the y axis from 0 to
the largest value (or `y_min_top`, so a flat line near 0 does not fill the chart), three y ticks,
start and end times, and a legend. Colours are presentation attributes, not `style`, so the page's
Content-Security-Policy (styles by nonce only) allows them. Every text goes through `html.escape`.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

Point = tuple[float, float | None]


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    color: str
    points: Sequence[Point]
    dashed: bool = False


def _fmt_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M")


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_format: Callable[[float], str],
    width: int = 560,
    height: int = 180,
    y_min_top: float = 0.0,
) -> str:
    """An `<svg>` element (accessible: `role="img"` with the title as its label)."""
    left, right, top, bottom = 56, 12, 10, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points if y is not None]
    label = html.escape(title)
    parts = [
        f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{label}</title>'
    ]
    if not xs or not ys:
        parts.append(
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="#656d76" '
            'font-size="12">no samples yet</text></svg>'
        )
        return "".join(parts)
    x0, x1 = min(xs), max(xs)
    span = (x1 - x0) or 1.0
    top_value = max(max(ys), y_min_top) or 1.0

    def px(x: float) -> float:
        return left + (x - x0) / span * plot_w if x1 > x0 else left + plot_w / 2

    def py(y: float) -> float:
        return top + plot_h - (y / top_value) * plot_h

    for fraction in (0.0, 0.5, 1.0):
        tick = top + plot_h - fraction * plot_h
        parts.append(f'<line x1="{left}" y1="{tick:.1f}" x2="{left + plot_w}" y2="{tick:.1f}" stroke="#eaeef2"/>')
        parts.append(
            f'<text x="{left - 6}" y="{tick + 4:.1f}" text-anchor="end" fill="#656d76" font-size="11">'
            f"{html.escape(y_format(top_value * fraction))}</text>"
        )
    baseline = top + plot_h + 14
    parts.append(f'<text x="{left}" y="{baseline:.0f}" fill="#656d76" font-size="11">{_fmt_time(x0)}</text>')
    parts.append(
        f'<text x="{left + plot_w}" y="{baseline:.0f}" text-anchor="end" fill="#656d76" font-size="11">'
        f"{_fmt_time(x1)} UTC</text>"
    )
    for s in series:
        segment: list[str] = []
        segments: list[list[str]] = []
        for x, y in s.points:
            if y is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{px(x):.1f},{py(y):.1f}")
        if segment:
            segments.append(segment)
        dash = ' stroke-dasharray="4 3"' if s.dashed else ""
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{html.escape(s.color)}"/>')
            else:
                parts.append(
                    f'<polyline points="{" ".join(seg)}" fill="none" stroke="{html.escape(s.color)}" '
                    f'stroke-width="2"{dash}/>'
                )
    legend_x = left
    legend_y = height - 8
    for s in series:
        parts.append(
            f'<rect x="{legend_x}" y="{legend_y - 9}" width="10" height="10" fill="{html.escape(s.color)}"/>'
            f'<text x="{legend_x + 14}" y="{legend_y}" fill="#1f2328" font-size="11">{html.escape(s.label)}</text>'
        )
        legend_x += 24 + 7 * len(s.label)
    parts.append("</svg>")
    return "".join(parts)
