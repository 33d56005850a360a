"""The V2 side of a bundle write: rows built from the request, inserted or replaced on the caller's
connection (the SQL is app.repos.bundles'), and the bundle read back with its children.

Every function runs inside the transaction of app.services.bundles.writes, which decides the order
of statements and holds the locks; nothing here opens a transaction or commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.core.errors import Conflict, NotFound
from app.core.ids import new_id
from app.repos import bundles as repo
from app.repos.base import Executor
from app.rules.slugs import slug_candidates, slugify
from app.schemas.bundles import BundleCreate, ComponentIn, DiscountIn, InventoryOut, PricingRuleIn


def new_bundle_row(
    bundle_id: str, shop: str, body: BundleCreate, metadata: dict[str, Any] | None, now: datetime
) -> dict[str, Any]:
    """The `Bundle` row of a create, slug still open (`insert_with_slug` picks it)."""
    return {
        "id": bundle_id,
        "shop": shop,
        "name": body.name,
        "title": body.title,
        "description": body.description,
        "slug": None,
        "type": body.type,
        "status": body.status,
        "shopifyProductId": body.shopifyProductId,
        "shopifyMetaobjectId": body.shopifyMetaobjectId,
        "displayOrder": body.displayOrder,
        "featuredImage": body.featuredImage,
        "images": body.images,
        "currencyCode": body.currencyCode,
        "tags": body.tags,
        "metadata": metadata,
        "createdAt": now,
        "publishedAt": now if body.status == "ACTIVE" else None,
    }


def _sorted_ids(count: int) -> list[str]:
    """Fresh ids in ascending order, so `ORDER BY ..., id` keeps the request's order on ties."""
    return sorted(new_id() for _ in range(count))


def _component_rows(components: list[ComponentIn]) -> list[dict[str, Any]]:
    ids = _sorted_ids(len(components))
    return [
        {
            "id": ids[i],
            "shopifyProductId": c.shopifyProductId,
            "shopifyVariantId": c.shopifyVariantId,
            "quantity": c.quantity,
            "isRequired": c.isRequired,
            "displayOrder": i if c.displayOrder is None else c.displayOrder,
            "minQuantity": c.minQuantity,
            "maxQuantity": c.maxQuantity,
            "priceAdjustment": c.priceAdjustment,
            "priceAdjustmentType": c.priceAdjustmentType,
        }
        for i, c in enumerate(components)
    ]


def _rule_rows(rules: list[PricingRuleIn]) -> list[dict[str, Any]]:
    ids = _sorted_ids(len(rules))
    return [{"id": ids[i], **r.model_dump()} for i, r in enumerate(rules)]


def _discount_rows(discounts: list[DiscountIn]) -> list[dict[str, Any]]:
    ids = _sorted_ids(len(discounts))
    return [{"id": ids[i], **d.model_dump()} for i, d in enumerate(discounts)]


async def insert_children(
    conn: Executor,
    bundle_id: str,
    now: datetime,
    *,
    components: list[ComponentIn] | None,
    rules: list[PricingRuleIn] | None,
    discounts: list[DiscountIn] | None,
) -> None:
    """Insert the given child lists (None: not given) in a fixed order: components, rules, discounts."""
    if components is not None:
        await repo.insert_components(conn, bundle_id, _component_rows(components), now)
    if rules:
        await repo.insert_pricing_rules(conn, bundle_id, _rule_rows(rules), now)
    if discounts:
        await repo.insert_discounts(conn, bundle_id, _discount_rows(discounts), now)


async def replace_children(
    conn: Executor,
    bundle_id: str,
    now: datetime,
    *,
    components: list[ComponentIn] | None,
    rules: list[PricingRuleIn] | None,
    discounts: list[DiscountIn] | None,
) -> None:
    """A PATCH's lists replace the stored ones (None: keep them): every given list's rows are
    deleted first, then the new rows inserted."""
    for table, items in (
        ("BundleComponent", components),
        ("BundlePricingRule", rules),
        ("BundleDiscount", discounts),
    ):
        if items is not None:
            await repo.delete_children(conn, table, bundle_id)
    await insert_children(conn, bundle_id, now, components=components, rules=rules, discounts=discounts)


async def insert_with_slug(conn: Executor, row: dict[str, Any], requested: str | None) -> None:
    """Insert the bundle under a free slug; a taken client-chosen slug is a 409.

    The unique index `Bundle_shop_slug_key` is the arbiter (ON CONFLICT DO NOTHING); reading the
    taken slugs first just makes the first attempt usually succeed.
    """
    if requested is not None:
        row["slug"] = requested
        if not await repo.insert_bundle(conn, row):
            raise Conflict("slug taken", slug=requested)
        return
    base = slugify(row["name"])
    taken = await repo.taken_slugs(conn, row["shop"], base)
    for attempt, candidate in enumerate(slug_candidates(base)):
        if candidate in taken:
            continue
        row["slug"] = candidate
        if await repo.insert_bundle(conn, row):
            return
        if attempt > 200:
            break
    # Pathological contention on one name: fall back to a random suffix, still unique-checked.
    row["slug"] = f"{base[:60]}-{new_id()[-8:]}"
    if not await repo.insert_bundle(conn, row):
        raise Conflict("slug taken")


def merged_inventory(current: dict[str, Any] | None, patch: dict[str, Any]) -> dict[str, Any]:
    """The inventory row after a PATCH: defaults, then the stored values, then the fields the patch sets."""
    base = InventoryOut().model_dump()
    if current:
        base.update({k: v for k, v in current.items() if k in base})
    base.update(patch)
    return base


async def load_full(conn: Executor, shop: str, bundle_id: str) -> dict[str, Any]:
    """The bundle with its children (repos.bundles.fetch_full), read on the write's own connection."""
    found = await repo.fetch_full(conn, shop, [bundle_id])
    if not found:  # pragma: no cover - we hold the row in this transaction
        raise NotFound("Bundle not found.")
    return found[0]
