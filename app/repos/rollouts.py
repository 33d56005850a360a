"""SQL of the guarded rollouts (`sb_rollouts`, `sb_rollout_shops`; app/models/rollouts.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from app.repos.base import Executor

#: The partial unique index that keeps one unfinished rollout per shop.
ACTIVE_SHOP_KEY = "sb_rollout_shops_active_shop_key"

_SHOP_COLUMNS = (
    '"rolloutId", shop, position, "startStage", stage, state, since, active, "lastTransition", '
    '"guardValues", "evaluatedAt"'
)
_ROLLOUT_COLUMNS = (
    'id, status, "targetStage", guards, "waveSize", percent, reason, "createdBy", "createdAt", "updatedAt", '
    '"finishedAt"'
)


def _decode(row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(row)
    for key in ("guards", "lastTransition", "guardValues"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


async def insert_rollout(
    conn: Executor,
    *,
    rollout_id: str,
    target_stage: str,
    guards: dict[str, Any],
    wave_size: int,
    percent: int | None,
    reason: str,
    created_by: str,
    now: datetime,
) -> None:
    await conn.execute(
        'INSERT INTO sb_rollouts (id, status, "targetStage", guards, "waveSize", percent, reason, "createdBy", '
        '"createdAt", "updatedAt") VALUES ($1, \'running\', $2, $3::jsonb, $4, $5, $6, $7, $8, $8)',
        rollout_id,
        target_stage,
        json.dumps(guards),
        wave_size,
        percent,
        reason,
        created_by,
        now,
    )


async def insert_shops(conn: Executor, rollout_id: str, shops: Sequence[tuple[str, str]], now: datetime) -> None:
    """One row per (shop, its stage now), in wave order. A shop covered by another unfinished
    rollout violates `ACTIVE_SHOP_KEY`."""
    await conn.executemany(
        f"INSERT INTO sb_rollout_shops ({_SHOP_COLUMNS}) "
        "VALUES ($1, $2, $3, $4, $4, 'waiting', $5, true, NULL, '[]'::jsonb, NULL)",
        [(rollout_id, shop, position, stage, now) for position, (shop, stage) in enumerate(shops)],
    )


async def covering(conn: Executor, shops: Sequence[str]) -> list[dict[str, Any]]:
    """`{shop, rolloutId}` of each given shop an unfinished rollout covers."""
    rows = await conn.fetch(
        'SELECT shop, "rolloutId" FROM sb_rollout_shops WHERE active AND shop = ANY($1::text[]) ORDER BY shop',
        list(shops),
    )
    return [dict(r) for r in rows]


async def get_rollout(conn: Executor, rollout_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    suffix = " FOR UPDATE" if lock else ""
    row = await conn.fetchrow(f"SELECT {_ROLLOUT_COLUMNS} FROM sb_rollouts WHERE id = $1{suffix}", rollout_id)
    return _decode(row)


async def list_rollouts(conn: Executor, *, limit: int, before: tuple[datetime, str] | None) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated by (createdAt, id)."""
    if before is None:
        rows = await conn.fetch(
            f'SELECT {_ROLLOUT_COLUMNS} FROM sb_rollouts ORDER BY "createdAt" DESC, id DESC LIMIT $1', limit
        )
    else:
        rows = await conn.fetch(
            f"SELECT {_ROLLOUT_COLUMNS} FROM sb_rollouts "
            'WHERE ("createdAt", id) < ($1, $2) ORDER BY "createdAt" DESC, id DESC LIMIT $3',
            before[0],
            before[1],
            limit,
        )
    return [d for d in (_decode(r) for r in rows) if d is not None]


async def unfinished_rollouts(conn: Executor) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {_ROLLOUT_COLUMNS} FROM sb_rollouts WHERE status IN ('running', 'paused') ORDER BY \"createdAt\", id"
    )
    return [d for d in (_decode(r) for r in rows) if d is not None]


async def shops_of(conn: Executor, rollout_ids: Sequence[str]) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f'SELECT {_SHOP_COLUMNS} FROM sb_rollout_shops WHERE "rolloutId" = ANY($1::text[]) '
        'ORDER BY "rolloutId", position',
        list(rollout_ids),
    )
    return [d for d in (_decode(r) for r in rows) if d is not None]


async def lock_shop(conn: Executor, rollout_id: str, shop: str) -> dict[str, Any] | None:
    """The shop's row, locked for this transaction; None when another replica holds it (SKIP LOCKED)
    or the rollout finished meanwhile."""
    row = await conn.fetchrow(
        f'SELECT {_SHOP_COLUMNS} FROM sb_rollout_shops WHERE "rolloutId" = $1 AND shop = $2 AND active '
        "FOR UPDATE SKIP LOCKED",
        rollout_id,
        shop,
    )
    return _decode(row)


async def transition(
    conn: Executor,
    rollout_id: str,
    shop: str,
    *,
    expected: tuple[str, str],
    stage: str,
    state: str,
    since: datetime | None,
    now: datetime,
    last_transition: dict[str, Any] | None,
    guard_values: list[dict[str, Any]],
) -> bool:
    """Compare-and-set of (stage, state): False when the row is no longer at `expected`."""
    result = await conn.execute(
        "UPDATE sb_rollout_shops SET stage = $3, state = $4, "
        "since = COALESCE($5, since), "
        '"lastTransition" = COALESCE($6::jsonb, "lastTransition"), "guardValues" = $7::jsonb, '
        '"evaluatedAt" = $10, "updatedAt" = $10 '
        'WHERE "rolloutId" = $1 AND shop = $2 AND stage = $8 AND state = $9 AND active',
        rollout_id,
        shop,
        stage,
        state,
        since,
        json.dumps(last_transition) if last_transition is not None else None,
        json.dumps(guard_values),
        expected[0],
        expected[1],
        now,
    )
    return result.endswith(" 1")


async def set_status(conn: Executor, rollout_id: str, status: str, *, finished: bool, now: datetime) -> None:
    """The rollout's status; a finished one releases its shops (`active` false)."""
    await conn.execute(
        'UPDATE sb_rollouts SET status = $2, "updatedAt" = $4, '
        '"finishedAt" = CASE WHEN $3 THEN $4 ELSE "finishedAt" END WHERE id = $1',
        rollout_id,
        status,
        finished,
        now,
    )
    if finished:
        await conn.execute('UPDATE sb_rollout_shops SET active = false WHERE "rolloutId" = $1', rollout_id)


async def resume_rolled_back(conn: Executor, rollout_id: str, transition_json: dict[str, Any], now: datetime) -> int:
    """Rolled-back shops observe again, their clock restarted (evidence counts from now)."""
    result = await conn.execute(
        "UPDATE sb_rollout_shops SET state = 'observing', since = $3, "
        '"lastTransition" = $2::jsonb, "updatedAt" = $3 '
        "WHERE \"rolloutId\" = $1 AND state = 'rolled_back' AND active",
        rollout_id,
        json.dumps(transition_json),
        now,
    )
    return int(result.rsplit(" ", 1)[-1])


async def all_done(conn: Executor, rollout_id: str) -> bool:
    value = await conn.fetchval(
        "SELECT bool_and(state = 'done') FROM sb_rollout_shops WHERE \"rolloutId\" = $1", rollout_id
    )
    return bool(value)


async def latest_for_shop(conn: Executor, shop: str) -> dict[str, Any] | None:
    """The shop's row in its unfinished rollout, else in its latest one."""
    row = await conn.fetchrow(
        f'SELECT {", ".join("s." + c.strip() for c in _SHOP_COLUMNS.split(","))}, r.status AS "rolloutStatus" '
        'FROM sb_rollout_shops s JOIN sb_rollouts r ON r.id = s."rolloutId" WHERE s.shop = $1 '
        'ORDER BY s.active DESC, r."createdAt" DESC LIMIT 1',
        shop,
    )
    return _decode(row)


async def known_shops(conn: Executor) -> list[str]:
    """Every shop the service knows of: installed (offline session, active store) or holding bundles
    in either store. A percentage rollout picks from these."""
    rows = await conn.fetch(
        "SELECT shop FROM session WHERE shop IS NOT NULL "
        "UNION SELECT shop FROM active_stores "
        'UNION SELECT shop FROM "Bundle" '
        "UNION SELECT shop FROM bundle_discount_id ORDER BY 1"
    )
    return [r["shop"] for r in rows]


async def status_for_share(conn: Executor, rollout_id: str) -> str | None:
    """The rollout's status, share-locked: a pause or abort waits for this transaction, so no shop
    advances after a pause has committed."""
    value = await conn.fetchval("SELECT status FROM sb_rollouts WHERE id = $1 FOR SHARE", rollout_id)
    return None if value is None else str(value)
