"""What the status page (`/admin/ui`) shows: every section gathered as plain data (dicts, lists,
numbers, datetimes), no HTML. The page itself is rendered by the admin UI's Jinja2 templates
(`app/templates/status/`, through `app/api/ui_templates.py`).

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
* What the page derives from the sources (which audit values changed, the validation checks'
  figures, a rollout's shops per state, the mismatch and noise rates per minute) is computed here,
  by pure functions (`audit_changes`, `validation_summary`, `rollout_view`, `evidence_series`),
  so the templates only format. Escaping is the templates' (autoescape): shop names, reasons and
  audit texts are data written by other people, and they leave this module as they came in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

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
from app.services.rollouts import operations as rollouts_ops

log = logging.getLogger(__name__)

__all__ = [
    "SectionResult",
    "StatusView",
    "ValidationCache",
    "audit_changes",
    "collect",
    "evidence_series",
    "rollout_view",
    "validation_summary",
]

SECTION_TIMEOUT_S = 3.0
RECENT_JOBS = 10
ACTIVE_JOBS = 20
AUDIT_ENTRIES = 15
MISMATCH_ROWS = 15
MISMATCH_FIELD_SAMPLE = 1000
VALIDATION_MAX_AGE_S = 60.0
VALIDATION_LIST_LIMIT = 20
ROLLOUTS_SHOWN = 5
CHART_WINDOW_S = 3600
CHART_BUCKET_S = 60
#: Shop states of a guarded rollout, in the order of the grid's legend.
ROLLOUT_STATES = ("waiting", "observing", "advancing", "held", "rolled_back", "done")


@dataclass
class SectionResult:
    """One box of the page: its data, or why it could not be shown."""

    data: Any = None
    error: str | None = None


@dataclass
class StatusView:
    """The whole page at one instant: `generated_at` is the "now" every "… ago" is counted from."""

    generated_at: datetime
    jobs: SectionResult
    flags: SectionResult
    validation: SectionResult
    shadow: SectionResult
    rollout: SectionResult = field(default_factory=SectionResult)


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
    """Unfinished jobs (newest first) and the latest finished ones, from the job service's listing."""
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
    """The flags, the migration stage and the latest audit entries (each with what it changed)."""
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
    audit = [{**entry, "changes": audit_changes(entry.get("oldValue"), entry.get("newValue"))} for entry in audit]
    return {"flags": flags, "stage": stage, "stages": list(STAGES), "audit": audit}


#: Keys of an audited flag row that say who and when, not what: never shown as a change.
_AUDIT_BOOKKEEPING = frozenset({"updatedAt", "updatedBy", "name"})


def audit_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """What one audit entry changed, key by key in name order: the value before (`added` when the key
    was absent, e.g. the row did not exist) and after. Bookkeeping keys and equal values are left out,
    so an entry that only touched `updatedBy` shows as no value change."""
    old, new = old or {}, new or {}
    return [
        {"key": key, "before": old.get(key), "after": new.get(key), "added": key not in old}
        for key in sorted(set(old) | set(new))
        if key not in _AUDIT_BOOKKEEPING and old.get(key) != new.get(key)
    ]


@dataclass
class ValidationCache:
    """The fleet-wide report reads whole tables: it is computed in the background at most once per
    `VALIDATION_MAX_AGE_S` per replica, however many people watch the page."""

    report: dict[str, Any] | None = None
    computed_at: float = float("-inf")
    task: asyncio.Task[None] | None = None


async def _refresh_validation(container: Container, cache: ValidationCache) -> None:
    """One background computation; a failure is logged and retried after half a period."""
    try:
        cache.report = await build_validation_report(container.pool, None, list_limit=VALIDATION_LIST_LIMIT)
        cache.computed_at = time.monotonic()
    except Exception:
        log.warning("status page: validation report failed", exc_info=True)
        cache.computed_at = time.monotonic() - VALIDATION_MAX_AGE_S / 2  # retry sooner than a full period


async def _validation(container: Container) -> dict[str, Any] | None:
    """The cached report's summary; None while the first report is still being computed."""
    cache = container.status_page_validation
    if cache is None:
        cache = container.status_page_validation = ValidationCache()
    stale = time.monotonic() - cache.computed_at > VALIDATION_MAX_AGE_S
    if stale and (cache.task is None or cache.task.done()):
        cache.task = asyncio.create_task(_refresh_validation(container, cache), name="status-page-validation")
    if cache.report is None and cache.task is not None:
        # First view: wait for it a little (shielded: a timeout here must not cancel the work).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SECTION_TIMEOUT_S - 0.5):
                await asyncio.shield(cache.task)
    return None if cache.report is None else validation_summary(cache.report)


def _parse_stamp(value: Any) -> datetime | None:
    """The report's `generatedAt` (ISO 8601, `Z` or an offset; naive taken as UTC), None if unreadable."""
    if not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        return None


def validation_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The validation report (`build_validation_report`) as the page's five checks, each with its
    verdict and the figures it is judged on. Legacy rows neither migrated nor unmigrated are
    `explained` (auto rules, AI metaobjects, recorded failures); recorded failures are listed by
    reason but do not fail validation."""
    counts = report.get("bundleCounts") or []
    legacy = sum(int(c.get("old", 0)) for c in counts)
    migrated = sum(int(c.get("migrated", 0)) for c in counts)
    unmigrated = int(report.get("unmigratedCount") or 0)
    differing = len(report.get("discountMismatches") or [])
    ai = report.get("aiBundles") or {}
    rules = report.get("autoBundleRules") or {}
    failed = report.get("failedByReason") or {}
    return {
        "ok": bool(report.get("ok")),
        "generatedAt": _parse_stamp(report.get("generatedAt")),
        "counts": {
            "ok": all(int(c.get("unmigrated", 0)) == 0 for c in counts),
            "shops": len(counts),
            "legacy": legacy,
            "migrated": migrated,
            "unmigrated": unmigrated,
            "explained": legacy - migrated - unmigrated,
        },
        "unmigrated": {"ok": unmigrated == 0, "count": unmigrated},
        "discounts": {"ok": differing == 0, "differing": differing},
        "ai": {
            "ok": bool(ai.get("ok", True)),
            "migrated": int(ai.get("migrated", 0)),
            "total": int(ai.get("total", 0)),
            "unmigrated": int(ai.get("unmigratedCount", 0)),
            "statusMismatches": len(ai.get("statusMismatches") or []),
        },
        "rules": {
            "ok": bool(rules.get("ok", True)),
            "migrated": int(rules.get("migrated", 0)),
            "total": int(rules.get("total", 0)),
            "unmigrated": int(rules.get("unmigratedCount", 0)),
        },
        "failedByReason": [(str(reason), int(n)) for reason, n in failed.items()],
        "failedCount": int(report.get("failedCount") or 0),
    }


async def _shadow(container: Container) -> dict[str, Any]:
    """The newest mismatches, and the fields that differ most over the latest `MISMATCH_FIELD_SAMPLE`."""
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
    return rollout_view(rollouts, list(shops.values()), series, scoped=scope is not None)


def rollout_view(
    rollouts: Sequence[Mapping[str, Any]],
    shops: Sequence[Mapping[str, Any]],
    buckets: Sequence[Mapping[str, Any]],
    *,
    scoped: bool,
) -> dict[str, Any]:
    """The rollout section: each rollout with its shops counted per state (state order), each shop
    with the names of its failing guards, the states in legend order, and the evidence series."""
    views = []
    for rollout in rollouts:
        counts: dict[str, int] = {}
        for shop in rollout["shops"]:
            counts[shop["state"]] = counts.get(shop["state"], 0) + 1
        views.append({**rollout, "stateCounts": sorted(counts.items())})
    return {
        "rollouts": views,
        "shops": [
            {**shop, "failing": [str(g.get("name")) for g in shop.get("guards") or () if not g.get("ok")]}
            for shop in shops
        ],
        "states": list(ROLLOUT_STATES),
        "evidence": evidence_series(buckets),
        "scoped": scoped,
    }


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def evidence_series(buckets: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[float, float | None]]]:
    """Per bucket (epoch seconds), what the guards read: the confirmed mismatch rate (over shadow
    comparisons and dual-write verifications), the noise baseline (legacy against legacy), and the
    p99 latency per origin. None where a bucket has no sample: no data is not zero."""
    points = [(float(b["bucket"]), b) for b in buckets]
    return {
        "mismatchRate": [
            (x, _ratio(int(b["confirmed"]), int(b["comparisons"]) + int(b["verified"]))) for x, b in points
        ],
        "noiseRate": [(x, _ratio(int(b["noise_mismatches"]), int(b["noise_comparisons"]))) for x, b in points],
        "v2P99": [(x, b["v2_p99_ms"]) for x, b in points],
        "legacyP99": [(x, b["legacy_p99_ms"]) for x, b in points],
    }


async def _guarded(name: str, source: Awaitable[Any]) -> SectionResult:
    """One section under its timeout: a failure becomes that section's error, never the page's."""
    try:
        async with asyncio.timeout(SECTION_TIMEOUT_S):
            return SectionResult(data=await source)
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
