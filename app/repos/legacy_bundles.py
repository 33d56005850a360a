"""SQL of the legacy bundle tables the service dual-writes and reads: `bundle_discount_id`, `ai_fbt_bundles`.

The tables belong to the legacy Node app (schema.md: never altered); this module only reads and
writes rows the way that app does. Transactions and ownership rules are the caller's
(app.services.bundles.legacy_sync, inside the transactions of app.services.bundles.writes); the
read helpers accept the pool as well as a connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.repos.base import Executor

# --------------------------------------------------------------------------------------------
# bundle_discount_id
# --------------------------------------------------------------------------------------------


async def lock_discount_rows(conn: Executor, bundle_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Existing rows for these keys, locked `FOR UPDATE` in key order (a fixed order avoids deadlocks).

    A key without a row locks nothing: inserts of that key are arbitrated by the primary key
    (`insert_discount_row` answers False when another transaction got there first).
    """
    keys = sorted(set(bundle_ids))
    if not keys:
        return {}
    rows = await conn.fetch(
        'SELECT "bundleId", "bundleName", "discountId", shop FROM bundle_discount_id '
        'WHERE "bundleId" = ANY($1::text[]) ORDER BY "bundleId" FOR UPDATE',
        keys,
    )
    return {r["bundleId"]: dict(r) for r in rows}


async def insert_discount_row(conn: Executor, bundle_id: str, name: str, discount_id: str, shop: str) -> bool:
    """Insert the row; False when the key exists (possibly committed a moment ago by another writer)."""
    inserted = await conn.fetchval(
        'INSERT INTO bundle_discount_id ("bundleId", "bundleName", "discountId", shop) VALUES ($1, $2, $3, $4) '
        'ON CONFLICT ("bundleId") DO NOTHING RETURNING "bundleId"',
        bundle_id,
        name,
        discount_id,
        shop,
    )
    return inserted is not None


async def update_discount_row(conn: Executor, bundle_id: str, shop: str, name: str, discount_id: str) -> None:
    await conn.execute(
        'UPDATE bundle_discount_id SET "bundleName" = $3, "discountId" = $4 WHERE "bundleId" = $1 AND shop = $2',
        bundle_id,
        shop,
        name,
        discount_id,
    )


async def delete_discount_row(conn: Executor, bundle_id: str, shop: str) -> None:
    await conn.execute('DELETE FROM bundle_discount_id WHERE "bundleId" = $1 AND shop = $2', bundle_id, shop)


async def get_discount_row(conn: Executor, shop: str, bundle_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        'SELECT "bundleId", "bundleName", "discountId", shop FROM bundle_discount_id '
        'WHERE "bundleId" = $1 AND shop = $2',
        bundle_id,
        shop,
    )
    return None if row is None else dict(row)


async def list_discount_rows(conn: Executor, shop: str) -> list[dict[str, Any]]:
    """All rows of a shop (the table has no shop index; it holds hundreds to a few thousand rows)."""
    rows = await conn.fetch(
        'SELECT "bundleId", "bundleName", "discountId", shop FROM bundle_discount_id WHERE shop = $1', shop
    )
    return [dict(r) for r in rows]


# --------------------------------------------------------------------------------------------
# ai_fbt_bundles
# --------------------------------------------------------------------------------------------

AI_COLUMNS = (
    'id, shop, "productId", "bundledProductIds", "confidenceScore", support, lift, "generatedAt", "isActive", '
    'source, "variantGroupId", "bundleMetaobjectId", "discountId", "isManualOverride", "lastUpdatedAt"'
)


async def lock_ai_row(conn: Executor, ai_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {AI_COLUMNS} FROM ai_fbt_bundles WHERE id = $1 FOR UPDATE", ai_id)
    return None if row is None else dict(row)


async def insert_ai_row(conn: Executor, row: dict[str, Any]) -> None:
    await conn.execute(
        """
        INSERT INTO ai_fbt_bundles (id, shop, "productId", "bundledProductIds", "confidenceScore", support, lift,
            "generatedAt", "isActive", source, "bundleMetaobjectId", "discountId", "isManualOverride", "lastUpdatedAt")
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $8)
        """,
        row["id"],
        row["shop"],
        row["productId"],
        row["bundledProductIds"],
        row["confidenceScore"],
        row["support"],
        row["lift"],
        row["lastUpdatedAt"],
        row["isActive"],
        row["source"],
        row["bundleMetaobjectId"],
        row["discountId"],
        row["isManualOverride"],
    )


async def update_ai_row(
    conn: Executor,
    ai_id: str,
    *,
    product_id: str,
    bundled_product_ids: list[str],
    is_active: bool,
    metaobject_id: str | None,
    discount_id: str | None,
    updated_at: datetime,
) -> None:
    """Write the merchant's edit through; `isManualOverride` keeps the AI generator from undoing it."""
    await conn.execute(
        """
        UPDATE ai_fbt_bundles SET "productId" = $2, "bundledProductIds" = $3, "isActive" = $4,
            "bundleMetaobjectId" = $5, "discountId" = $6, "isManualOverride" = true, "lastUpdatedAt" = $7
        WHERE id = $1
        """,
        ai_id,
        product_id,
        bundled_product_ids,
        is_active,
        metaobject_id,
        discount_id,
        updated_at,
    )


async def delete_ai_row(conn: Executor, ai_id: str, shop: str) -> None:
    await conn.execute("DELETE FROM ai_fbt_bundles WHERE id = $1 AND shop = $2", ai_id, shop)


async def get_ai_row(conn: Executor, shop: str, ai_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {AI_COLUMNS} FROM ai_fbt_bundles WHERE id = $1 AND shop = $2", ai_id, shop)
    return None if row is None else dict(row)


async def ai_rows_for_metaobject(conn: Executor, shop: str, metaobject_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f'SELECT {AI_COLUMNS} FROM ai_fbt_bundles WHERE shop = $1 AND "bundleMetaobjectId" = $2 ORDER BY id',
        shop,
        metaobject_id,
    )
    return [dict(r) for r in rows]


async def list_ai_rows(conn: Executor, shop: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT {AI_COLUMNS} FROM ai_fbt_bundles WHERE shop = $1", shop)
    return [dict(r) for r in rows]
