"""Raw asyncpg SQL for the storefront (`/proxy/*`): the hottest read path of the service.

Why raw asyncpg and not the ORM: every product page view of every shop calls these queries, and
measured on the development machine the ORM path served about a tenth of the requests per second
of bare asyncpg. So each endpoint is **one** SQL round trip through `container.pool`, and the
database does the shaping:

* "bundles of shop S containing product P" starts from `BundleComponent` through
  `sb_component_product_bundle_idx (shopifyProductId, bundleId)` (an index-only probe; a Shopify
  product GID belongs to one shop, so that is the most selective entry point), then joins `Bundle`
  by primary key and filters shop + status;
* each bundle's components, pricing rules and inventory are aggregated in the same statement
  (LATERAL subqueries over `BundleComponent_bundleId_idx` / `BundlePricingRule_bundleId_isActive_idx`,
  join on `BundleInventory_bundleId_key`), so there is no N+1;
* the component list the storefront shows is built as JSON text by PostgreSQL (`json_agg` /
  `json_build_object`, money cast to text so "19.90" keeps its two decimals) and is spliced into
  the response without being parsed in Python;
* what Python must compute with (prices, quantities, rules) comes as typed arrays, which asyncpg
  decodes in its binary protocol straight into `Decimal` / `int` / `datetime`: no JSON parsing.

asyncpg prepares and caches each statement per connection on first use, so the module-level SQL
strings below are planned once per pooled connection, not once per request.

`EXPLAIN` of `V2_BUNDLES_FOR_PRODUCT_SQL` is asserted in `tests/integration/test_storefront.py`:
no sequential scan of `BundleComponent`.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

__all__ = [
    "AI_BUNDLES_FOR_PRODUCT_SQL",
    "LEGACY_SHAPE_FOR_PRODUCT_SQL",
    "V2_BUNDLES_FOR_PRODUCT_SQL",
    "fetch_ai_bundles_for_product",
    "fetch_legacy_shape_for_product",
    "fetch_v2_bundles_for_product",
]

#: The bundle ids of product $2, through the (shopifyProductId, bundleId) index. DISTINCT because a
#: bundle may hold the same product twice (two variants); shared by both V2 queries below.
_BUNDLES_OF_PRODUCT = """
    (SELECT DISTINCT pc."bundleId" FROM "BundleComponent" pc WHERE pc."shopifyProductId" = $2) AS p
    JOIN "Bundle" b ON b.id = p."bundleId"
"""

#: `/proxy/v2/bundles`: ACTIVE bundles of shop $1 containing product $2, with everything needed to
#: answer in one row per bundle. Column groups:
#: * `components_json`: the storefront's component list, already in its final JSON shape;
#: * `c_*` arrays (aligned, same ORDER BY): pricing inputs of each component;
#: * `component_stock`: how many whole bundles the required components' cached inventory allows
#:   (NULL when no required component has a known inventory);
#: * `r_*` arrays (aligned): the bundle's active pricing rules, highest priority first;
#: * `inv_*`: the `BundleInventory` row (all NULL when the bundle has none).
V2_BUNDLES_FOR_PRODUCT_SQL = f"""
SELECT
    b.id,
    b.name,
    b.title,
    b.description,
    b.type::text AS type,
    b."featuredImage" AS featured_image,
    b."currencyCode" AS currency,
    comp.components_json,
    comp.c_price,
    comp.c_quantity,
    comp.c_adjustment_type,
    comp.c_adjustment,
    comp.component_stock,
    rules.r_priority,
    rules.r_rule_type,
    rules.r_discount_type,
    rules.r_discount_value,
    rules.r_starts_at,
    rules.r_ends_at,
    rules.r_usage_limit,
    rules.r_usage_count,
    inv."trackingMethod"::text AS inv_tracking_method,
    inv."availableQuantity" AS inv_available,
    inv."reservedQuantity" AS inv_reserved,
    inv."allowOversell" AS inv_allow_oversell
FROM {_BUNDLES_OF_PRODUCT}
CROSS JOIN LATERAL (
    SELECT
        json_agg(
            json_build_object(
                'productId', c."shopifyProductId",
                'variantId', c."shopifyVariantId",
                'quantity', c.quantity,
                'title', c."cachedTitle",
                'price', c."cachedPrice"::text,
                'imageUrl', c."cachedImageUrl"
            )
            ORDER BY c."displayOrder", c.id
        ) AS components_json,
        array_agg(c."cachedPrice" ORDER BY c."displayOrder", c.id) AS c_price,
        array_agg(c.quantity ORDER BY c."displayOrder", c.id) AS c_quantity,
        array_agg(c."priceAdjustmentType"::text ORDER BY c."displayOrder", c.id) AS c_adjustment_type,
        array_agg(c."priceAdjustment" ORDER BY c."displayOrder", c.id) AS c_adjustment,
        min(GREATEST(c."cachedInventory", 0) / c.quantity)
            FILTER (WHERE c."isRequired" AND c.quantity > 0 AND c."cachedInventory" IS NOT NULL)
            AS component_stock
    FROM "BundleComponent" c
    WHERE c."bundleId" = b.id
) AS comp
CROSS JOIN LATERAL (
    SELECT
        array_agg(r.priority ORDER BY r.priority DESC, r."createdAt", r.id) AS r_priority,
        array_agg(r."ruleType"::text ORDER BY r.priority DESC, r."createdAt", r.id) AS r_rule_type,
        array_agg(r."discountType"::text ORDER BY r.priority DESC, r."createdAt", r.id) AS r_discount_type,
        array_agg(r."discountValue" ORDER BY r.priority DESC, r."createdAt", r.id) AS r_discount_value,
        array_agg(r."startsAt" ORDER BY r.priority DESC, r."createdAt", r.id) AS r_starts_at,
        array_agg(r."endsAt" ORDER BY r.priority DESC, r."createdAt", r.id) AS r_ends_at,
        array_agg(r."usageLimit" ORDER BY r.priority DESC, r."createdAt", r.id) AS r_usage_limit,
        array_agg(r."usageCount" ORDER BY r.priority DESC, r."createdAt", r.id) AS r_usage_count
    FROM "BundlePricingRule" r
    WHERE r."bundleId" = b.id AND r."isActive"
) AS rules
LEFT JOIN "BundleInventory" inv ON inv."bundleId" = b.id
WHERE b.shop = $1 AND b.status = 'ACTIVE'
ORDER BY b."displayOrder", b."createdAt", b.id
"""

#: `/proxy/bundles-for-product` on the V2 path: only what the legacy array shape needs. The
#: discount is the bundle's legacy-equivalent rule: the BUNDLE_DISCOUNT/PERCENTAGE rule of highest
#: priority in force now (active, inside its window, usage left; the same choice as
#: `app.services.storefront.reads.legacy_discount_percent`). A migrated bundle has exactly one, holding
#: the metaobject's `discount`.
#: `next_change`: the earliest start or end of an active rule after now, when the discount may change
#: with no write (the storefront read model's validity window).
#: AI bundles (`metadata.source = 'AI'`) without a metaobject are left out: the legacy app never
#: listed them here (the theme shows them through `/ai-bundles-for-product`), so listing them
#: would make the V2 path answer differently from the legacy one.
LEGACY_SHAPE_FOR_PRODUCT_SQL = f"""
SELECT
    b.id,
    b."shopifyMetaobjectId" AS metaobject_id,
    b.title,
    b.description,
    (
        SELECT array_agg(c."shopifyProductId" ORDER BY c."displayOrder", c.id)
        FROM "BundleComponent" c
        WHERE c."bundleId" = b.id
    ) AS products,
    (
        SELECT r."discountValue"
        FROM "BundlePricingRule" r
        WHERE r."bundleId" = b.id AND r."isActive"
          AND r."ruleType" = 'BUNDLE_DISCOUNT' AND r."discountType" = 'PERCENTAGE'
          AND (r."startsAt" IS NULL OR r."startsAt" <= (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'))
          AND (r."endsAt" IS NULL OR r."endsAt" > (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'))
          AND (r."usageLimit" IS NULL OR r."usageCount" < r."usageLimit")
        ORDER BY r.priority DESC, r."createdAt", r.id
        LIMIT 1
    ) AS discount_percent,
    (
        SELECT min(w.at)
        FROM "BundlePricingRule" r
        CROSS JOIN LATERAL (VALUES (r."startsAt"), (r."endsAt")) AS w(at)
        WHERE r."bundleId" = b.id AND r."isActive" AND w.at > (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')
    ) AS next_change
FROM {_BUNDLES_OF_PRODUCT}
WHERE b.shop = $1 AND b.status = 'ACTIVE'
  AND NOT (b."shopifyMetaobjectId" IS NULL AND COALESCE(b.metadata ->> 'source', '') = 'AI')
ORDER BY b."displayOrder", b."createdAt", b.id
"""

#: `/proxy/ai-bundles-for-product`, as the legacy app answered, in one round trip: the shop's
#: `ai_fbt_config` (a missing row reads as disabled), the unexpired A/B assignment of session $3 for
#: the product (scoped to the shop, so one shop cannot read another's; a blank group is no
#: assignment, as in the legacy app), and the product's active AI bundles by confidence, highest
#: first, at most $4: only those of the assigned variant group when the session has one and that
#: group has any active bundle of the product, else all of them. $2 holds every spelling of the
#: product id (the table holds whatever the writer stored: the numeric id, or a GID). Bundles and
#: the assignment are only looked up when the feature is enabled.
AI_BUNDLES_FOR_PRODUCT_SQL = """
WITH cfg AS (
    SELECT COALESCE(c."isEnabled", false) AS enabled
    FROM (SELECT 1) AS one
    LEFT JOIN ai_fbt_config c ON c.shop = $1
), assigned AS (
    SELECT (
        SELECT NULLIF(s."variantGroupId", '')
        FROM ai_bundle_ab_assignments s
        WHERE s."sessionId" = $3 AND s."productId" = ANY($2::text[]) AND s.shop = $1
          AND s."expiresAt" > (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')
        ORDER BY s."assignedAt" DESC, s.id
        LIMIT 1
    ) AS variant_group_id
    FROM cfg
    WHERE cfg.enabled AND $3::text IS NOT NULL
), candidates AS (
    SELECT f.*
    FROM ai_fbt_bundles f
    WHERE f.shop = $1 AND f."productId" = ANY($2::text[]) AND f."isActive" AND (SELECT enabled FROM cfg)
), chosen AS (
    SELECT c.*
    FROM candidates c
    WHERE NOT EXISTS (
            SELECT 1 FROM assigned g JOIN candidates x ON x."variantGroupId" = g.variant_group_id
        )
       OR c."variantGroupId" = (SELECT variant_group_id FROM assigned)
    ORDER BY c."confidenceScore" DESC, c.id
    LIMIT $4
)
SELECT
    cfg.enabled,
    (SELECT variant_group_id FROM assigned) AS assigned_variant_group_id,
    (
        SELECT json_agg(json_build_object(
            'id', a.id,
            'productId', a."productId",
            'bundledProductIds', COALESCE(a."bundledProductIds", ARRAY[]::text[]),
            'confidenceScore', a."confidenceScore",
            'support', a.support,
            'lift', a.lift,
            'variantGroupId', a."variantGroupId",
            'discountId', a."discountId",
            'bundleMetaobjectId', a."bundleMetaobjectId"
        ) ORDER BY a."confidenceScore" DESC, a.id)
        FROM chosen a
    ) AS bundles_json
FROM cfg
"""


async def fetch_v2_bundles_for_product(pool: asyncpg.Pool, shop: str, product_gid: str) -> list[asyncpg.Record]:
    """Rows of `V2_BUNDLES_FOR_PRODUCT_SQL`: one per ACTIVE bundle of `shop` holding the product."""
    return await pool.fetch(V2_BUNDLES_FOR_PRODUCT_SQL, shop, product_gid)


async def fetch_legacy_shape_for_product(pool: asyncpg.Pool, shop: str, product_gid: str) -> list[asyncpg.Record]:
    """Rows of `LEGACY_SHAPE_FOR_PRODUCT_SQL` (the V2 path of the legacy array endpoint)."""
    return await pool.fetch(LEGACY_SHAPE_FOR_PRODUCT_SQL, shop, product_gid)


async def fetch_ai_bundles_for_product(
    pool: asyncpg.Pool, shop: str, product_ids: Sequence[str], session_id: str | None, limit: int
) -> asyncpg.Record:
    """The single row of `AI_BUNDLES_FOR_PRODUCT_SQL` (always exactly one, thanks to the LEFT JOIN)."""
    row = await pool.fetchrow(AI_BUNDLES_FOR_PRODUCT_SQL, shop, list(product_ids), session_id, limit)
    assert row is not None  # `FROM (SELECT 1)` always yields a row
    return row
