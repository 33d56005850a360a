"""The writers of the bundle_discount_id rows that are not manual bundles but stand for another
legacy item: an auto rule's discount (`auto-rule-<id>`, `Auto Generated Bundle`) and an AI bundle's
metaobject. Neither creates a manual bundle; each links the row to the V2 row of the item it
stands for (or, for an AI bundle not yet in V2, migrates that AI bundle).
"""

from __future__ import annotations

from app.core.ids import new_id
from app.core.time import utcnow
from app.repos import migration as repo
from app.rules.legacy_parsing import LegacyRowKind, classify_bundle_discount_row
from app.services.migration.items.ai_bundles import write_ai_item
from app.services.migration.items.bundle_items import BundleItem
from app.services.migration.items.common import (
    AUTO_BUNDLE_DATA_PREFIX,
    SKIP_AI_BUNDLE_METAOBJECT,
    SKIP_ALREADY_MIGRATED,
    SKIP_AUTO_GENERATED_DISCOUNT,
    SKIP_AUTO_RULE_DISCOUNT,
    SKIP_DELETED_MEANWHILE,
    ItemOutcome,
    MigrationContext,
    clean_text,
    migrated_outcome,
    skipped_outcome,
)
from app.services.migration.items.slugs import SlugAllocator
from app.shopify.objects import Product

# ==================================================================================== auto rule discounts


async def write_auto_rule_row(ctx: MigrationContext, conn: repo.Conn, shop: str, item: BundleItem) -> ItemOutcome:
    """`auto-rule-<id>` / `Auto Generated Bundle`: not a bundle. The discount belongs to the
    migrated rule (set there when the rule migrates; filled in here if the rule migrated before
    the row existed). Skipped with a reason either way."""
    legacy_id = item.legacy_id
    if item.kind == LegacyRowKind.AUTO_RULE:
        rule_id = classify_bundle_discount_row(legacy_id).value
        assert rule_id is not None
        reason, key = SKIP_AUTO_RULE_DISCOUNT, rule_id
    else:
        reason, key = SKIP_AUTO_GENERATED_DISCOUNT, f"{AUTO_BUNDLE_DATA_PREFIX}{shop}"
    if ctx.dry_run:
        row = await repo.read_bundle_row(conn, shop, legacy_id)
        found = await repo.find_auto_rule(conn, shop, key) if row is not None else None
        return _auto_rule_row_outcome(item, reason, key, row, found, attached=None)
    async with conn.transaction():
        row = await repo.lock_bundle_row(conn, shop, legacy_id)
        if row is None:
            return skipped_outcome(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone")
        found = await repo.find_auto_rule(conn, shop, key)
        attached = None
        discount_id = clean_text(row.discount_id)
        if found is not None and found[1] is None and discount_id is not None:
            attached = await repo.fill_auto_rule_discount(conn, shop, found[0], discount_id, utcnow())
        if found is None:
            exists = (
                await repo.legacy_rule_exists(conn, shop, key)
                if item.kind == LegacyRowKind.AUTO_RULE
                else await repo.auto_bundle_data_exists(conn, shop)
            )
            detail = (
                f"discount of legacy rule {key}: attached when that rule migrates"
                if exists
                else f"orphan discount: no legacy rule {key} in this shop"
            )
            return skipped_outcome(legacy_id, reason, detail)
    return _auto_rule_row_outcome(item, reason, key, row, found, attached)


def _auto_rule_row_outcome(
    item: BundleItem,
    reason: str,
    key: str,
    row: repo.LegacyBundleRow | None,
    found: tuple[str, str | None] | None,
    attached: str | None,
) -> ItemOutcome:
    legacy_id = item.legacy_id
    if row is None:
        return skipped_outcome(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone")
    if found is None:
        return skipped_outcome(legacy_id, reason, f"discount of legacy rule {key}: attached when that rule migrates")
    rule_id, current = found
    discount_id = clean_text(row.discount_id)
    if attached is not None:
        detail = f"discount {discount_id} attached to AutoBundleRule {rule_id}"
    elif current is not None and current != discount_id:
        detail = f"AutoBundleRule {rule_id} already has discount {current}; kept"
    else:
        detail = f"discount belongs to AutoBundleRule {rule_id}"
    return skipped_outcome(legacy_id, reason, detail, v2_id=rule_id)


# ==================================================================================== AI bundle metaobjects


async def write_ai_metaobject_row(
    ctx: MigrationContext,
    conn: repo.Conn,
    shop: str,
    item: BundleItem,
    slugs: SlugAllocator,
    products: dict[str, Product | None] | None,
) -> ItemOutcome:
    """A row that is an AI bundle's metaobject IS that AI bundle: one V2 bundle, never a manual copy.

    AI bundle already in V2 → skipped `ai_bundle_metaobject` (the row's discount linked to it,
    insert-only); not yet → the AI bundle is migrated now (its migration reads this row's
    discount too) and the item counts as migrated.
    """
    legacy_id, ai_id = item.legacy_id, item.ai_id
    assert ai_id is not None
    if ctx.dry_run:
        row = await repo.read_bundle_row(conn, shop, legacy_id)
        if row is None:
            return skipped_outcome(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone")
        existing = await repo.find_ai_bundle_id(conn, shop, ai_id)
        if existing is not None:
            return skipped_outcome(legacy_id, SKIP_AI_BUNDLE_METAOBJECT, f"is AI bundle {ai_id}", v2_id=existing)
    else:
        async with conn.transaction():
            row = await repo.lock_bundle_row(conn, shop, legacy_id)
            if row is None:
                return skipped_outcome(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone")
            existing = await repo.find_ai_bundle_id(conn, shop, ai_id)
            if existing is not None:
                discount_id = clean_text(row.discount_id)
                if discount_id is not None:
                    await repo.attach_bundle_discount(conn, existing, new_id(), discount_id, utcnow())
                return skipped_outcome(
                    legacy_id, SKIP_AI_BUNDLE_METAOBJECT, f"is AI bundle {ai_id}; discount linked", v2_id=existing
                )
    outcome = await write_ai_item(ctx, conn, shop, ai_id, slugs, products)
    if outcome.status == "migrated":
        return migrated_outcome(legacy_id, outcome.v2_id, f"migrated as AI bundle {ai_id}")
    if outcome.reason == SKIP_ALREADY_MIGRATED:  # the AI item won a race with us
        return skipped_outcome(legacy_id, SKIP_AI_BUNDLE_METAOBJECT, f"is AI bundle {ai_id}")
    if outcome.reason == SKIP_DELETED_MEANWHILE:
        return skipped_outcome(legacy_id, SKIP_DELETED_MEANWHILE, f"AI bundle {ai_id} is gone")
    return ItemOutcome(legacy_id, outcome.status, outcome.reason, outcome.detail, outcome.v2_id, outcome.transient)
