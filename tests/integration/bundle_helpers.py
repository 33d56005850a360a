"""Helpers shared by the bundle API tests: request bodies, unique Shopify ids, flag overrides, DB probes."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from app.services.bundles.legacy_reader import get_legacy_reader
from app.services.bundles.reads import get_shadow_runner

SHOP_TOKEN = "shpat_test_token"


def big_id() -> int:
    """Shopify-looking numeric ids, unique across tests that share one database and simulator."""
    return random.randrange(10**12, 10**13)


def metaobject_gid() -> str:
    return f"gid://shopify/Metaobject/{big_id()}"


def product_gid() -> str:
    return f"gid://shopify/Product/{big_id()}"


def discount_gid() -> str:
    return f"gid://shopify/DiscountAutomaticNode/{big_id()}"


def bundle_body(
    *,
    name: str | None = None,
    metaobject: str | bool | None = True,
    discount: str | bool | None = True,
    products: list[str] | None = None,
    percent: str = "15",
    **extra: Any,
) -> dict[str, Any]:
    """A valid create body; `metaobject=True`/`discount=True` generate fresh ids, None/False omit them."""
    body: dict[str, Any] = {
        "name": name or f"Bundle {uuid.uuid4().hex[:8]}",
        "title": "Summer set",
        "description": "Two things together",
        "components": [{"shopifyProductId": p, "quantity": i + 1} for i, p in enumerate(products or [product_gid()])],
        "pricingRules": [{"name": "Bundle Discount", "discountType": "PERCENTAGE", "discountValue": percent}],
    }
    if metaobject:
        body["shopifyMetaobjectId"] = metaobject_gid() if metaobject is True else metaobject
    if discount:
        body["discounts"] = [{"shopifyDiscountId": discount_gid() if discount is True else discount}]
    body.update(extra)
    return body


def bundles_url(shop: str, bundle_id: str | None = None) -> str:
    base = f"/api/v2/shops/{shop}/bundles"
    return base if bundle_id is None else f"{base}/{bundle_id}"


async def legacy_row(db: asyncpg.Connection, bundle_id: str) -> dict[str, Any] | None:
    row = await db.fetchrow('SELECT * FROM bundle_discount_id WHERE "bundleId" = $1', bundle_id)
    return None if row is None else dict(row)


async def v2_counts(db: asyncpg.Connection, bundle_id: str) -> dict[str, int]:
    counts = {}
    for table in ("BundleComponent", "BundlePricingRule", "BundleDiscount", "BundleInventory"):
        counts[table] = await db.fetchval(f'SELECT count(*) FROM "{table}" WHERE "bundleId" = $1', bundle_id)
    counts["Bundle"] = await db.fetchval('SELECT count(*) FROM "Bundle" WHERE id = $1', bundle_id)
    return counts


async def register_shop(sim: Any, db: asyncpg.Connection, shop: str) -> None:
    """The shop exists in the simulator and has an offline session row (the legacy path needs Shopify)."""
    await sim.put_shop(shop, token=SHOP_TOKEN)
    content = json.dumps({"accessToken": SHOP_TOKEN, "shop": shop, "scope": "read_metaobjects"})
    await db.execute(
        "INSERT INTO session (id, content, shop) VALUES ('offline_' || $1, $2, $1) "
        "ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content",
        shop,
        content,
    )


def metaobject_item(gid: str, *, name: str, title: str, discount: str, products: list[str]) -> dict[str, Any]:
    return {
        "id": gid,
        "type": "product-bundles",
        "fields": {
            "bundle_name": name,
            "bundle_title": title,
            "description": "Two things together",
            "discount": discount,
            "products": json.dumps(products),
            "created_at": "2026-01-05T10:00:00Z",
        },
    }


def retitled_metaobject(bundle: dict[str, Any], title: str, discount: str = "15") -> dict[str, Any]:
    """The metaobject of a V2 `bundle` as if edited in Shopify: same name and products, new title."""
    return metaobject_item(
        bundle["shopifyMetaobjectId"],
        name=bundle["name"],
        title=title,
        discount=discount,
        products=[c["shopifyProductId"] for c in bundle["components"]],
    )


async def flag_state(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    response = await client.get(f"/admin/flags/{name}")
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


async def _put_override(client: httpx.AsyncClient, name: str, shop: str, value: bool | None, **extra: Any) -> None:
    """Read-merge-write the override map, so flags other tests set meanwhile survive."""
    state = await flag_state(client, name)
    overrides = dict(state["shopOverrides"])
    if value is None:
        overrides.pop(shop, None)
    else:
        overrides[shop] = value
    body = {"enabled": state["enabled"], "shopOverrides": overrides, "reason": f"test override for {shop}", **extra}
    response = await client.put(f"/admin/flags/{name}", json=body)
    assert response.status_code == 200, response.text


@asynccontextmanager
async def flag_override(
    client: httpx.AsyncClient, name: str, shop: str, value: bool, **extra: Any
) -> AsyncIterator[None]:
    """Override one flag for one shop for the duration of the block; restored afterwards (with `extra`
    fields such as sampleRate put back to what they were)."""
    before = await flag_state(client, name)
    await _put_override(client, name, shop, value, **extra)
    try:
        yield
    finally:
        await _put_override(client, name, shop, None, **{key: before[key] for key in extra})


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if await check():
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)


def container_of(client: httpx.AsyncClient) -> Any:
    return client.app.state.container  # type: ignore[attr-defined]


async def drain_shadow(client: httpx.AsyncClient) -> None:
    await get_shadow_runner(container_of(client)).drain()


def forget_legacy_cache(client: httpx.AsyncClient, shop: str) -> None:
    get_legacy_reader(container_of(client)).cache.invalidate(shop)
