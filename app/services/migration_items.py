"""Per-item migration logic (plan Phase 3): legacy rows → V2 rows, one short transaction per item.

INTERFACE CONTRACT between the item logic and the job engine (app/services/migration_jobs.py).
The engine plans items, claims batches and persists outcomes; this module knows the legacy and
V2 schemas and Shopify, and nothing of jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import asyncpg

from app.shopify.client import ShopifyClient

# Item kinds, in the order a job of kind "all" runs them: auto rules first (the auto-rule rows of
# bundle_discount_id attach their discount to them), then AI bundles (rows of bundle_discount_id that
# are an AI bundle's metaobject attach to them), then manual bundles.
ItemKind = Literal["auto_rule", "ai_bundle", "bundle"]
ITEM_KINDS_BY_JOB_KIND: dict[str, tuple[ItemKind, ...]] = {
    "auto_bundle_rules": ("auto_rule",),
    "ai_bundles": ("ai_bundle",),
    "bundles": ("bundle",),
    "all": ("auto_rule", "ai_bundle", "bundle"),
}

Outcome = Literal["migrated", "skipped", "failed"]


@dataclass(frozen=True)
class PlannedItem:
    item_kind: ItemKind
    legacy_id: str  # bundle_discount_id."bundleId", ai_fbt_bundles.id, auto_bundle_rules.id or "auto_bundle_data:<shop>"
    shop: str


@dataclass(frozen=True)
class ItemOutcome:
    legacy_id: str
    status: Outcome
    reason: str | None = None  # stable code (docs/migration.md), e.g. metaobject_not_found, shop_unauthorized
    detail: str | None = None
    v2_id: str | None = None
    transient: bool = False  # True: worth retrying later (e.g. shopify_unavailable)


@dataclass
class MigrationContext:
    pool: asyncpg.Pool
    shopify: ShopifyClient
    dry_run: bool = False
    fill_products: bool = False  # also cache component title/price/image/SKU from Shopify products
    options: dict[str, object] = field(default_factory=dict)


async def plan_items(
    conn: asyncpg.Connection, item_kind: ItemKind, shops: list[str] | None
) -> list[PlannedItem]:
    """Every legacy item of that kind (optionally restricted to shops), ordered by (shop, legacy_id)."""
    raise NotImplementedError


async def migrate_batch(
    ctx: MigrationContext, shop: str, item_kind: ItemKind, legacy_ids: list[str]
) -> list[ItemOutcome]:
    """Migrate one batch of one shop's items. Never raises for a bad item or a Shopify failure:
    every legacy id gets exactly one outcome (a shop-level Shopify error fails each item with its
    reason). Idempotent: a re-run of a migrated item is `skipped` with reason `already_migrated`
    and writes nothing. With ctx.dry_run nothing is written, outcomes are what would happen.
    """
    raise NotImplementedError
