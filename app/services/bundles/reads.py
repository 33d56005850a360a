"""The bundle read path: which store answers (`V2_BUNDLE_ENGINE`), both readers, and shadow reads.

* `V2_BUNDLE_ENGINE` off for the shop → the legacy reader (`bundle_discount_id` + metaobjects
  from Shopify, cached; `ai_fbt_bundles`); on → the V2 tables. Both produce `BundleOut`, and the
  response says which one answered (`X-Bundle-Read-Source`).
* Ids do not change with the flag: a bundle that has a V2 row answers with its V2 id on both paths
  (the legacy path finds it through the V2 row's `shopifyMetaobjectId` / `metadata.ai_bundle_id`,
  one lookup per list page); only a legacy bundle with no V2 row yet answers with its legacy id,
  its metaobject GID (AI bundles: `bundleMetaobjectId`, else the `ai_fbt_bundles` id).
  `GET /bundles/{id}` on the legacy path accepts either id (so a client can read back what it just
  created, whatever the flag). A V2 bundle the legacy tables cannot represent (no metaobject or
  no active discount) does not exist for the legacy store: 404, honestly. Legacy list cursors are
  keyed by the legacy id (stable while bundles migrate).
* Shopify failures on the legacy path are problems, never 500s: `ShopifyUnavailable` (retries
  exhausted: 5xx, timeouts, throttling; also unusable bodies) → **503** `shopify-unavailable`
  (transient: retry later); any other Shopify refusal (no offline token, 401/403 token revoked,
  402 frozen, 423 locked, 404 shop gone, GraphQL errors) → **502** `shopify-error` with the
  stable `reason` code. A lost database is 503 as on the write path.
* ETags: V2 reads carry the same ETag as write responses (for `If-Match`); legacy reads carry
  none, because the legacy store has no version to be conditional on (use the ETag of the last
  write response, or read with V2_BUNDLE_ENGINE on).
* With `DATABASE_READ_URL` set, V2 GET and list read the replica: a read right after a write may
  not see it yet (replica lag). Writes, their conditional checks and the shadow comparisons
  read the primary.
* Lists are newest first with an opaque cursor that records which store produced it; a cursor
  from the other store (the flag flipped mid-listing) is a 422: restart the listing.

Shadow reads (`SHADOW_READS` on for the shop, sampled with its sample rate): after answering, the
same read runs on the *other* store in a background task (bounded: beyond `MAX_SHADOW_IN_FLIGHT`
running comparisons new ones are dropped and counted, never queued), both answers are reduced to a
normalised projection keyed by `shopifyMetaobjectId` (AI bundles: `ai:<ai_bundle_id>`) and any
difference is logged in `sb_shadow_mismatches` and counted (`sb_shadow_comparisons{outcome}`,
`sb_shadow_mismatches{field}`). The request never waits for it, so neither the body nor the latency
changes. Compared fields: name, title, description, products (sorted product id + quantity),
discountPercent, discountId for manual bundles; products, discountId, status for AI bundles (the
legacy AI row holds no name, title or percentage). `presence` means one store lacks the bundle.
V2 bundles the legacy store cannot represent are not compared.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.core.container import Container
from app.core.db import is_db_unavailable
from app.core.errors import DomainError, NotFound, ShopifyUnavailableProblem, ValidationFailed, shopify_refusal
from app.core.metrics import SHADOW_COMPARISONS, SHADOW_MISMATCHES
from app.core.time import as_utc, naive_utc
from app.repos import bundles as repo
from app.repos import runner
from app.repos import shadow as shadow_repo
from app.repos.base import Executor
from app.repos.runner import db_unavailable
from app.rules.cursors import decode_cursor, decode_keyset_cursor, encode_cursor
from app.rules.legacy_metaobject import legacy_description, legacy_percent_text, legacy_product_ids
from app.rules.legacy_parsing import METAOBJECT_GID_PREFIX, InvalidLegacyData, normalize_product_gid
from app.rules.slugs import slugify
from app.schemas.bundles import (
    BundleOut,
    BundlePage,
    ComponentOut,
    DiscountOut,
    InventoryOut,
    PricingRuleOut,
    ReadSource,
    ShadowMismatchOut,
    ShadowMismatchPage,
)
from app.services.bundles import shadow
from app.services.bundles.checks import check_ref
from app.services.bundles.legacy_reader import LegacyBundleView, get_legacy_reader
from app.services.bundles.representation import etag_of, to_out
from app.services.bundles.shadow import EvidenceRunner
from app.services.flags import snapshot as flags
from app.shopify.errors import ShopifyError, ShopifyUnavailable

log = logging.getLogger(__name__)

ENDPOINT_GET = "GET /api/v2/shops/{shop}/bundles/{bundleId}"
ENDPOINT_LIST = "GET /api/v2/shops/{shop}/bundles"
MANUAL_FIELDS = ("name", "title", "description", "products", "discountPercent", "discountId")
AI_FIELDS = ("products", "discountId", "status")
_CENT = Decimal("0.01")
_OLDEST = datetime.min.replace(tzinfo=UTC)


SHADOW_SERIES = ("match", "mismatch", "confirmed", "transient", "noise_match", "noise_mismatch", "error", "dropped")


def _register_series() -> None:
    """Zero-valued series, so dashboards and alerts see the families before the first comparison."""
    for endpoint in (ENDPOINT_GET, ENDPOINT_LIST):
        for outcome in (
            "match",
            "mismatch",
            "confirmed",
            "transient",
            "noise_match",
            "noise_mismatch",
            "error",
            "dropped",
        ):
            SHADOW_COMPARISONS.add(0, {"endpoint": endpoint, "outcome": outcome})
        for name in ("presence", *dict.fromkeys(MANUAL_FIELDS + AI_FIELDS)):
            SHADOW_MISMATCHES.add(0, {"field": name, "endpoint": endpoint})


_register_series()


@dataclass(slots=True)
class ReadResult:
    """A JSON-ready body plus the headers the router sets."""

    body: dict[str, Any]
    source: ReadSource
    etag: str | None = None


_OTHER_SOURCE = "the cursor belongs to another read source (the flag changed); restart the listing"


def _product_filter(product_id: str | None) -> str | None:
    if product_id is None:
        return None
    try:
        return normalize_product_gid(product_id.strip(), "productId")
    except InvalidLegacyData:
        raise ValidationFailed(
            "Invalid productId.",
            errors=[{"field": "query.productId", "message": "must be a product GID or a numeric id"}],
        ) from None


# --------------------------------------------------------------------------------------------
# Error mapping
# --------------------------------------------------------------------------------------------


async def _guard_legacy(action: Awaitable[Any]) -> Any:
    """Shopify and database failures of the legacy path as problems (see module docstring)."""
    try:
        return await action
    except ShopifyUnavailable as exc:
        raise ShopifyUnavailableProblem(
            "Shopify did not answer; the legacy store cannot be read right now. Retry later.", reason=exc.reason
        ) from exc
    except ShopifyError as exc:
        raise shopify_refusal(
            "Shopify refused the request needed to read the legacy bundle.", reason=exc.reason
        ) from exc
    except DomainError:
        raise
    except Exception as exc:
        if is_db_unavailable(exc):
            raise db_unavailable() from exc
        raise


# --------------------------------------------------------------------------------------------
# Legacy → BundleOut
# --------------------------------------------------------------------------------------------


def view_to_out(view: LegacyBundleView) -> BundleOut:
    """A legacy bundle in the V2 shape, built like the plan's migration would build its V2 rows."""
    rules: list[PricingRuleOut] = []
    if view.source == "MANUAL" or view.discount_percent is not None:
        percent = (view.discount_percent or Decimal(0)).quantize(_CENT)
        rules.append(PricingRuleOut(name="Bundle Discount", discountValue=percent))
    discounts = [DiscountOut(shopifyDiscountId=view.discount_id)] if view.discount_id else []
    return BundleOut(
        id=view.legacy_id,
        shop=view.shop,
        name=view.name,
        title=view.title,
        description=view.description,
        slug=slugify(view.name),
        type="FIXED",
        status=view.status,
        shopifyMetaobjectId=view.metaobject_id,
        metadata=dict(view.metadata),
        components=[
            ComponentOut(shopifyProductId=product, shopifyVariantId=variant, quantity=quantity, displayOrder=i)
            for i, (product, variant, quantity) in enumerate(view.products)
        ],
        pricingRules=rules,
        discounts=discounts,
        inventory=InventoryOut(),
        createdAt=as_utc(view.created_at),
        updatedAt=as_utc(view.updated_at),
    )


# --------------------------------------------------------------------------------------------
# The two readers
# --------------------------------------------------------------------------------------------


async def _v2_get(container: Container, shop: str, ref: str) -> BundleOut | None:
    async def q(conn: Executor) -> BundleOut | None:
        bundle_id = await repo.resolve_ref(conn, shop, ref)
        if bundle_id is None:
            return None
        found = await repo.fetch_full(conn, shop, [bundle_id])
        return to_out(found[0]) if found else None

    result: BundleOut | None = await runner.run_read(container.read_only_pool, q)
    return result


async def _with_v2_ids(container: Container, shop: str, outs: list[BundleOut]) -> list[BundleOut]:
    """Legacy answers with the id of their V2 bundle where one exists (one statement for all of
    them): AI bundles matched by their ai_fbt_bundles id, the others by metaobject GID."""
    ai_ids = [key for o in outs if (key := _ai_id(o)) is not None]
    metaobjects = [o.shopifyMetaobjectId for o in outs if o.shopifyMetaobjectId and _ai_id(o) is None]
    if not ai_ids and not metaobjects:
        return outs
    rows = await runner.run_read(container.pool, lambda conn: repo.legacy_key_rows(conn, shop, metaobjects, ai_ids))
    by_ai = {r["ai"]: r["id"] for r in rows if r["ai"] is not None}
    by_metaobject = {r["metaobject"]: r["id"] for r in rows if r["metaobject"] is not None}
    remapped: list[BundleOut] = []
    for out in outs:
        ai_id = _ai_id(out)
        v2_id = by_ai.get(ai_id) if ai_id is not None else by_metaobject.get(out.shopifyMetaobjectId or "")
        remapped.append(out.model_copy(update={"id": v2_id}) if v2_id is not None else out)
    return remapped


async def _legacy_get(container: Container, shop: str, ref: str) -> BundleOut | None:
    reader = get_legacy_reader(container)
    view: LegacyBundleView | None = None
    v2_id: str | None = None
    if ref.startswith(METAOBJECT_GID_PREFIX):
        view = await reader.get(shop, ref)
    else:
        view = await reader.get_ai(shop, ref)
        if view is None:
            keys = await repo.legacy_keys(container.pool, shop, ref)
            if keys is not None:
                v2_id = ref  # found by its V2 id
                metaobject_id, ai_id = keys
                if ai_id:
                    view = await reader.get_ai(shop, ai_id)
                if view is None and metaobject_id:
                    view = await reader.get(shop, metaobject_id)
    if view is None:
        return None
    out = view_to_out(view)
    if v2_id is not None:
        return out.model_copy(update={"id": v2_id})
    return (await _with_v2_ids(container, shop, [out]))[0]


@dataclass(slots=True)
class _ListQuery:
    limit: int
    after: tuple[datetime | None, str] | None
    status: str | None
    type_: str | None
    product_id: str | None


async def _v2_list(container: Container, shop: str, query: _ListQuery) -> tuple[list[BundleOut], bool]:
    after = None
    if query.after is not None:
        if query.after[0] is None:
            raise ValidationFailed("Invalid cursor.", errors=[{"field": "query.cursor", "message": "malformed"}])
        after = (naive_utc(query.after[0]), query.after[1])

    async def q(conn: Executor) -> tuple[list[BundleOut], bool]:
        ids = await repo.list_page(
            conn,
            shop,
            limit=query.limit + 1,
            after=after,
            status=query.status,
            type_=query.type_,
            product_id=query.product_id,
        )
        full = await repo.fetch_full(conn, shop, ids[: query.limit])
        return [to_out(f) for f in full], len(ids) > query.limit

    page: tuple[list[BundleOut], bool] = await runner.run_read(container.read_only_pool, q)
    return page


def _sort_key(out: BundleOut) -> tuple[datetime, str]:
    return (out.createdAt or _OLDEST, out.id)


async def _legacy_list(container: Container, shop: str, query: _ListQuery) -> tuple[list[BundleOut], bool, str | None]:
    """A page of legacy bundles, ordered and paged by (createdAt, legacy id), with their V2 ids where
    they have one; the third element is the last item's legacy id (the cursor's key)."""
    views = await get_legacy_reader(container).list_for_shop(shop)
    outs = [view_to_out(v) for v in views]
    if query.status:
        outs = [o for o in outs if o.status == query.status]
    if query.type_:
        outs = [o for o in outs if o.type == query.type_]
    if query.product_id:
        outs = [o for o in outs if any(c.shopifyProductId == query.product_id for c in o.components)]
    outs.sort(key=_sort_key, reverse=True)
    if query.after is not None:
        boundary = (as_utc(query.after[0]) or _OLDEST, query.after[1])
        outs = [o for o in outs if _sort_key(o) < boundary]
    page = outs[: query.limit]
    last_key = page[-1].id if page else None
    return await _with_v2_ids(container, shop, page), len(outs) > query.limit, last_key


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def read_source(container: Container, shop: str) -> ReadSource:
    return "v2" if flags.is_on(container, "V2_BUNDLE_ENGINE", shop) else "legacy"


async def get_bundle(container: Container, shop: str, bundle_ref: str) -> ReadResult:
    """One bundle from the flag-selected store (by V2 id, metaobject GID or legacy AI id)."""
    check_ref(bundle_ref)
    source = read_source(container, shop)
    sampled = shadow.sampled(container, shop)
    started = time.perf_counter()
    if source == "v2":
        try:
            out = await _v2_get(container, shop, bundle_ref)
        except Exception as exc:
            if sampled:  # a failed V2 read is evidence too (the guards' error rate)
                shadow.v2_read_failed(container, shop, ENDPOINT_GET, bundle_ref, exc)
            raise
    else:
        out = await _guard_legacy(_legacy_get(container, shop, bundle_ref))
    if out is None:
        raise NotFound("Bundle not found.")
    body = out.model_dump(mode="json")
    if sampled:
        primary, took = out, (time.perf_counter() - started) * 1000.0
        get_shadow_runner(container).submit(ENDPOINT_GET, lambda: _shadow_get(container, shop, source, primary, took))
    return ReadResult(body, source, etag_of(body) if source == "v2" else None)


async def list_bundles(
    container: Container,
    shop: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    status: str | None = None,
    type_: str | None = None,
    product_id: str | None = None,
) -> ReadResult:
    """A page of bundles, newest first, from the flag-selected store."""
    source = read_source(container, shop)
    after: tuple[datetime | None, str] | None = None
    if cursor:
        position = decode_cursor(cursor, source, other_kind=_OTHER_SOURCE)
        after = (position.at, str(position.key))
    query = _ListQuery(limit, after, status, type_, _product_filter(product_id))
    if source == "v2":
        items, more = await _v2_list(container, shop, query)
        last_key = items[-1].id if items else None
    else:
        items, more, last_key = await _guard_legacy(_legacy_list(container, shop, query))
    next_cursor = encode_cursor(source, last_key, items[-1].createdAt) if more and items and last_key else None
    body = BundlePage(items=items, nextCursor=next_cursor).model_dump(mode="json")
    if items and shadow.sampled(container, shop):
        page = list(items)
        get_shadow_runner(container).submit(ENDPOINT_LIST, lambda: _shadow_list(container, shop, source, page))
    return ReadResult(body, source)


async def list_shadow_mismatches(
    container: Container, shop: str | None, *, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """The shadow-read mismatch log, newest first (`GET /admin/shadow-mismatches`)."""
    after: tuple[datetime, int] | None = None
    if cursor:
        at, key = decode_keyset_cursor(cursor, "shadow", key_type=int)
        after = (naive_utc(at), int(key))
    rows = await runner.run_read(
        container.pool, lambda conn: shadow_repo.list_mismatches(conn, shop=shop, after=after, limit=limit + 1)
    )
    items = [ShadowMismatchOut(**{**r, "createdAt": as_utc(r["createdAt"])}) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit and items:
        next_cursor = encode_cursor("shadow", int(rows[limit - 1]["id"]), rows[limit - 1]["createdAt"])
    return ShadowMismatchPage(items=items, nextCursor=next_cursor).model_dump(mode="json")


# --------------------------------------------------------------------------------------------
# Shadow reads
# --------------------------------------------------------------------------------------------


#: The runner of background comparisons (kept under its old name for the container's annotation).
ShadowRunner = EvidenceRunner


def get_shadow_runner(container: Container) -> EvidenceRunner:
    return shadow.get_runner(container)


def _is_ai(out: BundleOut) -> bool:
    return isinstance(out.metadata, dict) and out.metadata.get("source") == "AI"


def shadow_key(out: BundleOut) -> str | None:
    """The bundle's identity in both stores: metaobject GID, else `ai:<ai_bundle_id>`."""
    if out.shopifyMetaobjectId:
        return out.shopifyMetaobjectId
    if _is_ai(out) and isinstance(out.metadata, dict) and isinstance(out.metadata.get("ai_bundle_id"), str):
        return f"ai:{out.metadata['ai_bundle_id']}"
    return None


def _text(value: str | None) -> str | None:
    return (value or "").strip() or None


def projection(out: BundleOut) -> dict[str, Any]:
    """The normalised facts both stores can hold, as JSON (stored with each mismatch): in the legacy
    definition's terms (app.rules.legacy_metaobject), so a documented write-through approximation
    (a variant, a quantity, 12.5 % shown as 12, the title as the missing description) is no mismatch."""
    rule = next(
        (
            r
            for r in out.pricingRules
            if r.isActive and r.ruleType == "BUNDLE_DISCOUNT" and r.discountType == "PERCENTAGE"
        ),
        None,
    )
    percent = rule.discountValue if rule is not None else Decimal(0)
    active = [d for d in out.discounts if d.isActive] or out.discounts
    return {
        "name": _text(out.name),
        "title": _text(out.title),
        "description": _text(legacy_description(out.description, out.title)),
        "products": sorted(legacy_product_ids([c.model_dump() for c in out.components])),
        "discountPercent": legacy_percent_text(percent),
        "discountId": active[0].shopifyDiscountId if active else None,
        "status": out.status,
    }


def _representable_v2(out: BundleOut) -> bool:
    if _is_ai(out):
        return shadow_key(out) is not None
    return bool(out.shopifyMetaobjectId and any(d.isActive for d in out.discounts))


def compared(out: BundleOut | None) -> dict[str, Any] | None:
    """The fields shadow reads compare for this bundle (AI bundles: those the legacy AI row holds)."""
    if out is None:
        return None
    full = projection(out)
    return {name: full[name] for name in (AI_FIELDS if _is_ai(out) else MANUAL_FIELDS)}


def lookup_key(out: BundleOut) -> str | None:
    """How the legacy store finds a V2 bundle: `ai:<ai_bundle_id>`, else its metaobject GID."""
    return _ai_key(out) or out.shopifyMetaobjectId


def representable(out: BundleOut) -> bool:
    """Whether the legacy store can hold this V2 bundle at all (else it is never compared)."""
    return _representable_v2(out)


async def v2_by_id(container: Container, shop: str, bundle_id: str) -> BundleOut | None:
    found = await runner.run_read(container.pool, lambda conn: repo.fetch_full(conn, shop, [bundle_id]))
    return to_out(found[0]) if found else None


async def legacy_by_key(container: Container, shop: str, key: str) -> BundleOut | None:
    """One bundle read from the legacy store by its lookup key (`ai:<id>` or metaobject GID)."""
    reader = get_legacy_reader(container)
    view = await (reader.get_ai(shop, key.removeprefix("ai:")) if key.startswith("ai:") else reader.get(shop, key))
    return view_to_out(view) if view is not None else None


async def v2_by_key(container: Container, shop: str, key: str) -> BundleOut | None:
    ai = key.startswith("ai:")

    async def q(conn: Executor) -> list[dict[str, Any]]:
        ids = await repo.ids_by_legacy_keys(conn, shop, [] if ai else [key], [key.removeprefix("ai:")] if ai else [])
        return await repo.fetch_full(conn, shop, ids[:1])

    found = await runner.run_read(container.pool, q)
    return to_out(found[0]) if found else None


def forget_cached_metaobject(container: Container, shop: str, key: str) -> None:
    """Drop the legacy reader's cached metaobject of this bundle (AI bundles: the shop's), so the next
    legacy read asks Shopify: a re-check must not be answered by a copy older than the difference."""
    cache = get_legacy_reader(container).cache
    cache.invalidate(shop, None if key.startswith("ai:") else key)


def _rereaders(container: Container, shop: str, key: str) -> tuple[shadow.Reread, shadow.Reread, shadow.Reread]:
    """Reads of one bundle from each store, as compared projections: legacy (through the metaobject
    cache, as requests read it: the noise baseline), V2, and legacy past the cache (the re-check)."""

    async def legacy() -> Any:
        return compared(await legacy_by_key(container, shop, key))

    async def v2() -> Any:
        return compared(await v2_by_key(container, shop, key))

    async def fresh_legacy() -> Any:
        forget_cached_metaobject(container, shop, key)
        return await legacy()

    return legacy, v2, fresh_legacy


def _stored_key(legacy: BundleOut | None, v2: BundleOut | None, key: str) -> str:
    """The key a comparison is recorded under: the bundle's shadow key (metaobject GID first)."""
    found = next((shadow_key(out) for out in (legacy, v2) if out is not None), None)
    return found or key


async def _compare(
    container: Container,
    shop: str,
    endpoint: str,
    key: str,
    legacy: BundleOut | None,
    v2: BundleOut | None,
    timings: tuple[float | None, float | None] = (None, None),
) -> None:
    """Settle one pair (match, or confirmed/transient after the re-check)."""
    if legacy is None and v2 is None:
        return
    reread_legacy, reread_v2, fresh_legacy = _rereaders(container, shop, key)
    await shadow.settle(
        container,
        shadow.Comparison(
            shop,
            endpoint,
            _stored_key(legacy, v2, key),
            compared(legacy),
            compared(v2),
            reread_legacy,
            reread_v2,
            legacy_ms=timings[0],
            v2_ms=timings[1],
            fresh_legacy=fresh_legacy,
        ),
    )


async def _other_v2(container: Container, shop: str, primaries: list[BundleOut]) -> dict[str, BundleOut]:
    """V2 bundles matching legacy answers, by shadow key."""
    metaobjects = [o.shopifyMetaobjectId for o in primaries if o.shopifyMetaobjectId]
    ai_ids = [
        str(o.metadata["ai_bundle_id"])
        for o in primaries
        if _is_ai(o) and o.metadata and o.metadata.get("ai_bundle_id")
    ]

    async def q(conn: Executor) -> list[dict[str, Any]]:
        ids = await repo.ids_by_legacy_keys(conn, shop, metaobjects, ai_ids)
        return await repo.fetch_full(conn, shop, ids)

    found: dict[str, BundleOut] = {}
    for full in await runner.run_read(container.pool, q):
        out = to_out(full)
        for key in {shadow_key(out), _ai_key(out)} - {None}:
            assert key is not None
            found[key] = out
    return found


def _ai_id(out: BundleOut) -> str | None:
    if _is_ai(out) and out.metadata and isinstance(out.metadata.get("ai_bundle_id"), str):
        return str(out.metadata["ai_bundle_id"])
    return None


def _ai_key(out: BundleOut) -> str | None:
    ai_id = _ai_id(out)
    return None if ai_id is None else f"ai:{ai_id}"


def _legacy_key(out: BundleOut) -> str | None:
    """Key of a legacy answer: AI bundles by ai id (their metaobject may be absent), others by GID."""
    return _ai_key(out) or out.shopifyMetaobjectId


async def _shadow_get(
    container: Container, shop: str, source: ReadSource, primary: BundleOut, primary_ms: float
) -> None:
    if source == "legacy":
        key = _legacy_key(primary)
        if key is None:
            return
        other, took = await shadow.timed(lambda: _other_v2(container, shop, [primary]))
        await _compare(container, shop, ENDPOINT_GET, key, primary, other.get(key), (primary_ms, took))
        return
    if not _representable_v2(primary):
        return
    key = _ai_key(primary) or primary.shopifyMetaobjectId
    assert key is not None
    legacy, took = await shadow.timed(lambda: legacy_by_key(container, shop, key))
    await _compare(container, shop, ENDPOINT_GET, key, legacy, primary, (took, primary_ms))


async def _shadow_list(container: Container, shop: str, source: ReadSource, page: list[BundleOut]) -> None:
    if source == "legacy":
        others = await _other_v2(container, shop, page)
        for item in page:
            key = _legacy_key(item)
            if key is not None:
                await _compare(container, shop, ENDPOINT_LIST, key, item, others.get(key))
        return
    views = await get_legacy_reader(container).list_for_shop(shop)
    legacy_by_key: dict[str, BundleOut] = {}
    for view in views:
        out = view_to_out(view)
        key = _legacy_key(out)
        if key is not None:
            legacy_by_key[key] = out
    for item in page:
        if not _representable_v2(item):
            continue
        key = _ai_key(item) or item.shopifyMetaobjectId
        assert key is not None
        await _compare(container, shop, ENDPOINT_LIST, key, legacy_by_key.get(key), item)
