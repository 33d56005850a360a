"""SQL for migration jobs (`sb_migration_jobs`), their items (`sb_migration_job_items`) and the
pgqueuer rows that dispatch them. No rules here: `app.services.migration.jobs` decides.

Clock: every timestamp written here is the database clock in UTC (`timezone('UTC', now())`), naive
like Prisma's `TIMESTAMP(3)`. Leases are compared across replicas, so they need one clock, and
`timezone('UTC', ...)` does not depend on the session's `TimeZone` setting.

JSONB travels as text both ways (the pools register no JSON codec); this module encodes/decodes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
Executor: TypeAlias = "Conn | asyncpg.Pool[Any]"

NOW = "timezone('UTC', now())"
#: Key of the transaction-scoped advisory lock that serialises "check overlap + insert job".
CREATE_LOCK_KEY = 0x5B_10B5_0001

JOB_COLUMNS = (
    'id, kind, status, "dryRun", shops, "batchSize", options, "parentJobId", total, processed, migrated, '
    'failed, skipped, "perShop", checkpoint, "lastError", "leaseOwner", "leaseExpiresAt", "createdAt", '
    '"startedAt", "finishedAt", "updatedAt"'
)
_RETURNING_JOB = f"RETURNING {JOB_COLUMNS}, timezone('UTC', clock_timestamp()) AS \"dbNow\""


def _json_in(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_out(value: Any) -> Any:
    if value is None or not isinstance(value, str | bytes):
        return value
    return orjson.loads(value)


def _job_row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    row = dict(record)
    for key in ("options", "perShop", "checkpoint"):
        row[key] = _json_out(row[key]) or {}
    return row


# ----------------------------------------------------------------------------------- job rows


async def lock_job_creation(conn: Conn) -> None:
    """Serialise job creation until the transaction ends (check-then-insert without a race)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", CREATE_LOCK_KEY)


async def find_overlapping(
    conn: Executor, *, statuses: Sequence[str], kinds: Sequence[str], shops: Sequence[str] | None
) -> dict[str, Any] | None:
    """The oldest non-dry-run job in `statuses` of one of `kinds` whose shop set meets `shops`
    (NULL on either side means every shop)."""
    record = await conn.fetchrow(
        f"""SELECT {JOB_COLUMNS}, timezone('UTC', clock_timestamp()) AS "dbNow" FROM sb_migration_jobs
            WHERE status = ANY($1::text[]) AND NOT "dryRun" AND kind = ANY($2::text[])
              AND ($3::text[] IS NULL OR shops IS NULL OR shops && $3::text[])
            ORDER BY "createdAt", id LIMIT 1""",
        list(statuses),
        list(kinds),
        list(shops) if shops is not None else None,
    )
    return _job_row(record)


async def insert_job(
    conn: Conn,
    *,
    job_id: str,
    kind: str,
    dry_run: bool,
    shops: Sequence[str] | None,
    batch_size: int,
    options: dict[str, Any],
    parent_job_id: str | None,
    checkpoint: dict[str, Any],
    status: str = "queued",
    last_error: str | None = None,
) -> None:
    await conn.execute(
        f"""INSERT INTO sb_migration_jobs
              (id, kind, status, "dryRun", shops, "batchSize", options, "parentJobId", checkpoint, "lastError",
               "createdAt", "updatedAt", "finishedAt")
            VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9::jsonb, $10, {NOW}, {NOW},
                    CASE WHEN $3 IN ('succeeded', 'failed', 'cancelled') THEN {NOW} END)""",
        job_id,
        kind,
        status,
        dry_run,
        list(shops) if shops is not None else None,
        batch_size,
        _json_in(options),
        parent_job_id,
        _json_in(checkpoint),
        last_error,
    )


async def insert_items(
    conn: Conn, job_id: str, kinds: Sequence[str], legacy_ids: Sequence[str], shops: Sequence[str]
) -> int:
    """Plan rows in one statement; `position` is the plan order. Duplicates are dropped, not fatal."""
    status = await conn.execute(
        """INSERT INTO sb_migration_job_items ("jobId", "itemKind", "legacyId", shop, position)
           SELECT $1, t.k, t.l, t.s, (t.o - 1)::int
           FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS t(k, l, s, o)
           ON CONFLICT DO NOTHING""",
        job_id,
        list(kinds),
        list(legacy_ids),
        list(shops),
    )
    return int(status.rsplit(" ", 1)[-1])


async def copy_failed_items(conn: Conn, parent_id: str, job_id: str) -> int:
    """A retry job's items: the parent's failed items, in the parent's order."""
    status = await conn.execute(
        """INSERT INTO sb_migration_job_items ("jobId", "itemKind", "legacyId", shop, position)
           SELECT $2, "itemKind", "legacyId", shop, (row_number() OVER (ORDER BY position) - 1)::int
           FROM sb_migration_job_items WHERE "jobId" = $1 AND status = 'failed'""",
        parent_id,
        job_id,
    )
    return int(status.rsplit(" ", 1)[-1])


async def failed_item_shops(conn: Executor, job_id: str) -> list[str]:
    rows = await conn.fetch(
        """SELECT DISTINCT shop FROM sb_migration_job_items WHERE "jobId" = $1 AND status = 'failed'
           ORDER BY shop""",
        job_id,
    )
    return [r["shop"] for r in rows]


async def item_counts_by_shop(conn: Conn, job_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        'SELECT shop, count(*)::int AS n FROM sb_migration_job_items WHERE "jobId" = $1 GROUP BY shop', job_id
    )
    return {r["shop"]: r["n"] for r in rows}


async def set_plan(conn: Conn, job_id: str, *, total: int, per_shop: dict[str, Any], finished: bool) -> None:
    """Totals known up front; a job with nothing to do is finished at once."""
    await conn.execute(
        f"""UPDATE sb_migration_jobs SET total = $2, "perShop" = $3::jsonb, "updatedAt" = {NOW},
              status = CASE WHEN $4 THEN 'succeeded' ELSE status END,
              "startedAt" = CASE WHEN $4 THEN {NOW} ELSE "startedAt" END,
              "finishedAt" = CASE WHEN $4 THEN {NOW} ELSE "finishedAt" END
            WHERE id = $1""",
        job_id,
        total,
        _json_in(per_shop),
        finished,
    )


async def get_job(conn: Executor, job_id: str) -> dict[str, Any] | None:
    """One primary-key read: everything a dashboard shows, counters included."""
    record = await conn.fetchrow(
        f"""SELECT {JOB_COLUMNS}, timezone('UTC', clock_timestamp()) AS "dbNow"
            FROM sb_migration_jobs WHERE id = $1""",
        job_id,
    )
    return _job_row(record)


async def lock_job(conn: Conn, job_id: str) -> dict[str, Any] | None:
    record = await conn.fetchrow(
        f"""SELECT {JOB_COLUMNS}, timezone('UTC', clock_timestamp()) AS "dbNow"
            FROM sb_migration_jobs WHERE id = $1 FOR UPDATE""",
        job_id,
    )
    return _job_row(record)


async def list_jobs(
    conn: Executor,
    *,
    limit: int,
    before: tuple[datetime, str] | None,
    status: str | None,
    kind: str | None,
) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated on ("createdAt", id); fetches `limit` rows."""
    records = await conn.fetch(
        f"""SELECT {JOB_COLUMNS}, timezone('UTC', clock_timestamp()) AS "dbNow" FROM sb_migration_jobs
            WHERE ($1::timestamp IS NULL OR ("createdAt", id) < ($1::timestamp, $2::text))
              AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR kind = $4)
            ORDER BY "createdAt" DESC, id DESC LIMIT $5""",
        before[0] if before else None,
        before[1] if before else None,
        status,
        kind,
        limit,
    )
    return [r for r in (_job_row(rec) for rec in records) if r is not None]


async def active_jobs(conn: Executor) -> list[dict[str, Any]]:
    """Jobs a sweeper may have to push along (dispatch, finish, settle a cancel)."""
    records = await conn.fetch(
        f"""SELECT {JOB_COLUMNS}, timezone('UTC', clock_timestamp()) AS "dbNow" FROM sb_migration_jobs
            WHERE status IN ('queued', 'running', 'cancelling')"""
    )
    return [r for r in (_job_row(rec) for rec in records) if r is not None]


async def set_status(conn: Conn, job_id: str, status: str, *, finish: bool = False) -> dict[str, Any] | None:
    record = await conn.fetchrow(
        f"""UPDATE sb_migration_jobs SET status = $2, "updatedAt" = {NOW},
              "finishedAt" = CASE WHEN $3 THEN {NOW} ELSE "finishedAt" END
            WHERE id = $1 {_RETURNING_JOB}""",
        job_id,
        status,
        finish,
    )
    return _job_row(record)


async def pause(conn: Conn, job_id: str) -> dict[str, Any] | None:
    """Status paused; `checkpoint.pausedAt` (epoch s) lets the rate leave paused time out."""
    record = await conn.fetchrow(
        f"""UPDATE sb_migration_jobs SET status = 'paused', "updatedAt" = {NOW},
              checkpoint = checkpoint || jsonb_build_object('pausedAt', extract(epoch FROM now())::float8)
            WHERE id = $1 {_RETURNING_JOB}""",
        job_id,
    )
    return _job_row(record)


async def resume(conn: Conn, job_id: str, status: str) -> dict[str, Any] | None:
    """Back to `status`; the pause's length is added to `checkpoint.pausedS` when the job had started."""
    record = await conn.fetchrow(
        f"""UPDATE sb_migration_jobs SET status = $2, "updatedAt" = {NOW},
              checkpoint = (checkpoint - 'pausedAt') || jsonb_build_object(
                'pausedS', COALESCE((checkpoint ->> 'pausedS')::float8, 0)
                  + CASE WHEN "startedAt" IS NOT NULL AND checkpoint ? 'pausedAt'
                         THEN GREATEST(extract(epoch FROM now())::float8 - (checkpoint ->> 'pausedAt')::float8, 0)
                         ELSE 0 END)
            WHERE id = $1 {_RETURNING_JOB}""",
        job_id,
        status,
    )
    return _job_row(record)


async def start_if_queued(conn: Executor, job_id: str) -> None:
    await conn.execute(
        f"""UPDATE sb_migration_jobs SET status = 'running', "startedAt" = COALESCE("startedAt", {NOW}),
              "updatedAt" = {NOW}
            WHERE id = $1 AND status = 'queued'""",
        job_id,
    )


async def finish_if_done(conn: Executor, job_id: str) -> bool:
    """queued|running → succeeded once no item is pending; True when this call finished it."""
    record = await conn.fetchrow(
        f"""UPDATE sb_migration_jobs SET status = 'succeeded', "finishedAt" = {NOW}, "updatedAt" = {NOW},
              "startedAt" = COALESCE("startedAt", {NOW}), "leaseOwner" = NULL, "leaseExpiresAt" = NULL
            WHERE id = $1 AND status IN ('queued', 'running') AND processed >= total
              AND NOT EXISTS (SELECT 1 FROM sb_migration_job_items i WHERE i."jobId" = $1 AND i.status = 'pending')
            RETURNING id""",
        job_id,
    )
    return record is not None


async def cancel_if_idle(conn: Executor, job_id: str, lease_s: float) -> bool:
    """cancelling → cancelled once no batch is in flight (no live claim); True when this call did it."""
    record = await conn.fetchrow(
        f"""UPDATE sb_migration_jobs SET status = 'cancelled', "finishedAt" = {NOW}, "updatedAt" = {NOW},
              "leaseOwner" = NULL, "leaseExpiresAt" = NULL
            WHERE id = $1 AND status = 'cancelling'
              AND NOT EXISTS (
                SELECT 1 FROM sb_migration_job_items i
                WHERE i."jobId" = $1 AND i."claimedBy" IS NOT NULL AND i.status = 'pending'
                  AND i."claimedAt" > {NOW} - make_interval(secs => $2))
            RETURNING id""",
        job_id,
        lease_s,
    )
    return record is not None


async def set_last_error(conn: Executor, job_id: str, message: str) -> None:
    await conn.execute(
        f'UPDATE sb_migration_jobs SET "lastError" = $2, "updatedAt" = {NOW} WHERE id = $1', job_id, message
    )


# ----------------------------------------------------------------------------------- items


async def claim_batch(
    conn: Executor, job_id: str, shop: str, *, limit: int, token: str, lease_s: float
) -> list[dict[str, Any]]:
    """Lease up to `limit` pending items of one shop and one item kind (the kind of the first pending
    item, so a shop's kinds run in plan order), oldest position first.

    Claimable: pending and not under a live claim (never claimed, released, or its lease expired).
    `wasClaimed` reports a claim that never got an outcome: an earlier attempt may have written V2.
    """
    records = await conn.fetch(
        f"""WITH claimable AS (
              SELECT i."itemKind", i."legacyId", i.position, i."claimedBy" FROM sb_migration_job_items i
              WHERE i."jobId" = $1 AND i.shop = $2 AND i.status = 'pending'
                AND (i."claimedBy" IS NULL OR i."claimedAt" IS NULL
                     OR i."claimedAt" < {NOW} - make_interval(secs => $5))
            ),
            first AS (SELECT "itemKind" FROM claimable ORDER BY position LIMIT 1),
            picked AS (
              SELECT i."itemKind", i."legacyId", i."claimedBy" AS prev
              FROM sb_migration_job_items i JOIN first f ON f."itemKind" = i."itemKind"
              WHERE i."jobId" = $1 AND i.shop = $2 AND i.status = 'pending'
                AND (i."claimedBy" IS NULL OR i."claimedAt" IS NULL
                     OR i."claimedAt" < {NOW} - make_interval(secs => $5))
              ORDER BY i.position LIMIT $3
              FOR UPDATE OF i SKIP LOCKED
            )
            UPDATE sb_migration_job_items i
            SET "claimedBy" = $4, "claimedAt" = {NOW}, attempts = i.attempts + 1, "lastAttemptAt" = {NOW}
            FROM picked p
            WHERE i."jobId" = $1 AND i."itemKind" = p."itemKind" AND i."legacyId" = p."legacyId"
            RETURNING i."itemKind", i."legacyId", i.position, i.attempts, p.prev IS NOT NULL AS "wasClaimed" """,
        job_id,
        shop,
        limit,
        token,
        lease_s,
    )
    return sorted((dict(r) for r in records), key=lambda r: r["position"])


async def has_live_claims(conn: Executor, job_id: str, shop: str, lease_s: float) -> bool:
    """Another worker holds a live lease on some pending item of this shop."""
    value = await conn.fetchval(
        f"""SELECT EXISTS (
              SELECT 1 FROM sb_migration_job_items
              WHERE "jobId" = $1 AND shop = $2 AND status = 'pending' AND "claimedBy" IS NOT NULL
                AND "claimedAt" > {NOW} - make_interval(secs => $3))""",
        job_id,
        shop,
        lease_s,
    )
    return bool(value)


async def extend_claims(conn: Executor, job_id: str, token: str) -> None:
    """Heartbeat: keep this batch's lease alive while migrate_batch runs."""
    await conn.execute(
        f"""UPDATE sb_migration_job_items SET "claimedAt" = {NOW}
            WHERE "jobId" = $1 AND "claimedBy" = $2 AND status = 'pending' AND "claimedAt" IS NOT NULL""",
        job_id,
        token,
    )


async def expire_claims(conn: Executor, job_id: str, token: str) -> None:
    """Give a batch back without an outcome (shutdown, cancellation): claimable at once, but still
    marked as claimed, because the interrupted attempt may have written V2 rows."""
    await conn.execute(
        """UPDATE sb_migration_job_items SET "claimedAt" = NULL
           WHERE "jobId" = $1 AND "claimedBy" = $2 AND status = 'pending'""",
        job_id,
        token,
    )


async def write_outcomes(
    conn: Conn,
    job_id: str,
    token: str,
    *,
    kinds: Sequence[str],
    legacy_ids: Sequence[str],
    statuses: Sequence[str],
    reasons: Sequence[str | None],
    details: Sequence[str | None],
    v2_ids: Sequence[str | None],
    keep_claims: Sequence[bool],
) -> list[dict[str, Any]]:
    """Write outcomes of items still pending *and* still claimed by `token`; returns the rows
    written (status, position). Status 'pending' records a retry: reason/detail kept, lease released
    (or, with keep_claim, left marked as claimed-but-unsettled)."""
    records = await conn.fetch(
        """WITH o AS (
             SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[])
               AS o(kind, legacy_id, status, reason, detail, v2_id, keep_claim)
           )
           UPDATE sb_migration_job_items i
           SET status = o.status, reason = o.reason, detail = o.detail, "v2Id" = COALESCE(o.v2_id, i."v2Id"),
               "claimedBy" = CASE WHEN o.status = 'pending' AND o.keep_claim THEN i."claimedBy" END,
               "claimedAt" = NULL
           FROM o
           WHERE i."jobId" = $1 AND i."itemKind" = o.kind AND i."legacyId" = o.legacy_id
             AND i.status = 'pending' AND i."claimedBy" = $2
           RETURNING i.status, i.position""",
        job_id,
        token,
        list(kinds),
        list(legacy_ids),
        list(statuses),
        list(reasons),
        list(details),
        list(v2_ids),
        list(keep_claims),
    )
    return [dict(r) for r in records]


async def add_counts(
    conn: Conn,
    job_id: str,
    shop: str,
    *,
    migrated: int,
    failed: int,
    skipped: int,
    position: int,
    worker_id: str,
    lease_s: float,
) -> None:
    """Counters, the shop's counters and the shop's checkpoint, from the outcomes actually written."""
    await conn.execute(
        f"""UPDATE sb_migration_jobs SET
              processed = processed + $3 + $4 + $5, migrated = migrated + $3, failed = failed + $4,
              skipped = skipped + $5,
              "perShop" = jsonb_set("perShop", ARRAY[$2::text], COALESCE("perShop" -> $2::text, '{{"total": 0}}'::jsonb)
                || jsonb_build_object(
                  'migrated', COALESCE(("perShop" -> $2::text ->> 'migrated')::int, 0) + $3,
                  'failed', COALESCE(("perShop" -> $2::text ->> 'failed')::int, 0) + $4,
                  'skipped', COALESCE(("perShop" -> $2::text ->> 'skipped')::int, 0) + $5)),
              checkpoint = jsonb_set(
                CASE WHEN checkpoint ? 'shops' THEN checkpoint ELSE checkpoint || '{{"shops": {{}}}}'::jsonb END,
                ARRAY['shops', $2::text],
                jsonb_build_object('position', GREATEST(
                  $6, COALESCE((checkpoint -> 'shops' -> $2::text ->> 'position')::int, -1)))),
              "leaseOwner" = $7, "leaseExpiresAt" = {NOW} + make_interval(secs => $8), "updatedAt" = {NOW}
            WHERE id = $1""",
        job_id,
        shop,
        migrated,
        failed,
        skipped,
        position,
        worker_id,
        lease_s,
    )


async def list_failures(
    conn: Executor,
    job_id: str,
    *,
    limit: int,
    after_position: int | None,
    shop: str | None,
    reason: str | None,
) -> list[dict[str, Any]]:
    """Failed items in plan order, keyset-paginated on position."""
    records = await conn.fetch(
        """SELECT "itemKind", "legacyId", shop, reason, detail, attempts, "lastAttemptAt", position
           FROM sb_migration_job_items
           WHERE "jobId" = $1 AND status = 'failed' AND ($2::int IS NULL OR position > $2)
             AND ($3::text IS NULL OR shop = $3) AND ($4::text IS NULL OR reason = $4)
           ORDER BY position LIMIT $5""",
        job_id,
        after_position,
        shop,
        reason,
        limit,
    )
    return [dict(r) for r in records]


# ----------------------------------------------------------------------------------- pgqueuer


async def live_dispatch_keys(conn: Executor, keys: Sequence[str]) -> set[str]:
    """Which of these dedupe keys have a queued or running pgqueuer row."""
    if not keys:
        return set()
    records = await conn.fetch(
        """SELECT dedupe_key FROM pgqueuer
           WHERE dedupe_key = ANY($1::text[]) AND status IN ('queued', 'picked')""",
        list(keys),
    )
    return {r["dedupe_key"] for r in records}
