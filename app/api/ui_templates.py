"""The admin UI's one template environment (Jinja2) and its formatting filters.

Why it looks like this
----------------------
* Every page of `/admin/ui` is a Jinja2 template under `app/templates/` (the status page's sections
  and macros under `status/`); no HTML is built in Python. The services hand over plain data
  (`app/services/ops/status_page.py`) and the templates only format it.
* Autoescape is on for every template, so a value is escaped unless a template says otherwise:
  shop names, job errors, audit reasons are written by other people and may hold `<script>`.
  Undefined variables are errors (`StrictUndefined`), so a misspelt name fails a test instead of
  rendering as an empty cell; `None` renders as nothing, as the page always showed a missing value.
* The filters are the page's number and time formats (`ago`, `duration`, `rate`, `pct`, `ms`,
  `num`, ...), kept here so the same figure reads the same in every section. `chart_layout` is the
  SVG charts' geometry: numbers only (pixel coordinates, ticks, legend positions); the markup is
  the `line_chart` macro of `status/charts.html`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader, StrictUndefined

from app.core.time import as_utc

__all__ = ["ChartLayout", "ChartLine", "chart_layout", "environment", "render"]


# ==================================================================================== filters


def duration(seconds: float | None) -> str:
    """`42s`, `3m 07s`, `2h 05m`; `—` when unknown (an ETA before the first rate)."""
    if seconds is None:
        return "—"
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def ago(value: datetime | None, now: datetime) -> str:
    """How long before `now` (the page's one instant, so every row counts from the same time);
    a naive value is UTC, as the database stores it."""
    if value is None:
        return "—"
    return duration(max(0, int((now - as_utc(value)).total_seconds()))) + " ago"


def rate(value: float | None) -> str:
    """Items per second: one decimal while small, grouped digits from 100 on."""
    if value is None:
        return "—"
    return f"{value:.1f}/s" if value < 100 else f"{value:,.0f}/s"


def pct(fraction: float) -> str:
    """A rate (0.004) as a percentage with two significant digits (`0.4 %`): mismatch rates are small."""
    return f"{fraction * 100:.2g} %" if fraction else "0 %"


def ms(value: float) -> str:
    return f"{value:.3g} ms"


def num(value: Any) -> str:
    """A count with grouped digits (`12,345`); a missing count is 0."""
    return f"{int(value or 0):,}"


def short_id(job_id: Any) -> str:
    """Enough of an id to tell rows apart at a glance (the full id is the tooltip)."""
    text = str(job_id)
    return text if len(text) <= 14 else text[:12] + "…"


def shop_name(shop: Any) -> str:
    """A shop without the `.myshopify.com` every shop has: what fits in a grid cell."""
    return str(shop).removesuffix(".myshopify.com")


def json_text(value: Any) -> str:
    """Audit values as the API shows them (JSON: true, 0.1, {"shop": true}), not as Python reprs."""
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()


def hhmm(epoch: float) -> str:
    """A chart's time label (UTC)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M")


# ==================================================================================== charts


@dataclass(frozen=True, slots=True)
class ChartLine:
    """One series as drawn: pixel points per unbroken segment (a segment of one point is a dot)."""

    label: str
    color: str
    dashed: bool
    segments: list[list[tuple[float, float]]]
    legend_x: int


@dataclass(frozen=True, slots=True)
class ChartLayout:
    """Where everything of a line chart goes, in the SVG's user units."""

    left: int
    plot_w: int
    ticks: list[tuple[float, float]]  # (pixel y, value) at 0, half and the top of the y axis
    baseline: float  # pixel y of the start and end time labels
    start: float  # epoch seconds of the first and last point
    end: float
    legend_y: int
    lines: list[ChartLine]


def chart_layout(
    series: Sequence[Mapping[str, Any]], *, width: int = 560, height: int = 180, y_min_top: float = 0.0
) -> ChartLayout | None:
    """The geometry of a few series (`label`, `color`, `points` of (epoch seconds, value | None),
    optional `dashed`) on a shared time axis; None when there is no sample at all.

    The y axis runs from 0 to the largest value, or to `y_min_top` so a flat line near 0 does not
    fill the chart; a None breaks its line (no data is not zero).
    """
    left, right, top, bottom = 56, 12, 10, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [x for s in series for x, _ in s["points"]]
    ys = [y for s in series for _, y in s["points"] if y is not None]
    if not xs or not ys:
        return None
    x0, x1 = min(xs), max(xs)
    span = (x1 - x0) or 1.0
    top_value = max(max(ys), y_min_top) or 1.0

    def px(x: float) -> float:
        return left + (x - x0) / span * plot_w if x1 > x0 else left + plot_w / 2

    def py(y: float) -> float:
        return top + plot_h - (y / top_value) * plot_h

    lines = []
    legend_x = left
    for s in series:
        segments: list[list[tuple[float, float]]] = []
        segment: list[tuple[float, float]] = []
        for x, y in s["points"]:
            if y is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append((px(x), py(y)))
        if segment:
            segments.append(segment)
        label = str(s["label"])
        lines.append(ChartLine(label, str(s["color"]), bool(s.get("dashed")), segments, legend_x))
        legend_x += 24 + 7 * len(label)
    return ChartLayout(
        left=left,
        plot_w=plot_w,
        ticks=[(top + plot_h - f * plot_h, top_value * f) for f in (0.0, 0.5, 1.0)],
        baseline=top + plot_h + 14,
        start=x0,
        end=x1,
        legend_y=height - 8,
        lines=lines,
    )


# ==================================================================================== environment


def _blank_none(value: Any) -> Any:
    """`{{ None }}` prints nothing (Jinja's default is the text "None")."""
    return "" if value is None else value


def _build() -> Environment:
    env = Environment(
        loader=PackageLoader("app", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_blank_none,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ago=ago,
        duration=duration,
        rate=rate,
        pct=pct,
        ms=ms,
        num=num,
        short_id=short_id,
        shop_name=shop_name,
        json_text=json_text,
        hhmm=hhmm,
    )
    env.globals["chart_layout"] = chart_layout
    return env


#: Built once per process: templates are compiled on first use and cached.
environment = _build()


def render(name: str, /, **context: Any) -> str:
    """One template of `app/templates/` rendered with `context` (every value escaped unless marked safe)."""
    return environment.get_template(name).render(**context)
