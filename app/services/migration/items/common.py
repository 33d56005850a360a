"""What every item kind shares: kinds, outcomes and their reason codes, the context, the guard.

Kept apart from the kinds' own modules so that each of them, and the job engine, depends on this
vocabulary and not on one another. `guarded` is here because it is the one place that turns any
failure of an item's work into that item's outcome, whatever the kind.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from app.core.db import is_db_unavailable
from app.rules.legacy_parsing import INVALID_LEGACY_DATA_REASON, InvalidLegacyData
from app.shopify.client import ShopifyClient
from app.shopify.errors import ShopifyError

log = logging.getLogger(__name__)

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

# ------------------------------------------------------------------------------ reason codes
# Stable: they end up in stored job items, the failures endpoint, dashboards and docs/migration.md.

# Failures (besides the Shopify client's shop_unauthorized, shop_frozen, shop_locked, shop_not_found,
# shopify_unavailable, shopify_bad_response, shopify_invalid_id, whose `reason` the errors carry).
REASON_METAOBJECT_NOT_FOUND = "metaobject_not_found"
REASON_INVALID_LEGACY_DATA = INVALID_LEGACY_DATA_REASON
REASON_CONFLICT = "conflict"
REASON_DATABASE_UNAVAILABLE = "database_unavailable"
REASON_INTERNAL_ERROR = "internal_error"
# Skips.
SKIP_ALREADY_MIGRATED = "already_migrated"
SKIP_DELETED_MEANWHILE = "deleted_meanwhile"
SKIP_AUTO_RULE_DISCOUNT = "auto_rule_discount"
SKIP_AUTO_GENERATED_DISCOUNT = "auto_generated_discount"
SKIP_AI_BUNDLE_METAOBJECT = "ai_bundle_metaobject"
# An auto_bundle_data row whose copy (made by the legacy app's own SQL) is in auto_bundle_rules: one
# rule, migrated once, from the copy (repo._COPY_OF_DATA_SQL says how the copy is recognised).
SKIP_DUPLICATE_OF_RULE = "duplicate_of_rule"

# The item key of a shop's auto_bundle_data row, `auto_bundle_data:<shop>`; also the legacy key an
# `Auto Generated Bundle` discount row of bundle_discount_id belongs to.
AUTO_BUNDLE_DATA_PREFIX = "auto_bundle_data:"

SLUG_CONSTRAINT = "Bundle_shop_slug_key"
# A slug race needs a concurrent writer picking the very same slug each time: a few retries suffice.
MAX_SLUG_ATTEMPTS = 8
# Deadlocks / serialization failures / a parent row deleted under us: retried, then `conflict`.
MAX_CONFLICT_ATTEMPTS = 3


@dataclass(frozen=True)
class PlannedItem:
    item_kind: ItemKind
    #: bundle_discount_id."bundleId", ai_fbt_bundles.id, auto_bundle_rules.id or "auto_bundle_data:<shop>"
    legacy_id: str
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


def migrated_outcome(legacy_id: str, v2_id: str | None, detail: str | None = None) -> ItemOutcome:
    return ItemOutcome(legacy_id, "migrated", None, detail, v2_id)


def skipped_outcome(legacy_id: str, reason: str, detail: str | None = None, v2_id: str | None = None) -> ItemOutcome:
    return ItemOutcome(legacy_id, "skipped", reason, detail, v2_id)


def failed_outcome(legacy_id: str, reason: str, detail: str | None = None, *, transient: bool = False) -> ItemOutcome:
    return ItemOutcome(legacy_id, "failed", reason, detail, None, transient)


def outcome_from_shopify_error(legacy_id: str, exc: ShopifyError) -> ItemOutcome:
    return failed_outcome(legacy_id, exc.reason, exc.detail or str(exc), transient=exc.transient)


# ==================================================================================== failures


def classify_unexpected(exc: BaseException) -> tuple[str, bool]:
    """Reason code and transience of an exception no specific handler claimed."""
    if isinstance(exc, ShopifyError):
        return exc.reason, exc.transient
    if isinstance(exc, InvalidLegacyData):
        return REASON_INVALID_LEGACY_DATA, False
    if isinstance(exc, asyncpg.DataError):
        return REASON_INVALID_LEGACY_DATA, False  # e.g. a value out of a column's range
    # The shared list: a connection terminated under the item (e.g. asyncpg's InternalClientError
    # "cannot switch to state") is a transient database fault, retried later, not an internal error.
    if is_db_unavailable(exc):
        return REASON_DATABASE_UNAVAILABLE, True
    if isinstance(exc, asyncpg.PostgresError):
        return REASON_DATABASE_UNAVAILABLE, True
    return REASON_INTERNAL_ERROR, False


async def guarded(legacy_id: str, work: Callable[[], Awaitable[ItemOutcome]]) -> ItemOutcome:
    """Run one item's work; turn every failure into an outcome, retrying lock conflicts.

    Deadlocks and serialization failures can only come from a writer that does not lock the legacy
    row first (docs/migration.md); a foreign-key violation means the V2 bundle we attach to was
    deleted by the API meanwhile. All three are retried from scratch (a fresh transaction re-reads
    everything), and reported as a transient `conflict` if they persist.
    """
    last: BaseException | None = None
    for _ in range(MAX_CONFLICT_ATTEMPTS):
        try:
            return await work()
        except InvalidLegacyData as exc:
            return failed_outcome(legacy_id, REASON_INVALID_LEGACY_DATA, str(exc))
        except (
            asyncpg.DeadlockDetectedError,
            asyncpg.SerializationError,
            asyncpg.ForeignKeyViolationError,
        ) as exc:
            last = exc
            await asyncio.sleep(0.01)
        except Exception as exc:
            reason, transient = classify_unexpected(exc)
            if reason == REASON_INTERNAL_ERROR:
                log.exception("migration item failed unexpectedly", extra={"legacy_id": legacy_id})
            return failed_outcome(legacy_id, reason, repr(exc)[:500], transient=transient)
    return failed_outcome(
        legacy_id, REASON_CONFLICT, f"concurrent writes kept conflicting: {last!r}"[:500], transient=True
    )


# ==================================================================================== small helpers

# A batch's CPU-bound loops (parsing, building rows) give the event loop back every this many items,
# so requests served by the same process (the storefront) wait for a few items, not a whole batch.
YIELD_EVERY_ITEMS = 10


async def yield_now_and_then(position: int) -> None:
    if position % YIELD_EVERY_ITEMS == YIELD_EVERY_ITEMS - 1:
        await asyncio.sleep(0)


def dumps_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def clean_text(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    return text or None
