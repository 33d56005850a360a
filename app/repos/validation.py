"""SQL of the migration validation report: the plan's three checks and their AI-bundle and
auto-rule equivalents (docs/migration.md "Validation").

The plan's queries compare whole tables; these are the same comparisons made per legacy row, so the
service can say *why* a row has no V2 bundle (an odd row kind, a recorded failure) instead of only
that counts differ. Every query takes `$1` = shop or NULL for all shops. SQL only: the
classification rules are applied in `app/services/migration/validation.py`.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

#: The latest terminal outcome per (itemKind, legacyId) of real (not dry-run) jobs, when it is a failure.
_LATEST_FAILED_CTE = """
latest AS (
    SELECT DISTINCT ON (i."itemKind", i."legacyId", i.shop)
           i."itemKind" AS item_kind, i."legacyId" AS legacy_id, i.shop, i.status, i.reason, i.detail,
           i."jobId" AS job_id, i.attempts, i."lastAttemptAt" AS last_attempt_at
    FROM sb_migration_job_items i
    JOIN sb_migration_jobs j ON j.id = i."jobId"
    WHERE NOT j."dryRun" AND i.status IN ('migrated', 'skipped', 'failed')
      AND ($1::text IS NULL OR i.shop = $1)
    ORDER BY i."itemKind", i."legacyId", i.shop, i."lastAttemptAt" DESC NULLS LAST, j."createdAt" DESC
), failed AS (
    SELECT * FROM latest WHERE status = 'failed'
)
"""


async def failed_items(conn: Conn, shop: str | None) -> list[asyncpg.Record]:
    """Items whose latest outcome is `failed` (reason, detail, job, attempts)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"WITH {_LATEST_FAILED_CTE} SELECT * FROM failed ORDER BY shop, item_kind, legacy_id", shop
    )
    return rows


async def bundle_rows(conn: Conn, shop: str | None) -> list[asyncpg.Record]:
    """Every `bundle_discount_id` row with what it matches in V2.

    v2_id: the V2 bundle of that metaobject (by shopifyMetaobjectId, or by metadata.legacyBundleId for
    rows whose key was a handle); ai_id / ai_v2_id: the AI bundle whose metaobject it is, and that AI
    bundle's V2 row; rule_v2_id: for `auto-rule-<id>` / `Auto Generated Bundle`, the migrated rule.
    """
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        WITH {_LATEST_FAILED_CTE},
        ai_meta AS (
            SELECT DISTINCT ON (shop, "bundleMetaobjectId") shop, "bundleMetaobjectId" AS key, id
            FROM ai_fbt_bundles
            WHERE "bundleMetaobjectId" IS NOT NULL AND ($1::text IS NULL OR shop = $1)
            ORDER BY shop, "bundleMetaobjectId", id
        ), by_legacy_key AS (
            SELECT DISTINCT ON (shop, metadata ->> 'legacyBundleId') shop, metadata ->> 'legacyBundleId' AS key, id
            FROM "Bundle"
            WHERE (metadata ->> 'legacyBundleId') IS NOT NULL AND ($1::text IS NULL OR shop = $1)
            ORDER BY shop, metadata ->> 'legacyBundleId', id
        )
        SELECT bd."bundleId" AS legacy_id, bd.shop, bd."bundleName" AS bundle_name, bd."discountId" AS discount_id,
               COALESCE(b.id, k.id) AS v2_id, am.id AS ai_id, aib.id AS ai_v2_id, r.id AS rule_v2_id,
               f.reason AS failed_reason, f.detail AS failed_detail
        FROM bundle_discount_id bd
        LEFT JOIN "Bundle" b ON b.shop = bd.shop AND b."shopifyMetaobjectId" = bd."bundleId"
        LEFT JOIN by_legacy_key k ON k.shop = bd.shop AND k.key = bd."bundleId"
        LEFT JOIN ai_meta am ON am.shop = bd.shop AND am.key = bd."bundleId"
        LEFT JOIN "Bundle" aib ON aib.shop = bd.shop AND (aib.metadata ->> 'ai_bundle_id') = am.id
        LEFT JOIN LATERAL (
            SELECT r.id FROM "AutoBundleRule" r
            WHERE (bd."bundleId" = 'Auto Generated Bundle' OR bd."bundleId" LIKE 'auto-rule-%')
              AND r.shop = bd.shop AND (
                CASE WHEN bd."bundleId" = 'Auto Generated Bundle' THEN 'auto_bundle_data:' || bd.shop
                     WHEN bd."bundleId" LIKE 'auto-rule-%' THEN substr(bd."bundleId", 11)
                END) IN (r.conditions ->> 'legacyRuleId', r.conditions ->> 'legacyCopyOf')
            ORDER BY r.conditions ->> 'legacyCopyOf' NULLS FIRST, r.id
            LIMIT 1
        ) r ON true
        LEFT JOIN failed f ON f.item_kind = 'bundle' AND f.legacy_id = bd."bundleId" AND f.shop = bd.shop
        WHERE $1::text IS NULL OR bd.shop = $1
        ORDER BY bd.shop, bd."bundleId"
        """,
        shop,
    )
    return rows


async def v2_bundle_counts(conn: Conn, shop: str | None) -> list[asyncpg.Record]:
    """Per shop: all V2 bundles (the plan's `new`), the AI ones, and those backed by a legacy row."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT b.shop, count(*) AS new,
               count(*) FILTER (WHERE b.metadata ->> 'source' = 'AI') AS ai_bundles,
               count(*) FILTER (
                   WHERE (b.metadata ->> 'source') IS DISTINCT FROM 'AI' AND (
                       EXISTS (SELECT 1 FROM bundle_discount_id bd
                               WHERE bd."bundleId" = b."shopifyMetaobjectId" AND bd.shop = b.shop)
                       OR EXISTS (SELECT 1 FROM bundle_discount_id bd
                                  WHERE bd."bundleId" = b.metadata ->> 'legacyBundleId' AND bd.shop = b.shop))
               ) AS from_bundle_rows
        FROM "Bundle" b
        WHERE $1::text IS NULL OR b.shop = $1
        GROUP BY b.shop
        ORDER BY b.shop
        """,
        shop,
    )
    return rows


async def discount_mismatches(conn: Conn, shop: str | None) -> list[asyncpg.Record]:
    """The plan's "Verify discount mappings" per shop, plus bundles that lost the legacy discount.

    `different`: a BundleDiscount whose id is not the legacy row's discountId (the plan's query);
    `missing`: the legacy row names a discount that no BundleDiscount of the bundle holds. The legacy
    row of a bundle is found by metadata.legacyBundleId (rows whose key was a handle) or else by
    shopifyMetaobjectId, as in the plan.
    """
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        WITH pairs AS (
            SELECT b.shop, b.id, b.name, old."bundleId" AS legacy_id, old."discountId" AS old_discount_id
            FROM "Bundle" b
            JOIN bundle_discount_id old
              ON old."bundleId" = COALESCE(b.metadata ->> 'legacyBundleId', b."shopifyMetaobjectId")
             AND old.shop = b.shop
            WHERE $1::text IS NULL OR b.shop = $1
        )
        SELECT p.shop, p.id AS bundle_id, p.name, p.legacy_id, d."shopifyDiscountId" AS shopify_discount_id,
               p.old_discount_id, 'different' AS kind
        FROM pairs p JOIN "BundleDiscount" d ON d."bundleId" = p.id
        WHERE d."shopifyDiscountId" != p.old_discount_id
        UNION ALL
        SELECT p.shop, p.id, p.name, p.legacy_id, NULL, p.old_discount_id, 'missing'
        FROM pairs p
        WHERE btrim(p.old_discount_id) <> ''
          AND NOT EXISTS (SELECT 1 FROM "BundleDiscount" d
                          WHERE d."bundleId" = p.id AND d."shopifyDiscountId" = p.old_discount_id)
        ORDER BY 1, 2, 5
        """,
        shop,
    )
    return rows


async def ai_bundle_rows(conn: Conn, shop: str | None) -> list[asyncpg.Record]:
    """Every `ai_fbt_bundles` row with its V2 bundle (by metadata.ai_bundle_id) and recorded failure."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        WITH {_LATEST_FAILED_CTE}
        SELECT a.id AS legacy_id, a.shop, a."isActive" AS is_active, b.id AS v2_id, b.status::text AS v2_status,
               f.reason AS failed_reason, f.detail AS failed_detail
        FROM ai_fbt_bundles a
        LEFT JOIN "Bundle" b ON b.shop = a.shop AND (b.metadata ->> 'ai_bundle_id') = a.id
        LEFT JOIN failed f ON f.item_kind = 'ai_bundle' AND f.legacy_id = a.id AND f.shop = a.shop
        WHERE $1::text IS NULL OR a.shop = $1
        ORDER BY a.shop, a.id
        """,
        shop,
    )
    return rows


async def auto_rule_rows(conn: Conn, shop: str | None) -> list[asyncpg.Record]:
    """Every `auto_bundle_rules` row and `auto_bundle_data` row with its AutoBundleRule (by legacyRuleId,
    or legacyCopyOf for an `auto_bundle_data` row migrated from its copy)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        WITH {_LATEST_FAILED_CTE},
        legacy AS (
            SELECT shop, id AS legacy_id, 'auto_bundle_rules' AS source FROM auto_bundle_rules
            WHERE $1::text IS NULL OR shop = $1
            UNION ALL
            SELECT shop, 'auto_bundle_data:' || shop, 'auto_bundle_data' FROM auto_bundle_data
            WHERE $1::text IS NULL OR shop = $1
        )
        SELECT l.legacy_id, l.shop, l.source, r.id AS v2_id, f.reason AS failed_reason, f.detail AS failed_detail
        FROM legacy l
        LEFT JOIN LATERAL (  -- auto_bundle_data migrated from its copy: the copy's rule (legacyCopyOf)
            SELECT r.id FROM "AutoBundleRule" r
            WHERE r.shop = l.shop AND l.legacy_id IN (r.conditions ->> 'legacyRuleId', r.conditions ->> 'legacyCopyOf')
            ORDER BY (r.conditions ->> 'legacyRuleId') = l.legacy_id DESC, r.id
            LIMIT 1
        ) r ON true
        LEFT JOIN failed f ON f.item_kind = 'auto_rule' AND f.legacy_id = l.legacy_id AND f.shop = l.shop
        ORDER BY l.shop, l.legacy_id
        """,
        shop,
    )
    return rows
