"""Shopify write-through: a V2 bundle's legacy view in Shopify follows the V2 row.

During the dual-write period the legacy app and the legacy read path read a manual bundle's
content from its `product-bundles` metaobject, and its discount from Shopify. `DUAL_WRITE` keeps
the legacy *tables* in step inside the database transaction; this module extends that to Shopify,
which no database transaction can include. The full design is in docs/write-through.md; in short:

* **Create: Shopify first, then one database commit, compensation on failure.** A bundle created
  without `shopifyMetaobjectId` gets its metaobject and (when it names no discount) an automatic
  basic discount *before* the transaction, so the V2 row and the legacy row commit with the real
  Shopify ids in one transaction (`before_create`). If the transaction fails, the objects are
  deleted again (`after_create_failed`), unless a committed bundle names them (a concurrent
  retry with the same Idempotency-Key that won).
* **Deterministic handles.** The metaobject's handle is `sb-<16 hex of sha256>` of the shop and the
  Idempotency-Key (with the request hash, so a key reused after its TTL for another bundle cannot
  collide), or of the shop and the pre-generated V2 id when there is no key. It is created with
  `metaobjectCreate(handle)`; a `TAKEN` answer means an earlier attempt of the *same* request
  got that far (unless a committed bundle names that metaobject: then a salted handle is used),
  and `metaobjectUpsert` by handle overwrites it: a retried request never makes a second
  metaobject.
* **Create intent.** Before the first Shopify call a `compensate` row is committed to `sb_outbox`
  (handle, discount title and `startsAt`), due only after `CREATE_INTENT_GRACE_S`. The create's
  transaction deletes it together with writing the bundle; compensation deletes it when it ran. If
  the process dies in between (or a discount create's answer was lost), the dispatcher finds the
  due intent and deletes what no committed bundle names: the metaobject by handle, the discount by
  title and `startsAt` (`compensate_intent`).
* **Updates and deletes go through the outbox** (`after_update`, `after_delete` enqueue in the
  caller's transaction; app.services.shopify_sync.outbox delivers). Only changes Shopify can see are enqueued.

Everything here is gated by `write_through_enabled`: `SHOPIFY_WRITE_THROUGH` on **and** `DUAL_WRITE`
on for the shop (with dual write off the legacy side is not maintained at all). AI bundles are
left alone: their legacy content lives in `ai_fbt_bundles`, which dual write already maintains.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from app.core.container import Container
from app.core.errors import DomainError, ShopifyErrorProblem, ShopifyUnavailableProblem, shopify_refusal
from app.core.ids import new_id
from app.core.metrics import WRITE_THROUGH_APPROXIMATIONS
from app.core.time import as_utc
from app.repos import idempotency as idem_repo
from app.repos import outbox as outbox_repo
from app.repos import runner
from app.repos.base import Executor
from app.rules import legacy_metaobject
from app.rules.legacy_metaobject import BUNDLE_METAOBJECT_TYPE, Approximation, PublishableStatus, publishable_status
from app.schemas.bundles import DiscountIn
from app.services.flags import snapshot as flags
from app.services.shopify_sync.shopify_objects import (
    DISCOUNT_GID_TYPE,
    create_discount,
    delete_discount,
    delete_metaobject,
    discount_input,
    find_discounts_by_title,
    metaobject_input,
    upsert_metaobject,
)
from app.shopify.client import ShopifyClient
from app.shopify.documents import (
    METAOBJECT_CREATE,
)
from app.shopify.errors import ShopifyError, ShopifyUnavailable, ShopifyUserErrors
from app.shopify.objects import is_gid

if TYPE_CHECKING:
    from app.schemas.bundles import BundleCreate

log = logging.getLogger(__name__)

HANDLE_PREFIX = "sb-"


# --------------------------------------------------------------------------------------------
# V2 bundle → Shopify shapes (pure functions; also used by reconciliation)
# --------------------------------------------------------------------------------------------


def write_through_enabled(container: Container, shop: str) -> bool:
    """`SHOPIFY_WRITE_THROUGH` and `DUAL_WRITE` for the shop."""
    if not getattr(container.settings, "shopify_write_through", False):
        return False
    return flags.is_on(container, "DUAL_WRITE", shop)


def is_manual(metadata: Any) -> bool:
    return not (isinstance(metadata, Mapping) and metadata.get("source") == "AI")


def percent_of(rules: list[Mapping[str, Any]] | None) -> Decimal | None:
    """The bundle's exact percentage (legacy_metaobject.percent_of; the automatic discount carries it)."""
    return legacy_metaobject.percent_of(rules)


def iso(value: datetime | None) -> str:
    return legacy_metaobject.iso_datetime(value or datetime.now(UTC))


def metaobject_fields(bundle: Mapping[str, Any], *, created_at: datetime | None = None) -> dict[str, str]:
    """The legacy field layout of a V2 bundle (`bundle`: repos.bundles.fetch_full shape or a create
    body's dump): one mapping for every writer, `legacy_metaobject.legacy_metaobject_fields`."""
    return legacy_metaobject.legacy_metaobject_fields(bundle, created_at=created_at)[0]


def approximations_of(bundle: Mapping[str, Any]) -> list[Approximation]:
    """What the bundle's metaobject cannot say (legacy_metaobject's reasons)."""
    return legacy_metaobject.legacy_metaobject_fields(bundle)[1]


def count_approximations(op: str, reasons: list[Approximation]) -> None:
    """`sb_write_through_approximations_total{op, reason}`: one per metaobject write per reason."""
    for reason in reasons:
        WRITE_THROUGH_APPROXIMATIONS.add(1, {"op": op, "reason": reason})


def _register_series() -> None:
    """Zero-valued series, so the family is scrapeable (and alertable) before the first approximation."""
    for op in ("create", "update", "reconcile"):
        for reason in legacy_metaobject.APPROXIMATION_REASONS:
            WRITE_THROUGH_APPROXIMATIONS.add(0, {"op": op, "reason": reason})


_register_series()


def automatic_discount_id(bundle: Mapping[str, Any]) -> str | None:
    """The bundle's discount the legacy table records (first active), when it is an automatic discount
    this service can write (`gid://shopify/DiscountAutomaticNode/<n>`)."""
    for discount in bundle.get("discounts") or []:
        if discount.get("isActive", True):
            value = discount.get("shopifyDiscountId")
            return value if isinstance(value, str) and is_gid(value, DISCOUNT_GID_TYPE) else None
    return None


def discount_state(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """What the automatic discount must say: title, percentage (a fraction, as Shopify takes it), products."""
    percent = percent_of(bundle.get("pricingRules")) or Decimal(0)
    products = legacy_metaobject.legacy_product_ids(list(bundle.get("components") or []))
    return {
        "title": legacy_metaobject.legacy_title(bundle),
        "percentage": float(percent / 100),
        "products": products,
    }


def handle_for(shop: str, *parts: str) -> str:
    """`sb-<16 hex>`: deterministic per request, so retries converge on one metaobject (module docstring)."""
    digest = hashlib.sha256("|".join((shop, *parts)).encode()).hexdigest()[:16]
    return f"{HANDLE_PREFIX}{digest}"


async def _referenced(container: Container, shop: str, metaobject_id: str | None, discount_id: str | None) -> set[str]:
    refs: set[str] = await runner.run_read(
        container.pool, lambda conn: outbox_repo.shopify_refs(conn, shop, metaobject_id, discount_id)
    )
    return refs


def salted_handle(shop: str, handle: str, salt: str | None, attempt: int) -> str:
    """The fallback handle of `attempt` (1, 2): deterministic from the intent's salt, so the
    dispatcher can find it again; random without one."""
    return handle_for(shop, handle, salt, str(attempt)) if salt else handle_for(shop, handle, new_id())


def intent_handles(shop: str, handle: str, salt: str | None) -> list[str]:
    """Every handle a create with this intent may have used."""
    return [handle] + ([salted_handle(shop, handle, salt, n) for n in (1, 2)] if salt else [])


async def create_metaobject(
    container: Container,
    shop: str,
    handle: str,
    fields: Mapping[str, str],
    *,
    status: PublishableStatus,
    salt: str | None = None,
) -> str:
    """Create the bundle's metaobject under `handle`; converge on an earlier attempt's object.

    `metaobjectCreate` with an explicit handle is safe to retry (a duplicate answers `TAKEN`).
    `TAKEN` with a metaobject no committed bundle names: our own earlier attempt (crash, failed
    transaction whose compensation could not run): overwrite it by handle. Named by a bundle: not
    ours, use a salted handle instead.
    """
    shopify = container.shopify
    for attempt in range(3):
        candidate = handle if attempt == 0 else salted_handle(shop, handle, salt, attempt)
        variables = {
            "metaobject": {"type": BUNDLE_METAOBJECT_TYPE, "handle": candidate, **metaobject_input(fields, status)}
        }
        try:
            payload = await shopify.mutate(shop, METAOBJECT_CREATE, variables, "metaobjectCreate")
            return str(payload["metaobject"]["id"])
        except ShopifyUserErrors as exc:
            if not any(str(e.get("code") or "").upper() == "TAKEN" for e in exc.user_errors):
                raise
        existing = await shopify.fetch_metaobject_by_handle(shop, BUNDLE_METAOBJECT_TYPE, candidate)
        if existing is None:
            continue  # deleted in between: try again
        if not await _referenced(container, shop, existing.id, None):
            return await upsert_metaobject(shopify, shop, candidate, fields, status)
    raise ShopifyErrorProblem("Could not find a free metaobject handle for the bundle.", reason="handle_taken")


# --------------------------------------------------------------------------------------------
# Create: before the transaction, and compensation after a failed one
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class CreatedObjects:
    """What `before_create` made in Shopify, and the body the transaction must write instead."""

    shop: str
    bundle_id: str
    body: BundleCreate
    handle: str
    metaobject_id: str
    discount_id: str | None  # None when the body named its own discount
    intent_id: int | None = None  # the `compensate` row in sb_outbox (dropped at commit / compensation)
    approximations: list[Approximation] = field(default_factory=list)  # what the metaobject cannot say


def _problem(exc: ShopifyError) -> DomainError:
    if isinstance(exc, ShopifyUnavailable):
        return ShopifyUnavailableProblem(
            "Shopify did not answer; the bundle was not created (nothing was kept). Retry the request.",
            reason=exc.reason,
        )
    extra: dict[str, Any] = {}
    if isinstance(exc, ShopifyUserErrors):
        extra["userErrors"] = [dict(e) for e in exc.user_errors]
    return shopify_refusal(f"Shopify refused to create the bundle's objects: {exc.detail}", reason=exc.reason, **extra)


async def create_objects(
    container: Container,
    shop: str,
    handle: str,
    fields: Mapping[str, str],
    discount: Mapping[str, Any] | None,
    *,
    status: PublishableStatus,
    salt: str | None = None,
) -> tuple[str, str | None]:
    """Metaobject, then discount; if the discount fails the metaobject is deleted again at once."""
    metaobject_id = await create_metaobject(container, shop, handle, fields, status=status, salt=salt)
    if discount is None:
        return metaobject_id, None
    try:
        discount_id = await create_discount(container.shopify, shop, discount, fields.get("created_at") or iso(None))
    except BaseException:
        await compensate(container, shop, "", metaobject_id, None)
        raise
    return metaobject_id, discount_id


async def _completed_key(container: Container, shop: str, key: str) -> bool:
    """True when the key already has a committed answer: the create will replay it, Shopify is not touched."""

    stored = await runner.run_read(container.pool, lambda conn: idem_repo.get(conn, shop, key))
    if stored is None or not stored["responseStatus"]:
        return False
    created = stored["createdAt"]
    return created is None or as_utc(created) >= datetime.now(UTC) - idem_repo.IDEMPOTENCY_TTL


async def before_create(
    container: Container,
    shop: str,
    body: BundleCreate,
    idempotency_key: str | None,
    *,
    bundle_id: str,
    request_hash: str,
) -> CreatedObjects | None:
    """Hook of `create_bundle`, before its transaction (caller checked DUAL_WRITE). Creates the
    metaobject (and the discount when the body has none) for a manual bundle without a metaobject;
    returns None when there is nothing to do (setting off, AI bundle, metaobject given, replayed key).
    """
    if not write_through_enabled(container, shop) or body.shopifyMetaobjectId or not is_manual(body.metadata):
        return None
    if idempotency_key is not None and await _completed_key(container, shop, idempotency_key):
        return None

    parts = ("key", idempotency_key, request_hash) if idempotency_key is not None else ("id", bundle_id)
    handle = handle_for(shop, *parts)
    shape: dict[str, Any] = {
        "name": body.name,
        "title": body.title,
        "description": body.description,
        "pricingRules": [r.model_dump() for r in body.pricingRules or []],
        "components": [c.model_dump() for c in body.components],
    }
    fields, approximations = legacy_metaobject.legacy_metaobject_fields(shape, created_at=datetime.now(UTC))
    status = publishable_status(body.status)
    discount = discount_state(shape) if not body.discounts else None
    salt = new_id()
    intent_id = await write_intent(container, shop, bundle_id, handle, salt, discount, fields["created_at"])
    try:
        metaobject_id, discount_id = await create_objects(
            container, shop, handle, fields, discount, status=status, salt=salt
        )
    except ShopifyError as exc:
        # Refused (userErrors...): nothing exists any more, the intent goes. Unavailable (a timeout
        # after sending, 5xx): Shopify may have applied a create whose answer we lost; the intent
        # stays and the dispatcher finds such objects by handle and title once it is due.
        if not isinstance(exc, ShopifyUnavailable):
            await _drop_intent_quietly(container, intent_id)
        raise _problem(exc) from exc
    update: dict[str, Any] = {"shopifyMetaobjectId": metaobject_id}
    if discount_id is not None:
        update["discounts"] = [DiscountIn(shopifyDiscountId=discount_id, discountType="automatic")]
    log.info("write-through: created %s (%s) and discount %s for %s", metaobject_id, handle, discount_id, shop)
    count_approximations("create", approximations)
    return CreatedObjects(
        shop, bundle_id, body.model_copy(update=update), handle, metaobject_id, discount_id, intent_id, approximations
    )


async def write_intent(
    container: Container,
    shop: str,
    bundle_id: str,
    handle: str,
    salt: str,
    discount: Mapping[str, Any] | None,
    starts_at: str,
) -> int:
    """Commit the create's `compensate` intent (own short transaction) before Shopify is called."""
    grace = float(getattr(container.settings, "create_intent_grace_s", 60.0))
    payload = {
        "handle": handle,
        "salt": salt,
        "discountTitle": discount["title"] if discount is not None else None,
        "startsAt": starts_at,
        "graceS": grace,
    }

    async def work(conn: Executor) -> int:
        row = await outbox_repo.insert(conn, shop, bundle_id, "compensate", payload, delay_s=grace)
        return int(row["id"])

    intent_id: int = await runner.run_transaction(container.pool, work)
    return intent_id


async def commit_intent(conn: Executor, created: CreatedObjects | None) -> None:
    """Hook of `create_bundle` inside its transaction: the create commits, so its intent goes with it.
    If the dispatcher already acted on the intent (the create outlived the grace period), the objects
    may be gone: the transaction must not commit them."""
    if created is None or created.intent_id is None:
        return
    if not await outbox_repo.drop_intent(conn, created.intent_id):
        raise ShopifyUnavailableProblem(
            "The bundle's Shopify objects were already cleaned up (the create took too long). Retry the request.",
            reason="intent_expired",
        )


async def _drop_intent_quietly(container: Container, intent_id: int | None) -> None:
    """Best effort: a lost database leaves the intent, and the dispatcher's check then finds nothing to do."""
    if intent_id is None:
        return
    try:
        async with container.pool.acquire() as conn:
            await outbox_repo.drop_intent(conn, intent_id)
    except Exception:
        log.warning("write-through: could not drop create intent %s", intent_id, exc_info=True)


async def compensate_intent(shopify: ShopifyClient, conn: Executor, row: Mapping[str, Any]) -> bool:
    """Deliver a due `compensate` intent (the dispatcher's transaction holds the row): delete the
    metaobject (by handle) and the discount (by title and `startsAt`) of a create that never
    committed, unless a committed bundle names them. False: a newer intent for the same handle (a
    retry) is still pending, so this one waits for it instead of deleting what that retry uses."""
    shop = str(row["shop"])
    payload = row["payload"] or {}
    handle = str(payload["handle"])
    if await outbox_repo.newer_intent_pending(conn, int(row["id"]), shop, handle):
        return False
    for candidate in intent_handles(shop, handle, payload.get("salt")):
        existing = await shopify.fetch_metaobject_by_handle(shop, BUNDLE_METAOBJECT_TYPE, candidate)
        if existing is not None and not await outbox_repo.shopify_refs(conn, shop, existing.id, None):
            await delete_metaobject(shopify, shop, existing.id)
    title = payload.get("discountTitle")
    if title:
        starts_at = _instant(payload.get("startsAt"))
        for found in await find_discounts_by_title(shopify, shop, str(title)):
            moment = _instant(found.get("startsAt"))
            if starts_at is None or moment is None or abs((moment - starts_at).total_seconds()) >= 1:
                continue  # same title, another bundle's discount
            if not await outbox_repo.shopify_refs(conn, shop, None, found["id"]):
                await delete_discount(shopify, shop, found["id"])
    return True


def _instant(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return as_utc(moment)


async def compensate(
    container: Container,
    shop: str,
    bundle_id: str,
    metaobject_id: str | None,
    discount_id: str | None,
    intent_id: int | None = None,
) -> None:
    """Delete the objects no committed bundle names; if Shopify is down, leave a durable outbox row.
    Either way the create's intent (if any) is dropped: the known ids are taken care of."""
    try:
        keep = await _referenced(container, shop, metaobject_id, discount_id)
    except Exception:
        log.warning("write-through compensation: cannot check references; deferring to the outbox", exc_info=True)
        keep = set()
        failed = True
    else:
        failed = False
        try:
            if discount_id and discount_id not in keep:
                await delete_discount(container.shopify, shop, discount_id)
            if metaobject_id and metaobject_id not in keep:
                await delete_metaobject(container.shopify, shop, metaobject_id)
        except Exception:
            log.warning("write-through compensation failed; deferring to the outbox", exc_info=True)
            failed = True
    if not failed:
        await _drop_intent_quietly(container, intent_id)
        return
    payload = {"metaobjectId": metaobject_id, "discountId": discount_id, "compensation": True}
    try:
        async with container.pool.acquire() as conn, conn.transaction():
            if intent_id is not None:
                await outbox_repo.drop_intent(conn, intent_id)
            await outbox_repo.insert(conn, shop, bundle_id or f"compensate-{new_id()}", "delete", payload)
    except Exception:
        # Database and Shopify both failing: the create's intent (still pending) is the net.
        log.error(
            "write-through compensation lost: orphan metaobject %s / discount %s in %s",
            metaobject_id,
            discount_id,
            shop,
            exc_info=True,
        )


async def after_create_failed(container: Container, shop: str, created: CreatedObjects | None) -> None:
    """Hook of `create_bundle` when its transaction did not commit (or a concurrent request with the same
    key won): undo `before_create`. Shielded, so a client disconnect cannot leave the objects behind."""
    if created is None:
        return
    task = asyncio.ensure_future(
        compensate(container, shop, created.bundle_id, created.metaobject_id, created.discount_id, created.intent_id)
    )
    await asyncio.shield(task)


# --------------------------------------------------------------------------------------------
# Update / delete: outbox rows inside the caller's transaction
# --------------------------------------------------------------------------------------------


def upsert_payload(
    before: Mapping[str, Any] | None, after: Mapping[str, Any], *, force: bool = False
) -> dict[str, Any] | None:
    """The outbox payload that brings Shopify from `before` to `after`; None when Shopify sees no change.

    Always the full field set and the publishable status (idempotent redelivery; a status change
    alone is a change); the discount part only when the discount's own state changed (or moved),
    with the products to remove computed against `before`.
    """
    target = metaobject_target(after)
    if target is None:
        return None
    same_target = before is not None and before.get("shopifyMetaobjectId") == target
    fields = metaobject_fields(after)
    status = publishable_status(after.get("status"))
    fields_changed = (
        force
        or before is None
        or not same_target
        or metaobject_fields(before) != fields
        or publishable_status(before.get("status")) != status
    )
    discount_id = automatic_discount_id(after)
    discount: dict[str, Any] | None = None
    if discount_id is not None:
        new_state = discount_state(after)
        old_id = automatic_discount_id(before) if before is not None else None
        old_state = discount_state(before) if before is not None and old_id == discount_id else None
        if force or old_state != new_state:
            remove = [p for p in (old_state or {}).get("products", []) if p not in new_state["products"]]
            discount = {"id": discount_id, "input": discount_input(new_state, remove=remove)}
    if not fields_changed and discount is None:
        return None
    return {"metaobjectId": target, "fields": fields, "status": status, "discount": discount}


def metaobject_target(bundle: Mapping[str, Any]) -> str | None:
    """The metaobject write-through maintains for the bundle: a manual bundle's metaobject GID."""
    target = bundle.get("shopifyMetaobjectId")
    if not target or not is_gid(str(target), "Metaobject") or not is_manual(bundle.get("metadata")):
        return None
    return str(target)


async def after_update(
    container: Container, conn: Executor, shop: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[Approximation] | None:
    """Hook of `update_bundle` inside its transaction (caller checked DUAL_WRITE and holds the row lock).

    Returns what the bundle's metaobject cannot say (empty: nothing), or None when write-through does
    not maintain a metaobject for this bundle (off, AI bundle, no metaobject)."""
    if not write_through_enabled(container, shop) or metaobject_target(after) is None:
        return None
    approximations = approximations_of(after)
    payload = upsert_payload(before, after)
    if payload is not None:
        await outbox_repo.insert(conn, shop, str(after["id"]), "upsert", payload)
        count_approximations("update", approximations)
    return approximations


async def after_delete(container: Container, conn: Executor, shop: str, before: Mapping[str, Any]) -> None:
    """Hook of `delete_bundle` inside its transaction: the bundle's metaobject and automatic discount go too."""
    if not write_through_enabled(container, shop) or not is_manual(before.get("metadata")):
        return
    target = before.get("shopifyMetaobjectId")
    metaobject_id = str(target) if target and is_gid(str(target), "Metaobject") else None
    discount_id = automatic_discount_id(before)
    if metaobject_id is None and discount_id is None:
        return
    payload = {"metaobjectId": metaobject_id, "discountId": discount_id}
    await outbox_repo.insert(conn, shop, str(before["id"]), "delete", payload)
