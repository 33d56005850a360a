"""auto_bundle_rules / auto_bundle_data → AutoBundleRule; never calls Shopify.

The rules' discounts live in bundle_discount_id rows (`auto-rule-<id>`, `Auto Generated Bundle`);
those rows are items of the bundle batch and attach to the rule migrated here (`linked_rows`).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Literal

import asyncpg

from app.core.ids import new_id
from app.core.time import utcnow
from app.repos import migration as repo
from app.rules.legacy_parsing import map_auto_bundle_rule
from app.services.migration.items.common import (
    AUTO_BUNDLE_DATA_PREFIX,
    REASON_INVALID_LEGACY_DATA,
    SKIP_ALREADY_MIGRATED,
    SKIP_DELETED_MEANWHILE,
    SKIP_DUPLICATE_OF_RULE,
    ItemOutcome,
    MigrationContext,
    clean_text,
    dumps_json,
    failed_outcome,
    guarded,
    migrated_outcome,
    skipped_outcome,
)


def _auto_rule_key(shop: str, legacy_id: str) -> tuple[Literal["rule", "data"], str]:
    if legacy_id.startswith(AUTO_BUNDLE_DATA_PREFIX):
        return "data", legacy_id[len(AUTO_BUNDLE_DATA_PREFIX) :]
    return "rule", legacy_id


def _build_auto_rule(shop: str, legacy_id: str, source: str, row: asyncpg.Record, now: datetime) -> repo.NewAutoRule:
    """Legacy rule → AutoBundleRule (mapping table in `map_auto_bundle_rule` and docs/migration.md).

    The legacy key goes to conditions.legacyRuleId (unique per shop: the idempotency key), the
    rule's Shopify discount (its `auto-rule-<id>` / `Auto Generated Bundle` row) to
    bundleTemplate.discount.shopifyDiscountId. A deprecated auto_bundle_data rule of a shop that also
    has auto_bundle_rules was superseded by them in the legacy app: kept, but inactive. The copy of
    a shop's auto_bundle_data row is that rule too: it carries conditions.legacyCopyOf.
    """
    mapping = map_auto_bundle_rule(
        row["name"],
        row["collections"],
        row["tags"],
        row["minPrice"],
        row["maxPrice"],
        row["minProducts"],
        row["discount"],
        bool(row["isActive"]),
    )
    superseded = bool(row["superseded"])
    conditions = {**mapping.conditions, "legacyRuleId": legacy_id, "legacySource": source}
    if superseded:
        conditions["supersededByAutoBundleRules"] = True
    if row["copy_of_data"]:
        # The copy also stands for the shop's auto_bundle_data row: the link lets that row's item,
        # its `Auto Generated Bundle` discount and the validation report find this rule.
        conditions["legacyCopyOf"] = f"{AUTO_BUNDLE_DATA_PREFIX}{shop}"
    template = dict(mapping.bundle_template)
    discount_id = clean_text(row["discount_id"])
    if discount_id is not None:
        template["discount"] = {**template["discount"], "shopifyDiscountId": discount_id}
    return repo.NewAutoRule(
        id=new_id(),
        shop=shop,
        name=mapping.name if source == "auto_bundle_rules" else "Auto bundle (legacy single rule)",
        description=None if source == "auto_bundle_rules" else "Migrated from the deprecated auto_bundle_data table",
        trigger_type=mapping.trigger_type,
        conditions_json=dumps_json(conditions),
        bundle_template_json=dumps_json(template),
        is_active=mapping.is_active and not superseded,
        created_at=row["createdAt"] or now,
        now=now,
    )


class AutoRuleBatch:
    """auto_bundle_rules / auto_bundle_data → AutoBundleRule; never calls Shopify."""

    def __init__(self, ctx: MigrationContext, shop: str, ids: list[str], outcomes: dict[str, ItemOutcome]) -> None:
        self.ctx, self.shop, self.ids, self.outcomes = ctx, shop, ids, outcomes

    async def run(self) -> None:
        async with self.ctx.pool.acquire() as conn:
            existing = await repo.existing_auto_rules(conn, self.shop, self.ids)
            for legacy_id in self.ids:
                if legacy_id in existing:
                    self.outcomes[legacy_id] = skipped_outcome(
                        legacy_id, SKIP_ALREADY_MIGRATED, v2_id=existing[legacy_id]
                    )
                    continue
                self.outcomes[legacy_id] = await guarded(legacy_id, functools.partial(self._item, conn, legacy_id))

    async def _item(self, conn: repo.Conn, legacy_id: str) -> ItemOutcome:
        shop, dry_run = self.shop, self.ctx.dry_run
        kind, key = _auto_rule_key(shop, legacy_id)
        if kind == "data" and key != shop:
            return failed_outcome(legacy_id, REASON_INVALID_LEGACY_DATA, f"auto_bundle_data key of another shop: {key}")
        source = "auto_bundle_rules" if kind == "rule" else "auto_bundle_data"

        async def read(lock: bool) -> asyncpg.Record | None:
            if kind == "rule":
                return await repo.lock_rule_row(conn, shop, key, lock=lock)
            return await repo.lock_auto_bundle_data_row(conn, shop, lock=lock)

        if dry_run:
            row = await read(lock=False)
            if row is None:
                return skipped_outcome(legacy_id, SKIP_DELETED_MEANWHILE, f"{source} row is gone")
            duplicate = await self._duplicate_of(conn, legacy_id, row)
            if duplicate is not None:
                return duplicate
            _build_auto_rule(shop, legacy_id, source, row, utcnow())
            return migrated_outcome(legacy_id, None, "dry run")
        async with conn.transaction():
            row = await read(lock=True)
            if row is None:
                return skipped_outcome(legacy_id, SKIP_DELETED_MEANWHILE, f"{source} row is gone")
            duplicate = await self._duplicate_of(conn, legacy_id, row)
            if duplicate is not None:
                return duplicate
            rule = _build_auto_rule(shop, legacy_id, source, row, utcnow())
            inserted = await repo.insert_auto_rule(conn, rule)
        if inserted is None:
            return skipped_outcome(legacy_id, SKIP_ALREADY_MIGRATED)
        detail = "superseded by auto_bundle_rules: migrated inactive" if row["superseded"] else None
        return migrated_outcome(legacy_id, inserted, detail)

    async def _duplicate_of(self, conn: repo.Conn, legacy_id: str, row: asyncpg.Record) -> ItemOutcome | None:
        """An auto_bundle_data row is the same rule as its copy in auto_bundle_rules: skipped
        `duplicate_of_rule`, nothing written (the copy's item migrates the rule and attaches the
        `Auto Generated Bundle` discount). Also when the copy already migrated and has since been
        deleted in the legacy app: the rule it became still stands for this row, so a later run does
        not create a second one. The outcome does not depend on which item runs first, so a re-run
        or a run resumed after a crash counts it the same way."""
        if not legacy_id.startswith(AUTO_BUNDLE_DATA_PREFIX):
            return None
        copy_id: str | None = row["copy_rule_id"]
        if copy_id is not None:
            found = await repo.find_auto_rule(conn, self.shop, copy_id)
            v2_id = found[0] if found is not None else None
            return skipped_outcome(
                legacy_id,
                SKIP_DUPLICATE_OF_RULE,
                f"same rule as its copy 'Migrated Auto Bundle' in auto_bundle_rules ({copy_id}); migrated from there",
                v2_id=v2_id,
            )
        merged = await repo.find_copy_rule(conn, self.shop, legacy_id)
        if merged is not None:
            return skipped_outcome(
                legacy_id,
                SKIP_DUPLICATE_OF_RULE,
                f"same rule as AutoBundleRule {merged} (migrated from its copy)",
                merged,
            )
        return None
