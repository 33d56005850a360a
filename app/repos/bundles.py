"""SQL of the V2 bundle tables ("Bundle" and its children), on raw asyncpg.

Only SQL lives here: callers (app.services.bundles.writes with v2_rows / reads) own transactions, locking
order and business rules, and pass in the connection of their transaction. asyncpg rather than
the ORM because the write path needs exact control of statement order (`FOR UPDATE`,
`ON CONFLICT`) and the read path serves lists of up to 200 bundles with five queries.

Conventions: JSONB goes in as text (`$n::jsonb`) and comes out as text (`::text`), decoded here,
so the shared pool's connections keep asyncpg's default codecs that other modules rely on.
Timestamps are naive UTC (TIMESTAMP(3)); `updatedAt` is always set by the caller (no DB default).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from app.repos.base import Executor, dumps


def _loads(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)


BUNDLE_COLUMNS = (
    'id, shop, name, title, description, slug, type::text AS type, status::text AS status, "shopifyProductId", '
    '"shopifyMetaobjectId", "displayOrder", "featuredImage", images, "currencyCode", tags, '
    'metadata::text AS metadata, "createdAt", "updatedAt", "publishedAt"'
)


def _bundle_dict(row: asyncpg.Record) -> dict[str, Any]:
    data = dict(row)
    data["metadata"] = _loads(data["metadata"])
    return data


# --------------------------------------------------------------------------------------------
# Bundle rows
# --------------------------------------------------------------------------------------------


async def taken_slugs(conn: Executor, shop: str, base: str) -> set[str]:
    """Slugs of the shop equal to `base` or `base-<n>`: lets a create pick a free one in one round trip."""
    pattern = base.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "-%"
    rows = await conn.fetch(
        'SELECT slug FROM "Bundle" WHERE shop = $1 AND (slug = $2 OR slug LIKE $3)', shop, base, pattern
    )
    return {r["slug"] for r in rows}


async def slug_taken(conn: Executor, shop: str, slug: str, exclude_id: str | None = None) -> bool:
    found = await conn.fetchval(
        'SELECT 1 FROM "Bundle" WHERE shop = $1 AND slug = $2 AND ($3::text IS NULL OR id <> $3)',
        shop,
        slug,
        exclude_id,
    )
    return found is not None


async def insert_bundle(conn: Executor, row: dict[str, Any]) -> bool:
    """Insert one bundle unless its (shop, slug) is taken: False then (the caller tries another slug).

    Only the slug index is the arbiter: a clash on `sb_bundle_shop_metaobject_key` or
    `sb_bundle_shop_ai_bundle_key` still raises `UniqueViolationError`, which is a 409 upstream.
    A concurrent uncommitted insert of the same slug makes this wait for that transaction.
    """
    inserted = await conn.fetchval(
        """
        INSERT INTO "Bundle" (id, shop, name, title, description, slug, type, status, "shopifyProductId",
            "shopifyMetaobjectId", "displayOrder", "featuredImage", images, "currencyCode", tags, metadata,
            "createdAt", "updatedAt", "publishedAt")
        VALUES ($1, $2, $3, $4, $5, $6, $7::"BundleType", $8::"BundleStatus", $9, $10, $11, $12, $13, $14, $15,
            $16::jsonb, $17, $17, $18)
        ON CONFLICT (shop, slug) DO NOTHING
        RETURNING id
        """,
        row["id"],
        row["shop"],
        row["name"],
        row["title"],
        row["description"],
        row["slug"],
        row["type"],
        row["status"],
        row["shopifyProductId"],
        row["shopifyMetaobjectId"],
        row["displayOrder"],
        row["featuredImage"],
        row["images"],
        row["currencyCode"],
        row["tags"],
        None if row["metadata"] is None else dumps(row["metadata"]),
        row["createdAt"],
        row["publishedAt"],
    )
    return inserted is not None


#: Columns a PATCH may set, with the SQL cast of their parameter.
UPDATABLE_COLUMNS: dict[str, str] = {
    "name": "",
    "title": "",
    "description": "",
    "slug": "",
    "type": '::"BundleType"',
    "status": '::"BundleStatus"',
    "shopifyProductId": "",
    "shopifyMetaobjectId": "",
    "displayOrder": "",
    "featuredImage": "",
    "images": "",
    "currencyCode": "",
    "tags": "",
    "metadata": "::jsonb",
    "publishedAt": "",
}


async def update_bundle(conn: Executor, bundle_id: str, changes: dict[str, Any], updated_at: datetime) -> None:
    """Set the given columns (whitelisted in UPDATABLE_COLUMNS) and `updatedAt`."""
    sets = ['"updatedAt" = $2']
    args: list[Any] = [bundle_id, updated_at]
    for column, value in changes.items():
        cast = UPDATABLE_COLUMNS[column]  # KeyError = programming error, never user input
        args.append(dumps(value) if column == "metadata" and value is not None else value)
        sets.append(f'"{column}" = ${len(args)}{cast}')
    await conn.execute(f'UPDATE "Bundle" SET {", ".join(sets)} WHERE id = $1', *args)


async def lock_bundle(conn: Executor, shop: str, ref: str) -> dict[str, Any] | None:
    """The shop's bundle by V2 id or metaobject GID, row-locked until the transaction ends.

    The lock serialises concurrent PATCH/DELETE of one bundle, which makes `If-Match` exact.
    """
    row = await conn.fetchrow(
        f'SELECT {BUNDLE_COLUMNS} FROM "Bundle" WHERE shop = $1 AND (id = $2 OR "shopifyMetaobjectId" = $2) '
        "ORDER BY (id = $2) DESC LIMIT 1 FOR UPDATE",
        shop,
        ref,
    )
    return None if row is None else _bundle_dict(row)


async def delete_bundle(conn: Executor, bundle_id: str) -> None:
    """Children go with it (ON DELETE CASCADE)."""
    await conn.execute('DELETE FROM "Bundle" WHERE id = $1', bundle_id)


async def resolve_ref(conn: Executor, shop: str, ref: str) -> str | None:
    """V2 id of the shop's bundle named by V2 id, metaobject GID or legacy AI bundle id."""
    value: str | None = await conn.fetchval(
        """
        SELECT id FROM "Bundle"
        WHERE shop = $1 AND (id = $2 OR "shopifyMetaobjectId" = $2 OR (metadata ->> 'ai_bundle_id') = $2)
        ORDER BY (id = $2) DESC LIMIT 1
        """,
        shop,
        ref,
    )
    return value


async def legacy_keys(conn: Executor, shop: str, bundle_id: str) -> tuple[str | None, str | None] | None:
    """(shopifyMetaobjectId, metadata.ai_bundle_id) of a V2 bundle: how the legacy store names it."""
    row = await conn.fetchrow(
        """SELECT "shopifyMetaobjectId", metadata ->> 'ai_bundle_id' AS ai FROM "Bundle" WHERE shop = $1 AND id = $2""",
        shop,
        bundle_id,
    )
    return None if row is None else (row["shopifyMetaobjectId"], row["ai"])


async def legacy_key_rows(
    conn: Executor, shop: str, metaobject_ids: Sequence[str], ai_ids: Sequence[str]
) -> list[asyncpg.Record]:
    """(id, metaobject, ai) of the shop's V2 bundles named by these metaobject GIDs or legacy AI ids:
    one statement for any number of keys (both unique indexes, bitmap-ORed)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT id, "shopifyMetaobjectId" AS metaobject, metadata ->> 'ai_bundle_id' AS ai FROM "Bundle"
        WHERE shop = $1 AND ("shopifyMetaobjectId" = ANY($2::text[]) OR (metadata ->> 'ai_bundle_id') = ANY($3::text[]))
        """,
        shop,
        list(metaobject_ids),
        list(ai_ids),
    )
    return rows


async def ids_by_legacy_keys(
    conn: Executor, shop: str, metaobject_ids: Sequence[str], ai_ids: Sequence[str]
) -> list[str]:
    return [r["id"] for r in await legacy_key_rows(conn, shop, metaobject_ids, ai_ids)]


# --------------------------------------------------------------------------------------------
# Children
# --------------------------------------------------------------------------------------------


async def insert_components(conn: Executor, bundle_id: str, rows: Sequence[dict[str, Any]], now: datetime) -> None:
    await conn.executemany(
        """
        INSERT INTO "BundleComponent" (id, "bundleId", "shopifyProductId", "shopifyVariantId", quantity,
            "isRequired", "displayOrder", "minQuantity", "maxQuantity", "priceAdjustment", "priceAdjustmentType",
            "createdAt", "updatedAt")
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::"PriceAdjustmentType", $12, $12)
        """,
        [
            (
                r["id"],
                bundle_id,
                r["shopifyProductId"],
                r["shopifyVariantId"],
                r["quantity"],
                r["isRequired"],
                r["displayOrder"],
                r["minQuantity"],
                r["maxQuantity"],
                r["priceAdjustment"],
                r["priceAdjustmentType"],
                now,
            )
            for r in rows
        ],
    )


async def insert_pricing_rules(conn: Executor, bundle_id: str, rows: Sequence[dict[str, Any]], now: datetime) -> None:
    await conn.executemany(
        """
        INSERT INTO "BundlePricingRule" (id, "bundleId", name, priority, "isActive", "ruleType", conditions,
            "discountType", "discountValue", "usageLimit", "usageCount", "startsAt", "endsAt", "createdAt",
            "updatedAt")
        VALUES ($1, $2, $3, $4, $5, $6::"PricingRuleType", $7::jsonb, $8::"DiscountType", $9, $10, 0, $11, $12,
            $13, $13)
        """,
        [
            (
                r["id"],
                bundle_id,
                r["name"],
                r["priority"],
                r["isActive"],
                r["ruleType"],
                dumps(r["conditions"]),
                r["discountType"],
                r["discountValue"],
                r["usageLimit"],
                r["startsAt"],
                r["endsAt"],
                now,
            )
            for r in rows
        ],
    )


async def insert_discounts(conn: Executor, bundle_id: str, rows: Sequence[dict[str, Any]], now: datetime) -> None:
    await conn.executemany(
        """
        INSERT INTO "BundleDiscount" (id, "bundleId", "shopifyDiscountId", "discountCode", "discountType",
            "isActive", "createdAt", "updatedAt")
        VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
        """,
        [
            (r["id"], bundle_id, r["shopifyDiscountId"], r["discountCode"], r["discountType"], r["isActive"], now)
            for r in rows
        ],
    )


async def upsert_inventory(conn: Executor, bundle_id: str, row: dict[str, Any], new_id: str) -> None:
    """The bundle's single inventory row (`bundleId` is unique): insert, or overwrite in place."""
    await conn.execute(
        """
        INSERT INTO "BundleInventory" (id, "bundleId", "trackingMethod", "bundleQuantity", "lowStockThreshold",
            "availableQuantity", "reservedQuantity", "allowOversell", "autoSyncEnabled")
        VALUES ($1, $2, $3::"InventoryMethod", $4, $5, $6, $7, $8, $9)
        ON CONFLICT ("bundleId") DO UPDATE SET
            "trackingMethod" = EXCLUDED."trackingMethod", "bundleQuantity" = EXCLUDED."bundleQuantity",
            "lowStockThreshold" = EXCLUDED."lowStockThreshold", "availableQuantity" = EXCLUDED."availableQuantity",
            "reservedQuantity" = EXCLUDED."reservedQuantity", "allowOversell" = EXCLUDED."allowOversell",
            "autoSyncEnabled" = EXCLUDED."autoSyncEnabled"
        """,
        new_id,
        bundle_id,
        row["trackingMethod"],
        row["bundleQuantity"],
        row["lowStockThreshold"],
        row["availableQuantity"],
        row["reservedQuantity"],
        row["allowOversell"],
        row["autoSyncEnabled"],
    )


async def delete_children(conn: Executor, table: str, bundle_id: str) -> None:
    if table not in {"BundleComponent", "BundlePricingRule", "BundleDiscount"}:
        raise ValueError(f"not a replaceable child table: {table}")
    await conn.execute(f'DELETE FROM "{table}" WHERE "bundleId" = $1', bundle_id)


# --------------------------------------------------------------------------------------------
# Full reads
# --------------------------------------------------------------------------------------------


async def fetch_full(conn: Executor, shop: str, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Bundles with their children, in the order of `ids` (missing ids are skipped).

    Five queries whatever the number of bundles, each an index probe on `bundleId`.
    Children come back in display order: components by displayOrder, then id (ids of one write
    are generated in ascending order, so ties keep the request's order); rules and discounts
    by creation, then id.
    """
    if not ids:
        return []
    id_list = list(ids)
    bundles = await conn.fetch(
        f'SELECT {BUNDLE_COLUMNS} FROM "Bundle" WHERE shop = $1 AND id = ANY($2::text[])', shop, id_list
    )
    found = {r["id"]: _bundle_dict(r) for r in bundles}
    if not found:
        return []
    present = list(found)
    components = await conn.fetch(
        """
        SELECT id, "bundleId", "shopifyProductId", "shopifyVariantId", quantity, "isRequired", "displayOrder",
            "minQuantity", "maxQuantity", "priceAdjustmentType"::text AS "priceAdjustmentType", "priceAdjustment"
        FROM "BundleComponent" WHERE "bundleId" = ANY($1::text[]) ORDER BY "displayOrder", id
        """,
        present,
    )
    rules = await conn.fetch(
        """
        SELECT id, "bundleId", name, priority, "isActive", "ruleType"::text AS "ruleType",
            conditions::text AS conditions, "discountType"::text AS "discountType", "discountValue", "usageLimit",
            "usageCount", "startsAt", "endsAt"
        FROM "BundlePricingRule" WHERE "bundleId" = ANY($1::text[]) ORDER BY "createdAt", id
        """,
        present,
    )
    discounts = await conn.fetch(
        """
        SELECT id, "bundleId", "shopifyDiscountId", "discountCode", "discountType", "isActive"
        FROM "BundleDiscount" WHERE "bundleId" = ANY($1::text[]) ORDER BY "createdAt", id
        """,
        present,
    )
    inventories = await conn.fetch(
        """
        SELECT "bundleId", "trackingMethod"::text AS "trackingMethod", "bundleQuantity", "lowStockThreshold",
            "availableQuantity", "reservedQuantity", "allowOversell", "autoSyncEnabled"
        FROM "BundleInventory" WHERE "bundleId" = ANY($1::text[])
        """,
        present,
    )
    for bundle in found.values():
        bundle.update(components=[], pricingRules=[], discounts=[], inventory=None)
    for row in components:
        found[row["bundleId"]]["components"].append(dict(row))
    for row in rules:
        rule = dict(row)
        rule["conditions"] = _loads(rule["conditions"]) or {}
        found[row["bundleId"]]["pricingRules"].append(rule)
    for row in discounts:
        found[row["bundleId"]]["discounts"].append(dict(row))
    for row in inventories:
        found[row["bundleId"]]["inventory"] = dict(row)
    return [found[i] for i in id_list if i in found]


async def list_page(
    conn: Executor,
    shop: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    status: str | None,
    type_: str | None,
    product_id: str | None,
) -> list[str]:
    """Ids of one page, newest first, keyset on ("createdAt", id) (index sb_bundle_shop_created_id_idx).

    Returns up to `limit` ids; the caller asks for one more than it shows to know if a next page
    exists. Only the filters in use become predicates, so each combination gets its own plan
    instead of one generic `$n IS NULL OR ...` plan that cannot use the keyset index well.
    """
    where = ["b.shop = $1"]
    args: list[Any] = [shop]
    if after is not None:
        args += [after[0], after[1]]
        where.append(f'(b."createdAt", b.id) < (${len(args) - 1}::timestamp, ${len(args)}::text)')
    if status is not None:
        args.append(status)
        where.append(f'b.status = ${len(args)}::"BundleStatus"')
    if type_ is not None:
        args.append(type_)
        where.append(f'b.type = ${len(args)}::"BundleType"')
    if product_id is not None:
        args.append(product_id)
        where.append(
            'EXISTS (SELECT 1 FROM "BundleComponent" c '
            f'WHERE c."bundleId" = b.id AND c."shopifyProductId" = ${len(args)})'
        )
    args.append(limit)
    rows = await conn.fetch(
        f'SELECT b.id FROM "Bundle" b WHERE {" AND ".join(where)} '
        f'ORDER BY b."createdAt" DESC, b.id DESC LIMIT ${len(args)}',
        *args,
    )
    return [r["id"] for r in rows]
