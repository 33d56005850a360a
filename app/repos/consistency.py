"""SQL of `sb_consistency_comparisons`: recording comparisons and reading a shop's figures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.repos.base import Executor, dumps
from app.rules.consistency import NOISE_OUTCOMES, SHADOW_OUTCOMES, VERIFY_OUTCOMES


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """One comparison to record (see app.models.consistency)."""

    shop: str
    endpoint: str
    outcome: str
    bundle_key: str | None = None
    fields: list[str] | None = None
    legacy: Any = None
    v2: Any = None
    legacy_ms: float | None = None
    v2_ms: float | None = None
    v2_error: bool = False


async def insert(conn: Executor, row: ComparisonRow, created_at: datetime) -> None:
    await conn.execute(
        'INSERT INTO sb_consistency_comparisons (shop, endpoint, outcome, "bundleKey", fields, legacy, v2, '
        '"legacyMs", "v2Ms", "v2Error", "createdAt") '
        "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11)",
        row.shop,
        row.endpoint,
        row.outcome,
        row.bundle_key,
        row.fields,
        None if row.legacy is None else dumps(row.legacy),
        None if row.v2 is None else dumps(row.v2),
        row.legacy_ms,
        row.v2_ms,
        row.v2_error,
        created_at,
    )


#: One shop's counts since $2 (naive UTC) in one pass over its (shop, createdAt) index range.
FIGURES_SQL = """
SELECT
    count(*) FILTER (WHERE outcome = ANY($3::text[])) AS comparisons,
    count(*) FILTER (WHERE outcome = 'confirmed') AS confirmed,
    count(*) FILTER (WHERE outcome = 'transient') AS transient,
    count(*) FILTER (WHERE outcome = ANY($4::text[])) AS noise_comparisons,
    count(*) FILTER (WHERE outcome = 'noise_mismatch') AS noise_mismatches,
    count(*) FILTER (WHERE outcome = 'verified') AS verified,
    count(*) FILTER (WHERE outcome = 'divergent') AS divergent,
    count(*) FILTER (WHERE "v2Ms" IS NOT NULL OR "v2Error") AS v2_reads,
    count(*) FILTER (WHERE "v2Error") AS v2_errors,
    percentile_disc(0.99) WITHIN GROUP (ORDER BY "v2Ms") AS v2_p99_ms,
    percentile_disc(0.99) WITHIN GROUP (ORDER BY "legacyMs") AS legacy_p99_ms
FROM sb_consistency_comparisons
WHERE shop = $1 AND "createdAt" >= $2
"""


async def figures(conn: Executor, shop: str, since: datetime) -> dict[str, Any]:
    row = await conn.fetchrow(FIGURES_SQL, shop, since, list(SHADOW_OUTCOMES), list(NOISE_OUTCOMES))
    assert row is not None  # an aggregate always answers one row
    return dict(row)


async def latest_diffs(conn: Executor, shop: str, since: datetime | None, limit: int) -> list[dict[str, Any]]:
    """The newest confirmed mismatches and divergences of `shop` (with the fields that differ)."""
    rows = await conn.fetch(
        """
        SELECT id, endpoint, outcome, "bundleKey", fields, legacy::text AS legacy, v2::text AS v2, "createdAt"
        FROM sb_consistency_comparisons
        WHERE shop = $1 AND outcome IN ('confirmed', 'divergent', 'noise_mismatch')
          AND ($2::timestamp IS NULL OR "createdAt" >= $2)
        ORDER BY "createdAt" DESC, id DESC
        LIMIT $3
        """,
        shop,
        since,
        limit,
    )
    out = []
    for record in rows:
        data = dict(record)
        data["legacy"] = None if data["legacy"] is None else json.loads(data["legacy"])
        data["v2"] = None if data["v2"] is None else json.loads(data["v2"])
        data["fields"] = list(data["fields"] or [])
        out.append(data)
    return out


async def series(conn: Executor, shops: list[str] | None, since: datetime, bucket_s: int) -> list[dict[str, Any]]:
    """Per time bucket (epoch seconds, multiple of `bucket_s`), over `shops` (None: all): shadow
    comparisons and confirmed mismatches, noise comparisons and mismatches, p99 per origin."""
    rows = await conn.fetch(
        """
        SELECT
            (floor(extract(epoch FROM "createdAt") / $3) * $3)::bigint AS bucket,
            count(*) FILTER (WHERE outcome = ANY($4::text[])) AS comparisons,
            count(*) FILTER (WHERE outcome = 'confirmed' OR outcome = 'divergent') AS confirmed,
            count(*) FILTER (WHERE outcome = ANY($5::text[])) AS verified,
            count(*) FILTER (WHERE outcome = ANY($6::text[])) AS noise_comparisons,
            count(*) FILTER (WHERE outcome = 'noise_mismatch') AS noise_mismatches,
            percentile_disc(0.99) WITHIN GROUP (ORDER BY "v2Ms") AS v2_p99_ms,
            percentile_disc(0.99) WITHIN GROUP (ORDER BY "legacyMs") AS legacy_p99_ms
        FROM sb_consistency_comparisons
        WHERE "createdAt" >= $2 AND ($1::text[] IS NULL OR shop = ANY($1::text[]))
        GROUP BY 1
        ORDER BY 1
        """,
        shops,
        since,
        bucket_s,
        list(SHADOW_OUTCOMES),
        list(VERIFY_OUTCOMES),
        list(NOISE_OUTCOMES),
    )
    return [dict(r) for r in rows]


async def prune(conn: Executor, before: datetime) -> int:
    status = await conn.execute('DELETE FROM sb_consistency_comparisons WHERE "createdAt" < $1', before)
    return int(status.split()[-1])


async def dual_written_bundle_ids(conn: Executor, shop: str) -> list[str]:
    """The shop's V2 bundles that have a legacy counterpart: a metaobject with an active discount
    (`bundle_discount_id`), or an AI bundle (`ai_fbt_bundles`), oldest first."""
    rows = await conn.fetch(
        """
        SELECT b.id
        FROM "Bundle" b
        WHERE b.shop = $1
          AND (
            (b.metadata ->> 'source' = 'AI' AND b.metadata ->> 'ai_bundle_id' IS NOT NULL)
            OR (b."shopifyMetaobjectId" IS NOT NULL
                AND EXISTS (SELECT 1 FROM "BundleDiscount" d WHERE d."bundleId" = b.id AND d."isActive"))
          )
        ORDER BY b."createdAt", b.id
        """,
        shop,
    )
    return [r["id"] for r in rows]


async def rollout_stage_since(conn: Executor, shop: str) -> datetime | None:
    """When the shop entered its current stage under an unfinished rollout (None: no such rollout)."""
    value: datetime | None = await conn.fetchval(
        "SELECT since FROM sb_rollout_shops WHERE shop = $1 AND active ORDER BY since DESC LIMIT 1", shop
    )
    return value


async def v2_bundles_changed_since(conn: Executor, shop: str, since: datetime | None, limit: int) -> list[str]:
    """Ids of `shop`'s V2 bundles created or changed at or after `since` (None: all), newest first."""
    rows = await conn.fetch(
        """
        SELECT id FROM "Bundle"
        WHERE shop = $1 AND ($2::timestamp IS NULL OR "updatedAt" >= $2)
        ORDER BY "updatedAt" DESC, id DESC
        LIMIT $3
        """,
        shop,
        since,
        limit,
    )
    return [r["id"] for r in rows]


async def count_v2_bundles_changed_since(conn: Executor, shop: str, since: datetime | None) -> int:
    value: int = await conn.fetchval(
        'SELECT count(*) FROM "Bundle" WHERE shop = $1 AND ($2::timestamp IS NULL OR "updatedAt" >= $2)',
        shop,
        since,
    )
    return value


async def shops_with_bundles(conn: Executor) -> list[str]:
    return [r["shop"] for r in await conn.fetch('SELECT DISTINCT shop FROM "Bundle" ORDER BY shop')]


async def unrepresentable_metaobjects(conn: Executor, shop: str, metaobject_ids: list[str]) -> set[str]:
    """Of these metaobject GIDs, those whose V2 bundle has no active discount (and is not an AI
    bundle): the legacy tables cannot hold them (no `bundle_discount_id` row), so the legacy
    storefront never showed them."""
    if not metaobject_ids:
        return set()
    rows = await conn.fetch(
        """
        SELECT b."shopifyMetaobjectId" AS gid
        FROM "Bundle" b
        WHERE b.shop = $1 AND b."shopifyMetaobjectId" = ANY($2::text[])
          AND COALESCE(b.metadata ->> 'source', '') <> 'AI'
          AND NOT EXISTS (SELECT 1 FROM "BundleDiscount" d WHERE d."bundleId" = b.id AND d."isActive")
        """,
        shop,
        metaobject_ids,
    )
    return {r["gid"] for r in rows}
