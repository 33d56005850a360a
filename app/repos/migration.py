"""SQL of the per-item migration (plan Phase 3): reads of legacy rows, idempotent inserts of V2 rows.

SQL only: which rows to write and what an outcome means is decided in
`app/services/migration/items/`. Two kinds of statements live here:

* batch reads (one statement per batch of up to a few hundred legacy ids), used to plan the
  batch before Shopify is called: the legacy rows, which of them already have a V2 row, which are
  an AI bundle's metaobject, which slugs are taken;
* per-item writes, each run inside the item's own short transaction by the service: a
  `SELECT ... FOR SHARE` of the legacy row (the dual-writing API locks the same row first, see
  docs/migration.md), then ONE `INSERT ... ON CONFLICT DO NOTHING RETURNING id` statement that
  writes the V2 row *and* its children through data-modifying CTEs. Nothing returned means the
  unique index already holds a row for that legacy key: the children are not written either, so a
  concurrent API write is never overwritten. The manual bundles of a batch share one such
  statement (`insert_manual_bundles`), with the same per-row lock, check and conflict handling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

#: A connection, or a pooled one (what `pool.acquire()` yields).
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

# ----------------------------------------------------------------------------------- planning


async def list_bundle_keys(conn: Conn, shops: list[str] | None) -> list[tuple[str, str]]:
    """(shop, bundleId) of every `bundle_discount_id` row, ordered like the job's items."""
    rows = await conn.fetch(
        """
        SELECT shop, "bundleId" FROM bundle_discount_id
        WHERE $1::text[] IS NULL OR shop = ANY($1::text[])
        ORDER BY shop, "bundleId"
        """,
        shops,
    )
    return [(r["shop"], r["bundleId"]) for r in rows]


async def list_ai_bundle_keys(conn: Conn, shops: list[str] | None) -> list[tuple[str, str]]:
    """(shop, id) of every `ai_fbt_bundles` row, active or not (inactive ones migrate as PAUSED)."""
    rows = await conn.fetch(
        """
        SELECT shop, id FROM ai_fbt_bundles
        WHERE $1::text[] IS NULL OR shop = ANY($1::text[])
        ORDER BY shop, id
        """,
        shops,
    )
    return [(r["shop"], r["id"]) for r in rows]


async def list_auto_rule_keys(conn: Conn, shops: list[str] | None) -> list[tuple[str, str]]:
    """(shop, legacy key) of every `auto_bundle_rules` row and every `auto_bundle_data` row.

    The key of an `auto_bundle_data` row is `auto_bundle_data:<shop>` (its primary key is the shop).
    """
    rows = await conn.fetch(
        """
        SELECT shop, id AS key FROM auto_bundle_rules
        WHERE $1::text[] IS NULL OR shop = ANY($1::text[])
        UNION ALL
        SELECT shop, 'auto_bundle_data:' || shop AS key FROM auto_bundle_data
        WHERE $1::text[] IS NULL OR shop = ANY($1::text[])
        ORDER BY 1, 2
        """,
        shops,
    )
    return [(r["shop"], r["key"]) for r in rows]


# The item keys of each kind, as (shop, key) in job order: what `list_*_keys` return, for planning
# straight into the job's item table without the keys passing through the service's memory.
_PLAN_SOURCES = {
    "bundle": """SELECT shop, "bundleId" AS key FROM bundle_discount_id
                 WHERE $2::text[] IS NULL OR shop = ANY($2::text[])""",
    "ai_bundle": """SELECT shop, id AS key FROM ai_fbt_bundles WHERE $2::text[] IS NULL OR shop = ANY($2::text[])""",
    "auto_rule": """SELECT shop, id AS key FROM auto_bundle_rules WHERE $2::text[] IS NULL OR shop = ANY($2::text[])
                    UNION ALL
                    SELECT shop, 'auto_bundle_data:' || shop AS key FROM auto_bundle_data
                    WHERE $2::text[] IS NULL OR shop = ANY($2::text[])""",
}


async def plan_items_into(conn: Conn, job_id: str, item_kind: str, shops: list[str] | None, first_position: int) -> int:
    """Insert a job's items of one kind in one statement, ordered by (shop, key) from
    `first_position` on (the order `list_*_keys` give); duplicates are dropped. Returns how many
    were inserted. Memory stays flat however many items a job has."""
    status = await conn.execute(
        f"""INSERT INTO sb_migration_job_items ("jobId", "itemKind", "legacyId", shop, position)
            SELECT $1, $3, k.key, k.shop, ($4 + row_number() OVER (ORDER BY k.shop, k.key) - 1)::int
            FROM ({_PLAN_SOURCES[item_kind]}) AS k
            ON CONFLICT DO NOTHING""",
        job_id,
        shops,
        item_kind,
        first_position,
    )
    return int(status.rsplit(" ", 1)[-1])


# ----------------------------------------------------------------------------------- batch reads


@dataclass(frozen=True, slots=True)
class LegacyBundleRow:
    legacy_id: str
    bundle_name: str
    discount_id: str


async def fetch_bundle_rows(conn: Conn, shop: str, legacy_ids: Sequence[str]) -> dict[str, LegacyBundleRow]:
    rows = await conn.fetch(
        """
        SELECT "bundleId", "bundleName", "discountId" FROM bundle_discount_id
        WHERE shop = $1 AND "bundleId" = ANY($2::text[])
        """,
        shop,
        list(legacy_ids),
    )
    return {r["bundleId"]: LegacyBundleRow(r["bundleId"], r["bundleName"], r["discountId"]) for r in rows}


async def _key_to_id(conn: Conn, sql: str, shop: str, keys: Sequence[str]) -> dict[str, str]:
    """Run a `SELECT <key> AS key, id ... WHERE shop = $1 AND <key> = ANY($2)` lookup as a dict;
    no round trip for an empty batch."""
    if not keys:
        return {}
    rows = await conn.fetch(sql, shop, list(keys))
    return {r["key"]: r["id"] for r in rows}


async def existing_bundles_by_metaobject(conn: Conn, shop: str, metaobject_ids: Sequence[str]) -> dict[str, str]:
    """shopifyMetaobjectId → Bundle.id for those of `metaobject_ids` already in V2 (unique index probe)."""
    return await _key_to_id(
        conn,
        """
        SELECT "shopifyMetaobjectId" AS key, id FROM "Bundle"
        WHERE shop = $1 AND "shopifyMetaobjectId" = ANY($2::text[])
        """,
        shop,
        metaobject_ids,
    )


async def existing_bundles_by_legacy_key(conn: Conn, shop: str, legacy_ids: Sequence[str]) -> dict[str, str]:
    """metadata.legacyBundleId → Bundle.id: bundles migrated from a handle-in-place-of-id row.

    Such a bundle's `shopifyMetaobjectId` is the real GID found by handle, so the legacy key is only
    in the metadata. Not indexed (rare rows), but bounded by the shop via `Bundle_shop_slug_key`.
    """
    return await _key_to_id(
        conn,
        """
        SELECT metadata ->> 'legacyBundleId' AS key, id FROM "Bundle"
        WHERE shop = $1 AND metadata ->> 'legacyBundleId' = ANY($2::text[])
        """,
        shop,
        legacy_ids,
    )


async def ai_bundles_by_metaobject(conn: Conn, shop: str, metaobject_ids: Sequence[str]) -> dict[str, str]:
    """bundleMetaobjectId → ai_fbt_bundles.id (the first by id when several share one metaobject)."""
    return await _key_to_id(
        conn,
        """
        SELECT DISTINCT ON ("bundleMetaobjectId") "bundleMetaobjectId" AS key, id FROM ai_fbt_bundles
        WHERE shop = $1 AND "bundleMetaobjectId" = ANY($2::text[])
        ORDER BY "bundleMetaobjectId", id
        """,
        shop,
        metaobject_ids,
    )


async def existing_ai_bundles(conn: Conn, shop: str, ai_ids: Sequence[str]) -> dict[str, str]:
    """ai_fbt_bundles.id → Bundle.id for AI bundles already in V2 (`sb_bundle_shop_ai_bundle_key`)."""
    return await _key_to_id(
        conn,
        """
        SELECT metadata ->> 'ai_bundle_id' AS key, id FROM "Bundle"
        WHERE shop = $1 AND (metadata ->> 'ai_bundle_id') = ANY($2::text[])
        """,
        shop,
        ai_ids,
    )


async def existing_auto_rules(conn: Conn, shop: str, legacy_keys: Sequence[str]) -> dict[str, str]:
    """conditions.legacyRuleId → AutoBundleRule.id (`sb_auto_rule_shop_legacy_key`)."""
    return await _key_to_id(
        conn,
        """
        SELECT conditions ->> 'legacyRuleId' AS key, id FROM "AutoBundleRule"
        WHERE shop = $1 AND (conditions ->> 'legacyRuleId') = ANY($2::text[])
        """,
        shop,
        legacy_keys,
    )


async def taken_slugs(conn: Conn, shop: str, bases: Sequence[str]) -> set[str]:
    """Slugs of the shop equal to one of `bases` or of the form `<base>-<anything>`.

    Slugs hold only `[a-z0-9-]`, so they contain no LIKE wildcard and need no escaping.
    """
    if not bases:
        return set()
    unique = sorted(set(bases))
    rows = await conn.fetch(
        """
        SELECT slug FROM "Bundle"
        WHERE shop = $1 AND (slug = ANY($2::text[]) OR slug LIKE ANY($3::text[]))
        """,
        shop,
        unique,
        [f"{base}-%" for base in unique],
    )
    return {r["slug"] for r in rows}


# ----------------------------------------------------------------------------------- item locks


async def lock_bundle_row(conn: Conn, shop: str, legacy_id: str) -> LegacyBundleRow | None:
    """Re-read a `bundle_discount_id` row under a share lock (None: deleted meanwhile).

    The lock makes the API's dual-write (which updates or deletes this row first) wait for the item
    transaction, or the item transaction wait for the API's: never an interleaving of the two.
    """
    row = await conn.fetchrow(
        """
        SELECT "bundleId", "bundleName", "discountId" FROM bundle_discount_id
        WHERE "bundleId" = $1 AND shop = $2
        FOR SHARE
        """,
        legacy_id,
        shop,
    )
    return None if row is None else LegacyBundleRow(row["bundleId"], row["bundleName"], row["discountId"])


async def read_bundle_row(conn: Conn, shop: str, legacy_id: str) -> LegacyBundleRow | None:
    """The same row without a lock (dry runs)."""
    row = await conn.fetchrow(
        'SELECT "bundleId", "bundleName", "discountId" FROM bundle_discount_id WHERE "bundleId" = $1 AND shop = $2',
        legacy_id,
        shop,
    )
    return None if row is None else LegacyBundleRow(row["bundleId"], row["bundleName"], row["discountId"])


_AI_ROW_SQL = """
SELECT a.id, a."productId", a."bundledProductIds", a."confidenceScore", a.support, a.lift, a."generatedAt",
       a."isActive", a.source, a."variantGroupId", a."bundleMetaobjectId", a."discountId", a."isManualOverride",
       bd."discountId" AS legacy_discount_id
FROM ai_fbt_bundles a
LEFT JOIN bundle_discount_id bd ON bd."bundleId" = a."bundleMetaobjectId" AND bd.shop = a.shop
WHERE a.id = $1 AND a.shop = $2
"""


async def lock_ai_row(conn: Conn, shop: str, ai_id: str, *, lock: bool = True) -> asyncpg.Record | None:
    """An `ai_fbt_bundles` row (share-locked unless `lock=False`) with the discount of its
    `bundle_discount_id` row, when the legacy AI generator recorded one there too."""
    sql = _AI_ROW_SQL + (" FOR SHARE OF a" if lock else "")
    row: asyncpg.Record | None = await conn.fetchrow(sql, ai_id, shop)
    return row


# The copy the legacy app's own SQL made of a shop's `auto_bundle_data` row (when it introduced
# multiple rules): an `auto_bundle_rules` row of the same shop named exactly 'Migrated Auto Bundle'
# whose collections, tags, minPrice, maxPrice, minProducts and discount are equal to the data row's
# (text for text, arrays element by element in order, NULL array = empty array). isActive, createdAt
# and id are ignored (the copy got fresh ones, and the merchant may have paused it since). Several
# copies (the SQL run twice): the earliest (createdAt, then id) is the one. `d` is the data row.
_COPY_OF_DATA_SQL = """
(SELECT c.id FROM auto_bundle_rules c
  WHERE c.shop = d.shop AND c.name = 'Migrated Auto Bundle'
    AND COALESCE(c.collections, '{}') = COALESCE(d.collections, '{}')
    AND COALESCE(c.tags, '{}') = COALESCE(d.tags, '{}')
    AND c."minPrice" = d."minPrice" AND c."maxPrice" = d."maxPrice"
    AND c."minProducts" = d."minProducts" AND c.discount = d.discount
  ORDER BY c."createdAt", c.id
  LIMIT 1)
"""

# A rule that is the copy of its shop's auto_bundle_data row takes that row's discount (the
# `Auto Generated Bundle` row) when it has no `auto-rule-<id>` discount of its own.
_RULE_SQL = f"""
SELECT r.name, r.collections, r.tags, r."minPrice", r."maxPrice", r."minProducts", r.discount, r."isActive",
       r."createdAt",
       COALESCE(
         (SELECT bd."discountId" FROM bundle_discount_id bd
           WHERE bd."bundleId" = 'auto-rule-' || r.id AND bd.shop = r.shop),
         CASE WHEN copy_of.is_copy THEN
           (SELECT bd."discountId" FROM bundle_discount_id bd
             WHERE bd."bundleId" = 'Auto Generated Bundle' AND bd.shop = r.shop)
         END) AS discount_id,
       false AS superseded,
       COALESCE(copy_of.is_copy, false) AS copy_of_data,
       NULL::text AS copy_rule_id
FROM auto_bundle_rules r
LEFT JOIN LATERAL (
    SELECT {_COPY_OF_DATA_SQL} = r.id AS is_copy FROM auto_bundle_data d WHERE d.shop = r.shop
) copy_of ON true
WHERE r.id = $1 AND r.shop = $2
"""

_DATA_SQL = f"""
SELECT NULL::text AS name, d.collections, d.tags, d."minPrice", d."maxPrice", d."minProducts", d.discount,
       true AS "isActive", NULL::timestamp AS "createdAt",
       (SELECT bd."discountId" FROM bundle_discount_id bd
         WHERE bd."bundleId" = 'Auto Generated Bundle' AND bd.shop = d.shop) AS discount_id,
       EXISTS (SELECT 1 FROM auto_bundle_rules r WHERE r.shop = d.shop) AS superseded,
       false AS copy_of_data,
       {_COPY_OF_DATA_SQL} AS copy_rule_id
FROM auto_bundle_data d
WHERE d.shop = $1
"""


async def lock_rule_row(conn: Conn, shop: str, rule_id: str, *, lock: bool = True) -> asyncpg.Record | None:
    """An `auto_bundle_rules` row plus its Shopify discount (its `auto-rule-<id>` row of
    `bundle_discount_id`, else, for the copy of the shop's `auto_bundle_data`, the `Auto Generated
    Bundle` row's) and `copy_of_data`: whether it is that copy."""
    row: asyncpg.Record | None = await conn.fetchrow(_RULE_SQL + (" FOR SHARE OF r" if lock else ""), rule_id, shop)
    return row


async def lock_auto_bundle_data_row(conn: Conn, shop: str, *, lock: bool = True) -> asyncpg.Record | None:
    """A shop's `auto_bundle_data` row plus the discount of its `Auto Generated Bundle` row, whether
    the shop also has `auto_bundle_rules` (then this deprecated rule was superseded), and
    `copy_rule_id`: the `auto_bundle_rules` row that is its copy, if any (then it is that rule)."""
    row: asyncpg.Record | None = await conn.fetchrow(_DATA_SQL + (" FOR SHARE OF d" if lock else ""), shop)
    return row


async def legacy_rule_exists(conn: Conn, shop: str, rule_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM auto_bundle_rules WHERE id = $1 AND shop = $2)", rule_id, shop
        )
    )


async def auto_bundle_data_exists(conn: Conn, shop: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM auto_bundle_data WHERE shop = $1)", shop))


async def find_auto_rule(conn: Conn, shop: str, legacy_key: str) -> tuple[str, str | None] | None:
    """(AutoBundleRule.id, bundleTemplate.discount.shopifyDiscountId) of a migrated legacy rule: the
    rule migrated from that key, else (for `auto_bundle_data:<shop>`) the rule migrated from its copy
    (conditions.legacyCopyOf)."""
    row = await conn.fetchrow(
        """
        SELECT id, "bundleTemplate" -> 'discount' ->> 'shopifyDiscountId' AS discount_id FROM "AutoBundleRule"
        WHERE shop = $1 AND ((conditions ->> 'legacyRuleId') = $2 OR (conditions ->> 'legacyCopyOf') = $2)
        ORDER BY (conditions ->> 'legacyRuleId') = $2 DESC, "createdAt", id
        LIMIT 1
        """,
        shop,
        legacy_key,
    )
    return None if row is None else (row["id"], row["discount_id"])


async def find_copy_rule(conn: Conn, shop: str, data_key: str) -> str | None:
    """AutoBundleRule.id of the rule migrated from the copy of `auto_bundle_data` (conditions.legacyCopyOf)."""
    value: str | None = await conn.fetchval(
        """
        SELECT id FROM "AutoBundleRule" WHERE shop = $1 AND (conditions ->> 'legacyCopyOf') = $2
        ORDER BY "createdAt", id LIMIT 1
        """,
        shop,
        data_key,
    )
    return value


async def find_bundle_id(conn: Conn, shop: str, metaobject_id: str) -> str | None:
    value: str | None = await conn.fetchval(
        'SELECT id FROM "Bundle" WHERE shop = $1 AND "shopifyMetaobjectId" = $2', shop, metaobject_id
    )
    return value


async def find_ai_bundle_id(conn: Conn, shop: str, ai_id: str) -> str | None:
    value: str | None = await conn.fetchval(
        """SELECT id FROM "Bundle" WHERE shop = $1 AND (metadata ->> 'ai_bundle_id') = $2""", shop, ai_id
    )
    return value


# ----------------------------------------------------------------------------------- writes


@dataclass(frozen=True, slots=True)
class NewComponent:
    id: str
    product_id: str
    variant_id: str | None
    quantity: int
    cached_title: str | None = None
    cached_price: Decimal | None = None
    cached_image_url: str | None = None
    cached_sku: str | None = None
    cached_inventory: int | None = None
    synced: bool = False  # set lastSyncedAt: the cache was filled from Shopify


@dataclass(frozen=True, slots=True)
class NewDiscount:
    id: str
    shopify_discount_id: str
    is_active: bool = True


@dataclass(frozen=True, slots=True)
class NewBundle:
    """A V2 bundle with all its children, written by one statement."""

    id: str
    shop: str
    name: str
    title: str
    description: str | None
    slug: str
    status: str
    shopify_metaobject_id: str | None
    metadata_json: str
    created_at: datetime
    now: datetime
    inventory_id: str
    components: list[NewComponent] = field(default_factory=list)
    discounts: list[NewDiscount] = field(default_factory=list)
    pricing_rule_id: str | None = None  # None: no BUNDLE_DISCOUNT rule (AI bundles, as in the plan)
    discount_percent: Decimal | None = None


# Children of a new bundle, all selected from the `b` CTE (the inserted Bundle row, or nothing on conflict).
# Parameters: $1 bundle id ... $11 now, $12-$21 component arrays, $22/$23 pricing rule, then {inventory}.
_CHILDREN = """
components AS (
    INSERT INTO "BundleComponent" (id, "bundleId", "shopifyProductId", "shopifyVariantId", quantity, "isRequired",
                                   "displayOrder", "minQuantity", "maxQuantity", "priceAdjustmentType",
                                   "cachedTitle", "cachedPrice", "cachedImageUrl", "cachedSku", "cachedInventory",
                                   "lastSyncedAt", "createdAt", "updatedAt")
    SELECT c.id, b.id, c.product_id, c.variant_id, c.quantity, true, (c.ord - 1)::int, 0, GREATEST(c.quantity, 1),
           'NONE', c.title, c.price, c.image_url, c.sku, c.inventory,
           CASE WHEN c.synced THEN $11 END, $11, $11
    FROM b CROSS JOIN unnest($12::text[], $13::text[], $14::text[], $15::int[], $16::text[], $17::numeric[],
                             $18::text[], $19::text[], $20::int[], $21::bool[])
         WITH ORDINALITY
         AS c(id, product_id, variant_id, quantity, title, price, image_url, sku, inventory, synced, ord)
), pricing AS (
    INSERT INTO "BundlePricingRule" (id, "bundleId", name, priority, "isActive", "ruleType", conditions,
                                     "discountType", "discountValue", "usageCount", "createdAt", "updatedAt")
    SELECT $22::text, b.id, 'Bundle Discount', 0, true, 'BUNDLE_DISCOUNT', '{{}}'::jsonb, 'PERCENTAGE',
           $23::numeric, 0, $11, $11
    FROM b WHERE $22::text IS NOT NULL
), inventory AS (
    INSERT INTO "BundleInventory" (id, "bundleId", "trackingMethod", "lowStockThreshold", "availableQuantity",
                                   "reservedQuantity", "allowOversell", "autoSyncEnabled", "lastCalculatedAt")
    SELECT {inventory}, b.id, 'COMPONENT_BASED', 10, 0, 0, false, true, $11 FROM b
)"""

_BUNDLE_COLUMNS = """
    INSERT INTO "Bundle" (id, shop, name, title, description, slug, type, status, "shopifyMetaobjectId",
                          metadata, "createdAt", "updatedAt")"""

#: A manual bundle in ONE statement, i.e. its own implicit transaction: share-lock the legacy row
#: (`legacy`), insert the Bundle only if that row still exists under the name the caller built the
#: bundle from ($25), ON CONFLICT on the metaobject (`sb_bundle_shop_metaobject_key`), then the
#: children from the inserted row and the BundleDiscount from the *locked* row's discountId.
INSERT_MANUAL_BUNDLE_SQL = (
    """
WITH legacy AS (
    SELECT "bundleName", "discountId" FROM bundle_discount_id
    WHERE "bundleId" = $26 AND shop = $2
    FOR SHARE
), b AS ("""
    + _BUNDLE_COLUMNS
    + """
    SELECT $1, $2, $3, $4, $5, $6, 'FIXED', $7::"BundleStatus", $8, $9::jsonb, $10, $11
    FROM legacy WHERE legacy."bundleName" = $25
    ON CONFLICT (shop, "shopifyMetaobjectId") WHERE "shopifyMetaobjectId" IS NOT NULL DO NOTHING
    RETURNING id
),"""
    + _CHILDREN.format(inventory="$24")
    + """, discounts AS (
    INSERT INTO "BundleDiscount" (id, "bundleId", "shopifyDiscountId", "discountType", "isActive",
                                  "createdAt", "updatedAt")
    SELECT $27, b.id, l."discountId", 'automatic', true, $11, $11
    FROM b CROSS JOIN legacy l WHERE btrim(l."discountId") <> ''
)
SELECT (SELECT id FROM b) AS bundle_id,
       EXISTS (SELECT 1 FROM legacy) AS found,
       (SELECT "bundleName" FROM legacy) AS locked_name
"""
)

#: An AI bundle (the caller holds the ai_fbt_bundles row's share lock in its transaction), ON CONFLICT
#: on `sb_bundle_shop_ai_bundle_key`; its discounts come from the caller ($25-$27 arrays).
INSERT_AI_BUNDLE_SQL = (
    "WITH b AS ("
    + _BUNDLE_COLUMNS
    + """
    VALUES ($1, $2, $3, $4, $5, $6, 'FIXED', $7::"BundleStatus", $8, $9::jsonb, $10, $11)
    ON CONFLICT (shop, (metadata ->> 'ai_bundle_id')) WHERE (metadata ->> 'ai_bundle_id') IS NOT NULL DO NOTHING
    RETURNING id
),"""
    + _CHILDREN.format(inventory="$24")
    + """, discounts AS (
    INSERT INTO "BundleDiscount" (id, "bundleId", "shopifyDiscountId", "discountType", "isActive",
                                  "createdAt", "updatedAt")
    SELECT d.id, b.id, d.discount_id, 'automatic', d.active, $11, $11
    FROM b CROSS JOIN unnest($25::text[], $26::text[], $27::bool[]) AS d(id, discount_id, active)
)
SELECT id FROM b
"""
)


def _bundle_args(bundle: NewBundle) -> list[object]:
    """$1-$24, shared by both statements."""
    comps = bundle.components
    return [
        bundle.id,
        bundle.shop,
        bundle.name,
        bundle.title,
        bundle.description,
        bundle.slug,
        bundle.status,
        bundle.shopify_metaobject_id,
        bundle.metadata_json,
        bundle.created_at,
        bundle.now,
        [c.id for c in comps],
        [c.product_id for c in comps],
        [c.variant_id for c in comps],
        [c.quantity for c in comps],
        [c.cached_title for c in comps],
        [c.cached_price for c in comps],
        [c.cached_image_url for c in comps],
        [c.cached_sku for c in comps],
        [c.cached_inventory for c in comps],
        [c.synced for c in comps],
        bundle.pricing_rule_id,
        bundle.discount_percent,
        bundle.inventory_id,
    ]


@dataclass(frozen=True, slots=True)
class ManualInsertResult:
    bundle_id: str | None  # the new Bundle, None when nothing was written
    found: bool  # the legacy row still exists (else: deleted meanwhile)
    locked_name: str | None  # its bundleName under the lock (differs from the expected one: renamed meanwhile)


async def insert_manual_bundle(
    conn: Conn, bundle: NewBundle, legacy_id: str, expected_name: str, discount_row_id: str
) -> ManualInsertResult:
    """Lock the legacy row and insert the bundle with its children, in one statement (run it outside
    an explicit transaction: the statement is the item's transaction).

    Nothing is written when the row is gone, was renamed since `expected_name` was read (the caller
    rebuilds from `locked_name`), or the metaobject is already a V2 bundle. Raises
    `asyncpg.UniqueViolationError` on `Bundle_shop_slug_key` (slug taken meanwhile).
    """
    row = await conn.fetchrow(
        INSERT_MANUAL_BUNDLE_SQL, *_bundle_args(bundle), expected_name, legacy_id, discount_row_id
    )
    assert row is not None
    return ManualInsertResult(row["bundle_id"], row["found"], row["locked_name"])


async def insert_ai_bundle(conn: Conn, bundle: NewBundle) -> str | None:
    """Insert the AI bundle and its children; None when that AI bundle is already a V2 bundle.

    Raises `asyncpg.UniqueViolationError` on `Bundle_shop_slug_key` (slug taken) or on
    `sb_bundle_shop_metaobject_key` (its metaobject belongs to another V2 bundle).
    """
    discounts = bundle.discounts
    value: str | None = await conn.fetchval(
        INSERT_AI_BUNDLE_SQL,
        *_bundle_args(bundle),
        [d.id for d in discounts],
        [d.shopify_discount_id for d in discounts],
        [d.is_active for d in discounts],
    )
    return value


async def attach_bundle_discount(
    conn: Conn, bundle_id: str, discount_row_id: str, shopify_discount_id: str, now: datetime
) -> bool:
    """Insert-only: link a Shopify discount to an existing bundle unless already linked."""
    value = await conn.fetchval(
        """
        INSERT INTO "BundleDiscount" (id, "bundleId", "shopifyDiscountId", "discountType", "isActive",
                                      "createdAt", "updatedAt")
        VALUES ($1, $2, $3, 'automatic', true, $4, $4)
        ON CONFLICT ("bundleId", "shopifyDiscountId") DO NOTHING
        RETURNING id
        """,
        discount_row_id,
        bundle_id,
        shopify_discount_id,
        now,
    )
    return value is not None


@dataclass(frozen=True, slots=True)
class NewAutoRule:
    id: str
    shop: str
    name: str
    description: str | None
    trigger_type: str
    conditions_json: str
    bundle_template_json: str
    is_active: bool
    created_at: datetime
    now: datetime


async def insert_auto_rule(conn: Conn, rule: NewAutoRule) -> str | None:
    """Insert a migrated rule; None when its legacy key (conditions.legacyRuleId) is already in V2."""
    value: str | None = await conn.fetchval(
        """
        INSERT INTO "AutoBundleRule" (id, shop, name, description, "triggerType", conditions, "bundleTemplate",
                                      "isActive", priority, "bundlesCreated", "createdAt", "updatedAt")
        VALUES ($1, $2, $3, $4, $5::"AutoBundleTrigger", $6::jsonb, $7::jsonb, $8, 0, 0, $9, $10)
        ON CONFLICT (shop, (conditions ->> 'legacyRuleId')) WHERE (conditions ->> 'legacyRuleId') IS NOT NULL
        DO NOTHING
        RETURNING id
        """,
        rule.id,
        rule.shop,
        rule.name,
        rule.description,
        rule.trigger_type,
        rule.conditions_json,
        rule.bundle_template_json,
        rule.is_active,
        rule.created_at,
        rule.now,
    )
    return value


async def fill_auto_rule_discount(
    conn: Conn, shop: str, rule_id: str, shopify_discount_id: str, now: datetime
) -> str | None:
    """Set bundleTemplate.discount.shopifyDiscountId of a migrated rule (by AutoBundleRule.id) only
    where it is still absent (fill, never overwrite); returns the rule id when it wrote."""
    value: str | None = await conn.fetchval(
        """
        UPDATE "AutoBundleRule"
        SET "bundleTemplate" = jsonb_set(
                "bundleTemplate", '{discount}',
                CASE WHEN jsonb_typeof("bundleTemplate" -> 'discount') = 'object'
                     THEN "bundleTemplate" -> 'discount' ELSE '{}'::jsonb END
                || jsonb_build_object('shopifyDiscountId', $3::text)),
            "updatedAt" = $4
        WHERE shop = $1 AND id = $2
          AND ("bundleTemplate" -> 'discount' ->> 'shopifyDiscountId') IS NULL
        RETURNING id
        """,
        shop,
        rule_id,
        shopify_discount_id,
        now,
    )
    return value


async def fetch_ai_product_rows(conn: Conn, shop: str, ai_ids: Sequence[str]) -> list[asyncpg.Record]:
    """id, productId, bundledProductIds of AI rows (to fetch their products in one batched call)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        'SELECT id, "productId", "bundledProductIds" FROM ai_fbt_bundles WHERE shop = $1 AND id = ANY($2::text[])',
        shop,
        list(ai_ids),
    )
    return rows


@dataclass(frozen=True, slots=True)
class ManualInsert:
    """One manual bundle of a batched insert: the bundle, the legacy row it comes from, the name it
    was built from (a rename under the lock writes nothing) and the id of its BundleDiscount row."""

    bundle: NewBundle
    legacy_id: str
    expected_name: str
    discount_row_id: str


#: Many manual bundles of one shop in ONE statement (one implicit transaction, one round trip), with
#: exactly the per-row semantics of INSERT_MANUAL_BUNDLE_SQL: every legacy row of the batch is
#: share-locked (in "bundleId" order, so two batches never wait on each other crosswise), a Bundle
#: is inserted only where its row still exists under the expected name, ON CONFLICT on the
#: metaobject does nothing, and each child is written only for a Bundle this statement inserted.
#: Returns one row per input, in input order. A unique violation on the slug aborts the whole
#: statement (nothing written): the caller then goes item by item.
INSERT_MANUAL_BUNDLES_SQL = """
WITH input AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                         $9::text[], $10::text[], $11::text[], $12::timestamp[], $13::timestamp[], $14::text[],
                         $15::text[], $16::numeric[], $17::text[])
        WITH ORDINALITY AS i(legacy_id, expected_name, id, name, title, description, slug, status, metaobject_id,
                             metadata, created_at, now, inventory_id, pricing_rule_id, discount_percent,
                             discount_row_id, ord)
), legacy AS (
    SELECT "bundleId", "bundleName", "discountId" FROM bundle_discount_id
    WHERE shop = $1 AND "bundleId" = ANY($2::text[])
    ORDER BY "bundleId"
    FOR SHARE
), b AS (
    INSERT INTO "Bundle" (id, shop, name, title, description, slug, type, status, "shopifyMetaobjectId",
                          metadata, "createdAt", "updatedAt")
    SELECT i.id, $1, i.name, i.title, i.description, i.slug, 'FIXED', i.status::"BundleStatus", i.metaobject_id,
           i.metadata::jsonb, i.created_at, i.now
    FROM input i JOIN legacy l ON l."bundleId" = i.legacy_id AND l."bundleName" = i.expected_name
    ORDER BY i.ord
    ON CONFLICT (shop, "shopifyMetaobjectId") WHERE "shopifyMetaobjectId" IS NOT NULL DO NOTHING
    RETURNING id
), components AS (
    INSERT INTO "BundleComponent" (id, "bundleId", "shopifyProductId", "shopifyVariantId", quantity, "isRequired",
                                   "displayOrder", "minQuantity", "maxQuantity", "priceAdjustmentType",
                                   "cachedTitle", "cachedPrice", "cachedImageUrl", "cachedSku", "cachedInventory",
                                   "lastSyncedAt", "createdAt", "updatedAt")
    SELECT c.id, b.id, c.product_id, c.variant_id, c.quantity, true, c.display_order, 0, GREATEST(c.quantity, 1),
           'NONE', c.title, c.price, c.image_url, c.sku, c.inventory,
           CASE WHEN c.synced THEN i.now END, i.now, i.now
    FROM unnest($18::text[], $19::text[], $20::text[], $21::text[], $22::int[], $23::int[], $24::text[],
                $25::numeric[], $26::text[], $27::text[], $28::int[], $29::bool[])
         AS c(bundle_id, id, product_id, variant_id, quantity, display_order, title, price, image_url, sku,
              inventory, synced)
    JOIN b ON b.id = c.bundle_id
    JOIN input i ON i.id = c.bundle_id
), pricing AS (
    INSERT INTO "BundlePricingRule" (id, "bundleId", name, priority, "isActive", "ruleType", conditions,
                                     "discountType", "discountValue", "usageCount", "createdAt", "updatedAt")
    SELECT i.pricing_rule_id, b.id, 'Bundle Discount', 0, true, 'BUNDLE_DISCOUNT', '{}'::jsonb, 'PERCENTAGE',
           i.discount_percent, 0, i.now, i.now
    FROM input i JOIN b ON b.id = i.id WHERE i.pricing_rule_id IS NOT NULL
), inventory AS (
    INSERT INTO "BundleInventory" (id, "bundleId", "trackingMethod", "lowStockThreshold", "availableQuantity",
                                   "reservedQuantity", "allowOversell", "autoSyncEnabled", "lastCalculatedAt")
    SELECT i.inventory_id, b.id, 'COMPONENT_BASED', 10, 0, 0, false, true, i.now FROM input i JOIN b ON b.id = i.id
), discounts AS (
    INSERT INTO "BundleDiscount" (id, "bundleId", "shopifyDiscountId", "discountType", "isActive",
                                  "createdAt", "updatedAt")
    SELECT i.discount_row_id, b.id, l."discountId", 'automatic', true, i.now, i.now
    FROM input i JOIN b ON b.id = i.id JOIN legacy l ON l."bundleId" = i.legacy_id
    WHERE btrim(l."discountId") <> ''
)
SELECT i.legacy_id, b.id AS bundle_id, l."bundleId" IS NOT NULL AS found, l."bundleName" AS locked_name
FROM input i LEFT JOIN legacy l ON l."bundleId" = i.legacy_id LEFT JOIN b ON b.id = i.id
ORDER BY i.ord
"""


async def insert_manual_bundles(conn: Conn, shop: str, entries: Sequence[ManualInsert]) -> list[ManualInsertResult]:
    """Insert many manual bundles of `shop` in one statement (run it outside an explicit
    transaction: the statement is the batch's transaction); one result per entry, in order, with
    the meaning of `insert_manual_bundle`'s. Raises `asyncpg.UniqueViolationError` on
    `Bundle_shop_slug_key` (then nothing was written)."""
    if not entries:
        return []
    bundles = [e.bundle for e in entries]
    comps = [(b.id, position, c) for b in bundles for position, c in enumerate(b.components)]
    rows = await conn.fetch(
        INSERT_MANUAL_BUNDLES_SQL,
        shop,
        [e.legacy_id for e in entries],
        [e.expected_name for e in entries],
        [b.id for b in bundles],
        [b.name for b in bundles],
        [b.title for b in bundles],
        [b.description for b in bundles],
        [b.slug for b in bundles],
        [b.status for b in bundles],
        [b.shopify_metaobject_id for b in bundles],
        [b.metadata_json for b in bundles],
        [b.created_at for b in bundles],
        [b.now for b in bundles],
        [b.inventory_id for b in bundles],
        [b.pricing_rule_id for b in bundles],
        [b.discount_percent for b in bundles],
        [e.discount_row_id for e in entries],
        [bundle_id for bundle_id, _, _ in comps],
        [c.id for _, _, c in comps],
        [c.product_id for _, _, c in comps],
        [c.variant_id for _, _, c in comps],
        [c.quantity for _, _, c in comps],
        [position for _, position, _ in comps],
        [c.cached_title for _, _, c in comps],
        [c.cached_price for _, _, c in comps],
        [c.cached_image_url for _, _, c in comps],
        [c.cached_sku for _, _, c in comps],
        [c.cached_inventory for _, _, c in comps],
        [c.synced for _, _, c in comps],
    )
    return [ManualInsertResult(r["bundle_id"], r["found"], r["locked_name"]) for r in rows]
