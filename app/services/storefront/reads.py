"""Storefront rules (`/proxy/*`): which store answers, how rows become the theme's JSON, prices.

Three endpoints, three compatibility promises:

* `/proxy/bundles-for-product` answers the **legacy array** `[{id, title, discount, description,
  products}]` in the legacy app's shape, so the theme script already installed in merchants'
  themes keeps working unchanged. `V2_BUNDLE_ENGINE` (per shop) picks the store: off → the legacy
  reader (`bundle_discount_id` + metaobjects from Shopify, cached); on → the V2 tables mapped into
  the same shape. Both paths normalise the same way (see `legacy_item_from_view` /
  `legacy_item_from_v2`), so flipping the flag does not change a byte for a migrated bundle. The
  one deliberate difference from the legacy app: `discount` is the parsed percentage written
  plainly ("15%" and "15.00" become "15", unparsable becomes ""), because the V2 store only keeps
  the number; the theme's `parseFloat` reads the same value either way.
* `/proxy/v2/bundles` is the new theme's endpoint: V2 tables only, ACTIVE bundles only, priced by
  the V2 engine when `V2_PRICING_ENGINE` is on for the shop, else by the legacy percentage.
* `/proxy/ai-bundles-for-product` answers `{bundles, enabled[, variantGroupId]}` as the legacy app
  did (A/B assignment honoured, product ids numeric as the theme needs them), always from the
  legacy AI tables (`ai_fbt_config`, `ai_fbt_bundles`,
  `ai_bundle_ab_assignments`), whatever `V2_BUNDLE_ENGINE` says. Why: the A/B assignments and the
  per-shop config exist only there, the legacy generator keeps writing `ai_fbt_bundles`, the dual
  write keeps those rows in step with V2 edits, and the V2 copy of an AI bundle does not carry its
  `variantGroupId` (the plan's migration drops it), so answering from V2 would silently end every
  running A/B test.

Read model: the V2 answers of the first two endpoints are served from an in-process cache per
(shop, product, the flag value that shapes the answer), `container.storefront_cache`
(app/core/read_cache.py): every write to the tables they read notifies the shop (revision 0006's
triggers, in the writer's transaction), each replica's listener drops that shop's answers, a
pricing rule's window opening or closing ends an answer's validity, and a lost listener
connection empties the cache. A hit sends no statement. `cached=False` computes without it (the
reference the property test compares with). The legacy path and the AI endpoint are not cached.

Performance: each endpoint is one SQL round trip (`app/repos/storefront.py`) and a thin loop over
its rows; responses are serialised once with orjson, JSON built by PostgreSQL is spliced in as
`orjson.Fragment` without being parsed (the AI endpoint parses its at most three bundles, to give
the theme numeric product ids whatever form the rows hold). Flag checks are synchronous in-memory look-ups.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from app.core.container import Container
from app.core.errors import ShopifyUnavailableProblem, ValidationFailed, shopify_refusal
from app.core.read_cache import InvalidationListener, ReadCache
from app.core.time import utcnow
from app.repos import consistency as consistency_repo
from app.repos import storefront as repo
from app.repos.consistency import ComparisonRow
from app.repos.runner import run_read
from app.rules.consistency import OUTCOME_ERROR
from app.rules.legacy_parsing import METAOBJECT_GID_PREFIX, InvalidLegacyData, decimal_to_json, storefront_product_id
from app.rules.pricing import (
    BundlePrice,
    PricedComponent,
    PricingRule,
    is_rule_active,
    legacy_price,
    price_bundle,
)
from app.services.bundles import shadow
from app.services.bundles.legacy_reader import LegacyBundleView, get_legacy_reader
from app.services.flags import snapshot as flags
from app.shopify.errors import ShopifyError, ShopifyUnavailable

__all__ = [
    "AI_BUNDLES_SHOWN",
    "READ_SOURCE_LEGACY",
    "READ_SOURCE_V2",
    "STOREFRONT_CHANNEL",
    "StorefrontAnswer",
    "ai_bundle_item",
    "ai_bundles_for_product",
    "bundles_for_product",
    "format_money",
    "inventory_view",
    "legacy_discount_percent",
    "legacy_item_from_v2",
    "legacy_item_from_view",
    "next_pricing_change",
    "normalize_product_id",
    "product_id_spellings",
    "start_read_model",
    "stop_read_model",
    "v2_bundles_for_product",
]

READ_SOURCE_LEGACY = "legacy"
READ_SOURCE_V2 = "v2"

#: Where revision 0006's triggers announce the shop whose storefront answers changed.
STOREFRONT_CHANNEL = "sb_storefront_changed"
#: The read model's LISTEN connection, as operators see it in pg_stat_activity.
READ_MODEL_APPLICATION_NAME = "shopibundle-storefront-cache"

PRODUCT_GID_PREFIX = "gid://shopify/Product/"
# Shopify ids are 64-bit integers: at most 20 digits. The cap keeps garbage out of index probes.
_NUMERIC_ID = re.compile(r"^[0-9]{1,20}$")
_PRODUCT_GID = re.compile(r"^gid://shopify/Product/([0-9]{1,20})$")
_MAX_SESSION_ID = 256


@dataclass(frozen=True, slots=True)
class StorefrontAnswer:
    """A serialised JSON body and the store that produced it (the `X-Bundle-Read-Source` header)."""

    body: bytes
    read_source: str


# --------------------------------------------------------------------------------------------
# Input rules
# --------------------------------------------------------------------------------------------


def normalize_product_id(raw: str | None, field: str = "query.product_id") -> str:
    """`123` or `gid://shopify/Product/123` → `gid://shopify/Product/123`; anything else is a 422.

    The legacy theme sends the numeric id (`meta.product.id`), newer themes send the GID; V2 stores
    GIDs, so the lookup key is always the GID.
    """
    text = (raw or "").strip()
    if _NUMERIC_ID.fullmatch(text):
        return PRODUCT_GID_PREFIX + text
    if _PRODUCT_GID.fullmatch(text):
        return text
    message = "is required" if not text else "must be a numeric product id or gid://shopify/Product/<id>"
    raise ValidationFailed(
        "Invalid product id." if text else "Missing product id.",
        errors=[{"field": field, "message": message}],
    )


def product_id_spellings(product_gid: str) -> list[str]:
    """Both spellings of a product id: the legacy AI tables hold whichever its writer stored."""
    return [product_gid, storefront_product_id(product_gid)]


def normalize_session_id(raw: str | None) -> str | None:
    """Blank → no session (as the legacy app treated `sessionId=`); absurdly long → 422."""
    text = (raw or "").strip()
    if not text:
        return None
    if len(text) > _MAX_SESSION_ID:
        raise ValidationFailed(
            "Invalid session id.",
            errors=[{"field": "query.sessionId", "message": f"at most {_MAX_SESSION_ID} characters"}],
        )
    return text


# --------------------------------------------------------------------------------------------
# Legacy array: /proxy/bundles-for-product
# --------------------------------------------------------------------------------------------


def _legacy_discount_text(percent: Decimal | None) -> str:
    """`15` / `15.00` / `15%` all become "15" (the metaobject's usual spelling); no discount → ""."""
    return decimal_to_json(percent) if percent is not None else ""


def legacy_item_from_view(view: LegacyBundleView) -> dict[str, Any]:
    """A bundle read by the legacy reader → one element of the legacy array."""
    return {
        "id": view.legacy_id,
        "title": view.title or "",
        "discount": _legacy_discount_text(view.discount_percent),
        "description": view.description or "",
        "products": [product_id for product_id, _variant_id, _quantity in view.products],
    }


def legacy_item_from_v2(row: asyncpg.Record) -> dict[str, Any]:
    """A row of `LEGACY_SHAPE_FOR_PRODUCT_SQL` → one element of the legacy array.

    `id` is the metaobject GID the theme already knows (the V2 id for a V2-only bundle); the
    discount is the BUNDLE_DISCOUNT percentage normalised like the legacy path ("15", not "15.00").
    """
    return {
        "id": row["metaobject_id"] or row["id"],
        "title": row["title"] or "",
        "discount": _legacy_discount_text(row["discount_percent"]),
        "description": row["description"] or "",
        "products": list(row["products"] or ()),
    }


def _shown_by_legacy_endpoint(view: LegacyBundleView) -> bool:
    """Which legacy-reader bundles the legacy app listed on this endpoint.

    Manual bundles (metaobjects in `bundle_discount_id`), and AI bundles only when they have a
    metaobject (the legacy AI generator recorded those in `bundle_discount_id` too). A bare
    `ai_fbt_bundles` row was only ever served by `/ai-bundles-for-product`. Inactive ones are not
    offered to shoppers. The V2 query applies the same rule.
    """
    if view.status != "ACTIVE":
        return False
    if view.source == "AI":
        return view.legacy_id.startswith("gid://shopify/Metaobject/")
    return True


async def bundles_for_product(
    container: Container, shop: str, product_gid: str, *, cached: bool = True
) -> StorefrontAnswer:
    """The legacy array for `product_gid` in `shop`, from the store `V2_BUNDLE_ENGINE` selects
    (the V2 store's answer through the read model unless `cached` is False). A read sampled for
    shadow comparison (`SHADOW_READS`) is timed and compared with the other store in the background."""
    if not shadow.sampled(container, shop):  # the hot path: one sampling decision, nothing else
        return await _bundles_for_product(container, shop, product_gid, cached=cached)
    started = time.perf_counter()
    v2_primary = flags.is_on(container, "V2_BUNDLE_ENGINE", shop)
    try:
        answer = await _bundles_for_product(container, shop, product_gid, cached=cached)
    except Exception as exc:
        if v2_primary:  # a failed V2 read is evidence too (the guards' error rate)
            shadow.v2_read_failed(container, shop, ENDPOINT_BUNDLES_FOR_PRODUCT, product_gid, exc)
        raise
    took = (time.perf_counter() - started) * 1000.0
    shadow.get_runner(container).submit(
        ENDPOINT_BUNDLES_FOR_PRODUCT, lambda: _shadow_bundles_for_product(container, shop, product_gid, answer, took)
    )
    return answer


async def _bundles_for_product(container: Container, shop: str, product_gid: str, *, cached: bool) -> StorefrontAnswer:
    if flags.is_on(container, "V2_BUNDLE_ENGINE", shop):
        return await _v2_legacy_shape(container, shop, product_gid, cached=cached)
    return await _legacy_legacy_shape(container, shop, product_gid)


async def _v2_legacy_shape(container: Container, shop: str, product_gid: str, *, cached: bool) -> StorefrontAnswer:
    async def compute() -> tuple[StorefrontAnswer, float | None]:
        rows = await repo.fetch_legacy_shape_for_product(_v2_pool(container, cached), shop, product_gid)
        answer = StorefrontAnswer(orjson.dumps([legacy_item_from_v2(r) for r in rows]), READ_SOURCE_V2)
        return answer, _earliest_epoch(row["next_change"] for row in rows)

    cache = container.storefront_cache
    if cache is None or not cached:
        return (await compute())[0]
    # Only this branch is cached, so V2_BUNDLE_ENGINE needs no place in the key.
    result: StorefrontAnswer = await cache.get_or_compute(shop, ("legacy-shape", product_gid), compute)
    return result


def _v2_pool(container: Container, cached: bool) -> asyncpg.Pool:
    """Where a V2 storefront answer is computed. An answer the read model may keep is computed on
    the primary: its generation check assumes a read sees every write whose notification has
    arrived, which a lagging replica (DATABASE_READ_URL) does not promise (docs/decisions.md).
    Uncached reads (read model off, `cached=False`) take the read-only pool."""
    return container.pool if cached and container.storefront_cache is not None else container.read_only_pool


async def _legacy_legacy_shape(container: Container, shop: str, product_gid: str) -> StorefrontAnswer:
    try:
        views = await get_legacy_reader(container).for_product(shop, product_gid)
    except ShopifyUnavailable as exc:
        raise ShopifyUnavailableProblem(
            "Shopify did not answer; the shop's bundles cannot be read right now. Retry later.", reason=exc.reason
        ) from exc
    except ShopifyError as exc:
        raise shopify_refusal("Shopify refused to read the shop's bundles.", reason=exc.reason) from exc
    items = [legacy_item_from_view(v) for v in views if _shown_by_legacy_endpoint(v)]
    return StorefrontAnswer(orjson.dumps(items), READ_SOURCE_LEGACY)


# --------------------------------------------------------------------------------------------
# Shadow reads of /proxy/bundles-for-product
# --------------------------------------------------------------------------------------------

ENDPOINT_BUNDLES_FOR_PRODUCT = "GET /proxy/bundles-for-product"


def storefront_projection(answer: StorefrontAnswer) -> dict[str, Any]:
    """The legacy array as `{"bundles": {metaobject GID: {title, discount, description, products (sorted)}}}`
    (so a diff path reads `bundles.<GID>.title`).

    Keyed by the id both stores share; order is the theme's business, not a difference. A V2-only
    bundle (answered with its V2 id: no metaobject) cannot exist in the legacy store and is not
    compared, as on the bundle API.
    """
    items = orjson.loads(answer.body)
    bundles = {
        item["id"]: {
            "title": item["title"],
            "discount": item["discount"],
            "description": item["description"],
            "products": sorted(item["products"]),
        }
        for item in items
        if isinstance(item.get("id"), str) and item["id"].startswith(METAOBJECT_GID_PREFIX)
    }
    return {"bundles": bundles}


async def _representable(container: Container, shop: str, projection: dict[str, Any]) -> dict[str, Any]:
    """The V2 side without the bundles the legacy tables cannot hold (a metaobject but no active
    discount): they are V2-only data (what a rollback lists), not a difference between the stores."""
    bundles: dict[str, Any] = projection["bundles"]
    gids = list(bundles)
    missing = await run_read(
        container.pool, lambda conn: consistency_repo.unrepresentable_metaobjects(conn, shop, gids)
    )
    return {"bundles": {gid: item for gid, item in bundles.items() if gid not in missing}}


async def _shadow_bundles_for_product(
    container: Container, shop: str, product_gid: str, primary: StorefrontAnswer, primary_ms: float
) -> None:
    """Background: read the other store (timed), then settle the comparison (app.services.bundles.shadow)."""

    async def legacy() -> Any:
        return storefront_projection(await _legacy_legacy_shape(container, shop, product_gid))

    async def v2_answer() -> StorefrontAnswer:
        return await _v2_legacy_shape(container, shop, product_gid, cached=True)

    async def v2() -> Any:
        return await _representable(container, shop, storefront_projection(await v2_answer()))

    async def fresh_legacy() -> Any:  # the re-check asks Shopify, not a metaobject cached before the difference
        get_legacy_reader(container).cache.invalidate(shop)
        return await legacy()

    legacy_ms: float | None
    v2_ms: float | None
    if primary.read_source == READ_SOURCE_V2:
        v2_p, v2_ms = await _representable(container, shop, storefront_projection(primary)), primary_ms
        legacy_p, legacy_ms = await shadow.timed(legacy)
    else:
        legacy_p, legacy_ms = storefront_projection(primary), primary_ms
        try:
            answer, v2_ms = await shadow.timed(v2_answer)
            v2_p = await _representable(container, shop, storefront_projection(answer))
        except Exception:
            row = ComparisonRow(
                shop, ENDPOINT_BUNDLES_FOR_PRODUCT, OUTCOME_ERROR, product_gid, legacy_ms=legacy_ms, v2_error=True
            )
            await shadow.record(container, row)
            raise
    comparison = shadow.Comparison(
        shop,
        ENDPOINT_BUNDLES_FOR_PRODUCT,
        product_gid,
        legacy_p,
        v2_p,
        legacy,
        v2,
        legacy_ms=legacy_ms,
        v2_ms=v2_ms,
        fresh_legacy=fresh_legacy,
    )
    await shadow.settle(container, comparison)


# --------------------------------------------------------------------------------------------
# V2 storefront: /proxy/v2/bundles
# --------------------------------------------------------------------------------------------


def format_money(value: Decimal) -> str:
    """Money and percentages leave the service as strings with exactly two decimals ("19.90")."""
    return f"{value:.2f}"


_LEGACY_RULE_TYPES = frozenset({"BUNDLE_DISCOUNT"})


def legacy_discount_percent(rules: Iterable[PricingRule], now: datetime) -> Decimal | None:
    """The legacy percentage of a V2 bundle: its highest-priority BUNDLE_DISCOUNT rule of type
    PERCENTAGE that is in force now (active, inside its window, usage left), as the query orders
    them. A migrated bundle has exactly one (the metaobject's `discount`). None: 0 % off."""
    for rule in rules:
        if rule.discount_type == "PERCENTAGE" and is_rule_active(rule, now, _LEGACY_RULE_TYPES):
            return rule.discount_value
    return None


def inventory_view(
    tracking_method: str | None,
    available_quantity: int | None,
    reserved_quantity: int | None,
    allow_oversell: bool | None,
    component_stock: int | None,
) -> dict[str, Any]:
    """`{available, isInStock}` (the rules are spelled out on `StorefrontInventory`).

    Unknown stock is not "out of stock": a bundle whose components were never synced must stay
    buyable, Shopify's checkout enforces real inventory anyway.
    """
    if tracking_method == "UNLIMITED":
        return {"available": None, "isInStock": True}
    if tracking_method == "BUNDLE_SPECIFIC":
        available: int | None = max((available_quantity or 0) - (reserved_quantity or 0), 0)
    else:  # COMPONENT_BASED, or no inventory row
        available = component_stock
    return {"available": available, "isInStock": bool(allow_oversell) or available is None or available > 0}


def _price_row(row: asyncpg.Record, v2_pricing: bool, now: datetime) -> BundlePrice:
    components = [
        PricedComponent(price, quantity, adjustment_type, adjustment)
        for price, quantity, adjustment_type, adjustment in zip(
            row["c_price"] or (),
            row["c_quantity"] or (),
            row["c_adjustment_type"] or (),
            row["c_adjustment"] or (),
            strict=True,
        )
    ]
    rules = [
        PricingRule(
            priority=priority,
            is_active=True,  # the query only returns active rules
            discount_type=discount_type,
            discount_value=value,
            starts_at=starts_at,
            ends_at=ends_at,
            usage_limit=usage_limit,
            usage_count=usage_count,
            rule_type=rule_type,
        )
        for priority, rule_type, discount_type, value, starts_at, ends_at, usage_limit, usage_count in zip(
            row["r_priority"] or (),
            row["r_rule_type"] or (),
            row["r_discount_type"] or (),
            row["r_discount_value"] or (),
            row["r_starts_at"] or (),
            row["r_ends_at"] or (),
            row["r_usage_limit"] or (),
            row["r_usage_count"] or (),
            strict=True,
        )
    ]
    if v2_pricing:
        return price_bundle(components, rules, now=now, currency=row["currency"])
    return legacy_price(components, legacy_discount_percent(rules, now), row["currency"])


def v2_bundle_item(row: asyncpg.Record, v2_pricing: bool, now: datetime) -> dict[str, Any]:
    """One row of `V2_BUNDLES_FOR_PRODUCT_SQL` → one storefront bundle (components spliced as is)."""
    price = _price_row(row, v2_pricing, now)
    return {
        "id": row["id"],
        "name": row["name"],
        "title": row["title"],
        "description": row["description"],
        "type": row["type"],
        "featuredImage": row["featured_image"],
        "components": orjson.Fragment(row["components_json"] or "[]"),
        "pricing": {
            "originalPrice": format_money(price.original_price),
            "discountedPrice": format_money(price.discounted_price),
            "savings": format_money(price.savings),
            "savingsPercentage": format_money(price.savings_percentage),
            "currency": price.currency,
        },
        "inventory": inventory_view(
            row["inv_tracking_method"],
            row["inv_available"],
            row["inv_reserved"],
            row["inv_allow_oversell"],
            row["component_stock"],
        ),
    }


def render_v2_bundles(rows: Iterable[asyncpg.Record], *, v2_pricing: bool, now: datetime) -> bytes:
    """`{"bundles": [...]}` as JSON bytes."""
    return orjson.dumps({"bundles": [v2_bundle_item(row, v2_pricing, now) for row in rows]})


def _earliest_epoch(moments: Iterable[datetime | None]) -> float | None:
    """The earliest of naive-UTC `moments` as epoch seconds (the cache's wall clock); None: none."""
    present = [moment for moment in moments if moment is not None]
    return min(present).replace(tzinfo=UTC).timestamp() if present else None


def next_pricing_change(rows: Iterable[asyncpg.Record], now: datetime) -> float | None:
    """When the prices of `rows` (`V2_BUNDLES_FOR_PRODUCT_SQL`) may change with no write: the
    earliest start or end of one of their active rules strictly after `now` (a rule applies from
    its start, inclusive, to its end, exclusive), as epoch seconds; None: never by itself."""
    return _earliest_epoch(
        moment
        for row in rows
        for column in ("r_starts_at", "r_ends_at")
        for moment in row[column] or ()
        if moment is not None and moment > now
    )


async def v2_bundles_for_product(
    container: Container, shop: str, product_gid: str, *, cached: bool = True
) -> StorefrontAnswer:
    """ACTIVE V2 bundles of `shop` containing `product_gid`, priced per `V2_PRICING_ENGINE`
    (through the read model unless `cached` is False)."""
    v2_pricing = flags.is_on(container, "V2_PRICING_ENGINE", shop)

    async def compute() -> tuple[StorefrontAnswer, float | None]:
        rows = await repo.fetch_v2_bundles_for_product(_v2_pool(container, cached), shop, product_gid)
        now = utcnow()
        answer = StorefrontAnswer(render_v2_bundles(rows, v2_pricing=v2_pricing, now=now), READ_SOURCE_V2)
        return answer, next_pricing_change(rows, now)

    cache = container.storefront_cache
    if cache is None or not cached:
        return (await compute())[0]
    # The flag's value is part of the key: a flip reads other entries, never an answer priced the other way.
    result: StorefrontAnswer = await cache.get_or_compute(shop, ("v2", product_gid, v2_pricing), compute)
    return result


# --------------------------------------------------------------------------------------------
# The read model's lifecycle
# --------------------------------------------------------------------------------------------


async def start_read_model(container: Container) -> None:
    """Create the storefront cache and its listener (STOREFRONT_CACHE on). It serves once LISTEN
    is up; until then, and whenever the listener is in doubt, every read computes."""
    settings = container.settings
    if not settings.storefront_cache:
        return
    cache: ReadCache[StorefrontAnswer] = ReadCache(
        "storefront", max_entries=settings.storefront_cache_max_entries, ttl_s=settings.storefront_cache_ttl_s
    )
    listener = InvalidationListener(
        cache, container.session_database_url, STOREFRONT_CHANNEL, application_name=READ_MODEL_APPLICATION_NAME
    )
    container.storefront_cache, container.storefront_cache_listener = cache, listener
    await listener.start()


async def stop_read_model(container: Container) -> None:
    listener, container.storefront_cache_listener = container.storefront_cache_listener, None
    container.storefront_cache = None
    if listener is not None:
        await listener.stop()


# --------------------------------------------------------------------------------------------
# AI bundles: /proxy/ai-bundles-for-product
# --------------------------------------------------------------------------------------------


#: The legacy endpoint's cap (`take: 3`), whatever `maxBundlesPerProduct` says: that setting
#: bounds what the generator makes per product, not what the storefront shows.
AI_BUNDLES_SHOWN = 3


def _storefront_id(value: Any) -> Any:
    """A stored product id in the form the theme turns into `/products/<id>.js`; a value that is no
    product id at all (odd legacy data) is passed through untouched rather than failing the page."""
    try:
        return storefront_product_id(value)
    except InvalidLegacyData:
        return value


def ai_bundle_item(bundle: dict[str, Any]) -> dict[str, Any]:
    """One AI bundle as the theme consumes it: `productId` and `bundledProductIds` numeric, whichever
    form (numeric id or GID) the row holds; the other fields as stored."""
    return {
        **bundle,
        "productId": _storefront_id(bundle["productId"]),
        "bundledProductIds": [_storefront_id(p) for p in bundle["bundledProductIds"] or ()],
    }


async def ai_bundles_for_product(
    container: Container, shop: str, product_gid: str, session_id: str | None
) -> StorefrontAnswer:
    """`{bundles, enabled}` plus `variantGroupId` when the session has a live A/B assignment.

    As the legacy app: a shop without `ai_fbt_config` row, or with `isEnabled` false, gets
    `{"bundles": [], "enabled": false}` and nothing else (the feature is off, so no A/B test runs
    either). Otherwise the product's active bundles by confidence, highest first, at most
    `AI_BUNDLES_SHOWN`; a session with an unexpired A/B assignment for the product gets only the
    bundles of its assigned variant group, or all of them when that group has none (the theme
    renders every bundle it receives, so this filter *is* the A/B test). Assignments are only read
    here: the legacy endpoint never created one.
    """
    row = await repo.fetch_ai_bundles_for_product(
        container.read_only_pool, shop, product_id_spellings(product_gid), session_id, AI_BUNDLES_SHOWN
    )
    enabled = bool(row["enabled"])
    bundles = orjson.loads(row["bundles_json"]) if enabled and row["bundles_json"] else []
    body: dict[str, Any] = {"bundles": [ai_bundle_item(b) for b in bundles], "enabled": enabled}
    if enabled and row["assigned_variant_group_id"] is not None:
        body["variantGroupId"] = row["assigned_variant_group_id"]
    return StorefrontAnswer(orjson.dumps(body), READ_SOURCE_LEGACY)
