"""SQL of `sb_idempotency_keys`: one row per (shop, Idempotency-Key) of a successful create.

The row is claimed at the *start* of the create's transaction and completed at its end, so the
primary key serialises concurrent requests with the same key: the second one's claim waits for
the first transaction, then finds the committed row (replay) or, if the first rolled back, wins
the claim itself. Nothing is stored for a failed create (the claim rolls back with it).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from app.repos.base import Executor, dumps

#: How long a stored Idempotency-Key answers retries (the API contract: 24 hours); an older key is
#: taken over by a new request.
IDEMPOTENCY_TTL = timedelta(hours=24)


async def claim(conn: Executor, shop: str, key: str, request_hash: str, stale_before: datetime) -> bool:
    """Insert a placeholder for (shop, key); True when this transaction owns the key now.

    A row older than `stale_before` is an expired key: it is taken over rather than replayed.
    """
    claimed = await conn.fetchval(
        """
        INSERT INTO sb_idempotency_keys (shop, key, "requestHash", "responseStatus", "responseBody", "resourceId",
            "createdAt")
        VALUES ($1, $2, $3, 0, '{}'::jsonb, NULL, (now() AT TIME ZONE 'utc'))
        ON CONFLICT (shop, key) DO UPDATE SET "requestHash" = EXCLUDED."requestHash", "responseStatus" = 0,
            "responseBody" = '{}'::jsonb, "resourceId" = NULL, "createdAt" = EXCLUDED."createdAt"
            WHERE sb_idempotency_keys."createdAt" < $4
        RETURNING 1
        """,
        shop,
        key,
        request_hash,
        stale_before,
    )
    return claimed is not None


async def complete(
    conn: Executor, shop: str, key: str, status: int, body: dict[str, Any], resource_id: str | None
) -> None:
    await conn.execute(
        'UPDATE sb_idempotency_keys SET "responseStatus" = $3, "responseBody" = $4::jsonb, "resourceId" = $5 '
        "WHERE shop = $1 AND key = $2",
        shop,
        key,
        status,
        dumps(body),
        resource_id,
    )


async def get(conn: Executor, shop: str, key: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        'SELECT "requestHash", "responseStatus", "responseBody"::text AS body, "resourceId", "createdAt" '
        "FROM sb_idempotency_keys WHERE shop = $1 AND key = $2",
        shop,
        key,
    )
    if row is None:
        return None
    data = dict(row)
    data["responseBody"] = json.loads(data.pop("body"))
    return data
