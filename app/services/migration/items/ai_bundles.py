"""ai_fbt_bundles → Bundle (metadata.source = "AI"): the AI bundle batch and the one-item write.

`write_ai_item` is also what a bundle_discount_id row that is an AI bundle's metaobject calls
(`linked_rows`): that row IS the AI bundle, so it migrates through the very same write.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from app.core.ids import new_id
from app.core.time import utcnow
from app.repos import migration as repo
from app.rules.legacy_parsing import InvalidLegacyData, LegacyProductRef, normalize_product_gid
from app.rules.slugs import slugify
from app.services.migration.items.common import (
    MAX_SLUG_ATTEMPTS,
    REASON_CONFLICT,
    SKIP_ALREADY_MIGRATED,
    SKIP_DELETED_MEANWHILE,
    SLUG_CONSTRAINT,
    ItemOutcome,
    MigrationContext,
    clean_text,
    dumps_json,
    failed_outcome,
    guarded,
    migrated_outcome,
    skipped_outcome,
)
from app.services.migration.items.product_cache import build_components, cache_note, fetch_products, product_failure
from app.services.migration.items.slugs import SlugAllocator
from app.shopify.objects import Product

AI_BUNDLE_NAME_PREFIX = "AI Bundle - "
AI_BUNDLE_TITLE = "Frequently Bought Together"
METAOBJECT_CONSTRAINT = "sb_bundle_shop_metaobject_key"


def _finite(value: Any) -> float | None:
    """Scores as JSON numbers; NaN/Infinity (which JSONB refuses) become null."""
    if value is None:
        return None
    number = float(value)
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _ai_refs(row: asyncpg.Record) -> list[LegacyProductRef]:
    """Primary product then the bundled ones (the plan's displayOrder), as product GIDs."""
    refs = [LegacyProductRef(normalize_product_gid(row["productId"], "productId"))]
    for index, value in enumerate(row["bundledProductIds"] or []):
        if value is None or not str(value).strip():
            raise InvalidLegacyData("bundledProductIds", f"bundledProductIds[{index}] is empty")
        refs.append(LegacyProductRef(normalize_product_gid(value, "bundledProductIds")))
    return refs


def ai_slug_base(ai_id: str) -> str:
    return slugify(f"ai-fbt-{ai_id}")


def _build_ai_bundle(
    shop: str,
    row: asyncpg.Record,
    slug: str,
    products: dict[str, Product | None] | None,
    now: datetime,
) -> repo.NewBundle:
    """The plan's AI mapping: name, title, slug `ai-fbt-<id>`, status by isActive, scores in metadata,
    primary product then bundled products; no pricing rule (the plan writes none for AI bundles)."""
    is_active = bool(row["isActive"])
    metadata: dict[str, Any] = {
        "ai_bundle_id": row["id"],
        "source": "AI",
        "confidence": _finite(row["confidenceScore"]),
        "support": _finite(row["support"]),
        "lift": _finite(row["lift"]),
        "legacySource": row["source"],
        "variantGroupId": row["variantGroupId"],
        "isManualOverride": bool(row["isManualOverride"]),
    }
    discounts: list[repo.NewDiscount] = []
    # The AI row's own discount, and the one the legacy generator also recorded in bundle_discount_id.
    for discount_id in dict.fromkeys(
        filter(None, (clean_text(row["discountId"]), clean_text(row["legacy_discount_id"])))
    ):
        discounts.append(repo.NewDiscount(new_id(), discount_id, is_active))
    return repo.NewBundle(
        id=new_id(),
        shop=shop,
        name=f"{AI_BUNDLE_NAME_PREFIX}{row['productId']}",
        title=AI_BUNDLE_TITLE,
        description=None,
        slug=slug,
        status="ACTIVE" if is_active else "PAUSED",
        shopify_metaobject_id=clean_text(row["bundleMetaobjectId"]),
        metadata_json=dumps_json(metadata),
        created_at=row["generatedAt"] or now,
        now=now,
        inventory_id=new_id(),
        components=build_components(_ai_refs(row), products),
        discounts=discounts,
    )


async def _dry_run_ai_item(
    conn: repo.Conn, shop: str, ai_id: str, slug: str, products: dict[str, Product | None] | None
) -> ItemOutcome:
    """What `write_ai_item` would do, read without locks, nothing written."""
    row = await repo.lock_ai_row(conn, shop, ai_id, lock=False)
    if row is None:
        return skipped_outcome(ai_id, SKIP_DELETED_MEANWHILE, "ai_fbt_bundles row is gone")
    _build_ai_bundle(shop, row, slug, products, utcnow())  # validates the legacy values
    existing = await repo.find_ai_bundle_id(conn, shop, ai_id)
    if existing is not None:
        return skipped_outcome(ai_id, SKIP_ALREADY_MIGRATED, v2_id=existing)
    mo = clean_text(row["bundleMetaobjectId"])
    if mo is not None and (other := await repo.find_bundle_id(conn, shop, mo)) is not None:
        return failed_outcome(ai_id, REASON_CONFLICT, f"metaobject {mo} is already V2 bundle {other}")
    return migrated_outcome(ai_id, None, "dry run")


async def write_ai_item(
    ctx: MigrationContext,
    conn: repo.Conn,
    shop: str,
    ai_id: str,
    slugs: SlugAllocator,
    products: dict[str, Product | None] | None,
    note: str | None = None,
) -> ItemOutcome:
    """One AI bundle in its own transaction: lock the ai_fbt_bundles row, insert ON CONFLICT on
    `sb_bundle_shop_ai_bundle_key`. Its metaobject owned by another V2 bundle is a `conflict`."""
    slug_base = ai_slug_base(ai_id)
    for _ in range(MAX_SLUG_ATTEMPTS):
        slug = slugs.allocate(slug_base)
        if ctx.dry_run:
            return await _dry_run_ai_item(conn, shop, ai_id, slug, products)
        try:
            async with conn.transaction():
                row = await repo.lock_ai_row(conn, shop, ai_id)
                if row is None:
                    return skipped_outcome(ai_id, SKIP_DELETED_MEANWHILE, "ai_fbt_bundles row is gone")
                bundle = _build_ai_bundle(shop, row, slug, products, utcnow())
                inserted = await repo.insert_ai_bundle(conn, bundle)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == SLUG_CONSTRAINT:
                await slugs.refresh(conn, slug_base)
                continue
            if exc.constraint_name == METAOBJECT_CONSTRAINT:
                return failed_outcome(
                    ai_id, REASON_CONFLICT, f"its metaobject already belongs to another V2 bundle: {exc.detail or exc}"
                )
            raise
        if inserted is None:
            return skipped_outcome(ai_id, SKIP_ALREADY_MIGRATED)
        return migrated_outcome(ai_id, inserted, note)
    return failed_outcome(ai_id, REASON_CONFLICT, f"no free slug after {MAX_SLUG_ATTEMPTS} attempts", transient=True)


class AiBatch:
    """ai_fbt_bundles → Bundle (metadata.source = "AI"); no Shopify unless products are cached."""

    def __init__(self, ctx: MigrationContext, shop: str, ids: list[str], outcomes: dict[str, ItemOutcome]) -> None:
        self.ctx, self.shop, self.ids, self.outcomes = ctx, shop, ids, outcomes

    async def run(self) -> None:
        ctx, shop = self.ctx, self.shop
        async with ctx.pool.acquire() as conn:
            existing = await repo.existing_ai_bundles(conn, shop, self.ids)
            pending = []
            for ai_id in self.ids:
                if ai_id in existing:
                    self.outcomes[ai_id] = skipped_outcome(ai_id, SKIP_ALREADY_MIGRATED, v2_id=existing[ai_id])
                else:
                    pending.append(ai_id)
            refs_by_id = await ai_product_refs(ctx, conn, shop, pending)
            taken = await repo.taken_slugs(conn, shop, [ai_slug_base(ai_id) for ai_id in pending])
        product_ids = [ref.product_id for refs in refs_by_id.values() for ref in refs]
        products, failed, batch_error = await fetch_products(ctx, shop, product_ids)
        note = cache_note(batch_error)
        slugs = SlugAllocator(shop, taken)
        async with ctx.pool.acquire() as conn:
            for ai_id in pending:
                problem = product_failure(ai_id, refs_by_id.get(ai_id, []), failed, batch_error)
                if problem is not None:
                    self.outcomes[ai_id] = problem
                    continue
                work = functools.partial(write_ai_item, ctx, conn, shop, ai_id, slugs, products, note)
                self.outcomes[ai_id] = await guarded(ai_id, work)


async def ai_product_refs(
    ctx: MigrationContext, conn: repo.Conn, shop: str, ai_ids: Sequence[str]
) -> dict[str, list[LegacyProductRef]]:
    """Product refs of AI rows, read in one statement, only when products are to be cached.
    Unreadable rows are left out here and reported by their item."""
    if not ctx.fill_products or ctx.dry_run or not ai_ids:
        return {}
    refs: dict[str, list[LegacyProductRef]] = {}
    for row in await repo.fetch_ai_product_rows(conn, shop, ai_ids):
        try:
            refs[row["id"]] = _ai_refs(row)
        except InvalidLegacyData:
            continue
    return refs
