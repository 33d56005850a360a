"""The bundle write path: create, update and delete with dual write, idempotency and ETags.

Why it looks like this
----------------------
* **One transaction for both stores** (api.md "Dual write"). The plan's example writes the V2 row
  and then the legacy row as two independent statements: a crash or a conflict between them leaves
  a V2 bundle the legacy app does not know about. Here every write runs on one asyncpg connection
  inside one transaction: V2 rows first, then the legacy rows, then (for creates with a key) the
  idempotency record. Any failure rolls all of it back.
* **Deciding under locks, not on stale reads.** The legacy row of the target metaobject is read
  `FOR UPDATE` before deciding whether it belongs to this bundle; a missing row is inserted with
  `ON CONFLICT DO NOTHING` so two writers racing for the same metaobject cannot both win (the loser
  gets 409 `metaobject already bundled`). The V2 side is guarded by `sb_bundle_shop_metaobject_key`.
  Updates and deletes lock the bundle row first, so concurrent PATCHes serialise and `If-Match`
  is exact.
* **Idempotency keys are claimed first.** The (shop, key) row is inserted at the start of the
  create's transaction; a concurrent request with the same key blocks on the primary key until
  the first commits, then replays its stored response instead of creating a second bundle.
* **Deadlocks and serialisation failures are retried** (whole transaction, 3 attempts): they are
  the database telling us to try again, not the client's fault. A lost database connection is a
  503 problem, never a 500.

Legacy representation (DUAL_WRITE on for the shop)
--------------------------------------------------
* `bundle_discount_id`: exactly for bundles with `shopifyMetaobjectId` **and** an active discount
  (the first active one in list order): `bundleId` = metaobject GID, `bundleName` = name,
  `discountId` = that discount's Shopify id, `shop`. Renaming or changing the discount updates
  the row, changing the metaobject moves it, losing the metaobject or the active discount deletes
  it (the legacy table cannot hold such a bundle), deleting the bundle deletes it.
* One exception to "`bundleId` = metaobject GID": a bundle the backfill migrated from a row keyed by
  its metaobject's *handle* (`gid://shopify/Metaobject/<handle>`, the legacy import's mistake) keeps
  that row, whose key is in its metadata (`legacyHandle`, `legacyBundleId`: `handle_row_key`).
  Keyed by the GID instead, a rename would add a second legacy row for the same metaobject (the legacy
  app shows the bundle twice, once under the old name) and a delete would leave the handle row behind
  (the legacy app still shows the bundle, and the next backfill run migrates it again). That link is
  the service's, not the client's: a PATCH that replaces `metadata` keeps it, one that changes the
  metaobject ends it (the row moves to the new GID), a create cannot set it.
* `ai_fbt_bundles`: bundles with `metadata.source == "AI"`. `metadata.ai_bundle_id` names the row;
  without one, a row is created and its id written back into `metadata.ai_bundle_id`. The row gets
  `productId` = first component, `bundledProductIds` = the others (numeric ids, as the legacy
  generator writes them: the theme builds `/products/<id>.js` from them), `isActive` = status ACTIVE,
  `bundleMetaobjectId`, `discountId`, `lastUpdatedAt`, and `isManualOverride = true` (the merchant
  edited it, so the AI generator must not overwrite it). A new row takes `confidenceScore`,
  `support`, `lift` from `metadata.confidence|support|lift` (0 when absent). Deleting the bundle
  (or un-marking it as AI) deletes the row. An `ai_bundle_id` that names no AI bundle of the shop
  is a 422.
* A legacy row for the metaobject that belongs to someone else (another shop, or a legacy bundle
  of this shop that no V2 bundle owns yet: migrate it instead) is 409 `metaobject already bundled`.
* DUAL_WRITE off: V2 only, `legacySync: "disabled"`; legacy rows are left as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from app.core.container import Container
from app.core.errors import Conflict, DomainError, NotFound, NotReady, PreconditionFailed, ValidationFailed
from app.core.ids import new_id
from app.core.metrics import DUAL_WRITES
from app.core.time import as_utc, utcnow
from app.repos import bundles as repo
from app.repos import idempotency as idem_repo
from app.repos import legacy_bundles as legacy_repo
from app.repos import runner
from app.repos.base import Executor
from app.rules.legacy_parsing import METAOBJECT_GID_PREFIX, storefront_product_id
from app.rules.slugs import slug_candidates, slugify
from app.schemas.bundles import (
    BundleCreate,
    BundleOut,
    BundleUpdate,
    ComponentIn,
    DiscountIn,
    InventoryOut,
    LegacySync,
    PricingRuleIn,
    check_text,
)
from app.services.bundles import shadow
from app.services.flags import snapshot as flags
from app.services.shopify_sync import write_through

log = logging.getLogger(__name__)

T = TypeVar("T")

METAOBJECT_CONFLICT = "metaobject already bundled"
ONE_MS = timedelta(milliseconds=1)
#: metadata keys by which the backfill links a bundle to its legacy row keyed by a handle (`handle_row_key`).
HANDLE_LINK_KEYS = ("legacyHandle", "legacyBundleId")

_CONFLICTS_BY_INDEX: runner.ConflictMap = {
    "sb_bundle_shop_metaobject_key": lambda: MetaobjectConflict(METAOBJECT_CONFLICT),
    "bundle_discount_id_pkey": lambda: MetaobjectConflict(METAOBJECT_CONFLICT),
    "sb_bundle_shop_ai_bundle_key": lambda: Conflict("AI bundle already has a V2 bundle"),
    "Bundle_shop_slug_key": lambda: Conflict("slug taken"),
}


def _register_series() -> None:
    """Zero-valued series per (op, outcome), so the family is scrapeable before the first write."""
    for op in ("create", "update", "delete"):
        for outcome in ("ok", "not_representable", "conflict", "rolled_back"):
            DUAL_WRITES.add(0, {"op": op, "outcome": outcome})


_register_series()


#: `responseStatus` an idempotency record keeps for a completed create (the column is the API's status).
IDEMPOTENT_CREATED = 201


class MetaobjectConflict(Conflict):
    """409 `metaobject already bundled`: counted as a dual-write conflict."""


class _KeyTaken(Exception):
    """The Idempotency-Key row exists (committed by an earlier request): replay it."""


@dataclass(slots=True)
class WriteResult:
    """A write's outcome: the JSON-ready bundle, its ETag, whether this write created it (a replay
    tells what the first request did) and whether it is a replay. The router picks the status."""

    created: bool
    body: dict[str, Any]
    bundle_id: str
    etag: str
    replayed: bool = False


# --------------------------------------------------------------------------------------------
# Shared helpers (also used by the read path)
# --------------------------------------------------------------------------------------------


def bundle_location(shop: str, bundle_id: str) -> str:
    return f"/api/v2/shops/{shop}/bundles/{bundle_id}"


def etag_of(body: dict[str, Any]) -> str:
    """Weak ETag of a V2 representation: a hash of id and `updatedAt` (which every write moves forward)."""
    digest = hashlib.sha256(f"{body.get('id')}|{body.get('updatedAt')}".encode()).hexdigest()[:24]
    return f'W/"{digest}"'


def etag_matches(if_match: str, etag: str) -> bool:
    """RFC 9110 `If-Match`: `*` or a list of entity tags; compared weakly (the W/ prefix is ignored)."""
    value = if_match.strip()
    if value == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in value.split(",") if tag.strip())


def to_out(full: dict[str, Any], legacy_sync: LegacySync | None = None) -> BundleOut:
    """A bundle row with its children (repos.bundles.fetch_full) as the API shape."""
    data = dict(full)
    for key in ("createdAt", "updatedAt", "publishedAt"):
        data[key] = as_utc(data.get(key))
    data["images"] = list(data.get("images") or [])
    data["tags"] = list(data.get("tags") or [])
    rules = []
    for rule in data.get("pricingRules") or []:
        rule = dict(rule)
        rule["startsAt"] = as_utc(rule.get("startsAt"))
        rule["endsAt"] = as_utc(rule.get("endsAt"))
        rules.append(rule)
    data["pricingRules"] = rules
    inventory = data.get("inventory")
    data["inventory"] = InventoryOut(**{k: v for k, v in inventory.items() if k != "bundleId"}) if inventory else None
    data["legacySync"] = legacy_sync
    return BundleOut.model_validate(data)


async def run_read(container: Container, fn: Callable[[Executor], Awaitable[T]]) -> T:
    """`runner.run_read` on the container's pool."""
    return await runner.run_read(container.pool, fn)


async def run_transaction(container: Container, fn: Callable[[Executor], Awaitable[T]]) -> T:
    """`runner.run_transaction` on the container's pool, with the bundle tables' conflicts."""
    return await runner.run_transaction(container.pool, fn, conflicts=_CONFLICTS_BY_INDEX, passthrough=(_KeyTaken,))


# --------------------------------------------------------------------------------------------
# Validation across fields
# --------------------------------------------------------------------------------------------


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def semantic_errors(
    *,
    components: list[ComponentIn] | None,
    rules: list[PricingRuleIn] | None,
    discounts: list[DiscountIn] | None,
    metadata: dict[str, Any] | None,
    prefix: str = "body",
) -> list[dict[str, str]]:
    """Rules pydantic cannot express per field; paths use pydantic's dotted style."""
    errors: list[dict[str, str]] = []
    for i, component in enumerate(components or []):
        where = f"{prefix}.components.{i}"
        if component.minQuantity > component.maxQuantity:
            errors.append(_error(f"{where}.minQuantity", "must be <= maxQuantity"))
        if component.priceAdjustmentType != "NONE" and component.priceAdjustment is None:
            errors.append(
                _error(
                    f"{where}.priceAdjustment", f"required when priceAdjustmentType is {component.priceAdjustmentType}"
                )
            )
        if component.priceAdjustmentType == "PERCENTAGE" and (component.priceAdjustment or 0) > 100:
            errors.append(_error(f"{where}.priceAdjustment", "a percentage must be <= 100"))
    for i, rule in enumerate(rules or []):
        where = f"{prefix}.pricingRules.{i}"
        if rule.discountType == "PERCENTAGE" and rule.discountValue > 100:
            errors.append(_error(f"{where}.discountValue", "a percentage must be <= 100"))
        if rule.startsAt and rule.endsAt and rule.endsAt <= rule.startsAt:
            errors.append(_error(f"{where}.endsAt", "must be after startsAt"))
    seen: set[str] = set()
    for i, discount in enumerate(discounts or []):
        where = f"{prefix}.discounts.{i}"
        if discount.shopifyDiscountId in seen:
            errors.append(_error(f"{where}.shopifyDiscountId", "duplicate discount in this bundle"))
        seen.add(discount.shopifyDiscountId)
        if discount.discountType == "code" and not discount.discountCode:
            errors.append(_error(f"{where}.discountCode", "required when discountType is code"))
    if metadata is not None:
        if "source" in metadata and not isinstance(metadata["source"], str):
            errors.append(_error(f"{prefix}.metadata.source", "must be a string"))
        ai_id = metadata.get("ai_bundle_id")
        if "ai_bundle_id" in metadata and ai_id is not None:
            if not isinstance(ai_id, str) or not ai_id.strip() or len(ai_id) > 255:
                errors.append(_error(f"{prefix}.metadata.ai_bundle_id", "must be a non-empty string (<= 255 chars)"))
            else:
                try:
                    check_text(ai_id)
                except ValueError as exc:
                    errors.append(_error(f"{prefix}.metadata.ai_bundle_id", str(exc)))
    return errors


def check_ref(bundle_ref: str) -> str:
    """A bundle reference from the URL. Text PostgreSQL cannot even compare (NUL, lone surrogates, absurd
    length) names no bundle: 404 like any other unknown id, instead of a driver error."""
    if not bundle_ref or len(bundle_ref) > 255:
        raise NotFound("Bundle not found.")
    try:
        check_text(bundle_ref)
    except ValueError:
        raise NotFound("Bundle not found.") from None
    return bundle_ref


def _check_idempotency_key(key: str) -> None:
    if not (1 <= len(key) <= 255) or not all(33 <= ord(ch) <= 126 for ch in key):
        raise ValidationFailed(
            "Invalid Idempotency-Key.",
            errors=[_error("header.Idempotency-Key", "must be 1-255 visible ASCII characters")],
        )


def _request_hash(body: BundleCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json", exclude_unset=True), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Row building
# --------------------------------------------------------------------------------------------


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


async def _insert_children(
    conn: Executor,
    bundle_id: str,
    now: datetime,
    *,
    components: list[ComponentIn] | None,
    rules: list[PricingRuleIn] | None,
    discounts: list[DiscountIn] | None,
) -> None:
    if components is not None:
        await repo.insert_components(conn, bundle_id, _component_rows(components), now)
    if rules:
        await repo.insert_pricing_rules(conn, bundle_id, _rule_rows(rules), now)
    if discounts:
        await repo.insert_discounts(conn, bundle_id, _discount_rows(discounts), now)


async def _insert_with_slug(conn: Executor, row: dict[str, Any], requested: str | None) -> None:
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


# --------------------------------------------------------------------------------------------
# Legacy representation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegacyShape:
    """What the legacy tables must say about one V2 bundle."""

    metaobject_id: str | None
    legacy_key: str | None  # its `bundle_discount_id` key: the metaobject GID, or its handle row's key
    name: str
    status: str
    discount_id: str | None  # the first active discount
    is_ai: bool
    ai_bundle_id: str | None
    product_ids: tuple[str, ...]
    metadata: dict[str, Any] | None

    @property
    def representable(self) -> bool:
        return bool(self.metaobject_id and self.discount_id)


def is_ai_metadata(metadata: Any) -> bool:
    return isinstance(metadata, dict) and metadata.get("source") == "AI"


def handle_row_key(metadata: Any) -> str | None:
    """The `bundle_discount_id` key of a bundle migrated from a row keyed by its metaobject's handle:
    `metadata.legacyBundleId` when it is exactly `gid://shopify/Metaobject/<metadata.legacyHandle>` (what
    the backfill writes for such rows, app.services.migration.items). None for every other bundle,
    including ordinary migrated ones, whose `legacyBundleId` is their metaobject GID anyway."""
    if not isinstance(metadata, dict):
        return None
    handle, key = metadata.get("legacyHandle"), metadata.get("legacyBundleId")
    if isinstance(handle, str) and handle and key == f"{METAOBJECT_GID_PREFIX}{handle}":
        return key
    return None


def with_handle_link(metadata: dict[str, Any] | None, link_from: Any) -> dict[str, Any] | None:
    """`metadata` carrying exactly the handle link of `link_from` (None: no link), other keys as given.

    The link names the legacy row the dual write maintains, so clients cannot make or break it: were a
    PATCH able to drop it, the bundle's next write would add a second legacy row and its delete would
    leave the handle row behind; were a create able to set it, it could claim another legacy bundle's row.
    """
    key = handle_row_key(link_from)
    if handle_row_key(metadata) == key:
        return metadata
    kept = {k: v for k, v in (metadata or {}).items() if k not in HANDLE_LINK_KEYS}
    if key is not None:
        kept.update({k: link_from[k] for k in HANDLE_LINK_KEYS})
    return kept


def legacy_shape(full: dict[str, Any]) -> LegacyShape:
    metadata = full.get("metadata")
    is_ai = is_ai_metadata(metadata)
    ai_id = metadata.get("ai_bundle_id") if is_ai and isinstance(metadata, dict) else None
    metaobject_id = full.get("shopifyMetaobjectId")
    return LegacyShape(
        metaobject_id=metaobject_id,
        legacy_key=(handle_row_key(metadata) if metaobject_id else None) or metaobject_id,
        name=full["name"],
        status=full["status"],
        discount_id=next((d["shopifyDiscountId"] for d in full.get("discounts") or [] if d["isActive"]), None),
        is_ai=is_ai,
        ai_bundle_id=ai_id if isinstance(ai_id, str) else None,
        product_ids=tuple(c["shopifyProductId"] for c in full.get("components") or []),
        metadata=metadata if isinstance(metadata, dict) else None,
    )


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) else 0.0


async def sync_legacy(
    conn: Executor,
    shop: str,
    old: LegacyShape | None,
    new: LegacyShape | None,
    now: datetime,
    *,
    ai_must_exist: bool,
) -> LegacySync:
    """Bring the legacy rows of one bundle from `old` to `new` (None = absent) inside the caller's
    transaction. Raises `MetaobjectConflict` / `ValidationFailed`; the caller rolls back.
    """
    old_key = old.legacy_key if old else None
    new_key = new.legacy_key if new else None
    rows = await legacy_repo.lock_discount_rows(conn, [k for k in (old_key, new_key) if k])

    ai_row: dict[str, Any] | None = None
    if new is not None and new.is_ai and new.ai_bundle_id:
        ai_row = await legacy_repo.lock_ai_row(conn, new.ai_bundle_id)
        if ai_row is not None and ai_row["shop"] != shop:
            ai_row = None  # another shop's AI bundle: treated exactly like a missing one (no leak)
        if ai_row is None and ai_must_exist:
            raise ValidationFailed(
                "Unknown AI bundle.",
                errors=[_error("body.metadata.ai_bundle_id", "no AI bundle with this id in this shop")],
            )

    def owned(key: str) -> bool:
        row = rows.get(key)
        if row is None or row["shop"] != shop:
            return False
        return key == old_key or (ai_row is not None and ai_row["bundleMetaobjectId"] == key)

    if new_key and new_key in rows and not owned(new_key):
        raise MetaobjectConflict(METAOBJECT_CONFLICT, metaobjectId=new_key)
    if old_key and old_key != new_key and owned(old_key):
        await legacy_repo.delete_discount_row(conn, old_key, shop)

    synced = False
    if new is not None and new_key:
        if new.representable:
            assert new.discount_id is not None
            if new_key in rows:
                await legacy_repo.update_discount_row(conn, new_key, shop, new.name, new.discount_id)
            elif not await legacy_repo.insert_discount_row(conn, new_key, new.name, new.discount_id, shop):
                raise MetaobjectConflict(METAOBJECT_CONFLICT, metaobjectId=new_key)
            synced = True
        elif new_key in rows:
            # Owned, but the bundle lost its active discount: the legacy table cannot hold it any more.
            await legacy_repo.delete_discount_row(conn, new_key, shop)

    old_ai = old.ai_bundle_id if old and old.is_ai else None
    new_ai = new.ai_bundle_id if new and new.is_ai else None
    if old_ai and old_ai != new_ai:
        await legacy_repo.delete_ai_row(conn, old_ai, shop)
    if new is not None and new_ai:
        # The storefront's form, not the V2 GIDs (see the module docstring).
        products = [storefront_product_id(p, "components.shopifyProductId") for p in new.product_ids]
        if ai_row is not None:
            await legacy_repo.update_ai_row(
                conn,
                new_ai,
                product_id=products[0],
                bundled_product_ids=products[1:],
                is_active=new.status == "ACTIVE",
                metaobject_id=new.metaobject_id,
                discount_id=new.discount_id,
                updated_at=now,
            )
        else:
            meta = new.metadata or {}
            await legacy_repo.insert_ai_row(
                conn,
                {
                    "id": new_ai,
                    "shop": shop,
                    "productId": products[0],
                    "bundledProductIds": products[1:],
                    "confidenceScore": _finite(meta.get("confidence")),
                    "support": _finite(meta.get("support")),
                    "lift": _finite(meta.get("lift")),
                    "isActive": new.status == "ACTIVE",
                    "source": "AI",
                    "bundleMetaobjectId": new.metaobject_id,
                    "discountId": new.discount_id,
                    "isManualOverride": True,
                    "lastUpdatedAt": now,
                },
            )
        synced = True
    return "synced" if synced else "not_representable"


async def _fault_hook(container: Container, shop: str, conn: Executor) -> None:
    hook = container.fault_hooks.after_v2_write
    if hook is not None:
        get_pid = getattr(conn, "get_server_pid", None)
        await hook(shop, get_pid() if get_pid is not None else 0)


def _count(op: str, outcome: str) -> None:
    DUAL_WRITES.add(1, {"op": op, "outcome": outcome})


async def _load_full(conn: Executor, shop: str, bundle_id: str) -> dict[str, Any]:
    found = await repo.fetch_full(conn, shop, [bundle_id])
    if not found:  # pragma: no cover - we hold the row in this transaction
        raise NotFound("Bundle not found.")
    return found[0]


async def _observe(op: str, dual: bool, action: Awaitable[T]) -> T:
    """Count dual-write failures by kind (successes are counted by the caller, who knows the outcome)."""
    try:
        return await action
    except MetaobjectConflict:
        if dual:
            _count(op, "conflict")
        raise
    except _KeyTaken:
        raise
    except Exception as exc:
        # Validation, 404 and 412 are not dual-write failures; a lost database or a bug is.
        if dual and (isinstance(exc, NotReady) or not isinstance(exc, DomainError)):
            _count(op, "rolled_back")
        raise


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


async def create_bundle(
    container: Container, shop: str, body: BundleCreate, idempotency_key: str | None = None
) -> WriteResult:
    """Create a bundle (V2 rows + legacy rows in one transaction); replay an earlier answer for a reused key."""
    if idempotency_key is not None:
        _check_idempotency_key(idempotency_key)
    errors = semantic_errors(
        components=body.components, rules=body.pricingRules, discounts=body.discounts, metadata=body.metadata
    )
    if errors:
        raise ValidationFailed("The request has invalid fields.", errors=errors)
    dual = flags.is_on(container, "DUAL_WRITE", shop)
    request_hash = _request_hash(body)
    bundle_id = new_id()
    # Write-through: the Shopify metaobject + discount exist before the rows that point to them; compensated below.
    shopify_side = None
    if dual:
        shopify_side = await write_through.before_create(
            container, shop, body, idempotency_key, bundle_id=bundle_id, request_hash=request_hash
        )
        body = shopify_side.body if shopify_side is not None else body

    async def work(conn: Executor) -> tuple[dict[str, Any], LegacySync]:
        await write_through.commit_intent(conn, shopify_side)  # the create intent commits with the rows
        if idempotency_key is not None and not await idem_repo.claim(
            conn, shop, idempotency_key, request_hash, utcnow() - idem_repo.IDEMPOTENCY_TTL
        ):
            raise _KeyTaken()
        now = utcnow()
        metadata = dict(body.metadata) if body.metadata is not None else None
        metadata = with_handle_link(metadata, None)  # a create cannot claim a legacy row by its handle
        ai_must_exist = bool(is_ai_metadata(metadata) and metadata and metadata.get("ai_bundle_id"))
        if dual and metadata is not None and is_ai_metadata(metadata) and not metadata.get("ai_bundle_id"):
            metadata["ai_bundle_id"] = new_id()
        row = {
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
        await _insert_with_slug(conn, row, body.slug)
        await _insert_children(
            conn, bundle_id, now, components=body.components, rules=body.pricingRules, discounts=body.discounts
        )
        inventory = body.inventory.model_dump() if body.inventory else InventoryOut().model_dump()
        await repo.upsert_inventory(conn, bundle_id, inventory, new_id())
        full = await _load_full(conn, shop, bundle_id)
        sync: LegacySync = "disabled"
        if dual:
            await _fault_hook(container, shop, conn)
            sync = await sync_legacy(conn, shop, None, legacy_shape(full), now, ai_must_exist=ai_must_exist)
        out = to_out(full, sync).model_dump(mode="json")
        if shopify_side is not None:  # write-through: what the bundle's metaobject could not say
            out["legacyApproximations"] = list(shopify_side.approximations)
        if idempotency_key is not None:
            await idem_repo.complete(conn, shop, idempotency_key, IDEMPOTENT_CREATED, out, bundle_id)
        return out, sync

    try:
        out, sync = await _observe("create", dual, run_transaction(container, work))
    except _KeyTaken:
        assert idempotency_key is not None
        await write_through.after_create_failed(container, shop, shopify_side)  # undo the Shopify objects
        return await _replay(container, shop, idempotency_key, request_hash)
    except BaseException:
        await write_through.after_create_failed(container, shop, shopify_side)  # undo the Shopify objects
        raise
    if dual:
        _count("create", "ok" if sync == "synced" else sync)
        if sync == "synced":  # re-read both stores after commit (sampled, in the background)
            shadow.after_dual_write(container, shop, out["id"])
    return WriteResult(True, out, out["id"], etag_of(out))


async def _replay(container: Container, shop: str, key: str, request_hash: str) -> WriteResult:
    stored = await run_read(container, lambda conn: idem_repo.get(conn, shop, key))
    if stored is None or not stored["responseStatus"]:
        raise NotReady("The earlier request with this Idempotency-Key is unresolved; retry.")
    if stored["requestHash"] != request_hash:
        raise ValidationFailed(
            "Idempotency-Key reused with a different body.",
            errors=[_error("header.Idempotency-Key", "already used with a different request body")],
        )
    body = stored["responseBody"]
    return WriteResult(
        int(stored["responseStatus"]) == IDEMPOTENT_CREATED, body, str(body.get("id")), etag_of(body), replayed=True
    )


def _merged_inventory(current: dict[str, Any] | None, patch: dict[str, Any]) -> dict[str, Any]:
    base = InventoryOut().model_dump()
    if current:
        base.update({k: v for k, v in current.items() if k in base})
    base.update(patch)
    return base


async def update_bundle(
    container: Container, shop: str, bundle_ref: str, patch: BundleUpdate, if_match: str | None = None
) -> WriteResult:
    """Partial update by V2 id or metaobject GID; lists replace; `If-Match` must name the current ETag.

    Every call is a write: `updatedAt` moves forward (at least 1 ms past the previous value, so
    the ETag changes even for two updates within one millisecond) and the legacy rows are
    re-synchronised, which also repairs drift.
    """
    check_ref(bundle_ref)
    given = patch.model_fields_set
    errors = semantic_errors(
        components=patch.components if "components" in given else None,
        rules=patch.pricingRules if "pricingRules" in given else None,
        discounts=patch.discounts if "discounts" in given else None,
        metadata=patch.metadata if "metadata" in given else None,
    )
    if errors:
        raise ValidationFailed("The request has invalid fields.", errors=errors)
    dual = flags.is_on(container, "DUAL_WRITE", shop)

    async def work(conn: Executor) -> tuple[dict[str, Any], LegacySync]:
        current = await repo.lock_bundle(conn, shop, bundle_ref)
        if current is None:
            raise NotFound("Bundle not found.")
        bundle_id = current["id"]
        before = await _load_full(conn, shop, bundle_id)
        if if_match is not None and not etag_matches(if_match, etag_of(to_out(before).model_dump(mode="json"))):
            raise PreconditionFailed("The bundle changed since you read it (If-Match does not match the ETag).")
        old_shape = legacy_shape(before)
        now = utcnow()
        changes: dict[str, Any] = {
            column: getattr(patch, column)
            for column in (
                "name",
                "title",
                "description",
                "type",
                "status",
                "shopifyProductId",
                "shopifyMetaobjectId",
                "displayOrder",
                "featuredImage",
                "currencyCode",
                "tags",
                "images",
            )
            if column in given
        }
        if "slug" in given and patch.slug != current["slug"]:
            if await repo.slug_taken(conn, shop, patch.slug or "", exclude_id=bundle_id):
                raise Conflict("slug taken", slug=patch.slug)
            changes["slug"] = patch.slug
        metadata = patch.metadata if "metadata" in given else current["metadata"]
        # The handle link survives a metadata replacement and ends with a move to another metaobject.
        moved = "shopifyMetaobjectId" in changes and changes["shopifyMetaobjectId"] != current["shopifyMetaobjectId"]
        linked = with_handle_link(metadata, None if moved else current["metadata"])
        if linked is not metadata:
            metadata = changes["metadata"] = linked
        ai_must_exist = False
        if is_ai_metadata(metadata) and isinstance(metadata, dict):
            ai_id = metadata.get("ai_bundle_id")
            ai_must_exist = bool(ai_id) and ai_id != old_shape.ai_bundle_id
            if dual and not ai_id:
                metadata = {**metadata, "ai_bundle_id": old_shape.ai_bundle_id or new_id()}
                changes["metadata"] = metadata
        if "metadata" in given:
            changes["metadata"] = metadata
        if changes.get("status") == "ACTIVE" and current["publishedAt"] is None:
            changes["publishedAt"] = now
        previous = current["updatedAt"]
        updated_at = max(now, previous + ONE_MS) if previous else now
        await repo.update_bundle(conn, bundle_id, changes, updated_at)
        for table, items in (
            ("BundleComponent", patch.components if "components" in given else None),
            ("BundlePricingRule", patch.pricingRules if "pricingRules" in given else None),
            ("BundleDiscount", patch.discounts if "discounts" in given else None),
        ):
            if items is not None:
                await repo.delete_children(conn, table, bundle_id)
        await _insert_children(
            conn,
            bundle_id,
            updated_at,
            components=patch.components if "components" in given else None,
            rules=patch.pricingRules if "pricingRules" in given else None,
            discounts=patch.discounts if "discounts" in given else None,
        )
        if "inventory" in given and patch.inventory is not None:
            merged = _merged_inventory(before.get("inventory"), patch.inventory.model_dump(exclude_unset=True))
            await repo.upsert_inventory(conn, bundle_id, merged, new_id())
        full = await _load_full(conn, shop, bundle_id)
        sync: LegacySync = "disabled"
        approximations = None
        if dual:
            await _fault_hook(container, shop, conn)
            sync = await sync_legacy(conn, shop, old_shape, legacy_shape(full), now, ai_must_exist=ai_must_exist)
            approximations = await write_through.after_update(container, conn, shop, before, full)  # outbox row
        out = to_out(full, sync).model_dump(mode="json")
        if approximations is not None:  # write-through: what the bundle's metaobject could not say
            out["legacyApproximations"] = approximations
        return out, sync

    out, sync = await _observe("update", dual, run_transaction(container, work))
    if dual:
        _count("update", "ok" if sync == "synced" else sync)
        if sync == "synced":  # re-read both stores after commit (sampled, in the background)
            shadow.after_dual_write(container, shop, out["id"])
    return WriteResult(False, out, out["id"], etag_of(out))


async def delete_bundle(container: Container, shop: str, bundle_ref: str, if_match: str | None = None) -> None:
    """Delete by V2 id or metaobject GID (children cascade); the legacy rows go in the same transaction."""
    check_ref(bundle_ref)
    dual = flags.is_on(container, "DUAL_WRITE", shop)

    async def work(conn: Executor) -> Literal["ok", "disabled"]:
        current = await repo.lock_bundle(conn, shop, bundle_ref)
        if current is None:
            raise NotFound("Bundle not found.")
        before = await _load_full(conn, shop, current["id"])
        if if_match is not None and not etag_matches(if_match, etag_of(to_out(before).model_dump(mode="json"))):
            raise PreconditionFailed("The bundle changed since you read it (If-Match does not match the ETag).")
        await repo.delete_bundle(conn, current["id"])
        if not dual:
            return "disabled"
        await _fault_hook(container, shop, conn)
        await sync_legacy(conn, shop, legacy_shape(before), None, utcnow(), ai_must_exist=False)
        await write_through.after_delete(container, conn, shop, before)  # the Shopify deletes, queued in the outbox
        return "ok"

    outcome = await _observe("delete", dual, run_transaction(container, work))
    if dual:
        _count("delete", outcome)
