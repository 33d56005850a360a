"""The plan's Phase 3 `migrateBundles` (migration-plan-v2.md), translated literally: the baseline
that `bench_migration.py` compares the job engine with.

Why a literal translation: the plan's script is what the team would have run. It does, for every
`bundle_discount_id` row, one after the other:

    findFirst existing (shop, shopifyMetaobjectId)  → one SELECT ... LIMIT 1
    fetchMetaobjectData(shop, bundleId)             → one Admin API request, `metaobject(id:)`
    prisma.bundle.create({... nested creates ...})  → Prisma's nested create: one transaction,
                                                      one INSERT per row (Bundle first, then each
                                                      component, the pricing rule, the discount,
                                                      the inventory record)
    stats.migrated++ / catch → stats.failed++

Nothing is batched, nothing runs concurrently, nothing is skipped early: that is the point.

The plan shows neither `fetchMetaobjectData` nor `generateSlug`; they are written the way the
script uses them: `fetchMetaobjectData` returns `{title, description, products: [{productId,
variantId, quantity}], discount}` (both legacy `products` formats normalised, `discount` as JS
`parseFloat`, so `"15%"` is 15 and `""` is NaN, and `NaN || 0` is 0); `generateSlug` is a plain
slugify with no uniqueness, so a second "Gift Set" in a shop fails on the unique `(shop, slug)`
index exactly as the Prisma create would (counted as failed, as the plan's catch does).
Only `findMany()` is narrowed (to the benchmark's shops and sample), because the benchmark database
also holds the engine's fixture.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from app.core.ids import new_id
from app.core.time import utcnow
from app.rules.slugs import slugify
from app.shopify.client import ShopifyClient


@dataclass
class MigrationStats:
    """The plan's `MigrationStats` plus the time it took."""

    total: int = 0
    migrated: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    #: the plan's `logger.error('Failed to migrate bundle', error, ...)`: how many, by error message
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def processed(self) -> int:
        return self.migrated + self.failed + self.skipped

    @property
    def rate(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


@dataclass
class MetaobjectData:
    title: str | None
    description: str | None
    products: list[dict[str, Any]]
    discount: float


_FLOAT_PREFIX = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def parse_float(value: str | None) -> float:
    """JavaScript's `parseFloat`: the longest numeric prefix, NaN when there is none."""
    match = _FLOAT_PREFIX.match(value or "")
    return float(match.group(0)) if match else math.nan


def _products(raw: str | None) -> list[dict[str, Any]]:
    """`JSON.parse(fields.products)`, GID strings or `{productId, variantId, quantity}` objects."""
    parsed = json.loads(raw or "[]")
    if isinstance(parsed, str):  # double-encoded
        parsed = json.loads(parsed)
    out = []
    for entry in parsed:
        if isinstance(entry, str):
            out.append({"productId": entry, "variantId": None, "quantity": None})
        else:
            out.append(
                {
                    "productId": entry.get("productId"),
                    "variantId": entry.get("variantId"),
                    "quantity": entry.get("quantity"),
                }
            )
    return out


async def fetch_metaobject_data(shopify: ShopifyClient, shop: str, bundle_id: str) -> MetaobjectData | None:
    """One `metaobject(id:)` request; None when Shopify has no such metaobject."""
    metaobject = await shopify.fetch_metaobject(shop, bundle_id)
    if metaobject is None:
        return None
    fields = metaobject.fields
    return MetaobjectData(
        title=fields.get("bundle_title"),
        description=fields.get("description"),
        products=_products(fields.get("products")),
        discount=parse_float(fields.get("discount")),
    )


def generate_slug(name: str) -> str:
    return slugify(name)


async def _create_bundle(conn: asyncpg.Connection, old: asyncpg.Record, data: MetaobjectData) -> None:
    """`prisma.bundle.create({data: {..., components, pricingRules, discounts, inventoryRecords}})`."""
    now = utcnow()
    bundle_id = new_id()
    discount = data.discount if not math.isnan(data.discount) and data.discount else 0  # `discount || 0`
    async with conn.transaction():
        await conn.execute(
            'INSERT INTO "Bundle" (id, shop, name, title, description, slug, type, status, "shopifyMetaobjectId", '
            "\"createdAt\", \"updatedAt\") VALUES ($1, $2, $3, $4, $5, $6, 'FIXED', 'ACTIVE', $7, $8, $8)",
            bundle_id,
            old["shop"],
            old["bundleName"],
            data.title or old["bundleName"],
            data.description,
            generate_slug(old["bundleName"]),
            old["bundleId"],
            now,
        )
        for i, product in enumerate(data.products):
            await conn.execute(
                'INSERT INTO "BundleComponent" (id, "bundleId", "shopifyProductId", "shopifyVariantId", quantity, '
                '"isRequired", "displayOrder", "minQuantity", "maxQuantity", "priceAdjustmentType", "createdAt", '
                "\"updatedAt\") VALUES ($1, $2, $3, $4, $5, true, $6, 0, 1, 'NONE', $7, $7)",
                new_id(),
                bundle_id,
                product["productId"],
                product["variantId"],
                product["quantity"] or 1,
                i,
                now,
            )
        await conn.execute(
            'INSERT INTO "BundlePricingRule" (id, "bundleId", name, priority, "isActive", "ruleType", conditions, '
            '"discountType", "discountValue", "usageCount", "createdAt", "updatedAt") '
            "VALUES ($1, $2, 'Bundle Discount', 0, true, 'BUNDLE_DISCOUNT', '{}', 'PERCENTAGE', $3, 0, $4, $4)",
            new_id(),
            bundle_id,
            discount,
            now,
        )
        await conn.execute(
            'INSERT INTO "BundleDiscount" (id, "bundleId", "shopifyDiscountId", "discountType", "isActive", '
            '"createdAt", "updatedAt") VALUES ($1, $2, $3, \'automatic\', true, $4, $4)',
            new_id(),
            bundle_id,
            old["discountId"],
            now,
        )
        await conn.execute(
            'INSERT INTO "BundleInventory" (id, "bundleId", "trackingMethod", "lowStockThreshold", '
            '"availableQuantity", "reservedQuantity", "allowOversell", "autoSyncEnabled", "lastCalculatedAt") '
            "VALUES ($1, $2, 'COMPONENT_BASED', 10, 0, 0, false, true, $3)",
            new_id(),
            bundle_id,
            now,
        )


async def migrate_bundles(
    conn: asyncpg.Connection,
    shopify: ShopifyClient,
    *,
    shops: Sequence[str],
    only: Collection[str] | None = None,
) -> MigrationStats:
    """`migrateBundles()` of the plan, over the rows of `shops` (and, if given, only those bundleIds)."""
    stats = MigrationStats()
    started = time.perf_counter()
    old_bundles = await conn.fetch(
        'SELECT "bundleId", "bundleName", "discountId", shop FROM bundle_discount_id WHERE shop = ANY($1::text[]) '
        'ORDER BY shop, "bundleId"',
        list(shops),
    )
    if only is not None:
        wanted = set(only)
        old_bundles = [row for row in old_bundles if row["bundleId"] in wanted]
    stats.total = len(old_bundles)
    for old in old_bundles:
        try:
            existing = await conn.fetchrow(
                'SELECT * FROM "Bundle" WHERE shop = $1 AND "shopifyMetaobjectId" = $2 LIMIT 1',
                old["shop"],
                old["bundleId"],
            )
            if existing is not None:
                stats.skipped += 1
                continue
            data = await fetch_metaobject_data(shopify, old["shop"], old["bundleId"])
            if data is None:
                stats.failed += 1  # logger.warn('Metaobject not found')
                stats.errors["metaobject not found"] = stats.errors.get("metaobject not found", 0) + 1
                continue
            await _create_bundle(conn, old, data)
            stats.migrated += 1
        except Exception as exc:  # the plan's catch: log, count and go on
            stats.failed += 1
            key = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            stats.errors[key] = stats.errors.get(key, 0) + 1
    stats.seconds = time.perf_counter() - started
    return stats
