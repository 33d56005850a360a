"""SQL of the write-through outbox (`sb_outbox`, app.models.outbox), on raw asyncpg.

Only SQL lives here: app.services.shopify_sync.outbox owns the transactions, the retry policy and the Shopify
calls. Times are naive UTC from the *database* clock (`timezone('utc', now())`), so every replica
and the dispatcher agree on "due" and "age" whatever their own clocks say.
"""

from __future__ import annotations

import json
from typing import Any

from app.repos.base import Executor, dumps

#: LISTEN/NOTIFY channel: an enqueue notifies it (delivered at commit), dispatchers wake at once.
CHANNEL = "sb_outbox"

_NOW = "timezone('utc', now())"
#: A create's `compensate` intent is not work yet while its grace period runs (its create is normally
#: in flight and deletes it at commit): stats, lag and drain leave it out until it is due.
_COUNTED = f"""NOT (op = 'compensate' AND "nextAttemptAt" > {_NOW})"""
_COLUMNS = (
    'id, shop, "bundleId", seq, op, payload::text AS payload, status, attempts, "nextAttemptAt", "lastError", '
    '"createdAt", "deliveredAt"'
)


def _row(record: Any) -> dict[str, Any]:
    data = dict(record)
    data["payload"] = json.loads(data["payload"]) if data.get("payload") is not None else None
    return data


async def insert(
    conn: Executor, shop: str, bundle_id: str, op: str, payload: dict[str, Any], *, delay_s: float = 0.0
) -> dict[str, Any]:
    """Append a row for the bundle with the next `seq` and notify dispatchers (on commit).

    The caller holds the bundle's row lock (or the bundle no longer exists and this is its final
    row), so `max(seq) + 1` cannot race; the unique (bundleId, seq) index would refuse it anyway.
    `delay_s`: not due before that many seconds (a create's `compensate` intent); no NOTIFY then.
    """
    record = await conn.fetchrow(
        f"""
        INSERT INTO sb_outbox (shop, "bundleId", seq, op, payload, status, attempts, "nextAttemptAt", "createdAt")
        VALUES ($1, $2, (SELECT coalesce(max(seq), 0) + 1 FROM sb_outbox WHERE "bundleId" = $2), $3, $4::jsonb,
            'pending', 0, {_NOW} + make_interval(secs => $5), {_NOW})
        RETURNING {_COLUMNS}
        """,
        shop,
        bundle_id,
        op,
        dumps(payload),
        float(max(0.0, delay_s)),
    )
    if delay_s <= 0:
        await conn.execute(f"SELECT pg_notify('{CHANNEL}', $1)", bundle_id)
    assert record is not None
    return _row(record)


async def drop_intent(conn: Executor, row_id: int) -> bool:
    """Delete a create's pending `compensate` intent (its create committed or was compensated).

    False when it is no longer pending: the dispatcher already compensated the create (it waited past
    the grace period), so the caller must not commit objects that are gone. A dispatcher holding the
    row makes this wait for its decision; a create holding it makes the dispatcher skip it.
    """
    result = await conn.execute(
        "DELETE FROM sb_outbox WHERE id = $1 AND op = 'compensate' AND status = 'pending'", row_id
    )
    return bool(result) and result.split()[-1] != "0"


async def newer_intent_pending(conn: Executor, row_id: int, shop: str, handle: str) -> bool:
    """Another, newer pending `compensate` intent for the same metaobject handle (a retry in flight)."""
    value = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM sb_outbox WHERE op = 'compensate' AND status = 'pending' AND shop = $2
           AND payload ->> 'handle' = $3 AND id > $1)""",
        row_id,
        shop,
        handle,
    )
    return bool(value)


async def postpone(conn: Executor, row_id: int, delay_s: float) -> None:
    """Move a row's next attempt without counting a failure."""
    await conn.execute(
        f"""UPDATE sb_outbox SET "nextAttemptAt" = {_NOW} + make_interval(secs => $2) WHERE id = $1""",
        row_id,
        float(delay_s),
    )


async def claim_next(conn: Executor, shop: str | None = None) -> dict[str, Any] | None:
    """Lock the oldest due pending row that is the *oldest pending row of its bundle* (in order per
    bundle), skipping rows another dispatcher holds. The lock lasts until the caller's transaction
    ends; a dispatcher killed mid-delivery loses its connection and with it the lock, so the row is
    simply claimable again (nothing to expire). `shop` restricts the claim to one shop.
    """
    record = await conn.fetchrow(
        f"""
        SELECT {_COLUMNS} FROM sb_outbox o
        WHERE o.status = 'pending' AND o."nextAttemptAt" <= {_NOW} AND ($1::text IS NULL OR o.shop = $1)
          AND NOT EXISTS (
            SELECT 1 FROM sb_outbox p WHERE p."bundleId" = o."bundleId" AND p.status = 'pending' AND p.seq < o.seq
          )
        ORDER BY o."nextAttemptAt", o.id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
        """,
        shop,
    )
    return None if record is None else _row(record)


async def mark_delivered(conn: Executor, row_id: int, attempts: int) -> None:
    await conn.execute(
        f"""UPDATE sb_outbox SET status = 'delivered', attempts = $2, "deliveredAt" = {_NOW}, "lastError" = NULL
            WHERE id = $1""",
        row_id,
        attempts,
    )


async def mark_failed(conn: Executor, row_id: int, attempts: int, delay_s: float, error: str, dead: bool) -> None:
    """Record a failed attempt: retry after `delay_s`, or give up (`dead`)."""
    await conn.execute(
        f"""
        UPDATE sb_outbox SET attempts = $2, "lastError" = $3, status = CASE WHEN $4 THEN 'dead' ELSE 'pending' END,
            "nextAttemptAt" = {_NOW} + make_interval(secs => $5)
        WHERE id = $1
        """,
        row_id,
        attempts,
        error[:2000],
        dead,
        delay_s,
    )


async def oldest_pending_age_s(conn: Executor) -> float:
    """Seconds since the oldest undelivered row was written (0 when none): the outbox lag."""
    value = await conn.fetchval(
        f"""SELECT extract(epoch FROM {_NOW} - min("createdAt")) FROM sb_outbox
            WHERE status = 'pending' AND {_COUNTED}"""
    )
    return float(value) if value is not None else 0.0


async def stats(conn: Executor, shop: str | None = None) -> dict[str, Any]:
    record = await conn.fetchrow(
        f"""
        SELECT count(*) FILTER (WHERE status = 'pending' AND {_COUNTED}) AS pending,
               count(*) FILTER (WHERE status = 'pending' AND "nextAttemptAt" <= {_NOW}) AS due,
               count(*) FILTER (WHERE status = 'pending' AND attempts > 0) AS retrying,
               count(*) FILTER (WHERE status = 'dead') AS dead,
               count(*) FILTER (WHERE status = 'delivered') AS delivered,
               extract(epoch FROM {_NOW} - min("createdAt") FILTER (WHERE status = 'pending' AND {_COUNTED}))
                   AS oldest_age
        FROM sb_outbox WHERE ($1::text IS NULL OR shop = $1)
        """,
        shop,
    )
    assert record is not None
    data = dict(record)
    data["oldest_age"] = float(data["oldest_age"]) if data["oldest_age"] is not None else None
    return data


async def list_by_status(conn: Executor, status: str, *, shop: str | None, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM sb_outbox WHERE status = $1 AND ($2::text IS NULL OR shop = $2)
            ORDER BY "createdAt", id LIMIT $3""",
        status,
        shop,
        limit,
    )
    return [_row(r) for r in rows]


async def bundles_with_pending(conn: Executor, bundle_ids: list[str]) -> set[str]:
    rows = await conn.fetch(
        """SELECT DISTINCT "bundleId" FROM sb_outbox WHERE status = 'pending' AND "bundleId" = ANY($1::text[])""",
        bundle_ids,
    )
    return {r["bundleId"] for r in rows}


async def resolve_dead(conn: Executor, bundle_ids: list[str]) -> int:
    """Dead rows of bundles that reconciliation found in sync or repaired: `resolved` (kept for the record)."""
    result = await conn.execute(
        """UPDATE sb_outbox SET status = 'resolved' WHERE "bundleId" = ANY($1::text[]) AND status = 'dead'""",
        bundle_ids,
    )
    return int(result.split()[-1]) if result else 0


async def rows_for_bundle(conn: Executor, bundle_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(f'SELECT {_COLUMNS} FROM sb_outbox WHERE "bundleId" = $1 ORDER BY seq', bundle_id)
    return [_row(r) for r in rows]


async def shopify_refs(conn: Executor, shop: str, metaobject_id: str | None, discount_id: str | None) -> set[str]:
    """Which of these Shopify ids a committed bundle (V2 or legacy) of the shop still names.

    Compensation and delete delivery only ever delete objects nobody references: a metaobject or
    discount that a bundle (re)acquired meanwhile must survive. After the Phase 5 cleanup the legacy
    `bundle_discount_id` lives in the `archive` schema; its rows still count (a restore brings them back).
    """
    schema = await conn.fetchval(
        """SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relname = 'bundle_discount_id' AND n.nspname IN ('public', 'archive')
           ORDER BY n.nspname = 'public' DESC LIMIT 1"""
    )
    legacy = f'"{schema}".bundle_discount_id' if schema else None
    legacy_meta = f'OR EXISTS (SELECT 1 FROM {legacy} WHERE "bundleId" = $2)' if legacy else ""
    legacy_discount = f'OR EXISTS (SELECT 1 FROM {legacy} WHERE shop = $1 AND "discountId" = $3)' if legacy else ""
    rows = await conn.fetch(
        f"""
        SELECT $2::text AS ref WHERE $2::text IS NOT NULL AND (
            EXISTS (SELECT 1 FROM "Bundle" WHERE shop = $1 AND "shopifyMetaobjectId" = $2)
            {legacy_meta}
            OR EXISTS (SELECT 1 FROM ai_fbt_bundles WHERE shop = $1 AND "bundleMetaobjectId" = $2))
        UNION ALL
        SELECT $3::text WHERE $3::text IS NOT NULL AND (
            EXISTS (SELECT 1 FROM "BundleDiscount" d JOIN "Bundle" b ON b.id = d."bundleId"
                    WHERE b.shop = $1 AND d."shopifyDiscountId" = $3)
            {legacy_discount}
            OR EXISTS (SELECT 1 FROM ai_fbt_bundles WHERE shop = $1 AND "discountId" = $3))
        """,
        shop,
        metaobject_id,
        discount_id,
    )
    return {r["ref"] for r in rows}


# --------------------------------------------------------------------------------------------
# Reconciliation reads (app.services.shopify_sync.reconciliation)
# --------------------------------------------------------------------------------------------


async def shops_with_manual_bundles(conn: Executor) -> list[str]:
    rows = await conn.fetch(
        """SELECT DISTINCT shop FROM "Bundle" WHERE "shopifyMetaobjectId" IS NOT NULL
           AND coalesce(metadata ->> 'source', '') <> 'AI' ORDER BY shop"""
    )
    return [r["shop"] for r in rows]


async def manual_bundle_ids(conn: Executor, shop: str) -> list[str]:
    """V2 manual bundles of the shop that have a metaobject: the ones with a legacy view in Shopify."""
    rows = await conn.fetch(
        """SELECT id FROM "Bundle" WHERE shop = $1 AND "shopifyMetaobjectId" IS NOT NULL
           AND coalesce(metadata ->> 'source', '') <> 'AI' ORDER BY "createdAt", id""",
        shop,
    )
    return [r["id"] for r in rows]
