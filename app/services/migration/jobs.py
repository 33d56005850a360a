"""Migration job rules (plan Phase 3 as a durable, observable job): create/plan, pause, resume,
cancel, retry-failed, the batch bookkeeping the worker relies on, and the stats a dashboard reads.

Durability comes from the item table: a job's items are planned up front in the same transaction
that creates the job (so `total` is known at once), every batch's outcomes and the job's counters
are written in one transaction, and an outcome is written only while this worker's claim on the
item is still current. Killing a worker at any instant therefore loses at most the batch in
flight, which the next claimer re-runs; `migrate_batch` is idempotent, and a re-run that finds the
V2 row its interrupted predecessor wrote counts it as migrated (see `settle_outcomes`). The
pgqueuer rows only *dispatch* work (one per job and shop); they hold no state that matters.

Status machine::

    queued ──► running ──► succeeded            (every item has an outcome; failures listed)
      │  ▲        │ ▲
      ▼  │        ▼ │
      paused ◄────┘ │  (resume → running, or queued if it never started)
      │             │
      └──► cancelling ──► cancelled              (once no batch is in flight)
    failed: the job could not be planned (lastError says why)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import orjson
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.ids import new_id
from app.core.time import as_utc
from app.repos import jobs as repo
from app.repos import migration as migration_repo
from app.rules.cursors import decode_cursor, decode_keyset_cursor, encode_cursor
from app.schemas.jobs import FailureOut, FailurePage, JobOut, JobPage, JobStats, ShopStats
from app.services.cutover.guard import require_legacy_tables
from app.services.migration.items.common import ITEM_KINDS_BY_JOB_KIND, ItemKind, ItemOutcome, PlannedItem

log = logging.getLogger(__name__)

JOB_KINDS: tuple[str, ...] = tuple(ITEM_KINDS_BY_JOB_KIND)
UNFINISHED: tuple[str, ...] = ("queued", "running", "paused", "cancelling")
TERMINAL: tuple[str, ...] = ("cancelled", "succeeded", "failed")
DEFAULT_QUEUE = "default"
DEFAULT_LEASE_S = 15.0
#: Attempts per item before a transient failure (e.g. Shopify unavailable) becomes a recorded failure.
DEFAULT_MAX_ATTEMPTS = 5
ENTRYPOINT_PREFIX = "sb_migration_shop"
JOBS_PATH = "/admin/migrations/jobs"

# Stable reason codes the engine itself records (item reasons come from the items package).
REASON_INTERNAL_ERROR = "internal_error"  # migrate_batch raised or reported no outcome for the item
REASON_SHOPIFY_UNAVAILABLE = "shopify_unavailable"  # transient failure, retries exhausted
REASON_ALREADY_MIGRATED = "already_migrated"
RESTART_DETAIL = "completed after restart: an interrupted attempt of this job had written it"

Planner = Callable[[Any, ItemKind, list[str] | None], Awaitable[list[PlannedItem]]]


def entrypoint_for(queue: str) -> str:
    """pgqueuer entrypoint of a queue; a worker consumes one queue (default: `default`)."""
    return f"{ENTRYPOINT_PREFIX}:{queue}"


def dispatch_key(job_id: str, shop: str) -> str:
    """pgqueuer dedupe key: at most one queued-or-running dispatch per (job, shop), so one shop's
    batches run one after the other."""
    return f"sb_migration:{job_id}:{shop}"


def overlapping_kinds(kind: str) -> list[str]:
    """`all` overlaps every kind; any other kind overlaps itself and `all`."""
    return list(JOB_KINDS) if kind == "all" else [kind, "all"]


# ----------------------------------------------------------------------------------- stats math


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else as_utc(value).timestamp()


def compute_progress(total: int, processed: int, *, finished: bool) -> float:
    """processed / total in [0, 1]; an empty job is 0 until it finishes, then 1."""
    if total <= 0:
        return 1.0 if finished else 0.0
    return min(1.0, max(0.0, processed / total))


def running_seconds(
    started_at: float | None, end: float, *, paused_s: float = 0.0, paused_at: float | None = None
) -> float:
    """Seconds the job has been running: start → end, minus finished pauses and the current one."""
    if started_at is None:
        return 0.0
    paused = paused_s
    if paused_at is not None:
        paused += max(0.0, end - max(paused_at, started_at))
    return max(0.0, end - started_at - paused)


def compute_rate(processed: int, seconds: float) -> float:
    """Items per second of running time (0 before any time has passed)."""
    if seconds <= 0 or processed <= 0:
        return 0.0
    return processed / seconds


def compute_eta(total: int, processed: int, rate: float, status: str) -> float | None:
    """Seconds left at `rate`: 0 when nothing is left, None when the job is not making progress
    (queued, paused, cancelled, failed, or no rate yet)."""
    remaining = max(0, total - processed)
    if remaining == 0:
        return 0.0
    if status != "running" or rate <= 0:
        return None
    return remaining / rate


def job_out(row: dict[str, Any]) -> JobOut:
    """The API view of a job row; stats are derived from the row alone (one primary-key read)."""
    checkpoint = row.get("checkpoint") or {}
    now = _epoch(row.get("dbNow")) or datetime.now(UTC).timestamp()
    end = _epoch(row["finishedAt"]) or now
    seconds = running_seconds(
        _epoch(row["startedAt"]),
        end,
        paused_s=float(checkpoint.get("pausedS") or 0.0),
        paused_at=float(checkpoint["pausedAt"]) if checkpoint.get("pausedAt") is not None else None,
    )
    total, processed = int(row["total"]), int(row["processed"])
    rate = compute_rate(processed, seconds)
    eta = compute_eta(total, processed, rate, row["status"])
    per_shop = [
        ShopStats(
            shop=shop,
            total=int(v.get("total", 0)),
            migrated=int(v.get("migrated", 0)),
            failed=int(v.get("failed", 0)),
            skipped=int(v.get("skipped", 0)),
        )
        for shop, v in sorted((row.get("perShop") or {}).items())
    ]
    url = f"{JOBS_PATH}/{row['id']}"
    return JobOut(
        id=row["id"],
        kind=row["kind"],
        status=row["status"],
        dryRun=row["dryRun"],
        shops=row["shops"],
        batchSize=row["batchSize"],
        parentJobId=row["parentJobId"],
        stats=JobStats(
            total=total,
            migrated=int(row["migrated"]),
            failed=int(row["failed"]),
            skipped=int(row["skipped"]),
            processed=processed,
        ),
        progress=round(compute_progress(total, processed, finished=row["status"] in TERMINAL), 6),
        ratePerSecond=round(rate, 3),
        etaSeconds=None if eta is None else round(eta, 1),
        perShop=per_shop,
        createdAt=cast(datetime, as_utc(row["createdAt"])),
        startedAt=as_utc(row["startedAt"]),
        finishedAt=as_utc(row["finishedAt"]),
        updatedAt=cast(datetime, as_utc(row["updatedAt"])),
        lastError=row["lastError"],
        statusUrl=url,
        failuresUrl=f"{url}/failures",
    )


# ----------------------------------------------------------------------------------- dispatch


async def enqueue_dispatch(conn: repo.Conn, job_id: str, queue: str, shops: Sequence[str]) -> None:
    """One pgqueuer row per (job, shop), in the caller's transaction; duplicates are skipped.

    The insert's trigger NOTIFYs every worker when the transaction commits, so work starts at once.
    """
    if not shops:
        return

    queries = Queries(AsyncpgDriver(cast(Any, conn)))
    entrypoint = entrypoint_for(queue)
    await queries.enqueue(
        [entrypoint] * len(shops),
        [orjson.dumps({"jobId": job_id, "shop": shop}) for shop in shops],
        [0] * len(shops),
        dedupe_key=[dispatch_key(job_id, shop) for shop in shops],
        on_conflict="skip",
    )


def shops_with_work(row: dict[str, Any]) -> list[str]:
    """Shops whose counters say items are left (from the job row: no item scan)."""
    out = []
    for shop, v in sorted((row.get("perShop") or {}).items()):
        done = int(v.get("migrated", 0)) + int(v.get("failed", 0)) + int(v.get("skipped", 0))
        if int(v.get("total", 0)) > done:
            out.append(shop)
    return out


async def ensure_dispatched(pool: asyncpg.Pool[Any], row: dict[str, Any]) -> int:
    """Re-create missing dispatch rows of an active job (a worker stopped mid-shop, a resume raced a
    finishing dispatch, ...). Returns how many were enqueued."""
    shops = shops_with_work(row)
    if not shops:
        return 0
    live = await repo.live_dispatch_keys(pool, [dispatch_key(row["id"], s) for s in shops])
    missing = [s for s in shops if dispatch_key(row["id"], s) not in live]
    if missing:
        async with pool.acquire() as conn, conn.transaction():
            await enqueue_dispatch(conn, row["id"], queue_of(row), missing)
    return len(missing)


def queue_of(row: dict[str, Any]) -> str:
    return str((row.get("options") or {}).get("queue") or DEFAULT_QUEUE)


# ----------------------------------------------------------------------------------- create


async def _check_overlap(conn: repo.Conn, kind: str, shops: Sequence[str] | None) -> None:
    other = await repo.find_overlapping(conn, statuses=UNFINISHED, kinds=overlapping_kinds(kind), shops=shops)
    if other is not None:
        raise Conflict(
            f"Job {other['id']} ({other['kind']}, {other['status']}) already covers some of these shops.",
            conflictingJobId=other["id"],
        )


def _initial_per_shop(counts: dict[str, int], requested: Sequence[str] | None) -> dict[str, Any]:
    shops = set(counts) | set(requested or ())
    return {s: {"total": counts.get(s, 0), "migrated": 0, "failed": 0, "skipped": 0} for s in sorted(shops)}


async def create_job(
    pool: asyncpg.Pool[Any],
    *,
    kind: str,
    shops: Sequence[str] | None = None,
    dry_run: bool = False,
    batch_size: int = 100,
    fill_products: bool = False,
    queue: str = DEFAULT_QUEUE,
    plan: Planner | None = None,
) -> JobOut:
    """Plan every item and create the job in one transaction, under an advisory lock so two
    overlapping creates cannot both pass the "nothing running" check. 409 when a non-dry-run
    unfinished job of an overlapping kind covers an overlapping shop set.

    A planning error does not vanish with the rolled-back transaction: the job is recorded as
    `failed` with `lastError`, so whoever polls sees why.
    """
    if kind not in JOB_KINDS:
        raise ValidationFailed("Unknown job kind.", errors=[{"field": "body.kind", "message": f"one of {JOB_KINDS}"}])
    shop_list = sorted(set(shops)) if shops is not None else None
    job_id = new_id()
    options = {"queue": queue, "fillProducts": fill_products}
    checkpoint: dict[str, Any] = {"shops": {}, "pausedS": 0.0}
    # The same row whether planning succeeds or is recorded as failed.
    job_row: dict[str, Any] = {
        "job_id": job_id,
        "kind": kind,
        "dry_run": dry_run,
        "shops": shop_list,
        "batch_size": batch_size,
        "options": options,
        "parent_job_id": None,
        "checkpoint": checkpoint,
    }
    try:
        async with pool.acquire() as conn, conn.transaction():
            await repo.lock_job_creation(conn)
            # Archived legacy tables (Phase 5) cannot be planned from: 409 with the way out, not a failed job.
            await require_legacy_tables(conn, "Planning a migration job")
            if not dry_run:
                await _check_overlap(conn, kind, shop_list)
            await repo.insert_job(conn, **job_row)
            total = await _plan_items(conn, job_id, kind, shop_list, plan)
            counts = await repo.item_counts_by_shop(conn, job_id) if total else {}
            await repo.set_plan(
                conn, job_id, total=total, per_shop=_initial_per_shop(counts, shop_list), finished=total == 0
            )
            await enqueue_dispatch(conn, job_id, queue, sorted(counts))
    except (Conflict, ValidationFailed):
        raise
    except Exception as exc:
        log.exception("planning migration job %s (%s) failed", job_id, kind)
        async with pool.acquire() as conn:
            await repo.insert_job(
                conn, **job_row, status="failed", last_error=f"planning failed: {type(exc).__name__}: {exc}"[:2000]
            )
    return await get_job(pool, job_id)


async def _plan_items(
    conn: repo.Conn, job_id: str, kind: str, shop_list: list[str] | None, plan: Planner | None
) -> int:
    """Write the job's items; how many. Without a planner the database makes the plan (one
    INSERT ... SELECT per item kind), so a job of any size costs the service no memory; a planner
    (tests, `retry-failed`'s callers) returns the items to insert."""
    if plan is None:
        total = 0
        for item_kind in ITEM_KINDS_BY_JOB_KIND[kind]:
            total += await migration_repo.plan_items_into(conn, job_id, item_kind, shop_list, total)
        return total
    planned: list[PlannedItem] = []
    for item_kind in ITEM_KINDS_BY_JOB_KIND[kind]:
        planned.extend(await plan(conn, item_kind, shop_list))
    return await repo.insert_items(
        conn, job_id, [p.item_kind for p in planned], [p.legacy_id for p in planned], [p.shop for p in planned]
    )


async def retry_failed(
    pool: asyncpg.Pool[Any],
    job_id: str,
    *,
    dry_run: bool | None = None,
    batch_size: int | None = None,
) -> JobOut:
    """A new job (parentJobId = job_id) over the finished job's failed items; same kind and queue,
    dryRun and batchSize inherited unless given. 409 while the job is unfinished, when it has no
    failures, or when a running job overlaps."""
    async with pool.acquire() as conn, conn.transaction():
        await repo.lock_job_creation(conn)
        await require_legacy_tables(conn, "Retrying a migration job's failures")
        parent = await repo.get_job(conn, job_id)
        if parent is None:
            raise NotFound(f"No migration job {job_id}.")
        if parent["status"] not in TERMINAL:
            raise Conflict(f"Job {job_id} is {parent['status']}; retry its failures once it has finished.")
        shops = await repo.failed_item_shops(conn, job_id)
        if not shops:
            raise Conflict(f"Job {job_id} has no failed items.")
        dry = parent["dryRun"] if dry_run is None else dry_run
        if not dry:
            await _check_overlap(conn, parent["kind"], shops)
        new_job_id = new_id()
        options = dict(parent["options"] or {})
        await repo.insert_job(
            conn,
            job_id=new_job_id,
            kind=parent["kind"],
            dry_run=dry,
            shops=shops,
            batch_size=batch_size or parent["batchSize"],
            options=options,
            parent_job_id=job_id,
            checkpoint={"shops": {}, "pausedS": 0.0},
        )
        total = await repo.copy_failed_items(conn, job_id, new_job_id)
        counts = await repo.item_counts_by_shop(conn, new_job_id)
        await repo.set_plan(conn, new_job_id, total=total, per_shop=_initial_per_shop(counts, None), finished=False)
        await enqueue_dispatch(conn, new_job_id, queue_of({"options": options}), sorted(counts))
    return await get_job(pool, new_job_id)


# ----------------------------------------------------------------------------------- transitions


async def pause_job(pool: asyncpg.Pool[Any], job_id: str) -> JobOut:
    """queued|running → paused: workers stop claiming; batches in flight still record. Idempotent."""
    async with pool.acquire() as conn, conn.transaction():
        row = await repo.lock_job(conn, job_id)
        if row is None:
            raise NotFound(f"No migration job {job_id}.")
        if row["status"] in ("queued", "running"):
            row = await repo.pause(conn, job_id)
        elif row["status"] != "paused":
            raise Conflict(f"Job {job_id} is {row['status']}; only a queued or running job can be paused.")
    assert row is not None
    return job_out(row)


async def resume_job(pool: asyncpg.Pool[Any], job_id: str) -> JobOut:
    """paused → running (queued if it never started) and dispatch its remaining shops. Idempotent."""
    async with pool.acquire() as conn, conn.transaction():
        row = await repo.lock_job(conn, job_id)
        if row is None:
            raise NotFound(f"No migration job {job_id}.")
        if row["status"] == "paused":
            row = await repo.resume(conn, job_id, "running" if row["startedAt"] else "queued")
            assert row is not None
            await enqueue_dispatch(conn, job_id, queue_of(row), shops_with_work(row))
        elif row["status"] not in ("queued", "running"):
            raise Conflict(f"Job {job_id} is {row['status']}; only a paused job can be resumed.")
    assert row is not None
    return job_out(row)


async def cancel_job(pool: asyncpg.Pool[Any], job_id: str, *, lease_s: float = DEFAULT_LEASE_S) -> JobOut:
    """queued|running|paused → cancelling, and → cancelled as soon as no batch is in flight (at once
    when none is; otherwise the worker finishing the last batch, or any worker's sweep, settles it).
    Items not yet processed stay pending. Idempotent while cancelling."""
    async with pool.acquire() as conn, conn.transaction():
        row = await repo.lock_job(conn, job_id)
        if row is None:
            raise NotFound(f"No migration job {job_id}.")
        if row["status"] in ("queued", "running", "paused"):
            row = await repo.set_status(conn, job_id, "cancelling")
        elif row["status"] != "cancelling":
            raise Conflict(f"Job {job_id} is already {row['status']}.")
    await repo.cancel_if_idle(pool, job_id, lease_s)
    return await get_job(pool, job_id)


# ----------------------------------------------------------------------------------- reads


async def get_job(pool: asyncpg.Pool[Any] | repo.Conn, job_id: str) -> JobOut:
    row = await repo.get_job(pool, job_id)
    if row is None:
        raise NotFound(f"No migration job {job_id}.")
    return job_out(row)


async def list_jobs(
    pool: asyncpg.Pool[Any],
    *,
    limit: int = 50,
    cursor: str | None = None,
    status: str | None = None,
    kind: str | None = None,
) -> JobPage:
    """Newest first."""
    before: tuple[datetime, str] | None = None
    if cursor:
        at, key = decode_keyset_cursor(cursor, "job", key_type=str)
        before = (at, str(key))
    rows = await repo.list_jobs(pool, limit=limit + 1, before=before, status=status, kind=kind)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor("job", last["id"], last["createdAt"])
    return JobPage(items=[job_out(r) for r in page], nextCursor=next_cursor)


async def list_failures(
    pool: asyncpg.Pool[Any],
    job_id: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    shop: str | None = None,
    reason: str | None = None,
) -> FailurePage:
    """One entry per failed legacy item, in plan order."""
    after = int(decode_cursor(cursor, "fail", key_type=int).key) if cursor else None
    if await repo.get_job(pool, job_id) is None:
        raise NotFound(f"No migration job {job_id}.")
    rows = await repo.list_failures(pool, job_id, limit=limit + 1, after_position=after, shop=shop, reason=reason)
    page = rows[:limit]
    items = [
        FailureOut(
            itemKind=r["itemKind"],
            legacyId=r["legacyId"],
            shop=r["shop"],
            reason=r["reason"],
            detail=r["detail"],
            attempts=r["attempts"],
            lastAttemptAt=as_utc(r["lastAttemptAt"]),
        )
        for r in page
    ]
    next_cursor = encode_cursor("fail", page[-1]["position"]) if len(rows) > limit else None
    return FailurePage(items=items, nextCursor=next_cursor)


# ----------------------------------------------------------------------------------- batch bookkeeping


@dataclass(frozen=True)
class ClaimedItem:
    item_kind: str
    legacy_id: str
    position: int
    attempts: int  # including the current one
    was_claimed: bool  # an earlier claim never recorded an outcome (its worker died or was stopped)


@dataclass(frozen=True)
class ItemWrite:
    item_kind: str
    legacy_id: str
    status: str  # migrated | skipped | failed | pending (= retry later)
    reason: str | None = None
    detail: str | None = None
    v2_id: str | None = None
    keep_claim: bool = False  # for a retry whose attempt may have written V2 rows


def settle_outcomes(
    claimed: Sequence[ClaimedItem],
    outcomes: Sequence[ItemOutcome] | None,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    error: str | None = None,
) -> list[ItemWrite]:
    """What to record for each claimed item, given migrate_batch's outcomes (None: it raised).

    * transient outcome → retry later (`pending`) until `max_attempts`, then `failed` with its reason
      (an unsettled earlier attempt stays marked: it may have written, whatever this attempt saw);
    * `skipped/already_migrated` on an item whose previous claim in this job never recorded an
      outcome → `migrated`: that interrupted attempt wrote the V2 row, and an uninterrupted run
      would have counted it as migrated (so counts survive kill -9);
    * migrate_batch raising, or reporting nothing for an item → retry, keeping the claim marker
      (the attempt may have written), then `failed/internal_error`.
    """
    by_id = {o.legacy_id: o for o in outcomes} if outcomes is not None else {}
    writes: list[ItemWrite] = []
    for item in claimed:
        outcome = by_id.get(item.legacy_id)
        if outcome is None:
            detail = error or "migrate_batch reported no outcome for this item"
            if item.attempts >= max_attempts:
                writes.append(ItemWrite(item.item_kind, item.legacy_id, "failed", REASON_INTERNAL_ERROR, detail))
            else:
                writes.append(
                    ItemWrite(item.item_kind, item.legacy_id, "pending", REASON_INTERNAL_ERROR, detail, keep_claim=True)
                )
            continue
        if outcome.transient and outcome.status != "migrated":
            reason = outcome.reason or REASON_SHOPIFY_UNAVAILABLE
            if item.attempts >= max_attempts:
                detail = f"{outcome.detail or reason} (gave up after {item.attempts} attempts)"
                writes.append(ItemWrite(item.item_kind, item.legacy_id, "failed", reason, detail, outcome.v2_id))
            else:
                # Keep an unsettled earlier attempt's marker: that attempt may still have written V2.
                writes.append(
                    ItemWrite(
                        item.item_kind, item.legacy_id, "pending", reason, outcome.detail, keep_claim=item.was_claimed
                    )
                )
            continue
        if outcome.status == "skipped" and outcome.reason == REASON_ALREADY_MIGRATED and item.was_claimed:
            writes.append(ItemWrite(item.item_kind, item.legacy_id, "migrated", None, RESTART_DETAIL, outcome.v2_id))
            continue
        writes.append(
            ItemWrite(item.item_kind, item.legacy_id, outcome.status, outcome.reason, outcome.detail, outcome.v2_id)
        )
    return writes


@dataclass(frozen=True)
class BatchResult:
    migrated: int
    failed: int
    skipped: int
    retrying: int
    dropped: int  # outcomes not written: the claim had moved on (another worker took the items over)


async def record_batch(
    pool: asyncpg.Pool[Any],
    job_id: str,
    shop: str,
    token: str,
    writes: Sequence[ItemWrite],
    *,
    worker_id: str,
    lease_s: float,
) -> BatchResult:
    """ONE transaction: the item outcomes still claimed by `token`, and the job's counters, the
    shop's counters and checkpoint incremented from the rows actually written (never from what
    was attempted), so a duplicate or late writer cannot double count."""
    if not writes:
        return BatchResult(0, 0, 0, 0, 0)
    async with pool.acquire() as conn, conn.transaction():
        written = await repo.write_outcomes(
            conn,
            job_id,
            token,
            kinds=[w.item_kind for w in writes],
            legacy_ids=[w.legacy_id for w in writes],
            statuses=[w.status for w in writes],
            reasons=[w.reason for w in writes],
            details=[(w.detail[:4000] if w.detail else None) for w in writes],
            v2_ids=[w.v2_id for w in writes],
            keep_claims=[w.keep_claim for w in writes],
        )
        counts = {"migrated": 0, "failed": 0, "skipped": 0, "pending": 0}
        last_position = -1
        for row in written:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
            if row["status"] != "pending":
                last_position = max(last_position, row["position"])
        if counts["migrated"] or counts["failed"] or counts["skipped"]:
            await repo.add_counts(
                conn,
                job_id,
                shop,
                migrated=counts["migrated"],
                failed=counts["failed"],
                skipped=counts["skipped"],
                position=last_position,
                worker_id=worker_id,
                lease_s=lease_s,
            )
    return BatchResult(
        counts["migrated"], counts["failed"], counts["skipped"], counts["pending"], len(writes) - len(written)
    )
