"""The dual write's legacy side: what the legacy tables must say about a V2 bundle, and `sync_legacy`.

The bundle writes (app.services.bundles.writes) call `sync_legacy` inside their own transaction,
after the V2 rows; it locks the legacy rows it decides on (`FOR UPDATE`) and raises instead of
committing anything half-decided, so the caller's rollback undoes both stores.

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

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.core.errors import Conflict, ValidationFailed
from app.core.ids import new_id
from app.repos import legacy_bundles as legacy_repo
from app.repos.base import Executor
from app.rules.legacy_parsing import METAOBJECT_GID_PREFIX, storefront_product_id
from app.schemas.bundles import LegacySync
from app.services.bundles.checks import field_error

METAOBJECT_CONFLICT = "metaobject already bundled"
#: metadata keys by which the backfill links a bundle to its legacy row keyed by a handle (`handle_row_key`).
HANDLE_LINK_KEYS = ("legacyHandle", "legacyBundleId")


class MetaobjectConflict(Conflict):
    """409 `metaobject already bundled`: counted as a dual-write conflict."""


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


def created_metadata(requested: dict[str, Any] | None, *, dual: bool) -> tuple[dict[str, Any] | None, bool]:
    """A new bundle's metadata and whether its `ai_bundle_id` must name an existing AI row.

    A create cannot claim a legacy row by its handle (the link is dropped); an AI bundle without an
    `ai_bundle_id` gets a fresh one while dual-writing, the id of the row `sync_legacy` will insert.
    """
    metadata = dict(requested) if requested is not None else None
    metadata = with_handle_link(metadata, None)
    ai_must_exist = bool(is_ai_metadata(metadata) and metadata and metadata.get("ai_bundle_id"))
    if dual and metadata is not None and is_ai_metadata(metadata) and not metadata.get("ai_bundle_id"):
        metadata["ai_bundle_id"] = new_id()
    return metadata, ai_must_exist


def updated_metadata(
    metadata: Any, *, stored: Any, moved: bool, old_ai_bundle_id: str | None, dual: bool
) -> tuple[Any, bool, bool]:
    """A patched bundle's metadata (`metadata`: the patch's, else the `stored` one), whether the
    service rewrote it, and whether its `ai_bundle_id` must name an existing AI row.

    The handle link survives a metadata replacement and ends with a move to another metaobject. While
    dual-writing, AI metadata without `ai_bundle_id` keeps the id of the bundle's AI row (or gets a
    fresh one). Only a new id must exist: the bundle's own one is recreated by `sync_legacy` if its
    row is gone.
    """
    linked = with_handle_link(metadata, None if moved else stored)
    rewritten = linked is not metadata
    metadata = linked
    ai_must_exist = False
    if is_ai_metadata(metadata) and isinstance(metadata, dict):
        ai_id = metadata.get("ai_bundle_id")
        ai_must_exist = bool(ai_id) and ai_id != old_ai_bundle_id
        if dual and not ai_id:
            metadata = {**metadata, "ai_bundle_id": old_ai_bundle_id or new_id()}
            rewritten = True
    return metadata, rewritten, ai_must_exist


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

    Locks first (the `bundle_discount_id` rows of both keys, then the AI row), decides ownership on
    the locked rows, then writes: the discount row, then the AI row.
    """
    old_key = old.legacy_key if old else None
    new_key = new.legacy_key if new else None
    rows = await legacy_repo.lock_discount_rows(conn, [k for k in (old_key, new_key) if k])
    ai_row = await _lock_ai_row(conn, shop, new, ai_must_exist=ai_must_exist)

    def owned(key: str) -> bool:
        row = rows.get(key)
        if row is None or row["shop"] != shop:
            return False
        return key == old_key or (ai_row is not None and ai_row["bundleMetaobjectId"] == key)

    if new_key and new_key in rows and not owned(new_key):
        raise MetaobjectConflict(METAOBJECT_CONFLICT, metaobjectId=new_key)
    if old_key and old_key != new_key and owned(old_key):
        await legacy_repo.delete_discount_row(conn, old_key, shop)
    discount_synced = await _sync_discount_row(conn, shop, new, rows)
    ai_synced = await _sync_ai_row(conn, shop, old, new, ai_row, now)
    return "synced" if discount_synced or ai_synced else "not_representable"


async def _lock_ai_row(
    conn: Executor, shop: str, new: LegacyShape | None, *, ai_must_exist: bool
) -> dict[str, Any] | None:
    """The shop's `ai_fbt_bundles` row `new` names, locked; None when it names none (or no such row)."""
    if new is None or not new.is_ai or not new.ai_bundle_id:
        return None
    ai_row = await legacy_repo.lock_ai_row(conn, new.ai_bundle_id)
    if ai_row is not None and ai_row["shop"] != shop:
        ai_row = None  # another shop's AI bundle: treated exactly like a missing one (no leak)
    if ai_row is None and ai_must_exist:
        raise ValidationFailed(
            "Unknown AI bundle.",
            errors=[field_error("body.metadata.ai_bundle_id", "no AI bundle with this id in this shop")],
        )
    return ai_row


async def _sync_discount_row(
    conn: Executor, shop: str, new: LegacyShape | None, rows: dict[str, dict[str, Any]]
) -> bool:
    """Write (or drop) the `bundle_discount_id` row of `new`, whose key is free or owned; True when written."""
    new_key = new.legacy_key if new else None
    if new is None or not new_key:
        return False
    if new.representable:
        assert new.discount_id is not None
        if new_key in rows:
            await legacy_repo.update_discount_row(conn, new_key, shop, new.name, new.discount_id)
        elif not await legacy_repo.insert_discount_row(conn, new_key, new.name, new.discount_id, shop):
            raise MetaobjectConflict(METAOBJECT_CONFLICT, metaobjectId=new_key)
        return True
    if new_key in rows:
        # Owned, but the bundle lost its active discount: the legacy table cannot hold it any more.
        await legacy_repo.delete_discount_row(conn, new_key, shop)
    return False


async def _sync_ai_row(
    conn: Executor,
    shop: str,
    old: LegacyShape | None,
    new: LegacyShape | None,
    ai_row: dict[str, Any] | None,
    now: datetime,
) -> bool:
    """Move the `ai_fbt_bundles` row from `old` to `new` (`ai_row`: the locked existing one); True when written."""
    old_ai = old.ai_bundle_id if old and old.is_ai else None
    new_ai = new.ai_bundle_id if new and new.is_ai else None
    if old_ai and old_ai != new_ai:
        await legacy_repo.delete_ai_row(conn, old_ai, shop)
    if new is None or not new_ai:
        return False
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
        return True
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
    return True
