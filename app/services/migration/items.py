"""Per-item migration logic (plan Phase 3): legacy rows → V2 rows, one short transaction per item.

INTERFACE CONTRACT between the item logic and the job engine (app/services/migration/jobs.py).
The engine plans items, claims batches and persists outcomes; this module knows the legacy and
V2 schemas and Shopify, and nothing of jobs.

How a batch runs (`migrate_batch`), and why:

1. Batch reads, one statement each, on a pooled connection that is released before Shopify is
   called: the legacy rows, which of them already have a V2 row (skipped without a Shopify call, so
   a re-run costs no API points), which are an AI bundle's metaobject, which slugs are taken.
2. Shopify, without holding a database connection: all metaobject GIDs of the batch in one
   `nodes(ids:)` call (the client splits at 250), handle-in-place-of-id keys by
   `metaobjectByHandle` concurrently, then (with `fill_products`) all product GIDs in one more
   `nodes` call. A shop-level error (no token, 401, 402, 423, 404) fails every item that needed
   Shopify with that reason; a transient one (`shopify_unavailable`) fails them as transient.
3. Per item, its own short transaction: re-read the legacy row `FOR SHARE` (gone → skipped
   `deleted_meanwhile`; its *current* name and discount are used, not the batch read's), then
   `INSERT ... ON CONFLICT DO NOTHING RETURNING id` writing the V2 row and all its children through
   data-modifying CTEs. Nothing returned → skipped `already_migrated`, nothing else written: the
   unique index, not a read, decides, so concurrent jobs, replicas and the dual-writing API cannot
   create duplicates, and an API write is never overwritten. For manual bundles (the bulk of the
   data) lock and insert are ONE statement, i.e. one implicit transaction and one round trip, and
   all ordinary manual bundles of the batch share that statement (`repo.insert_manual_bundles`:
   the same lock, name check and ON CONFLICT per row); a statement that fails (a slug taken
   meanwhile, one item's bad value) wrote nothing and its items go through the one-item path,
   which reports each of them. AI bundles and auto rules use an explicit BEGIN / SELECT ... FOR
   SHARE / INSERT / COMMIT. See docs/migration.md for the full argument.

Nothing here raises for a bad item or a Shopify failure: every legacy id gets exactly one outcome.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import asyncpg

from app.core.db import is_db_unavailable
from app.core.ids import new_id
from app.core.metrics import JOB_ITEMS
from app.core.time import utcnow
from app.repos import migration as repo
from app.rules.legacy_metaobject import BUNDLE_METAOBJECT_TYPE
from app.rules.legacy_parsing import (
    INVALID_LEGACY_DATA_REASON,
    InvalidLegacyData,
    LegacyProductRef,
    LegacyRowKind,
    ParsedLegacyBundle,
    classify_bundle_discount_row,
    map_auto_bundle_rule,
    normalize_product_gid,
    parse_bundle_metaobject,
)
from app.rules.slugs import slugify, unique_slug
from app.shopify.client import Metaobject, Product, ShopifyClient
from app.shopify.errors import REASON_SHOPIFY_UNAVAILABLE, ShopifyError, ShopifyShopError

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

AUTO_BUNDLE_DATA_PREFIX = "auto_bundle_data:"
AI_BUNDLE_NAME_PREFIX = "AI Bundle - "
AI_BUNDLE_TITLE = "Frequently Bought Together"
FALLBACK_BUNDLE_NAME = "Untitled bundle"

SLUG_CONSTRAINT = "Bundle_shop_slug_key"
METAOBJECT_CONSTRAINT = "sb_bundle_shop_metaobject_key"
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


def _migrated(legacy_id: str, v2_id: str | None, detail: str | None = None) -> ItemOutcome:
    return ItemOutcome(legacy_id, "migrated", None, detail, v2_id)


def _skipped(legacy_id: str, reason: str, detail: str | None = None, v2_id: str | None = None) -> ItemOutcome:
    return ItemOutcome(legacy_id, "skipped", reason, detail, v2_id)


def _failed(legacy_id: str, reason: str, detail: str | None = None, *, transient: bool = False) -> ItemOutcome:
    return ItemOutcome(legacy_id, "failed", reason, detail, None, transient)


def _from_shopify_error(legacy_id: str, exc: ShopifyError) -> ItemOutcome:
    return _failed(legacy_id, exc.reason, exc.detail or str(exc), transient=exc.transient)


# ==================================================================================== planning


async def plan_items(conn: repo.Conn, item_kind: ItemKind, shops: list[str] | None) -> list[PlannedItem]:
    """Every legacy item of that kind (optionally restricted to shops), ordered by (shop, legacy_id).

    bundle: every `bundle_discount_id` row, including the four odd kinds (each gets an outcome that
    explains it); ai_bundle: every `ai_fbt_bundles` row, inactive ones too; auto_rule: every
    `auto_bundle_rules` row and every `auto_bundle_data` row (key `auto_bundle_data:<shop>`).
    """
    if item_kind == "bundle":
        keys = await repo.list_bundle_keys(conn, shops)
    elif item_kind == "ai_bundle":
        keys = await repo.list_ai_bundle_keys(conn, shops)
    elif item_kind == "auto_rule":
        keys = await repo.list_auto_rule_keys(conn, shops)
    else:  # pragma: no cover - guarded by the Literal type
        raise ValueError(f"unknown item kind {item_kind!r}")
    return [PlannedItem(item_kind, legacy_id, shop) for shop, legacy_id in keys]


# ==================================================================================== entry point


async def migrate_batch(
    ctx: MigrationContext, shop: str, item_kind: ItemKind, legacy_ids: list[str]
) -> list[ItemOutcome]:
    """Migrate one batch of one shop's items. Never raises for a bad item or a Shopify failure:
    every legacy id gets exactly one outcome (a shop-level Shopify error fails each item with its
    reason). Idempotent: a re-run of a migrated item is `skipped` with reason `already_migrated`
    and writes nothing. With ctx.dry_run nothing is written, outcomes are what would happen.

    Duplicate ids in `legacy_ids` are migrated once; the result has one outcome per distinct id, in
    input order. Only cancellation propagates (the job engine pauses/cancels that way).
    """
    ids = list(dict.fromkeys(legacy_ids))
    if not ids:
        return []
    outcomes: dict[str, ItemOutcome] = {}
    try:
        if item_kind == "bundle":
            await _BundleBatch(ctx, shop, ids, outcomes).run()
        elif item_kind == "ai_bundle":
            await _AiBatch(ctx, shop, ids, outcomes).run()
        elif item_kind == "auto_rule":
            await _AutoRuleBatch(ctx, shop, ids, outcomes).run()
        else:
            for legacy_id in ids:
                outcomes[legacy_id] = _failed(legacy_id, REASON_INTERNAL_ERROR, f"unknown item kind {item_kind!r}")
    except Exception as exc:  # the batch phase itself broke (e.g. database down): fail what is left
        reason, transient = _classify_unexpected(exc)
        log.warning("migration batch failed", extra={"shop": shop, "kind": item_kind, "error": repr(exc)})
        for legacy_id in ids:
            outcomes.setdefault(legacy_id, _failed(legacy_id, reason, repr(exc)[:500], transient=transient))
    result = [outcomes[legacy_id] for legacy_id in ids]
    _record_metrics(item_kind, result, ctx.dry_run)
    return result


def _record_metrics(item_kind: str, outcomes: Iterable[ItemOutcome], dry_run: bool) -> None:
    for outcome in outcomes:
        JOB_ITEMS.add(
            1,
            {
                "kind": item_kind,
                "outcome": outcome.status,
                "reason": outcome.reason or "",
                "dry_run": "true" if dry_run else "false",
            },
        )


def _classify_unexpected(exc: BaseException) -> tuple[str, bool]:
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


async def _guarded(legacy_id: str, work: Callable[[], Awaitable[ItemOutcome]]) -> ItemOutcome:
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
            return _failed(legacy_id, REASON_INVALID_LEGACY_DATA, str(exc))
        except (
            asyncpg.DeadlockDetectedError,
            asyncpg.SerializationError,
            asyncpg.ForeignKeyViolationError,
        ) as exc:
            last = exc
            await asyncio.sleep(0.01)
        except Exception as exc:
            reason, transient = _classify_unexpected(exc)
            if reason == REASON_INTERNAL_ERROR:
                log.exception("migration item failed unexpectedly", extra={"legacy_id": legacy_id})
            return _failed(legacy_id, reason, repr(exc)[:500], transient=transient)
    return _failed(legacy_id, REASON_CONFLICT, f"concurrent writes kept conflicting: {last!r}"[:500], transient=True)


# ==================================================================================== shared helpers

# A batch's CPU-bound loops (parsing, building rows) give the event loop back every this many items,
# so requests served by the same process (the storefront) wait for a few items, not a whole batch.
YIELD_EVERY_ITEMS = 10


async def _yield_now_and_then(position: int) -> None:
    if position % YIELD_EVERY_ITEMS == YIELD_EVERY_ITEMS - 1:
        await asyncio.sleep(0)


class _SlugAllocator:
    """Hands out slugs unique within the shop: `taken` is read once per batch (one query), so the
    usual insert succeeds first time; a concurrent writer that took the slug meanwhile makes the
    insert raise on `Bundle_shop_slug_key`, and `refresh` re-reads the taken slugs for that base."""

    def __init__(self, shop: str, taken: set[str]) -> None:
        self.shop = shop
        self.taken = taken

    def allocate(self, base: str) -> str:
        slug = unique_slug(base, self.taken)
        self.taken.add(slug)
        return slug

    async def refresh(self, conn: repo.Conn, base: str) -> None:
        self.taken |= await repo.taken_slugs(conn, self.shop, [base])


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    return text or None


def _finite(value: Any) -> float | None:
    """Scores as JSON numbers; NaN/Infinity (which JSONB refuses) become null."""
    if value is None:
        return None
    number = float(value)
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _components(
    refs: Sequence[LegacyProductRef], products: dict[str, Product | None] | None
) -> list[repo.NewComponent]:
    """Components in legacy order; caches filled from the product when it was fetched.

    Title and image belong to the product; price, SKU and stock to the first variant only, so they
    are cached only when the component has no variant or that very variant.
    """
    result = []
    for ref in refs:
        product = products.get(ref.product_id) if products is not None else None
        if product is None:
            result.append(repo.NewComponent(new_id(), ref.product_id, ref.variant_id, ref.quantity))
            continue
        same_variant = ref.variant_id is None or ref.variant_id == product.variant_id
        result.append(
            repo.NewComponent(
                id=new_id(),
                product_id=ref.product_id,
                variant_id=ref.variant_id,
                quantity=ref.quantity,
                cached_title=product.title or None,
                cached_price=product.price if same_variant else None,
                cached_image_url=product.image_url,
                cached_sku=product.sku if same_variant else None,
                cached_inventory=product.inventory_quantity if same_variant else None,
                synced=True,
            )
        )
    return result


async def _fetch_products(
    ctx: MigrationContext, shop: str, product_ids: Sequence[str]
) -> tuple[dict[str, Product | None] | None, dict[str, str], ShopifyError | None]:
    """Products for the component caches: (found or None per id, per-id errors, batch error).

    A shop-level error is returned, not raised: the caller decides (cache left empty).
    """
    if not ctx.fill_products or ctx.dry_run or not product_ids:
        return None, {}, None
    try:
        result = await ctx.shopify.fetch_products_detailed(shop, list(dict.fromkeys(product_ids)))
    except ShopifyError as exc:
        return None, {}, exc
    return result.nodes, result.failed, None


def _product_failure(
    legacy_id: str, refs: Sequence[LegacyProductRef], failed: dict[str, str], batch_error: ShopifyError | None
) -> ItemOutcome | None:
    """Products were asked for but could not be read: fail the item as transient so a retry fills the
    cache (a migrated bundle is never revisited). A shop-level error instead leaves the cache empty:
    retrying cannot help while the shop is unusable, and the bundle itself does not need Shopify."""
    if batch_error is not None and not isinstance(batch_error, ShopifyShopError):
        return _from_shopify_error(legacy_id, batch_error)
    for ref in refs:
        if ref.product_id in failed:
            return _failed(
                legacy_id,
                REASON_SHOPIFY_UNAVAILABLE,
                f"product {ref.product_id}: {failed[ref.product_id]}",
                transient=True,
            )
    return None


def _cache_note(batch_error: ShopifyError | None) -> str | None:
    return f"product cache not filled ({batch_error.reason})" if batch_error is not None else None


# ==================================================================================== AI bundles


def _ai_refs(row: asyncpg.Record) -> list[LegacyProductRef]:
    """Primary product then the bundled ones (the plan's displayOrder), as product GIDs."""
    refs = [LegacyProductRef(normalize_product_gid(row["productId"], "productId"))]
    for index, value in enumerate(row["bundledProductIds"] or []):
        if value is None or not str(value).strip():
            raise InvalidLegacyData("bundledProductIds", f"bundledProductIds[{index}] is empty")
        refs.append(LegacyProductRef(normalize_product_gid(value, "bundledProductIds")))
    return refs


def _ai_slug_base(ai_id: str) -> str:
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
    for discount_id in dict.fromkeys(filter(None, (_clean(row["discountId"]), _clean(row["legacy_discount_id"])))):
        discounts.append(repo.NewDiscount(new_id(), discount_id, is_active))
    return repo.NewBundle(
        id=new_id(),
        shop=shop,
        name=f"{AI_BUNDLE_NAME_PREFIX}{row['productId']}",
        title=AI_BUNDLE_TITLE,
        description=None,
        slug=slug,
        status="ACTIVE" if is_active else "PAUSED",
        shopify_metaobject_id=_clean(row["bundleMetaobjectId"]),
        metadata_json=_dumps(metadata),
        created_at=row["generatedAt"] or now,
        now=now,
        inventory_id=new_id(),
        components=_components(_ai_refs(row), products),
        discounts=discounts,
    )


async def _write_ai_item(
    ctx: MigrationContext,
    conn: repo.Conn,
    shop: str,
    ai_id: str,
    slugs: _SlugAllocator,
    products: dict[str, Product | None] | None,
    note: str | None = None,
) -> ItemOutcome:
    """One AI bundle in its own transaction: lock the ai_fbt_bundles row, insert ON CONFLICT on
    `sb_bundle_shop_ai_bundle_key`. Its metaobject owned by another V2 bundle is a `conflict`."""
    slug_base = _ai_slug_base(ai_id)
    for _ in range(MAX_SLUG_ATTEMPTS):
        slug = slugs.allocate(slug_base)
        if ctx.dry_run:
            row = await repo.lock_ai_row(conn, shop, ai_id, lock=False)
            if row is None:
                return _skipped(ai_id, SKIP_DELETED_MEANWHILE, "ai_fbt_bundles row is gone")
            _build_ai_bundle(shop, row, slug, products, utcnow())  # validates the legacy values
            existing = await repo.find_ai_bundle_id(conn, shop, ai_id)
            if existing is not None:
                return _skipped(ai_id, SKIP_ALREADY_MIGRATED, v2_id=existing)
            mo = _clean(row["bundleMetaobjectId"])
            if mo is not None and (other := await repo.find_bundle_id(conn, shop, mo)) is not None:
                return _failed(ai_id, REASON_CONFLICT, f"metaobject {mo} is already V2 bundle {other}")
            return _migrated(ai_id, None, "dry run")
        try:
            async with conn.transaction():
                row = await repo.lock_ai_row(conn, shop, ai_id)
                if row is None:
                    return _skipped(ai_id, SKIP_DELETED_MEANWHILE, "ai_fbt_bundles row is gone")
                bundle = _build_ai_bundle(shop, row, slug, products, utcnow())
                inserted = await repo.insert_ai_bundle(conn, bundle)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == SLUG_CONSTRAINT:
                await slugs.refresh(conn, slug_base)
                continue
            if exc.constraint_name == METAOBJECT_CONSTRAINT:
                return _failed(
                    ai_id, REASON_CONFLICT, f"its metaobject already belongs to another V2 bundle: {exc.detail or exc}"
                )
            raise
        if inserted is None:
            return _skipped(ai_id, SKIP_ALREADY_MIGRATED)
        return _migrated(ai_id, inserted, note)
    return _failed(ai_id, REASON_CONFLICT, f"no free slug after {MAX_SLUG_ATTEMPTS} attempts", transient=True)


class _AiBatch:
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
                    self.outcomes[ai_id] = _skipped(ai_id, SKIP_ALREADY_MIGRATED, v2_id=existing[ai_id])
                else:
                    pending.append(ai_id)
            refs_by_id = await _ai_product_refs(ctx, conn, shop, pending)
            taken = await repo.taken_slugs(conn, shop, [_ai_slug_base(ai_id) for ai_id in pending])
        product_ids = [ref.product_id for refs in refs_by_id.values() for ref in refs]
        products, failed, batch_error = await _fetch_products(ctx, shop, product_ids)
        note = _cache_note(batch_error)
        slugs = _SlugAllocator(shop, taken)
        async with ctx.pool.acquire() as conn:
            for ai_id in pending:
                problem = _product_failure(ai_id, refs_by_id.get(ai_id, []), failed, batch_error)
                if problem is not None:
                    self.outcomes[ai_id] = problem
                    continue
                work = functools.partial(_write_ai_item, ctx, conn, shop, ai_id, slugs, products, note)
                self.outcomes[ai_id] = await _guarded(ai_id, work)


async def _ai_product_refs(
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


# ==================================================================================== auto rules


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
    discount_id = _clean(row["discount_id"])
    if discount_id is not None:
        template["discount"] = {**template["discount"], "shopifyDiscountId": discount_id}
    return repo.NewAutoRule(
        id=new_id(),
        shop=shop,
        name=mapping.name if source == "auto_bundle_rules" else "Auto bundle (legacy single rule)",
        description=None if source == "auto_bundle_rules" else "Migrated from the deprecated auto_bundle_data table",
        trigger_type=mapping.trigger_type,
        conditions_json=_dumps(conditions),
        bundle_template_json=_dumps(template),
        is_active=mapping.is_active and not superseded,
        created_at=row["createdAt"] or now,
        now=now,
    )


class _AutoRuleBatch:
    """auto_bundle_rules / auto_bundle_data → AutoBundleRule; never calls Shopify."""

    def __init__(self, ctx: MigrationContext, shop: str, ids: list[str], outcomes: dict[str, ItemOutcome]) -> None:
        self.ctx, self.shop, self.ids, self.outcomes = ctx, shop, ids, outcomes

    async def run(self) -> None:
        async with self.ctx.pool.acquire() as conn:
            existing = await repo.existing_auto_rules(conn, self.shop, self.ids)
            for legacy_id in self.ids:
                if legacy_id in existing:
                    self.outcomes[legacy_id] = _skipped(legacy_id, SKIP_ALREADY_MIGRATED, v2_id=existing[legacy_id])
                    continue
                self.outcomes[legacy_id] = await _guarded(legacy_id, functools.partial(self._item, conn, legacy_id))

    async def _item(self, conn: repo.Conn, legacy_id: str) -> ItemOutcome:
        shop, dry_run = self.shop, self.ctx.dry_run
        kind, key = _auto_rule_key(shop, legacy_id)
        if kind == "data" and key != shop:
            return _failed(legacy_id, REASON_INVALID_LEGACY_DATA, f"auto_bundle_data key of another shop: {key}")
        source = "auto_bundle_rules" if kind == "rule" else "auto_bundle_data"

        async def read(lock: bool) -> asyncpg.Record | None:
            if kind == "rule":
                return await repo.lock_rule_row(conn, shop, key, lock=lock)
            return await repo.lock_auto_bundle_data_row(conn, shop, lock=lock)

        if dry_run:
            row = await read(lock=False)
            if row is None:
                return _skipped(legacy_id, SKIP_DELETED_MEANWHILE, f"{source} row is gone")
            duplicate = await self._duplicate_of(conn, legacy_id, row)
            if duplicate is not None:
                return duplicate
            _build_auto_rule(shop, legacy_id, source, row, utcnow())
            return _migrated(legacy_id, None, "dry run")
        async with conn.transaction():
            row = await read(lock=True)
            if row is None:
                return _skipped(legacy_id, SKIP_DELETED_MEANWHILE, f"{source} row is gone")
            duplicate = await self._duplicate_of(conn, legacy_id, row)
            if duplicate is not None:
                return duplicate
            rule = _build_auto_rule(shop, legacy_id, source, row, utcnow())
            inserted = await repo.insert_auto_rule(conn, rule)
        if inserted is None:
            return _skipped(legacy_id, SKIP_ALREADY_MIGRATED)
        detail = "superseded by auto_bundle_rules: migrated inactive" if row["superseded"] else None
        return _migrated(legacy_id, inserted, detail)

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
            return _skipped(
                legacy_id,
                SKIP_DUPLICATE_OF_RULE,
                f"same rule as its copy 'Migrated Auto Bundle' in auto_bundle_rules ({copy_id}); migrated from there",
                v2_id=v2_id,
            )
        merged = await repo.find_copy_rule(conn, self.shop, legacy_id)
        if merged is not None:
            return _skipped(
                legacy_id,
                SKIP_DUPLICATE_OF_RULE,
                f"same rule as AutoBundleRule {merged} (migrated from its copy)",
                merged,
            )
        return None


# ==================================================================================== manual bundles


@dataclass(slots=True)
class _BundleItem:
    """One bundle_discount_id row on its way through the batch."""

    legacy_id: str
    kind: LegacyRowKind
    row: repo.LegacyBundleRow
    handle: str | None = None
    ai_id: str | None = None
    metaobject: Metaobject | None = None
    parsed: ParsedLegacyBundle | None = None


def _bundle_name(legacy_name: str | None, parsed: ParsedLegacyBundle) -> str:
    """The plan's `name: oldBundle.bundleName`, falling back to the metaobject when it is blank."""
    return _clean(legacy_name) or parsed.name or parsed.title or FALLBACK_BUNDLE_NAME


def _build_manual_bundle(
    shop: str,
    item: _BundleItem,
    legacy_name: str,
    slug: str,
    products: dict[str, Product | None] | None,
    now: datetime,
) -> repo.NewBundle:
    """The plan's manual mapping, with fallbacks for missing fields (docs/migration.md). The
    BundleDiscount is not built here: the statement takes it from the locked legacy row."""
    parsed, metaobject = item.parsed, item.metaobject
    assert parsed is not None and metaobject is not None
    name = _bundle_name(legacy_name, parsed)
    metadata: dict[str, Any] = {"source": "MANUAL", "legacyBundleId": item.legacy_id}
    if item.handle is not None:
        metadata["legacyHandle"] = item.handle
    return repo.NewBundle(
        id=new_id(),
        shop=shop,
        name=name,
        title=parsed.title or name,
        description=parsed.description,
        slug=slug,
        status="ACTIVE",
        shopify_metaobject_id=metaobject.id,
        metadata_json=_dumps(metadata),
        created_at=parsed.created_at or now,
        now=now,
        inventory_id=new_id(),
        components=_components(parsed.products, products),
        pricing_rule_id=new_id(),
        discount_percent=parsed.discount_percent if parsed.discount_percent is not None else Decimal(0),
    )


class _BundleBatch:
    """bundle_discount_id (+ the metaobject from Shopify) → Bundle with its children."""

    def __init__(self, ctx: MigrationContext, shop: str, ids: list[str], outcomes: dict[str, ItemOutcome]) -> None:
        self.ctx, self.shop, self.ids, self.outcomes = ctx, shop, ids, outcomes
        self.items: dict[str, _BundleItem] = {}
        self.ai_refs: dict[str, list[LegacyProductRef]] = {}  # AI bundles this batch may have to create

    def _done(self, outcome: ItemOutcome) -> None:
        self.outcomes[outcome.legacy_id] = outcome
        self.items.pop(outcome.legacy_id, None)

    async def run(self) -> None:
        ctx, shop = self.ctx, self.shop
        async with ctx.pool.acquire() as conn:
            await self._classify(conn)
        await self._fetch_metaobjects()
        await self._parse()
        to_write = [i for i in self.items.values() if i.parsed is not None]
        refs = [ref for item in to_write if item.parsed for ref in item.parsed.products]
        refs += [ref for ai_refs in self.ai_refs.values() for ref in ai_refs]
        products, failed, batch_error = await _fetch_products(ctx, shop, [ref.product_id for ref in refs])
        note = _cache_note(batch_error)
        async with ctx.pool.acquire() as conn:
            bases = {i.legacy_id: slugify(_bundle_name(i.row.bundle_name, i.parsed)) for i in to_write if i.parsed}
            ai_ids = [i.ai_id for i in self.items.values() if i.ai_id]
            taken = await repo.taken_slugs(conn, shop, [*bases.values(), *(_ai_slug_base(a) for a in ai_ids)])
            slugs = _SlugAllocator(shop, taken)
            if not ctx.dry_run:
                await self._write_manual_batch(conn, slugs, products, failed, batch_error, note)
            for legacy_id in self.ids:
                item = self.items.get(legacy_id)
                if item is None:
                    continue
                work: Callable[[], Awaitable[ItemOutcome]]
                if item.kind in (LegacyRowKind.AUTO_RULE, LegacyRowKind.AUTO_GENERATED):
                    work = functools.partial(self._auto_row, conn, item)
                elif item.ai_id is not None:
                    problem = _product_failure(legacy_id, self.ai_refs.get(item.ai_id, []), failed, batch_error)
                    if problem is not None:
                        self._done(problem)
                        continue
                    work = functools.partial(self._ai_row, conn, item, slugs, products)
                else:
                    assert item.parsed is not None
                    problem = _product_failure(legacy_id, item.parsed.products, failed, batch_error)
                    if problem is not None:
                        self._done(problem)
                        continue
                    work = functools.partial(self._manual_row, conn, item, slugs, products, note)
                self._done(await _guarded(legacy_id, work))

    # ------------------------------------------------------------------ phase 1: classify (DB reads)

    async def _classify(self, conn: repo.Conn) -> None:
        """Sort the batch's rows into the four odd kinds and the ordinary ones; skip what is in V2."""
        shop = self.shop
        rows = await repo.fetch_bundle_rows(conn, shop, self.ids)
        by_id: list[str] = []
        by_handle: list[str] = []
        for legacy_id in self.ids:
            row = rows.get(legacy_id)
            if row is None:
                self._done(_skipped(legacy_id, SKIP_DELETED_MEANWHILE, "no bundle_discount_id row for this shop"))
                continue
            classification = classify_bundle_discount_row(legacy_id)
            item = _BundleItem(legacy_id, classification.kind, row)
            self.items[legacy_id] = item
            if classification.kind == LegacyRowKind.INVALID:
                self._done(
                    _failed(
                        legacy_id,
                        REASON_INVALID_LEGACY_DATA,
                        f"bundleId is not a metaobject GID or handle: {legacy_id!r}",
                    )
                )
            elif classification.kind == LegacyRowKind.METAOBJECT_ID:
                by_id.append(legacy_id)
            elif classification.kind == LegacyRowKind.METAOBJECT_HANDLE:
                item.handle = classification.value
                by_handle.append(legacy_id)
        ai_by_metaobject = await repo.ai_bundles_by_metaobject(conn, shop, by_id)
        for legacy_id, ai_id in ai_by_metaobject.items():
            self.items[legacy_id].ai_id = ai_id
        self.ai_refs = await _ai_product_refs(self.ctx, conn, shop, list(ai_by_metaobject.values()))
        plain = [legacy_id for legacy_id in by_id if legacy_id not in ai_by_metaobject]
        existing = await repo.existing_bundles_by_metaobject(conn, shop, plain)
        existing.update(await repo.existing_bundles_by_legacy_key(conn, shop, by_handle))
        for legacy_id, v2_id in existing.items():
            if legacy_id in self.items:
                self._done(_skipped(legacy_id, SKIP_ALREADY_MIGRATED, v2_id=v2_id))

    # ------------------------------------------------------------------ phase 2: Shopify

    async def _fetch_metaobjects(self) -> None:
        """All GIDs in one batched nodes() read, handles by metaobjectByHandle, concurrently."""
        shopify, shop = self.ctx.shopify, self.shop
        by_id = [i for i in self.items.values() if i.kind == LegacyRowKind.METAOBJECT_ID and i.ai_id is None]
        by_handle = [i for i in self.items.values() if i.kind == LegacyRowKind.METAOBJECT_HANDLE]
        if not by_id and not by_handle:
            return
        calls: list[Awaitable[Any]] = []
        if by_id:
            calls.append(shopify.fetch_metaobjects_detailed(shop, [i.legacy_id for i in by_id]))
        for item in by_handle:
            assert item.handle is not None
            calls.append(shopify.fetch_metaobject_by_handle(shop, BUNDLE_METAOBJECT_TYPE, item.handle))
        results: list[Any] = list(await asyncio.gather(*calls, return_exceptions=True))
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancellation
        shop_error = next((r for r in results if isinstance(r, ShopifyShopError)), None)
        if shop_error is not None:
            # The shop itself is unusable (no token, 401, frozen, locked, gone): every item that needs
            # Shopify fails with that reason; the other items of the batch go on.
            for item in [*by_id, *by_handle]:
                self._done(_from_shopify_error(item.legacy_id, shop_error))
            return
        position = 0
        if by_id:
            nodes_result = results[0]
            position = 1
            if isinstance(nodes_result, Exception):
                for item in by_id:
                    self._done(self._fetch_failure(item.legacy_id, nodes_result))
            else:
                for item in by_id:
                    if item.legacy_id in nodes_result.failed:
                        self._done(
                            _failed(
                                item.legacy_id,
                                REASON_SHOPIFY_UNAVAILABLE,
                                nodes_result.failed[item.legacy_id],
                                transient=True,
                            )
                        )
                    elif item.legacy_id in nodes_result.invalid:
                        self._done(
                            _failed(item.legacy_id, REASON_INVALID_LEGACY_DATA, "Shopify refused the id as invalid")
                        )
                    elif (mo := nodes_result.nodes.get(item.legacy_id)) is None:
                        self._done(_failed(item.legacy_id, REASON_METAOBJECT_NOT_FOUND, "nodes() returned null"))
                    else:
                        item.metaobject = mo
        for item, result in zip(by_handle, results[position:], strict=True):
            if isinstance(result, Exception):
                self._done(self._fetch_failure(item.legacy_id, result))
            elif result is None:
                self._done(
                    _failed(
                        item.legacy_id,
                        REASON_METAOBJECT_NOT_FOUND,
                        f"no {BUNDLE_METAOBJECT_TYPE} metaobject with handle {item.handle!r}",
                    )
                )
            else:
                item.metaobject = result

    @staticmethod
    def _fetch_failure(legacy_id: str, exc: Exception) -> ItemOutcome:
        if isinstance(exc, ShopifyError):
            return _from_shopify_error(legacy_id, exc)
        reason, transient = _classify_unexpected(exc)
        return _failed(legacy_id, reason, repr(exc)[:500], transient=transient)

    async def _parse(self) -> None:
        for position, item in enumerate(list(self.items.values())):
            await _yield_now_and_then(position)
            if item.metaobject is None:
                continue
            try:
                item.parsed = parse_bundle_metaobject(item.metaobject.fields)
            except InvalidLegacyData as exc:
                self._done(_failed(item.legacy_id, REASON_INVALID_LEGACY_DATA, str(exc)))

    # ------------------------------------------------------------------ phase 3: item transactions

    async def _write_manual_batch(
        self,
        conn: repo.Conn,
        slugs: _SlugAllocator,
        products: dict[str, Product | None] | None,
        failed: dict[str, str],
        batch_error: ShopifyError | None,
        note: str | None,
    ) -> None:
        """Write every ordinary manual bundle of the batch in ONE statement (`insert_manual_bundles`:
        the same lock, name check and ON CONFLICT per row as the one-item statement). What it settles
        is done; everything else (a renamed row, and the whole batch when the statement fails, e.g. a
        slug taken meanwhile or one item's bad value) stays for the item-by-item path below, which
        handles races and reports per item. The statement is atomic, so a failure wrote nothing."""
        shop = self.shop
        candidates: list[_BundleItem] = []
        for legacy_id in self.ids:
            item = self.items.get(legacy_id)
            if item is None or item.parsed is None or item.ai_id is not None:
                continue
            if item.kind not in (LegacyRowKind.METAOBJECT_ID, LegacyRowKind.METAOBJECT_HANDLE):
                continue
            if _product_failure(legacy_id, item.parsed.products, failed, batch_error) is not None:
                continue  # reported by the item path
            candidates.append(item)
        if len(candidates) < 2:
            return  # the item path costs the same round trip
        taken_before = set(slugs.taken)
        entries: list[repo.ManualInsert] = []
        now = utcnow()
        try:
            for position, item in enumerate(candidates):
                await _yield_now_and_then(position)
                assert item.parsed is not None
                base = slugify(_bundle_name(item.row.bundle_name, item.parsed))
                bundle = _build_manual_bundle(shop, item, item.row.bundle_name, slugs.allocate(base), products, now)
                entries.append(repo.ManualInsert(bundle, item.legacy_id, item.row.bundle_name, new_id()))
            results = await repo.insert_manual_bundles(conn, shop, entries)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Nothing was written: hand every candidate to the item path with the slugs it had.
            slugs.taken = taken_before
            log.info("batched manual insert fell back to items", extra={"shop": shop, "error": repr(exc)[:300]})
            return
        for item, entry, result in zip(candidates, entries, results, strict=True):
            legacy_id = item.legacy_id
            if not result.found:
                self._done(_skipped(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone"))
            elif result.bundle_id is not None:
                detail = note
                if item.handle is not None:
                    assert item.metaobject is not None
                    resolved = f"handle {item.handle!r} resolved to {item.metaobject.id}"
                    detail = "; ".join(filter(None, [resolved, note]))
                self._done(_migrated(legacy_id, result.bundle_id, detail))
            elif result.locked_name is not None and result.locked_name != item.row.bundle_name:
                slugs.taken.discard(entry.bundle.slug)  # renamed meanwhile: the item path rebuilds it
            else:
                assert item.metaobject is not None
                self._done(
                    _skipped(legacy_id, SKIP_ALREADY_MIGRATED, f"metaobject {item.metaobject.id} is already in V2")
                )

    async def _manual_row(
        self,
        conn: repo.Conn,
        item: _BundleItem,
        slugs: _SlugAllocator,
        products: dict[str, Product | None] | None,
        note: str | None,
    ) -> ItemOutcome:
        """Lock the legacy row and insert ON CONFLICT on the metaobject, in one statement; retry on a
        slug race (next candidate) or a rename race (rebuild from the locked name)."""
        shop, legacy_id = self.shop, item.legacy_id
        assert item.parsed is not None and item.metaobject is not None
        if self.ctx.dry_run:
            row = await repo.read_bundle_row(conn, shop, legacy_id)
            if row is None:
                return _skipped(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone")
            existing = await repo.find_bundle_id(conn, shop, item.metaobject.id)
            if existing is not None:
                return _skipped(legacy_id, SKIP_ALREADY_MIGRATED, v2_id=existing)
            return _migrated(legacy_id, None, "dry run")
        # One statement per attempt, i.e. one short implicit transaction: lock + insert + children.
        # Built from the batch read's name; if the locked row was renamed meanwhile nothing is written
        # and the bundle is rebuilt from the current name (the API's rename wins).
        expected_name = item.row.bundle_name
        for _ in range(MAX_SLUG_ATTEMPTS):
            base = slugify(_bundle_name(expected_name, item.parsed))
            bundle = _build_manual_bundle(shop, item, expected_name, slugs.allocate(base), products, utcnow())
            try:
                result = await repo.insert_manual_bundle(conn, bundle, legacy_id, expected_name, new_id())
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == SLUG_CONSTRAINT:
                    await slugs.refresh(conn, base)
                    continue
                raise
            if not result.found:
                return _skipped(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone")
            if result.bundle_id is None:
                if result.locked_name is not None and result.locked_name != expected_name:
                    expected_name = result.locked_name
                    continue
                return _skipped(legacy_id, SKIP_ALREADY_MIGRATED, f"metaobject {item.metaobject.id} is already in V2")
            detail = note
            if item.handle is not None:
                detail = "; ".join(filter(None, [f"handle {item.handle!r} resolved to {item.metaobject.id}", note]))
            return _migrated(legacy_id, result.bundle_id, detail)
        return _failed(
            legacy_id, REASON_CONFLICT, f"gave up after {MAX_SLUG_ATTEMPTS} slug/rename races", transient=True
        )

    async def _auto_row(self, conn: repo.Conn, item: _BundleItem) -> ItemOutcome:
        """`auto-rule-<id>` / `Auto Generated Bundle`: not a bundle. The discount belongs to the
        migrated rule (set there when the rule migrates; filled in here if the rule migrated before
        the row existed). Skipped with a reason either way."""
        shop, legacy_id = self.shop, item.legacy_id
        if item.kind == LegacyRowKind.AUTO_RULE:
            rule_id = classify_bundle_discount_row(legacy_id).value
            assert rule_id is not None
            reason, key = SKIP_AUTO_RULE_DISCOUNT, rule_id
        else:
            reason, key = SKIP_AUTO_GENERATED_DISCOUNT, f"{AUTO_BUNDLE_DATA_PREFIX}{shop}"
        if self.ctx.dry_run:
            row = await repo.read_bundle_row(conn, shop, legacy_id)
            found = await repo.find_auto_rule(conn, shop, key) if row is not None else None
            return self._auto_row_outcome(item, reason, key, row, found, attached=None)
        async with conn.transaction():
            row = await repo.lock_bundle_row(conn, shop, legacy_id)
            if row is None:
                return _skipped(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone")
            found = await repo.find_auto_rule(conn, shop, key)
            attached = None
            discount_id = _clean(row.discount_id)
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
                return _skipped(legacy_id, reason, detail)
        return self._auto_row_outcome(item, reason, key, row, found, attached)

    @staticmethod
    def _auto_row_outcome(
        item: _BundleItem,
        reason: str,
        key: str,
        row: repo.LegacyBundleRow | None,
        found: tuple[str, str | None] | None,
        attached: str | None,
    ) -> ItemOutcome:
        legacy_id = item.legacy_id
        if row is None:
            return _skipped(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone")
        if found is None:
            return _skipped(legacy_id, reason, f"discount of legacy rule {key}: attached when that rule migrates")
        rule_id, current = found
        discount_id = _clean(row.discount_id)
        if attached is not None:
            detail = f"discount {discount_id} attached to AutoBundleRule {rule_id}"
        elif current is not None and current != discount_id:
            detail = f"AutoBundleRule {rule_id} already has discount {current}; kept"
        else:
            detail = f"discount belongs to AutoBundleRule {rule_id}"
        return _skipped(legacy_id, reason, detail, v2_id=rule_id)

    async def _ai_row(
        self,
        conn: repo.Conn,
        item: _BundleItem,
        slugs: _SlugAllocator,
        products: dict[str, Product | None] | None,
    ) -> ItemOutcome:
        """A row that is an AI bundle's metaobject IS that AI bundle: one V2 bundle, never a manual copy.

        AI bundle already in V2 → skipped `ai_bundle_metaobject` (the row's discount linked to it,
        insert-only); not yet → the AI bundle is migrated now (its migration reads this row's
        discount too) and the item counts as migrated.
        """
        shop, legacy_id, ai_id = self.shop, item.legacy_id, item.ai_id
        assert ai_id is not None
        if self.ctx.dry_run:
            row = await repo.read_bundle_row(conn, shop, legacy_id)
            if row is None:
                return _skipped(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone")
            existing = await repo.find_ai_bundle_id(conn, shop, ai_id)
            if existing is not None:
                return _skipped(legacy_id, SKIP_AI_BUNDLE_METAOBJECT, f"is AI bundle {ai_id}", v2_id=existing)
        else:
            async with conn.transaction():
                row = await repo.lock_bundle_row(conn, shop, legacy_id)
                if row is None:
                    return _skipped(legacy_id, SKIP_DELETED_MEANWHILE, "bundle_discount_id row is gone")
                existing = await repo.find_ai_bundle_id(conn, shop, ai_id)
                if existing is not None:
                    discount_id = _clean(row.discount_id)
                    if discount_id is not None:
                        await repo.attach_bundle_discount(conn, existing, new_id(), discount_id, utcnow())
                    return _skipped(
                        legacy_id, SKIP_AI_BUNDLE_METAOBJECT, f"is AI bundle {ai_id}; discount linked", v2_id=existing
                    )
        outcome = await _write_ai_item(self.ctx, conn, shop, ai_id, slugs, products)
        if outcome.status == "migrated":
            return _migrated(legacy_id, outcome.v2_id, f"migrated as AI bundle {ai_id}")
        if outcome.reason == SKIP_ALREADY_MIGRATED:  # the AI item won a race with us
            return _skipped(legacy_id, SKIP_AI_BUNDLE_METAOBJECT, f"is AI bundle {ai_id}")
        if outcome.reason == SKIP_DELETED_MEANWHILE:
            return _skipped(legacy_id, SKIP_DELETED_MEANWHILE, f"AI bundle {ai_id} is gone")
        return ItemOutcome(legacy_id, outcome.status, outcome.reason, outcome.detail, outcome.v2_id, outcome.transient)
