"""The admin UI's templates without a server or a database: the environment's guarantees (autoescape,
undefined names are errors), a failed section shown as unavailable in its own box, escaping in every
section, and the charts' geometry. The page in a browser is tests/integration/test_status_page.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jinja2
import pytest

from app.api import ui_templates
from app.services.ops.status_page import (
    SectionResult,
    StatusView,
    audit_changes,
    rollout_view,
    validation_summary,
)

NOW = datetime(2025, 3, 4, 12, 30, 15, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def render(view: StatusView) -> str:
    return ui_templates.render("status/content.html", view=view, now=view.generated_at)


def hostile_view() -> StatusView:
    """Every section with text written by other people in it."""
    shop = f"evil{HOSTILE}.myshopify.com"
    job = {
        "id": f"job-{HOSTILE}",
        "kind": "all",
        "status": "failed",
        "dryRun": False,
        "total": 10,
        "processed": 4,
        "migrated": 2,
        "failed": 1,
        "skipped": 1,
        "lastError": f"boom {HOSTILE}",
        "createdAt": NOW,
        "startedAt": NOW,
        "finishedAt": NOW,
        "active": False,
        "rate": 1.0,
        "eta_s": None,
        "perShop": [{"shop": shop, "total": 10, "done": 4, "migrated": 2, "skipped": 1, "failed": 1}],
    }
    audit = {
        "changedAt": NOW,
        "changedBy": f"ops{HOSTILE}",
        "flagName": "DUAL_WRITE",
        "reason": f"because {HOSTILE}",
        "changes": audit_changes({"enabled": False}, {"enabled": True, "note": HOSTILE}),
    }
    flag = {
        "name": "DUAL_WRITE",
        "enabled": True,
        "rolloutPercent": 100,
        "shopOverrides": {shop: True},
        "sampleRate": 0.1,
        "envOverride": None,
        "updatedBy": f"ops{HOSTILE}",
        "updatedAt": NOW,
    }
    report = validation_summary(
        {"ok": False, "generatedAt": NOW.isoformat(), "failedByReason": {f"reason{HOSTILE}": 3}, "failedCount": 3}
    )
    mismatch = {
        "shop": shop,
        "endpoint": f"/proxy/{HOSTILE}",
        "bundleKey": f"key-{HOSTILE}",
        "fields": [f"title{HOSTILE}"],
        "createdAt": NOW,
    }
    rollout_shop = {
        "shop": shop,
        "stage": "shadow",
        "state": "held",
        "guards": [{"name": f"guard{HOSTILE}", "ok": False}, {"name": "fine", "ok": True}],
    }
    rollout = rollout_view(
        [
            {
                "id": "rollout-1",
                "status": "running",
                "targetStage": f"live{HOSTILE}",
                "createdAt": NOW,
                "shops": [rollout_shop],
            }
        ],
        [rollout_shop],
        [],
        scoped=True,
    )
    return StatusView(
        NOW,
        SectionResult({"active": [], "recent": [job]}),
        SectionResult({"flags": [flag], "stage": f"shadow{HOSTILE}", "stages": ["legacy"], "audit": [audit]}),
        SectionResult(report),
        SectionResult({"latest": [mismatch], "byField": [(f"title{HOSTILE}", 1)], "sample": 1000}),
        SectionResult(rollout),
    )


def test_the_environment_escapes_everything_and_refuses_undefined_names() -> None:
    env = ui_templates.environment
    assert env.autoescape is True and env.undefined is jinja2.StrictUndefined
    assert env.from_string("{{ value }}").render(value=HOSTILE) == ESCAPED
    assert env.from_string("[{{ value }}]").render(value=None) == "[]"  # None shows as nothing, not "None"
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing }}").render()


def test_every_section_escapes_what_other_people_wrote() -> None:
    html = render(hostile_view())
    assert "<script" not in html
    for escaped in (
        f'data-job-id="job-{ESCAPED}"',  # job id (attribute) and error
        f'<div class="error-text">boom {ESCAPED}</div>',
        f"<td class=shop>evil{ESCAPED}.myshopify.com</td>",  # per-shop breakdown
        f'<strong id="stage">shadow{ESCAPED}</strong>',  # flags: stage, who, audit reason and values
        f"<td>ops{ESCAPED} <time",
        f"<td>because {ESCAPED}</td>",
        f"note: ∅ → {ESCAPED}",
        f"<code>reason{ESCAPED}</code>",  # validation: failure reasons
        f"<td>/proxy/{ESCAPED}</td>",  # shadow mismatches
        f"<code>key-{ESCAPED}</code>",
        f"<td>title{ESCAPED}</td>",
        f"<td>live{ESCAPED}</td>",  # rollouts: target, grid cell, tooltip's failing guard
        f'data-shop="evil{ESCAPED}.myshopify.com"',
        f"failing: guard{ESCAPED}",
    ):
        assert escaped in html, escaped


def test_a_failed_section_is_unavailable_in_its_own_box() -> None:
    view = hostile_view()
    view.shadow = SectionResult(error=f"timed out after 3 s {HOSTILE}")
    view.flags = SectionResult(error="ConnectionDoesNotExistError")
    html = render(view)
    assert f'<p class="unavailable">Shadow mismatches unavailable (timed out after 3 s {ESCAPED}).</p>' in html
    assert '<p class="unavailable">Flags unavailable (ConnectionDoesNotExistError).</p>' in html
    # The other sections still show.
    assert 'id="jobs-recent"' in html and 'id="validation-verdict"' in html and 'ul class="shop-grid"' in html
    assert html.count('class="unavailable"') == 2


def test_validation_still_computing() -> None:
    view = hostile_view()
    view.validation = SectionResult(None)
    assert "Computing the validation report…" in render(view)


def test_chart_layout_breaks_lines_at_missing_samples() -> None:
    points: list[tuple[float, Any]] = [(0.0, 1.0), (60.0, None), (120.0, 2.0), (180.0, 0.0)]
    layout = ui_templates.chart_layout([{"label": "a", "color": "#000", "points": points}], y_min_top=0.5)
    assert layout is not None
    (line,) = layout.lines
    # A None breaks the line: a lone first point (drawn as a dot), then a segment of two.
    assert [len(segment) for segment in line.segments] == [1, 2]
    assert line.segments[1][1] == (548.0, 140.0)  # the last point, at value 0, on the x axis's end
    assert [value for _, value in layout.ticks] == [0.0, 1.0, 2.0]
    assert ui_templates.chart_layout([{"label": "a", "color": "#000", "points": [(0.0, None)]}]) is None


def test_the_chart_macro_draws_lines_ticks_and_no_samples() -> None:
    start = NOW.timestamp()
    view = hostile_view()
    view.rollout = SectionResult(
        rollout_view(
            [],
            [],
            [
                {
                    "bucket": start + 60 * i,
                    "comparisons": 4,
                    "verified": 0,
                    "confirmed": i % 2,
                    "noise_comparisons": 0,
                    "noise_mismatches": 0,
                    "v2_p99_ms": 2.0 + i,
                    "legacy_p99_ms": None,
                }
                for i in range(3)
            ],
            scoped=False,
        )
    )
    html = render(view)
    assert html.count('<svg class="chart" role="img"') == 2
    assert 'aria-label="Mismatch rate and noise baseline"' in html and "Read latency p99 per origin" in html
    assert html.count("<polyline") == 2  # the mismatch rate and V2 p99; no noise, no legacy samples
    assert (NOW + timedelta(minutes=2)).strftime("%H:%M") + " UTC</text>" in html
    assert ">25 %</text>" in html and ">4 ms</text>" in html  # y ticks through the caller's filter
    empty = render(
        StatusView(
            NOW,
            *(SectionResult(error="x") for _ in range(4)),
            rollout=SectionResult(rollout_view([], [], [], scoped=False)),
        )
    )
    assert empty.count(">no samples yet</text>") == 2 and "Evidence over the last hour (every shop)" in empty
