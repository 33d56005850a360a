"""The floor the storefront is measured against: bare Starlette + asyncpg, one SQL statement per request.

Each endpoint answers what the service answers for the benchmark's data (JSON-equal; the harness
checks a sample before measuring), but PostgreSQL builds the *whole* body, pricing included, with
JSON aggregation, and Python only forwards the text: no signature check, no flags, no middleware,
no logging, no metrics. The pricing SQL covers what the benchmark seeds (components without price
adjustments, PERCENTAGE rules with priorities, windows and usage limits): it is a baseline for this
data, not a second pricing engine.

Run by `bench/bench_storefront.py` as `uvicorn --factory bench.bare_app:create` with the database
URL in `BENCH_DATABASE_URL`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.core.db import asyncpg_connect_kwargs


def _half_even(x: str) -> str:
    """SQL for `x` (>= 0) rounded to cents half to even, as the service's `quantize_money` does."""
    return (
        f"(CASE WHEN ({x}) * 100 - floor(({x}) * 100) = 0.5 "
        f"THEN (floor(({x}) * 100) + mod(floor(({x}) * 100), 2)) / 100 ELSE round({x}, 2) END)"
    )


#: `/proxy/v2/bundles`: `{"bundles": [...]}` for ACTIVE bundles of shop $1 holding product $2.
BARE_V2_SQL = f"""
SELECT json_build_object('bundles', COALESCE(json_agg(x.item ORDER BY x.o1, x.o2, x.o3), '[]'::json))::text
FROM (
    SELECT b."displayOrder" AS o1, b."createdAt" AS o2, b.id AS o3,
        json_build_object(
            'id', b.id, 'name', b.name, 'title', b.title, 'description', b.description,
            'type', b.type, 'featuredImage', b."featuredImage",
            'components', comp.components,
            'pricing', json_build_object(
                'originalPrice', round(comp.original, 2)::text,
                'discountedPrice', round(pr.discounted, 2)::text,
                'savings', round(comp.original - pr.discounted, 2)::text,
                'savingsPercentage', round(CASE WHEN comp.original > 0
                    THEN {_half_even("(comp.original - pr.discounted) * 100 / comp.original")} ELSE 0 END, 2)::text,
                'currency', b."currencyCode"),
            'inventory', json_build_object(
                'available', comp.stock,
                'isInStock', COALESCE(inv."allowOversell", false) OR comp.stock IS NULL OR comp.stock > 0)
        ) AS item
    FROM (SELECT DISTINCT pc."bundleId" FROM "BundleComponent" pc WHERE pc."shopifyProductId" = $2) AS p
    JOIN "Bundle" b ON b.id = p."bundleId"
    CROSS JOIN LATERAL (
        SELECT
            json_agg(json_build_object(
                'productId', c."shopifyProductId", 'variantId', c."shopifyVariantId", 'quantity', c.quantity,
                'title', c."cachedTitle", 'price', c."cachedPrice"::text, 'imageUrl', c."cachedImageUrl"
            ) ORDER BY c."displayOrder", c.id) AS components,
            COALESCE(sum(COALESCE(c."cachedPrice", 0) * c.quantity), 0) AS original,
            min(GREATEST(c."cachedInventory", 0) / c.quantity)
                FILTER (WHERE c."isRequired" AND c.quantity > 0 AND c."cachedInventory" IS NOT NULL) AS stock
        FROM "BundleComponent" c WHERE c."bundleId" = b.id
    ) AS comp
    LEFT JOIN LATERAL (
        SELECT LEAST(GREATEST(r."discountValue", 0), 100) AS pct
        FROM "BundlePricingRule" r
        WHERE r."bundleId" = b.id AND r."isActive" AND r."discountType" = 'PERCENTAGE'
          AND r."ruleType" IN ('BUNDLE_DISCOUNT', 'TIME_LIMITED', 'BOGO')
          AND (r."startsAt" IS NULL OR r."startsAt" <= (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'))
          AND (r."endsAt" IS NULL OR r."endsAt" > (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'))
          AND (r."usageLimit" IS NULL OR r."usageCount" < r."usageLimit")
        ORDER BY r.priority DESC, r."discountValue" DESC
        LIMIT 1
    ) AS rule ON true
    CROSS JOIN LATERAL (
        SELECT {_half_even("comp.original * (100 - COALESCE(rule.pct, 0)) / 100")} AS discounted
    ) AS pr
    LEFT JOIN "BundleInventory" inv ON inv."bundleId" = b.id
    WHERE b.shop = $1 AND b.status = 'ACTIVE'
) AS x
"""

#: `/proxy/bundles-for-product` (V2 store): the legacy array `[{id, title, discount, description, products}]`.
BARE_LEGACY_SHAPE_SQL = """
SELECT COALESCE(json_agg(json_build_object(
    'id', COALESCE(b."shopifyMetaobjectId", b.id),
    'title', COALESCE(b.title, ''),
    'discount', COALESCE(trim_scale(d.pct)::text, ''),
    'description', COALESCE(b.description, ''),
    'products', COALESCE(pr.products, ARRAY[]::text[])
) ORDER BY b."displayOrder", b."createdAt", b.id), '[]'::json)::text
FROM (SELECT DISTINCT pc."bundleId" FROM "BundleComponent" pc WHERE pc."shopifyProductId" = $2) AS p
JOIN "Bundle" b ON b.id = p."bundleId"
CROSS JOIN LATERAL (
    SELECT array_agg(c."shopifyProductId" ORDER BY c."displayOrder", c.id) AS products
    FROM "BundleComponent" c WHERE c."bundleId" = b.id
) AS pr
LEFT JOIN LATERAL (
    SELECT r."discountValue" AS pct
    FROM "BundlePricingRule" r
    WHERE r."bundleId" = b.id AND r."isActive"
      AND r."ruleType" = 'BUNDLE_DISCOUNT' AND r."discountType" = 'PERCENTAGE'
      AND (r."startsAt" IS NULL OR r."startsAt" <= (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'))
      AND (r."endsAt" IS NULL OR r."endsAt" > (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'))
      AND (r."usageLimit" IS NULL OR r."usageCount" < r."usageLimit")
    ORDER BY r.priority DESC, r."createdAt", r.id
    LIMIT 1
) AS d ON true
WHERE b.shop = $1 AND b.status = 'ACTIVE'
  AND NOT (b."shopifyMetaobjectId" IS NULL AND COALESCE(b.metadata ->> 'source', '') = 'AI')
"""

PRODUCT_GID_PREFIX = "gid://shopify/Product/"


def create() -> Starlette:
    """The ASGI app (uvicorn `--factory`)."""
    url = os.environ["BENCH_DATABASE_URL"]
    pool_size = int(os.environ.get("BENCH_POOL_SIZE", "10"))
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(min_size=pool_size, max_size=pool_size, **asyncpg_connect_kwargs(url))
        assert pool is not None
        state["pool"] = pool
        try:
            yield
        finally:
            await pool.close()

    def endpoint(sql: str) -> Any:
        async def answer(request: Request) -> Response:
            params = request.query_params
            product = params["product_id"]
            if not product.startswith(PRODUCT_GID_PREFIX):
                product = PRODUCT_GID_PREFIX + product
            body = await state["pool"].fetchval(sql, params["shop"], product)
            return Response(body, media_type="application/json")

        return answer

    return Starlette(
        routes=[
            Route("/proxy/v2/bundles", endpoint(BARE_V2_SQL)),
            Route("/proxy/bundles-for-product", endpoint(BARE_LEGACY_SHAPE_SQL)),
        ],
        lifespan=lifespan,
    )
