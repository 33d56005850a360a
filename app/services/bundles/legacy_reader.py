"""Reading bundles the way the legacy app stores them: `bundle_discount_id` + metaobjects, `ai_fbt_bundles`.

Used by the admin read path (`V2_BUNDLE_ENGINE` off) and by the storefront proxy. A manual
bundle's content lives in Shopify (its `product-bundles` metaobject), so every read would be a
GraphQL call; instead metaobjects are cached per (shop, GID) for `LEGACY_READ_CACHE_TTL_S`
seconds in a bounded LRU (`max_entries`), fetched with batched `nodes(ids:)` calls, and one
miss-fetch per shop at a time (a cold storefront burst makes one Shopify call, not a hundred).

Stale-if-error: when Shopify is transiently unavailable (`ShopifyUnavailable`), an entry that
expired less than `stale_if_error_s` ago is served rather than failing the read. Other Shopify
errors (`ShopifyShopError`: no token, 401, frozen shop; `ShopifyGraphQLError`) propagate: callers
map them (the admin API answers 502/503 problems; see app.services.bundles.reads).

The mapping from legacy rows to a `LegacyBundleView`:

* manual bundle (`bundle_discount_id` row whose key is a metaobject GID, or a legacy *handle*
  stored in its place): `legacy_id` = the row's key, `name` = `bundleName`, `title` =
  metaobject `bundle_title` (else the name), `description`, `discount_percent` (None when blank
  or unparsable), `discount_id` = `discountId`, `products` from the metaobject's `products`
  (empty when unparsable), `status` ACTIVE (the legacy app has no drafts). A row whose metaobject
  no longer exists is not a bundle any more: skipped (`get` answers None).
* AI bundle (`ai_fbt_bundles` row): `legacy_id` = its `bundleMetaobjectId` when it has one (that
  is how the legacy storefront knows it), else its id; `metadata.ai_bundle_id` = its id always.
  `products` = productId then bundledProductIds as GIDs (quantity 1), `discount_id` = its `discountId`,
  `status` ACTIVE/PAUSED from `isActive`. A `bundle_discount_id` row whose key is the AI bundle's
  `bundleMetaobjectId` is that AI bundle (shopify.md), not a second bundle: it gives the `name`
  (else "AI Bundle - <productId>", as the plan's migration), and the metaobject, when it still
  exists, gives title / description / discount percent (else "Frequently Bought Together", none).
* `auto-rule-*` and `Auto Generated Bundle` rows are discounts of auto rules, never bundles.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import asyncpg

from app.core.container import Container
from app.repos import legacy_bundles as legacy_repo
from app.rules.legacy_metaobject import BUNDLE_METAOBJECT_TYPE
from app.rules.legacy_parsing import (
    InvalidLegacyData,
    LegacyRowKind,
    classify_bundle_discount_row,
    normalize_product_gid,
    parse_iso_datetime,
    parse_percent_string,
    parse_products,
)
from app.shopify.client import ShopifyClient
from app.shopify.errors import ShopifyUnavailable
from app.shopify.objects import Metaobject, is_gid

log = logging.getLogger(__name__)

AI_BUNDLE_TITLE = "Frequently Bought Together"

ProductRef = tuple[str, str | None, int]


@dataclass(slots=True)
class LegacyBundleView:
    """One legacy bundle, normalised. `products` are (product GID, variant GID | None, quantity)."""

    shop: str
    legacy_id: str
    source: Literal["MANUAL", "AI"]
    name: str
    title: str
    description: str | None
    discount_percent: Decimal | None
    discount_id: str | None
    products: list[ProductRef]
    status: str
    metaobject_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Entry:
    stored_at: float
    value: Metaobject | None


class MetaobjectCache:
    """Bounded LRU of metaobjects per (shop, key) with a freshness TTL; `None` (gone) is cached too."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = max(0.0, ttl_s)
        self.max_entries = max(1, max_entries)
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, shop: str, key: str, max_age_s: float | None = None) -> tuple[bool, Metaobject | None]:
        """(hit, value): a hit only when the entry is younger than `max_age_s` (default: the TTL)."""
        entry = self._entries.get((shop, key))
        limit = self.ttl_s if max_age_s is None else max_age_s
        if entry is None or self._clock() - entry.stored_at > limit:
            return False, None
        self._entries.move_to_end((shop, key))
        return True, entry.value

    def put(self, shop: str, key: str, value: Metaobject | None) -> None:
        self._entries[(shop, key)] = _Entry(self._clock(), value)
        self._entries.move_to_end((shop, key))
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, shop: str, key: str | None = None) -> None:
        if key is not None:
            self._entries.pop((shop, key), None)
            return
        for cached in [k for k in self._entries if k[0] == shop]:
            del self._entries[cached]


def _clean(value: str | None) -> str | None:
    text = (value or "").strip()
    return text or None


def _products(fields: dict[str, str], where: str) -> list[ProductRef]:
    try:
        return [(p.product_id, p.variant_id, p.quantity) for p in parse_products(fields.get("products"))]
    except InvalidLegacyData as exc:
        log.debug("legacy bundle %s: unusable products (%s)", where, exc.detail)
        return []


def _percent(fields: dict[str, str], where: str) -> Decimal | None:
    try:
        return parse_percent_string(fields.get("discount"))
    except InvalidLegacyData as exc:
        log.debug("legacy bundle %s: unusable discount (%s)", where, exc.detail)
        return None


def manual_view(shop: str, row: dict[str, Any], metaobject: Metaobject) -> LegacyBundleView:
    fields = metaobject.fields
    name = row["bundleName"]
    return LegacyBundleView(
        shop=shop,
        legacy_id=row["bundleId"],
        source="MANUAL",
        name=name,
        title=_clean(fields.get("bundle_title")) or name,
        description=_clean(fields.get("description")),
        discount_percent=_percent(fields, row["bundleId"]),
        discount_id=row["discountId"],
        products=_products(fields, row["bundleId"]),
        status="ACTIVE",
        metaobject_id=metaobject.id,
        created_at=parse_iso_datetime(fields.get("created_at")),
        metadata={"source": "MANUAL"},
    )


def _ai_product_gid(value: str) -> str:
    """`ai_fbt_bundles` holds numeric ids (the legacy generator, the dual write) or GIDs (older dual
    writes); views speak GIDs like every other bundle. Garbage is kept as is (it matches nothing)."""
    try:
        return normalize_product_gid(value, "productId")
    except InvalidLegacyData:
        return value


def ai_view(
    row: dict[str, Any], metaobject: Metaobject | None = None, discount_row: dict[str, Any] | None = None
) -> LegacyBundleView:
    """An `ai_fbt_bundles` row; enriched with its metaobject and `bundle_discount_id` row when it has them."""
    ids = [row["productId"], *(row.get("bundledProductIds") or [])]
    products: list[ProductRef] = [(_ai_product_gid(pid), None, 1) for pid in ids]
    fields = metaobject.fields if metaobject is not None else {}
    name = discount_row["bundleName"] if discount_row else f"AI Bundle - {row['productId']}"
    return LegacyBundleView(
        shop=row["shop"],
        legacy_id=row.get("bundleMetaobjectId") or row["id"],
        source="AI",
        name=name,
        title=_clean(fields.get("bundle_title")) or AI_BUNDLE_TITLE,
        description=_clean(fields.get("description")),
        discount_percent=_percent(fields, row["id"]) if fields else None,
        discount_id=row.get("discountId") or (discount_row["discountId"] if discount_row else None),
        products=products,
        status="ACTIVE" if row["isActive"] else "PAUSED",
        metaobject_id=row.get("bundleMetaobjectId"),
        created_at=row.get("generatedAt"),
        updated_at=row.get("lastUpdatedAt"),
        metadata={
            "source": "AI",
            "ai_bundle_id": row["id"],
            "confidence": row.get("confidenceScore"),
            "support": row.get("support"),
            "lift": row.get("lift"),
        },
    )


class LegacyReader:
    """Read legacy bundles of a shop (see module docstring). One per process, shared by all requests."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        shopify: ShopifyClient,
        ttl_s: float,
        *,
        max_entries: int = 10_000,
        stale_if_error_s: float = 300.0,
    ) -> None:
        self._pool = pool
        self._shopify = shopify
        self.cache = MetaobjectCache(ttl_s, max_entries)
        self._stale_if_error_s = stale_if_error_s
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ public API

    async def get(self, shop: str, metaobject_gid: str) -> LegacyBundleView | None:
        """The shop's legacy bundle whose key is this metaobject GID (manual, or AI via bundleMetaobjectId)."""
        ai_rows = await legacy_repo.ai_rows_for_metaobject(self._pool, shop, metaobject_gid)
        row = await legacy_repo.get_discount_row(self._pool, shop, metaobject_gid)
        if ai_rows:
            return await self._ai_view(shop, ai_rows[0], row)
        if row is None:
            return None
        views = await self._manual_views(shop, [row])
        return views[0] if views else None

    async def get_ai(self, shop: str, ai_bundle_id: str) -> LegacyBundleView | None:
        """The shop's AI bundle by its `ai_fbt_bundles` id."""
        row = await legacy_repo.get_ai_row(self._pool, shop, ai_bundle_id)
        if row is None:
            return None
        metaobject_id = row.get("bundleMetaobjectId")
        discount_row = await legacy_repo.get_discount_row(self._pool, shop, metaobject_id) if metaobject_id else None
        return await self._ai_view(shop, row, discount_row)

    async def list_for_shop(self, shop: str) -> list[LegacyBundleView]:
        """Every legacy bundle of the shop (manual and AI, active or not), unordered."""
        rows = await legacy_repo.list_discount_rows(self._pool, shop)
        ai_rows = await legacy_repo.list_ai_rows(self._pool, shop)
        rows_by_key = {r["bundleId"]: r for r in rows}
        ai_metaobjects = {r["bundleMetaobjectId"] for r in ai_rows if r.get("bundleMetaobjectId")}
        manual_rows = [r for r in rows if r["bundleId"] not in ai_metaobjects]
        # One batched fetch for every metaobject of the shop (manual bundles and AI bundles alike).
        wanted = [gid for gid in ai_metaobjects if is_gid(gid, "Metaobject")]
        wanted += [gid for _, gid in self._split_rows(manual_rows)[0]]
        found = await self._metaobjects(shop, wanted)
        manual = await self._manual_views(shop, manual_rows, found)
        ai = [
            ai_view(r, found.get(r.get("bundleMetaobjectId") or ""), rows_by_key.get(r.get("bundleMetaobjectId") or ""))
            for r in ai_rows
        ]
        return manual + ai

    async def for_product(self, shop: str, product_gid: str) -> list[LegacyBundleView]:
        """Legacy bundles of the shop containing the product (numeric id or GID); manual and AI, any status."""
        try:
            wanted = normalize_product_gid(product_gid)
        except InvalidLegacyData:
            return []
        return [v for v in await self.list_for_shop(shop) if any(p[0] == wanted for p in v.products)]

    # ------------------------------------------------------------------ metaobjects

    @staticmethod
    def _split_rows(
        rows: Iterable[dict[str, Any]],
    ) -> tuple[list[tuple[dict[str, Any], str]], list[tuple[dict[str, Any], str]]]:
        """(rows keyed by a metaobject GID, rows keyed by a legacy handle); other kinds are not bundles."""
        by_id: list[tuple[dict[str, Any], str]] = []
        by_handle: list[tuple[dict[str, Any], str]] = []
        for row in rows:
            kind = classify_bundle_discount_row(row["bundleId"])
            if kind.kind is LegacyRowKind.METAOBJECT_ID and kind.value:
                by_id.append((row, kind.value))
            elif kind.kind is LegacyRowKind.METAOBJECT_HANDLE and kind.value:
                by_handle.append((row, kind.value))
        return by_id, by_handle

    async def _manual_views(
        self,
        shop: str,
        rows: Iterable[dict[str, Any]],
        prefetched: dict[str, Metaobject | None] | None = None,
    ) -> list[LegacyBundleView]:
        by_id, by_handle = self._split_rows(rows)
        found = dict(prefetched or {})
        missing = [gid for _, gid in by_id if gid not in found]
        if missing:
            found.update(await self._metaobjects(shop, missing))
        for _, handle in by_handle:
            found[f"handle:{handle}"] = await self._metaobject_by_handle(shop, handle)
        views = []
        for row, gid in by_id:
            mo = found.get(gid)
            if mo is not None:
                views.append(manual_view(shop, row, mo))
        for row, handle in by_handle:
            mo = found.get(f"handle:{handle}")
            if mo is not None:
                views.append(manual_view(shop, row, mo))
        return views

    async def _ai_view(self, shop: str, row: dict[str, Any], discount_row: dict[str, Any] | None) -> LegacyBundleView:
        metaobject_id = row.get("bundleMetaobjectId")
        metaobject = None
        if metaobject_id and is_gid(metaobject_id, "Metaobject"):
            metaobject = (await self._metaobjects(shop, [metaobject_id])).get(metaobject_id)
        return ai_view(row, metaobject, discount_row)

    def _lock(self, shop: str) -> asyncio.Lock:
        lock = self._locks.get(shop)
        if lock is None:
            if len(self._locks) > 10_000:  # bounded like the cache; an idle lock is cheap to recreate
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            lock = self._locks[shop] = asyncio.Lock()
        return lock

    async def _metaobjects(self, shop: str, gids: list[str]) -> dict[str, Metaobject | None]:
        result: dict[str, Metaobject | None] = {}
        missing = self._fill_from_cache(shop, gids, result)
        if not missing:
            return result
        async with self._lock(shop):
            missing = self._fill_from_cache(shop, missing, result)  # another request may have fetched them
            if not missing:
                return result
            try:
                fetched = await self._shopify.fetch_metaobjects(shop, missing)
            except ShopifyUnavailable:
                stale: dict[str, Metaobject | None] = {}
                if self._fill_from_cache(shop, missing, stale, max_age_s=self.cache.ttl_s + self._stale_if_error_s):
                    raise
                log.warning("shopify unavailable: serving %d stale metaobject(s) for %s", len(stale), shop)
                result.update(stale)
                return result
            for gid in missing:
                value = fetched.get(gid)
                self.cache.put(shop, gid, value)
                result[gid] = value
        return result

    def _fill_from_cache(
        self, shop: str, gids: list[str], into: dict[str, Metaobject | None], max_age_s: float | None = None
    ) -> list[str]:
        missing = []
        for gid in dict.fromkeys(gids):
            hit, value = self.cache.get(shop, gid, max_age_s)
            if hit:
                into[gid] = value
            else:
                missing.append(gid)
        return missing

    async def _metaobject_by_handle(self, shop: str, handle: str) -> Metaobject | None:
        key = f"handle:{handle}"
        hit, value = self.cache.get(shop, key)
        if hit:
            return value
        try:
            value = await self._shopify.fetch_metaobject_by_handle(shop, BUNDLE_METAOBJECT_TYPE, handle)
        except ShopifyUnavailable:
            hit, value = self.cache.get(shop, key, self.cache.ttl_s + self._stale_if_error_s)
            if hit:
                return value
            raise
        self.cache.put(shop, key, value)
        return value


def get_legacy_reader(container: Container) -> LegacyReader:
    """The process-wide reader, created on first use and kept in `container.legacy_reader`.

    `LEGACY_READ_CACHE_MAX_ENTRIES` (optional setting, default 10 000) bounds the cache.
    """
    reader = container.legacy_reader
    if reader is None:
        settings = container.settings
        reader = LegacyReader(
            container.pool,
            container.shopify,
            settings.legacy_read_cache_ttl_s,
            max_entries=int(getattr(settings, "legacy_read_cache_max_entries", 10_000)),
        )
        container.legacy_reader = reader
    return reader
