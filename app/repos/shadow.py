"""SQL of `sb_shadow_mismatches`: the queryable log of shadow-read differences."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from app.repos.base import Executor, dumps


async def insert_mismatch(
    conn: Executor,
    *,
    shop: str,
    endpoint: str,
    bundle_key: str | None,
    fields: list[str],
    legacy: dict[str, Any] | None,
    v2: dict[str, Any] | None,
    created_at: datetime,
) -> None:
    await conn.execute(
        'INSERT INTO sb_shadow_mismatches (shop, endpoint, "bundleKey", fields, legacy, v2, "createdAt") '
        "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7)",
        shop,
        endpoint,
        bundle_key,
        fields,
        None if legacy is None else dumps(legacy),
        None if v2 is None else dumps(v2),
        created_at,
    )


async def list_mismatches(
    conn: Executor, *, shop: str | None, after: tuple[datetime, int] | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first, keyset on ("createdAt", id); `limit` rows at most."""
    rows = await conn.fetch(
        """
        SELECT id, shop, endpoint, "bundleKey", fields, legacy::text AS legacy, v2::text AS v2, "createdAt"
        FROM sb_shadow_mismatches
        WHERE ($1::text IS NULL OR shop = $1)
          AND ($2::timestamp IS NULL OR ("createdAt", id) < ($2::timestamp, $3::bigint))
        ORDER BY "createdAt" DESC, id DESC
        LIMIT $4
        """,
        shop,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    out = []
    for row in rows:
        data = dict(row)
        data["legacy"] = None if data["legacy"] is None else json.loads(data["legacy"])
        data["v2"] = None if data["v2"] is None else json.loads(data["v2"])
        data["fields"] = list(data["fields"] or [])
        out.append(data)
    return out
