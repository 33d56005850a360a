"""What the status page (`/admin/ui`) shows, gathered and rendered as one HTML fragment.

Why it looks like this
----------------------
* The page is for a person watching a migration: are jobs moving, how fast, when do they end,
  which shops lag; which flags and which migration stage are live and who changed them; does
  validation pass; what did shadow reads find. Every section is gathered independently, in
  parallel, under a short timeout: one failing source (a slow query, a module that is not
  deployed yet) shows as "unavailable" in its own box and never blanks the page.
* Reads are cheap enough to repeat every few seconds: jobs come from the job service (rows carry
  their counters and per-shop breakdown, so progress, rate and ETA are exactly what the API and
  `shopibundle migrate watch` show); flags from the replica's in-memory snapshot; shadow-mismatch
  field counts look at the newest rows only (primary-key order). The validation report reads whole
  tables, so it is recomputed in the background at most once a minute per replica.
* Everything interpolated into HTML goes through `html.escape` (`_e`): shop names, reasons and
  audit texts are data written by other people.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from app.core.container import Container
from app.core.time import as_utc, naive_utc, utcnow
from app.repos import consistency as consistency_repo
from app.repos import flags as flag_repo
from app.repos.runner import run_read
from app.rules.flags import FlagState
from app.rules.stages import STAGES, stage_of
from app.services.flags import admin as flag_admin
from app.services.flags.audit import audit_page
from app.services.flags.snapshot import FlagStore
from app.services.migration import jobs as migration_jobs
from app.services.migration.validation import build_validation_report
from app.services.ops.charts import Series, line_chart
from app.services.rollouts import operations as rollouts_ops

log = logging.getLogger(__name__)

__all__ = ["SectionResult", "StatusView", "collect", "render_content"]

SECTION_TIMEOUT_S = 3.0
RECENT_JOBS = 10
ACTIVE_JOBS = 20
AUDIT_ENTRIES = 15
MISMATCH_ROWS = 15
MISMATCH_FIELD_SAMPLE = 1000
SHOPS_PER_JOB = 50
VALIDATION_MAX_AGE_S = 60.0
VALIDATION_LIST_LIMIT = 20
ROLLOUTS_SHOWN = 5
CHART_WINDOW_S = 3600
CHART_BUCKET_S = 60
#: Shop states of a guarded rollout, in the order of the grid's legend.
ROLLOUT_STATES = ("waiting", "observing", "advancing", "held", "rolled_back", "done")


# ============================================================================== data gathering


@dataclass
class SectionResult:
    """One box of the page: its data, or why it could not be shown."""

    data: Any = None
    error: str | None = None


@dataclass
class StatusView:
    generated_at: datetime
    jobs: SectionResult
    flags: SectionResult
    validation: SectionResult
    shadow: SectionResult
    rollout: SectionResult = field(default_factory=SectionResult)


_JOB_BADGES = {
    "running": "info",
    "queued": "muted",
    "paused": "warn",
    "cancelling": "warn",
    "succeeded": "ok",
    "failed": "bad",
    "cancelled": "muted",
}


def _job_view(job: Any) -> dict[str, Any]:
    """A `JobOut` (the API's view: the same progress, rate and ETA the API and the CLI show)."""
    stats = job.stats
    per_shop = [
        {
            "shop": s.shop,
            "total": s.total,
            "done": s.migrated + s.skipped + s.failed,
            "migrated": s.migrated,
            "skipped": s.skipped,
            "failed": s.failed,
        }
        for s in job.perShop
    ]
    # Least advanced shops first: that is where a person looks for trouble.
    per_shop.sort(key=lambda b: (b["done"] / b["total"] if b["total"] else 1.0, b["shop"]))
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "dryRun": job.dryRun,
        "total": stats.total,
        "processed": stats.processed,
        "migrated": stats.migrated,
        "failed": stats.failed,
        "skipped": stats.skipped,
        "lastError": job.lastError,
        "createdAt": job.createdAt,
        "startedAt": job.startedAt,
        "finishedAt": job.finishedAt,
        "active": job.finishedAt is None,
        "rate": job.ratePerSecond if job.startedAt is not None else None,
        "eta_s": job.etaSeconds,
        "perShop": per_shop,
    }


async def _jobs(container: Container) -> dict[str, Any]:

    pool = container.pool
    pages = await asyncio.gather(
        *(migration_jobs.list_jobs(pool, limit=ACTIVE_JOBS, status=s) for s in migration_jobs.UNFINISHED),
        migration_jobs.list_jobs(pool, limit=ACTIVE_JOBS + RECENT_JOBS),
    )
    active = [job for page in pages[:-1] for job in page.items]
    active.sort(key=lambda j: j.createdAt, reverse=True)
    recent = [j for j in pages[-1].items if j.status in migration_jobs.TERMINAL][:RECENT_JOBS]
    return {"active": [_job_view(j) for j in active[:ACTIVE_JOBS]], "recent": [_job_view(j) for j in recent]}


async def _flags(container: Container) -> dict[str, Any]:

    stage: str | None
    store = container.flags
    if store is None:
        # No running store (flags not started on this replica): read the table directly.

        states = [FlagState.from_row(r) for r in await flag_repo.fetch_all(container.pool)]
        store = FlagStore(container.settings, states)
        flags = flag_admin.list_flags(store)
        stage = stage_of({s.name: s for s in store.states()})
        audit = await flag_repo.list_audit(container.pool, limit=AUDIT_ENTRIES, before_id=None, flag_name=None)
        for entry in audit:
            entry["changedAt"] = as_utc(entry["changedAt"])
    else:
        flags = flag_admin.list_flags(store)
        stage = flag_admin.migration_stage(store).get("stage")
        audit = (await audit_page(store, limit=AUDIT_ENTRIES, cursor=None, flag=None))["items"]
    return {"flags": flags, "stage": stage, "stages": list(STAGES), "audit": audit}


@dataclass
class ValidationCache:
    """The fleet-wide report reads whole tables: it is computed in the background at most once per
    `VALIDATION_MAX_AGE_S` per replica, however many people watch the page."""

    report: dict[str, Any] | None = None
    computed_at: float = float("-inf")
    task: asyncio.Task[None] | None = None


async def _refresh_validation(container: Container, cache: ValidationCache) -> None:

    try:
        cache.report = await build_validation_report(container.pool, None, list_limit=VALIDATION_LIST_LIMIT)
        cache.computed_at = time.monotonic()
    except Exception:
        log.warning("status page: validation report failed", exc_info=True)
        cache.computed_at = time.monotonic() - VALIDATION_MAX_AGE_S / 2  # retry sooner than a full period


async def _validation(container: Container) -> dict[str, Any] | None:
    cache = container.status_page_validation
    if cache is None:
        cache = container.status_page_validation = ValidationCache()
    stale = time.monotonic() - cache.computed_at > VALIDATION_MAX_AGE_S
    if stale and (cache.task is None or cache.task.done()):
        cache.task = asyncio.create_task(_refresh_validation(container, cache), name="status-page-validation")
    if cache.report is None and cache.task is not None:
        # First view: wait for it a little (shielded: a timeout here must not cancel the work).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(cache.task), SECTION_TIMEOUT_S - 0.5)
    return cache.report


async def _shadow(container: Container) -> dict[str, Any]:
    pool = container.pool
    latest_rows, field_rows = await asyncio.gather(
        pool.fetch(
            'SELECT id, shop, endpoint, "bundleKey", fields, "createdAt" FROM sb_shadow_mismatches '
            f"ORDER BY id DESC LIMIT {MISMATCH_ROWS}"
        ),
        pool.fetch(
            "SELECT f AS field, count(*)::int AS n FROM "
            f"(SELECT fields FROM sb_shadow_mismatches ORDER BY id DESC LIMIT {MISMATCH_FIELD_SAMPLE}) AS recent, "
            "unnest(recent.fields) AS f GROUP BY f ORDER BY n DESC, f"
        ),
    )
    latest = []
    for row in latest_rows:
        item = dict(row)
        item["createdAt"] = as_utc(item["createdAt"])
        item["fields"] = list(item["fields"] or [])
        latest.append(item)
    return {
        "latest": latest,
        "byField": [(r["field"], r["n"]) for r in field_rows],
        "sample": MISMATCH_FIELD_SAMPLE,
    }


async def _rollout(container: Container) -> dict[str, Any]:
    """The latest rollouts, their shops (each shop once, from its newest rollout) and the evidence
    over the last hour in one-minute buckets, for those shops (all shops when there is no rollout)."""
    page = await rollouts_ops.list_rollouts(container, limit=ROLLOUTS_SHOWN, cursor=None)
    rollouts: list[dict[str, Any]] = page["items"]
    shops: dict[str, dict[str, Any]] = {}
    for rollout in rollouts:
        for shop in rollout["shops"]:
            shops.setdefault(shop["shop"], {**shop, "rolloutId": rollout["id"], "rolloutStatus": rollout["status"]})
    scope = sorted(shops) or None
    since = naive_utc(utcnow() - timedelta(seconds=CHART_WINDOW_S))
    series = await run_read(container.pool, lambda conn: consistency_repo.series(conn, scope, since, CHART_BUCKET_S))
    return {"rollouts": rollouts, "shops": list(shops.values()), "series": series, "scoped": scope is not None}


async def _guarded(name: str, source: Awaitable[Any]) -> SectionResult:
    try:
        return SectionResult(data=await asyncio.wait_for(source, SECTION_TIMEOUT_S))
    except TimeoutError:
        return SectionResult(error=f"timed out after {SECTION_TIMEOUT_S:g} s")
    except Exception as exc:
        log.warning("status page: %s section failed", name, exc_info=True)
        return SectionResult(error=type(exc).__name__)


async def collect(container: Container) -> StatusView:
    """Gather every section concurrently; failures are per section."""
    jobs, flags, validation, shadow, rollout = await asyncio.gather(
        _guarded("jobs", _jobs(container)),
        _guarded("flags", _flags(container)),
        _guarded("validation", _validation(container)),
        _guarded("shadow", _shadow(container)),
        _guarded("rollout", _rollout(container)),
    )
    return StatusView(datetime.now(UTC), jobs, flags, validation, shadow, rollout)


# ==================================================================================== rendering


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "—"
    seconds = max(0, int((now - value).total_seconds()))
    label = _duration(seconds) + " ago"
    return f'<time datetime="{_e(value.isoformat())}" title="{_e(value.isoformat())}">{_e(label)}</time>'


def _duration(seconds: float | None) -> str:
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


def _rate(rate: float | None) -> str:
    if rate is None:
        return "—"
    return f"{rate:.1f}/s" if rate < 100 else f"{rate:,.0f}/s"


def _progress(done: int, total: int, label: str) -> str:
    pct = (100.0 * done / total) if total else (100.0 if done else 0.0)
    return (
        f'<div class="bar"><progress value="{done}" max="{max(total, 1)}" aria-label="{_e(label)}"></progress>'
        f'<span class="pct">{pct:.0f}%</span></div>'
    )


def _badge(text: str, kind: str | None = None) -> str:
    css = kind or _JOB_BADGES.get(text, "muted")
    return f'<span class="badge {css}">{_e(text)}</span>'


def _unavailable(section: SectionResult, what: str) -> str:
    return f'<p class="unavailable">{_e(what)} unavailable ({_e(section.error)}).</p>'


def _short_id(job_id: str) -> str:
    """Enough of a job id to tell jobs apart at a glance (the full id is the tooltip)."""
    return job_id if len(job_id) <= 14 else job_id[:12] + "…"


def _job_row(job: Mapping[str, Any], now: datetime) -> str:
    total, processed = int(job["total"] or 0), int(job["processed"] or 0)
    shops = job.get("perShop") or []
    breakdown = ""
    if shops:
        shown = shops[:SHOPS_PER_JOB]
        rows = "".join(
            "<tr>"
            f"<td class=shop>{_e(s['shop'])}</td>"
            f"<td>{_progress(s['done'], s['total'], 'progress of ' + s['shop'])}</td>"
            f"<td class=num>{s['done']} / {s['total']}</td>"
            f"<td class=num>{s['migrated']}</td><td class=num>{s['skipped']}</td>"
            f"<td class=num>{s['failed']}</td>"
            "</tr>"
            for s in shown
        )
        more = f"<p class=muted>…and {len(shops) - len(shown)} more shops.</p>" if len(shops) > len(shown) else ""
        breakdown = (
            f"<details><summary>{len(shops)} shop{'s' if len(shops) != 1 else ''}</summary>"
            "<table class=shops><thead><tr><th>Shop</th><th>Progress</th><th>Items</th><th>Migrated</th>"
            f"<th>Skipped</th><th>Failed</th></tr></thead><tbody>{rows}</tbody></table>{more}</details>"
        )
    error = f'<div class="error-text">{_e(job["lastError"])}</div>' if job.get("lastError") else ""
    flags = " " + _badge("dry run", "muted") if job.get("dryRun") else ""
    main = (
        f'<tr class="job{" has-breakdown" if breakdown else ""}" data-job-id="{_e(job["id"])}" '
        f'data-status="{_e(job["status"])}">'
        f'<td><code title="{_e(job["id"])}">{_e(_short_id(str(job["id"])))}</code></td>'
        f"<td>{_e(job['kind'])}{flags}</td>"
        f"<td>{_badge(str(job['status']))}</td>"
        f'<td class="progress-cell">{_progress(processed, total, "job progress")}'
        f"<div class=small>{processed:,} / {total:,} items</div>{error}</td>"
        f"<td class=num>{int(job['migrated'] or 0):,}</td>"
        f"<td class=num>{int(job['skipped'] or 0):,}</td>"
        f"<td class=num>{int(job['failed'] or 0):,}</td>"
        f"<td class=num>{_rate(job.get('rate'))}</td>"
        f"<td class=num>{_duration(job.get('eta_s')) if job['active'] else '—'}</td>"
        f"<td class=when>{_ago(job.get('startedAt') or job.get('createdAt'), now)}</td>"
        "</tr>"
    )
    if not breakdown:
        return main
    # The per-shop breakdown gets a row of its own, under the job, as wide as the table.
    extra = f'<tr class="breakdown" data-breakdown-of="{_e(job["id"])}"><td></td><td colspan="9">{breakdown}</td></tr>'
    return main + extra


_JOB_HEAD = (
    "<thead><tr><th>Job</th><th>Kind</th><th>Status</th><th>Progress</th><th>Migrated</th><th>Skipped</th>"
    "<th>Failed</th><th>Rate</th><th>ETA</th><th>Started</th></tr></thead>"
)


def _render_jobs(section: SectionResult, now: datetime) -> str:
    if section.error:
        return _unavailable(section, "Jobs")
    data = section.data
    parts = []
    for title, key, empty in (
        ("Running and queued", "active", "No job is running."),
        ("Recent", "recent", "No finished job yet."),
    ):
        jobs = data[key]
        if jobs:
            body = "".join(_job_row(j, now) for j in jobs)
            table = f'<table class="jobs" id="jobs-{key}">{_JOB_HEAD}<tbody>{body}</tbody></table>'
        else:
            table = f'<p class="empty">{empty}</p>'
        parts.append(f"<h3>{title}</h3>{table}")
    return "".join(parts)


def _onoff(value: Any) -> str:
    if value is None:
        return '<span class="muted">—</span>'
    return _badge("on", "ok") if value else _badge("off", "muted")


def _value(value: Any) -> str:
    """Audit values as the API shows them (JSON: true, 0.1, {"shop": true}), not as Python reprs."""
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()


def _change_summary(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str:
    old, new = old or {}, new or {}
    changes = []
    for key in sorted(set(old) | set(new)):
        if key in {"updatedAt", "updatedBy", "name"} or old.get(key) == new.get(key):
            continue
        before = _value(old[key]) if key in old else "∅"
        changes.append(f"{_e(key)}: {_e(before)} → {_e(_value(new.get(key)))}")
    return "<br>".join(changes) or "(no value change)"


def _render_flags(section: SectionResult, now: datetime) -> str:
    if section.error:
        return _unavailable(section, "Flags")
    data = section.data
    stage = data.get("stage")
    stages = "".join(f'<li class="{"current" if s == stage else ""}">{_e(s)}</li>' for s in data.get("stages", []))
    stage_html = (
        f'<div class="stage"><span>Migration stage:</span> <strong id="stage">{_e(stage)}</strong>'
        f'<ol class="stages">{stages}</ol></div>'
    )
    rows = "".join(
        f'<tr data-flag="{_e(f["name"])}"><td><code>{_e(f["name"])}</code></td>'
        f"<td>{_onoff(f.get('enabled'))}</td>"
        f"<td class=num>{_e(f.get('rolloutPercent'))}%</td>"
        f"<td class=num>{len(f.get('shopOverrides') or {})}</td>"
        f"<td class=num>{_e(f.get('sampleRate'))}</td>"
        f"<td>{_onoff(f.get('envOverride'))}</td>"
        f"<td>{_e(f.get('updatedBy'))} {_ago(as_utc(f.get('updatedAt')), now)}</td></tr>"
        for f in data["flags"]
    )
    flags_table = (
        '<table class="flags"><thead><tr><th>Flag</th><th>Enabled</th><th>Rollout</th><th>Shop overrides</th>'
        f"<th>Sample rate</th><th>Env override</th><th>Last change</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    audit_rows = "".join(
        f"<tr><td>{_ago(a.get('changedAt'), now)}</td><td>{_e(a.get('changedBy'))}</td>"
        f"<td><code>{_e(a.get('flagName'))}</code></td>"
        f"<td class=small>{_change_summary(a.get('oldValue'), a.get('newValue'))}</td>"
        f"<td>{_e(a.get('reason'))}</td></tr>"
        for a in data["audit"]
    )
    audit = (
        '<table class="audit"><thead><tr><th>When</th><th>Who</th><th>Flag</th><th>Change</th><th>Why</th></tr>'
        f"</thead><tbody>{audit_rows}</tbody></table>"
        if audit_rows
        else '<p class="empty">No change recorded yet.</p>'
    )
    return f"{stage_html}{flags_table}<h3>Audit trail</h3>{audit}"


def _check_row(name: str, ok: bool, detail: str) -> str:
    return (
        f'<tr data-check="{_e(name)}"><td>{_e(name)}</td>'
        f"<td>{_badge('pass', 'ok') if ok else _badge('fail', 'bad')}</td><td class=small>{detail}</td></tr>"
    )


def _render_validation(section: SectionResult, now: datetime) -> str:
    if section.error:
        return _unavailable(section, "Validation")
    report = section.data
    if report is None:
        return '<p class="empty">Computing the validation report…</p>'
    generated = report.get("generatedAt")
    try:
        stamp = datetime.fromisoformat(str(generated).replace("Z", "+00:00")) if generated else None
    except ValueError:
        stamp = None
    verdict = _badge("pass", "ok") if report.get("ok") else _badge("fail", "bad")
    computed = f'<span class="small">computed {_ago(stamp, now)}</span>'
    head = f'<p class="verdict" id="validation-verdict">{verdict} {computed}</p>'
    counts = report.get("bundleCounts") or []
    old = sum(int(c.get("old", 0)) for c in counts)
    migrated = sum(int(c.get("migrated", 0)) for c in counts)
    unmigrated = int(report.get("unmigratedCount") or 0)
    mismatches = report.get("discountMismatches") or []
    ai = report.get("aiBundles") or {}
    rules = report.get("autoBundleRules") or {}
    checks = "".join(
        (
            _check_row(
                "Bundle counts per shop",
                all(int(c.get("unmigrated", 0)) == 0 for c in counts),
                f"{old:,} legacy rows in {len(counts)} shops: {migrated:,} migrated, {unmigrated:,} unmigrated, "
                f"{old - migrated - unmigrated:,} explained (auto rules, AI metaobjects, recorded failures)",
            ),
            _check_row("Legacy bundles without a V2 bundle", unmigrated == 0, f"{unmigrated:,} unmigrated"),
            _check_row("Discount ids that differ", not mismatches, f"{len(mismatches):,} differing"),
            _check_row(
                "AI bundles",
                bool(ai.get("ok", True)),
                f"{int(ai.get('migrated', 0)):,} of {int(ai.get('total', 0)):,} migrated, "
                f"{int(ai.get('unmigratedCount', 0)):,} unmigrated, "
                f"{len(ai.get('statusMismatches') or []):,} status mismatches",
            ),
            _check_row(
                "Auto bundle rules",
                bool(rules.get("ok", True)),
                f"{int(rules.get('migrated', 0)):,} of {int(rules.get('total', 0)):,} migrated, "
                f"{int(rules.get('unmigratedCount', 0)):,} unmigrated",
            ),
        )
    )
    table = (
        '<table class="checks"><thead><tr><th>Check</th><th>Result</th><th>Detail</th></tr></thead>'
        f"<tbody>{checks}</tbody></table>"
    )
    failed = report.get("failedByReason") or {}
    failures = ""
    if failed:
        chips = "".join(
            f'<li><code>{_e(r)}</code> <span class="count">{int(n):,}</span></li>' for r, n in failed.items()
        )
        failures = (
            f'<p class="small">{int(report.get("failedCount") or 0):,} recorded failures (known, with a reason; they '
            f'do not fail validation):</p><ul class="fields reasons">{chips}</ul>'
        )
    return head + table + failures


def _render_shadow(section: SectionResult, now: datetime) -> str:
    if section.error:
        return _unavailable(section, "Shadow mismatches")
    data = section.data
    if not data["latest"]:
        return '<p class="empty">No shadow mismatch recorded.</p>'
    fields = "".join(
        f'<li><code>{_e(name)}</code> <span class="count">{count}</span></li>' for name, count in data["byField"]
    )
    rows = "".join(
        f"<tr><td>{_ago(m['createdAt'], now)}</td><td>{_e(m['shop'])}</td><td>{_e(m['endpoint'])}</td>"
        f"<td><code>{_e(m.get('bundleKey'))}</code></td><td>{_e(', '.join(m['fields']))}</td></tr>"
        for m in data["latest"]
    )
    return (
        f'<p class="small">By field, over the latest {data["sample"]:,} mismatches:</p>'
        f'<ul class="fields">{fields}</ul>'
        '<table class="mismatches"><thead><tr><th>When</th><th>Shop</th><th>Endpoint</th><th>Bundle</th>'
        f"<th>Fields</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _pct(value: float) -> str:
    return f"{value * 100:.2g} %" if value else "0 %"


def _ms(value: float) -> str:
    return f"{value:.3g} ms"


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _rollout_charts(series: list[Mapping[str, Any]]) -> str:
    points = [(float(b["bucket"]), b) for b in series]
    mismatch = Series(
        "confirmed mismatch rate",
        "#cf222e",
        [(x, _ratio(int(b["confirmed"]), int(b["comparisons"]) + int(b["verified"]))) for x, b in points],
    )
    noise = Series(
        "noise baseline (legacy vs legacy)",
        "#656d76",
        [(x, _ratio(int(b["noise_mismatches"]), int(b["noise_comparisons"]))) for x, b in points],
        dashed=True,
    )
    v2 = Series("V2 p99", "#0969da", [(x, b["v2_p99_ms"]) for x, b in points])
    legacy = Series("legacy p99", "#9a6700", [(x, b["legacy_p99_ms"]) for x, b in points])
    return (
        '<div class="charts">'
        "<figure><figcaption>Mismatch rate against its noise baseline (per minute)</figcaption>"
        f"{line_chart([mismatch, noise], title='Mismatch rate and noise baseline', y_format=_pct, y_min_top=0.01)}"
        "</figure>"
        "<figure><figcaption>Read latency per origin, p99 (per minute)</figcaption>"
        f"{line_chart([v2, legacy], title='Read latency p99 per origin', y_format=_ms, y_min_top=1.0)}"
        "</figure></div>"
    )


def _shop_cell(shop: Mapping[str, Any]) -> str:
    state = str(shop["state"])
    failing = [str(g.get("name")) for g in shop.get("guards") or () if not g.get("ok")]
    tip = f"{shop['shop']}: {shop['stage']}, {state}" + (f"; failing: {', '.join(failing)}" if failing else "")
    name = str(shop["shop"]).removesuffix(".myshopify.com")
    return (
        f'<li class="cell st-{_e(state)}" title="{_e(tip)}" data-shop="{_e(shop["shop"])}" data-state="{_e(state)}">'
        f'<span class="name">{_e(name)}</span><span class="meta">{_e(shop["stage"])} · {_e(state)}</span></li>'
    )


def _render_rollout(section: SectionResult, now: datetime) -> str:
    if section.error:
        return _unavailable(section, "Guarded rollouts")
    data = section.data
    parts: list[str] = []
    if not data["rollouts"]:
        parts.append('<p class="empty">No guarded rollout yet. The charts show every shop\'s evidence.</p>')
    else:
        rows = []
        for r in data["rollouts"]:
            counts: dict[str, int] = {}
            for shop in r["shops"]:
                counts[shop["state"]] = counts.get(shop["state"], 0) + 1
            summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            kind = {"running": "info", "paused": "warn", "completed": "ok", "aborted": "muted"}.get(r["status"])
            rows.append(
                f"<tr><td><code>{_e(_short_id(r['id']))}</code></td><td>{_badge(r['status'], kind)}</td>"
                f"<td>{_e(r['targetStage'])}</td><td>{_e(summary)}</td><td>{_ago(r['createdAt'], now)}</td></tr>"
            )
        parts.append(
            '<table class="rollouts"><thead><tr><th>Rollout</th><th>Status</th><th>Target</th><th>Shops</th>'
            f"<th>Started</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
        legend = "".join(f'<li class="cell st-{state}">{state}</li>' for state in ROLLOUT_STATES)
        cells = "".join(_shop_cell(shop) for shop in data["shops"])
        parts.append(f'<h3>Shops by state</h3><ul class="shop-grid">{cells}</ul><ul class="legend">{legend}</ul>')
    scope = "the rollouts' shops" if data["scoped"] else "every shop"
    parts.append(f"<h3>Evidence over the last hour ({scope})</h3>{_rollout_charts(data['series'])}")
    return "".join(parts)


def render_content(view: StatusView) -> str:
    """The refreshable part of the page (everything below the header)."""
    now = view.generated_at
    sections = (
        ("jobs", "Migration jobs", _render_jobs(view.jobs, now)),
        ("flags", "Flags and migration stage", _render_flags(view.flags, now)),
        ("validation", "Validation", _render_validation(view.validation, now)),
        ("shadow", "Shadow-read mismatches", _render_shadow(view.shadow, now)),
        ("rollout", "Guarded rollouts", _render_rollout(view.rollout, now)),
    )
    body = "".join(f'<section id="{sid}"><h2>{title}</h2>{content}</section>' for sid, title, content in sections)
    stamp = now.strftime("%H:%M:%S UTC")
    return f'<p class="updated">Updated <time id="updated-at" datetime="{_e(now.isoformat())}">{stamp}</time></p>{body}'
