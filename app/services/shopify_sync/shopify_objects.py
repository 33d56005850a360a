"""The Shopify objects behind a V2 bundle's legacy view: the metaobject and the automatic discount.

Thin, bundle-agnostic wrappers over the Admin API mutations and queries the write-through, the
outbox and reconciliation send (documents in app/shopify/documents.py), with the one rule each
needs on top of the client: an object that is already gone counts as deleted, since a redelivered
delete must converge rather than fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.rules.legacy_metaobject import BUNDLE_METAOBJECT_TYPE, PublishableStatus
from app.shopify.client import ShopifyClient
from app.shopify.documents import (
    DISCOUNT_CREATE,
    DISCOUNT_DELETE,
    DISCOUNT_NODES,
    DISCOUNT_UPDATE,
    DISCOUNTS_BY_TITLE,
    METAOBJECT_DELETE,
    METAOBJECT_UPDATE,
    METAOBJECT_UPSERT,
)
from app.shopify.errors import ShopifyUserErrors
from app.shopify.objects import is_gid

DISCOUNT_GID_TYPE = "DiscountAutomaticNode"


def metaobject_input(fields: Mapping[str, str], status: str | None) -> dict[str, Any]:
    """`MetaobjectCreateInput`/`MetaobjectUpdateInput`/`MetaobjectUpsertInput` body (without `type`/
    `handle`): the fields and, unless `status` is None (leave it as it is), the publishable status."""
    value: dict[str, Any] = {"fields": field_list(fields)}
    if status is not None:
        value["capabilities"] = {"publishable": {"status": status}}
    return value


def field_list(fields: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in fields.items()]


def discount_input(
    state: Mapping[str, Any], *, remove: list[str] | None = None, starts_at: str | None = None
) -> dict[str, Any]:
    """`DiscountAutomaticBasicInput` for a discount state (products to add, and to remove on updates)."""
    products: dict[str, Any] = {"productsToAdd": list(state["products"])}
    if remove:
        products["productsToRemove"] = list(remove)
    value: dict[str, Any] = {
        "title": state["title"],
        "customerGets": {"value": {"percentage": state["percentage"]}, "items": {"products": products}},
    }
    if starts_at is not None:
        value["startsAt"] = starts_at
    return value


def _metaobject_gone(exc: ShopifyUserErrors) -> bool:
    """`MetaobjectUserErrorCode.RECORD_NOT_FOUND`: the metaobject no longer exists."""
    return any(str(e.get("code") or "").upper() == "RECORD_NOT_FOUND" for e in exc.user_errors)


def _discount_gone(exc: ShopifyUserErrors) -> bool:
    """`DiscountErrorCode` has no not-found code: Shopify reports an unknown id as INVALID on `id`."""
    return any(
        str(e.get("code") or "").upper() == "INVALID" and list(e.get("field") or []) == ["id"] for e in exc.user_errors
    )


async def update_metaobject(
    shopify: ShopifyClient, shop: str, gid: str, fields: Mapping[str, str], status: str | None = None
) -> None:
    """Overwrite the metaobject's fields and publishable status (idempotent: the full state every time;
    `status` None leaves the status alone, for outbox rows written before rows carried it)."""
    variables = {"id": gid, "metaobject": metaobject_input(fields, status)}
    await shopify.mutate(shop, METAOBJECT_UPDATE, variables, "metaobjectUpdate")


async def upsert_metaobject(
    shopify: ShopifyClient, shop: str, handle: str, fields: Mapping[str, str], status: PublishableStatus
) -> str:
    variables = {
        "handle": {"type": BUNDLE_METAOBJECT_TYPE, "handle": handle},
        "metaobject": metaobject_input(fields, status),
    }
    payload = await shopify.mutate(shop, METAOBJECT_UPSERT, variables, "metaobjectUpsert")
    return str(payload["metaobject"]["id"])


async def delete_metaobject(shopify: ShopifyClient, shop: str, gid: str) -> None:
    """Delete; an already deleted metaobject counts as deleted (redelivery after a crash)."""
    try:
        await shopify.mutate(shop, METAOBJECT_DELETE, {"id": gid}, "metaobjectDelete")
    except ShopifyUserErrors as exc:
        if not _metaobject_gone(exc):
            raise


async def create_discount(shopify: ShopifyClient, shop: str, state: Mapping[str, Any], starts_at: str) -> str:
    """Create the automatic discount. Not idempotent in Shopify: an ambiguous failure (timeout after
    sending) is not retried into a duplicate (`idempotent=False`), it fails the request."""
    payload = await shopify.mutate(
        shop,
        DISCOUNT_CREATE,
        {"automaticBasicDiscount": discount_input(state, starts_at=starts_at)},
        "discountAutomaticBasicCreate",
        idempotent=False,
    )
    return str(payload["automaticDiscountNode"]["id"])


async def update_discount(shopify: ShopifyClient, shop: str, gid: str, value: Mapping[str, Any]) -> None:
    await shopify.mutate(
        shop, DISCOUNT_UPDATE, {"id": gid, "automaticBasicDiscount": dict(value)}, "discountAutomaticBasicUpdate"
    )


async def delete_discount(shopify: ShopifyClient, shop: str, gid: str) -> None:
    try:
        await shopify.mutate(shop, DISCOUNT_DELETE, {"id": gid}, "discountAutomaticDelete")
    except ShopifyUserErrors as exc:
        if not _discount_gone(exc):
            raise


async def fetch_discounts(shopify: ShopifyClient, shop: str, ids: list[str]) -> dict[str, dict[str, Any] | None]:
    """Automatic discounts by id (`None`: gone). `percentage` is None when Shopify does not say."""
    found: dict[str, dict[str, Any] | None] = {}
    valid = [i for i in dict.fromkeys(ids) if is_gid(i, DISCOUNT_GID_TYPE)]
    for start in range(0, len(valid), 100):
        chunk = valid[start : start + 100]
        data = await shopify.graphql(shop, DISCOUNT_NODES, {"ids": chunk}, estimated_cost=2 * len(chunk))
        nodes = data.get("nodes") or []
        for gid, node in zip(chunk, nodes, strict=False):
            if not isinstance(node, Mapping) or not node.get("id"):
                found[gid] = None
                continue
            detail = node.get("automaticDiscount") or {}
            value = ((detail.get("customerGets") or {}).get("value") or {}) if isinstance(detail, Mapping) else {}
            pct = value.get("percentage") if isinstance(value, Mapping) else None
            found[gid] = {
                "id": node["id"],
                "title": detail.get("title") if isinstance(detail, Mapping) else None,
                "percentage": float(pct) if isinstance(pct, int | float) else None,
            }
    return found


async def find_discounts_by_title(shopify: ShopifyClient, shop: str, title: str) -> list[dict[str, Any]]:
    """Automatic discounts whose title is exactly `title` (`id`, `title`, `startsAt`): how a discount
    whose create answer was lost is found again (its id never reached us)."""
    escaped = title.replace("\\", "\\\\").replace("'", "\\'")
    data = await shopify.graphql(shop, DISCOUNTS_BY_TITLE, {"query": f"title:'{escaped}'"}, estimated_cost=52)
    found: list[dict[str, Any]] = []
    for node in (data.get("automaticDiscountNodes") or {}).get("nodes") or []:
        detail = node.get("automaticDiscount") if isinstance(node, Mapping) else None
        if isinstance(detail, Mapping) and node.get("id") and detail.get("title") == title:
            found.append({"id": str(node["id"]), "title": title, "startsAt": detail.get("startsAt")})
    return found
