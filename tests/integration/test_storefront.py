"""Storefront endpoints (`/proxy/*`): app proxy auth, the legacy array from both stores, V2 bundles
with both pricing modes, AI bundles, and the query plan of the hot path.

Real PostgreSQL and the Shopify simulator over HTTP. V2 rows are inserted with SQL so these tests
depend only on the schema, not on the bundle API. Flags are switched per shop through
`PUT /admin/flags/{name}` (read, merge `shopOverrides`, restore), so other tests are unaffected.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from app.core.ids import new_id
from app.core.security import make_session_token, sign_app_proxy_params
from app.core.time import utcnow
from app.repos.storefront import V2_BUNDLES_FOR_PRODUCT_SQL
from app.schemas.storefront import AiBundlesResponse, LegacyBundle, StorefrontBundlesResponse
from tests.conftest import API_KEY, API_SECRET, new_shop
from tests.integration.bundle_helpers import eventually

PRODUCT = "gid://shopify/Product/"
METAOBJECT = "gid://shopify/Metaobject/"


# ------------------------------------------------------------------------------------ helpers


#: Query items as httpx accepts them (its parameter type is a list of (str, primitive) pairs).
QueryItems = list[tuple[str, Any]]


def signed(shop: str, params: Mapping[str, str] | None = None, *, timestamp: int | None = None) -> QueryItems:
    """Query parameters as Shopify's app proxy forwards them, signature last."""
    items: list[tuple[str, str]] = [
        ("shop", shop),
        ("logged_in_customer_id", ""),
        ("path_prefix", "/apps/proxy"),
        ("timestamp", str(int(time.time()) if timestamp is None else timestamp)),
        *(params or {}).items(),
    ]
    return [*items, ("signature", sign_app_proxy_params(items, API_SECRET))]


async def proxy_get(
    client: httpx.AsyncClient, path: str, shop: str, params: Mapping[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    return await client.get(path, params=signed(shop, params), **kwargs)


def product(n: int | str) -> str:
    return f"{PRODUCT}{n}"


def unique_number() -> int:
    return uuid.uuid4().int % 10**12


async def _set_override(client: httpx.AsyncClient, name: str, shop: str, value: bool | None) -> None:
    """Merge (value) or remove (None) this shop's override, keeping the rest of the flag as it is."""
    current = await client.get(f"/admin/flags/{name}")
    assert current.status_code == 200, current.text
    state = current.json()
    overrides = dict(state.get("shopOverrides") or {})
    if value is None:
        overrides.pop(shop, None)
    else:
        overrides[shop] = value
    body: dict[str, Any] = {"enabled": state["enabled"], "shopOverrides": overrides, "reason": "test_storefront"}
    for key in ("rolloutPercent", "sampleRate"):
        if state.get(key) is not None:
            body[key] = state[key]
    response = await client.put(f"/admin/flags/{name}", json=body)
    assert response.status_code == 200, response.text
    if value is None:
        return
    deadline = time.monotonic() + 3
    while True:  # every replica applies a change within a second; this one usually at once
        evaluation = await client.get(f"/admin/flags/{name}/evaluate", params={"shop": shop})
        if evaluation.json().get("value") is value or time.monotonic() > deadline:
            assert evaluation.json().get("value") is value, evaluation.text
            return
        await asyncio.sleep(0.05)


@asynccontextmanager
async def shop_flag(client: httpx.AsyncClient, name: str, shop: str, value: bool) -> AsyncIterator[None]:
    await _set_override(client, name, shop, value)
    try:
        yield
    finally:
        await _set_override(client, name, shop, None)


async def insert_v2_bundle(
    db: asyncpg.Connection,
    shop: str,
    components: Sequence[Mapping[str, Any]],
    *,
    title: str = "Bundle",
    name: str | None = None,
    description: str | None = None,
    status: str = "ACTIVE",
    metaobject_id: str | None = None,
    rules: Iterable[Mapping[str, Any]] = (),
    inventory: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    currency: str = "USD",
    featured_image: str | None = None,
    display_order: int = 0,
) -> str:
    """A V2 bundle written straight into the tables, as the migration or the bundle API would."""
    bundle_id = new_id()
    await db.execute(
        """
        INSERT INTO "Bundle" (id, shop, name, title, description, slug, type, status, "shopifyMetaobjectId",
                              "currencyCode", "featuredImage", metadata, "displayOrder", "updatedAt")
        VALUES ($1, $2, $3, $4, $5, $6, 'FIXED', $7::"BundleStatus", $8, $9, $10, $11::jsonb, $12,
                CURRENT_TIMESTAMP)
        """,
        bundle_id,
        shop,
        name or title,
        title,
        description,
        f"{bundle_id}-slug",
        status,
        metaobject_id,
        currency,
        featured_image,
        json.dumps(metadata) if metadata is not None else None,
        display_order,
    )
    for index, c in enumerate(components):
        await db.execute(
            """
            INSERT INTO "BundleComponent" (id, "bundleId", "shopifyProductId", "shopifyVariantId", quantity,
                "isRequired", "displayOrder", "priceAdjustmentType", "priceAdjustment", "cachedTitle",
                "cachedPrice", "cachedImageUrl", "cachedInventory", "updatedAt")
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::"PriceAdjustmentType", $9, $10, $11, $12, $13, CURRENT_TIMESTAMP)
            """,
            new_id(),
            bundle_id,
            c["productId"],
            c.get("variantId"),
            c.get("quantity", 1),
            c.get("isRequired", True),
            c.get("displayOrder", index),
            c.get("adjustmentType", "NONE"),
            Decimal(c["adjustment"]) if c.get("adjustment") is not None else None,
            c.get("title"),
            Decimal(c["price"]) if c.get("price") is not None else None,
            c.get("imageUrl"),
            c.get("inventory"),
        )
    for r in rules:
        await db.execute(
            """
            INSERT INTO "BundlePricingRule" (id, "bundleId", name, priority, "isActive", "ruleType", "discountType",
                "discountValue", "startsAt", "endsAt", "usageLimit", "usageCount", "updatedAt")
            VALUES ($1, $2, $3, $4, $5, $6::"PricingRuleType", $7::"DiscountType", $8, $9, $10, $11, $12,
                    CURRENT_TIMESTAMP)
            """,
            new_id(),
            bundle_id,
            r.get("name", "rule"),
            r.get("priority", 0),
            r.get("isActive", True),
            r.get("ruleType", "BUNDLE_DISCOUNT"),
            r.get("discountType", "PERCENTAGE"),
            Decimal(r["value"]),
            r.get("startsAt"),
            r.get("endsAt"),
            r.get("usageLimit"),
            r.get("usageCount", 0),
        )
    if inventory is not None:
        await db.execute(
            """
            INSERT INTO "BundleInventory" (id, "bundleId", "trackingMethod", "availableQuantity",
                "reservedQuantity", "allowOversell")
            VALUES ($1, $2, $3::"InventoryMethod", $4, $5, $6)
            """,
            new_id(),
            bundle_id,
            inventory.get("trackingMethod", "COMPONENT_BASED"),
            inventory.get("availableQuantity", 0),
            inventory.get("reservedQuantity", 0),
            inventory.get("allowOversell", False),
        )
    return bundle_id


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# ------------------------------------------------------------------------------------ app proxy auth

PROXY_PATHS = ["/bundles-for-product", "/v2/bundles", "/ai-bundles-for-product"]
#: Every endpoint under both prefixes: the legacy App Proxy URL ends in /api/proxy_route.
ENDPOINTS = [f"{prefix}{path}" for prefix in ("/proxy", "/api/proxy_route") for path in PROXY_PATHS]


def _product_param(path: str, value: str) -> dict[str, str]:
    return {"productId": value} if "ai-" in path else {"product_id": value}


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_valid_signature_is_served(client: httpx.AsyncClient, shop: str, path: str) -> None:
    response = await proxy_get(client, path, shop, _product_param(path, "1"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-bundle-read-source"] in {"legacy", "v2"}


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_tampered_parameter_is_401(client: httpx.AsyncClient, shop: str, path: str) -> None:
    params = dict(signed(shop, _product_param(path, "1")))
    key = "productId" if "ai-" in path else "product_id"
    params[key] = "2"  # changed after Shopify signed it
    assert_problem(await client.get(path, params=params), 401)


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_stale_timestamp_is_401(client: httpx.AsyncClient, shop: str, path: str) -> None:
    stale = int(time.time()) - 301  # default PROXY_SIGNATURE_MAX_AGE_S is 300
    response = await client.get(path, params=signed(shop, _product_param(path, "1"), timestamp=stale))
    assert_problem(response, 401)
    fresh_enough = int(time.time()) - 240
    response = await client.get(path, params=signed(shop, _product_param(path, "1"), timestamp=fresh_enough))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_missing_signature_is_401(client: httpx.AsyncClient, shop: str, path: str) -> None:
    params: QueryItems = [(k, v) for k, v in signed(shop, _product_param(path, "1")) if k != "signature"]
    assert_problem(await client.get(path, params=params), 401)
    # No parameters at all: still a 401 (not a 422), the signature is checked first.
    assert_problem(await client.get(path), 401)


async def test_wrong_secret_is_401(client: httpx.AsyncClient, shop: str) -> None:
    items: QueryItems = [("shop", shop), ("timestamp", str(int(time.time()))), ("product_id", "1")]
    items.append(("signature", sign_app_proxy_params(items, "not-the-secret")))
    assert_problem(await client.get("/proxy/v2/bundles", params=items), 401)


async def test_shop_comes_only_from_the_signed_parameters(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    victim, attacker = new_shop("victim"), new_shop("attacker")
    p = unique_number()
    await insert_v2_bundle(db, victim, [{"productId": product(p), "price": "10.00"}], title="Secret")

    # Signed for the attacker's shop; the victim named by a session token and by extra parameters.
    token = make_session_token(victim, API_KEY, API_SECRET)
    extra = {"product_id": str(p), "shop_domain": victim, "x_shop": victim}
    response = await client.get(
        "/proxy/v2/bundles", params=signed(attacker, extra), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"bundles": []}

    # The admin bearer token the client carries does not grant anything on /proxy either.
    response = await client.get("/proxy/v2/bundles", params={"shop": victim, "product_id": str(p)})
    assert_problem(response, 401)

    # A second `shop` appended to a request signed for the attacker: rejected, never "last one wins".
    params = [*signed(attacker, {"product_id": str(p)}), ("shop", victim)]
    assert_problem(await client.get("/proxy/v2/bundles", params=params), 401)

    # Signed for the victim: the victim's bundle.
    response = await proxy_get(client, "/proxy/v2/bundles", victim, {"product_id": str(p)})
    assert [b["title"] for b in response.json()["bundles"]] == ["Secret"]


@pytest.mark.parametrize(
    "bad", ["", "abc", "gid://shopify/Variant/1", "gid://shopify/Product/x", "1.5", "-1", "9" * 21]
)
@pytest.mark.parametrize("path", ENDPOINTS)
async def test_invalid_product_id_is_422(client: httpx.AsyncClient, shop: str, path: str, bad: str) -> None:
    body = assert_problem(await proxy_get(client, path, shop, _product_param(path, bad)), 422)
    assert body["errors"] and body["errors"][0]["field"].startswith("query.")


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_missing_product_id_is_422(client: httpx.AsyncClient, shop: str, path: str) -> None:
    assert_problem(await proxy_get(client, path, shop), 422)


# ------------------------------------------------------------------------------------ legacy array


async def _legacy_shop_with_bundle(
    db: asyncpg.Connection, sim: Any, shop: str, metaobject_id: str, fields: Mapping[str, str], discount_id: str
) -> None:
    token = f"shpat_{uuid.uuid4().hex}"
    await sim.put_shop(shop, token=token)
    await db.execute(
        "INSERT INTO session (id, content, shop) VALUES ($1, $2, $3)",
        f"offline_{shop}",
        json.dumps({"accessToken": token, "shop": shop, "scope": "read_metaobjects"}),
        shop,
    )
    await sim.add_metaobjects(shop, [{"id": metaobject_id, "type": "product-bundles", "fields": dict(fields)}])
    await db.execute(
        'INSERT INTO bundle_discount_id ("bundleId", "bundleName", "discountId", shop) VALUES ($1, $2, $3, $4)',
        metaobject_id,
        fields["bundle_name"],
        discount_id,
        shop,
    )


async def test_legacy_and_v2_paths_answer_the_same_array(
    client: httpx.AsyncClient, db: asyncpg.Connection, sim: Any, shop: str
) -> None:
    n = unique_number()
    p1, p2, other = product(n), product(n + 1), product(n + 2)
    metaobject_id = f"{METAOBJECT}{n}"
    await _legacy_shop_with_bundle(
        db,
        sim,
        shop,
        metaobject_id,
        {
            "bundle_name": "Summer Set",
            "bundle_title": "Summer Set — Été ☀",
            "description": "Two things that go together",
            "discount": "15",
            "products": json.dumps([p1, p2]),
            "created_at": "2024-05-01T10:00:00Z",
        },
        f"gid://shopify/DiscountAutomaticNode/{n}",
    )
    expected = [
        {
            "id": metaobject_id,
            "title": "Summer Set — Été ☀",
            "discount": "15",
            "description": "Two things that go together",
            "products": [p1, p2],
        }
    ]

    async with shop_flag(client, "V2_BUNDLE_ENGINE", shop, False):
        legacy = await proxy_get(client, "/proxy/bundles-for-product", shop, {"product_id": str(n)})
        assert legacy.status_code == 200, legacy.text
        assert legacy.headers["x-bundle-read-source"] == "legacy"
        assert legacy.json() == expected
        by_gid = await proxy_get(client, "/proxy/bundles-for-product", shop, {"product_id": p2})
        assert by_gid.json() == expected
        none = await proxy_get(client, "/proxy/bundles-for-product", shop, {"product_id": other})
        assert none.json() == []

    # The same bundle as the migration writes it into V2 (discount as a 15.00 percentage rule).
    await insert_v2_bundle(
        db,
        shop,
        [{"productId": p1, "price": "20.00"}, {"productId": p2, "price": "5.00"}],
        name="Summer Set",
        title="Summer Set — Été ☀",
        description="Two things that go together",
        metaobject_id=metaobject_id,
        rules=[{"name": "Bundle Discount", "value": "15.00"}],
    )
    # Not listed on the V2 path: a draft, and an AI bundle without a metaobject (legacy never listed those).
    await insert_v2_bundle(db, shop, [{"productId": p1}], title="Draft", status="DRAFT")
    await insert_v2_bundle(db, shop, [{"productId": p1}], title="AI", metadata={"source": "AI", "ai_bundle_id": "x"})

    async with shop_flag(client, "V2_BUNDLE_ENGINE", shop, True):
        v2 = await proxy_get(client, "/proxy/bundles-for-product", shop, {"product_id": str(n)})
        assert v2.status_code == 200, v2.text
        assert v2.headers["x-bundle-read-source"] == "v2"
        assert v2.json() == expected
        assert v2.content == legacy.content  # byte for byte: the theme cannot tell the stores apart
        assert (await proxy_get(client, "/proxy/bundles-for-product", shop, {"product_id": other})).json() == []
    for item in v2.json():
        LegacyBundle.model_validate(item)


async def test_legacy_path_messy_metaobject_and_ai_bundles(
    client: httpx.AsyncClient, db: asyncpg.Connection, sim: Any, shop: str
) -> None:
    """Legacy data as it really is: a `%` discount, products as objects, AI bundles with and without
    a metaobject. The array keeps the theme's shape: GIDs only, the percentage as a plain number."""
    n = unique_number()
    p1, p2 = product(n), product(n + 1)
    metaobject_id = f"{METAOBJECT}{n}"
    await _legacy_shop_with_bundle(
        db,
        sim,
        shop,
        metaobject_id,
        {
            "bundle_name": "Objects",
            "bundle_title": "",  # blank: the legacy reader falls back to the name
            "discount": " 12.50 % ",
            "products": json.dumps(
                [{"productId": p1, "variantId": f"gid://shopify/ProductVariant/{n}", "quantity": 2}, {"productId": p2}]
            ),
        },
        f"gid://shopify/DiscountAutomaticNode/{n}",
    )
    ai_metaobject = f"{METAOBJECT}{n + 1}"
    await sim.add_metaobjects(
        shop,
        [
            {
                "id": ai_metaobject,
                "type": "product-bundles",
                "fields": {"bundle_name": "AI", "bundle_title": "Goes well with", "discount": "10", "products": "[]"},
            }
        ],
    )
    await _ai_bundle(db, shop, p1, 0.9, bundled=[p2], metaobject=ai_metaobject)
    await _ai_bundle(db, shop, p1, 0.8, bundled=[p2])  # no metaobject: only /ai-bundles-for-product shows it
    await _ai_bundle(db, shop, p1, 0.7, bundled=[p2], active=False, metaobject=f"{METAOBJECT}{n + 2}")

    async with shop_flag(client, "V2_BUNDLE_ENGINE", shop, False):
        response = await proxy_get(client, "/proxy/bundles-for-product", shop, {"product_id": str(n)})
    assert response.status_code == 200, response.text
    assert sorted(response.json(), key=lambda b: b["id"]) == [
        {"id": metaobject_id, "title": "Objects", "discount": "12.5", "description": "", "products": [p1, p2]},
        {"id": ai_metaobject, "title": "Goes well with", "discount": "10", "description": "", "products": [p1, p2]},
    ]


async def test_legacy_path_shopify_failures_are_problems(
    client: httpx.AsyncClient, db: asyncpg.Connection, sim: Any
) -> None:
    n = unique_number()
    fields = {"bundle_name": "B", "bundle_title": "B", "discount": "5", "products": json.dumps([product(n)])}

    # No offline token (the app was uninstalled): Shopify cannot be asked. That is the shop's state,
    # not an upstream failure: 409 (shop-not-connected), never a 5xx.
    no_token = new_shop("notoken")
    await db.execute(
        'INSERT INTO bundle_discount_id ("bundleId", "bundleName", "discountId", shop) VALUES ($1, $2, $3, $4)',
        f"{METAOBJECT}{n}",
        "B",
        "gid://shopify/DiscountAutomaticNode/1",
        no_token,
    )
    async with shop_flag(client, "V2_BUNDLE_ENGINE", no_token, False):
        body = assert_problem(
            await proxy_get(client, "/proxy/bundles-for-product", no_token, {"product_id": str(n)}), 409
        )
    assert body["reason"] == "shop_unauthorized" and body["type"].endswith("/shop-not-connected")

    # Shopify answering 5xx only (nothing cached yet): a 503 after the client's retries.
    down = new_shop("down")
    await _legacy_shop_with_bundle(
        db, sim, down, f"{METAOBJECT}{n + 1}", fields, "gid://shopify/DiscountAutomaticNode/2"
    )
    await sim.set_faults(down, error5xx=1.0)
    try:
        async with shop_flag(client, "V2_BUNDLE_ENGINE", down, False):
            response = await proxy_get(client, "/proxy/bundles-for-product", down, {"product_id": str(n)})
            assert_problem(response, 503)
    finally:
        await sim.set_faults(down, error5xx=0.0)


async def test_v2_legacy_shape_uses_v2_id_and_normalised_discount(
    client: httpx.AsyncClient, db: asyncpg.Connection, shop: str
) -> None:
    n = unique_number()
    bundle_id = await insert_v2_bundle(
        db,
        shop,
        [{"productId": product(n + 1), "displayOrder": 2}, {"productId": product(n), "displayOrder": 1}],
        title="V2 only",
        rules=[
            {"value": "12.50", "priority": 1},
            {"value": "40", "priority": 9, "discountType": "FIXED_AMOUNT"},  # not a percentage: not the legacy one
            {"value": "90", "priority": 99, "isActive": False},
            {"value": "30", "priority": 50, "endsAt": utcnow() - timedelta(hours=1)},  # expired
            {"value": "30", "priority": 50, "usageLimit": 1, "usageCount": 1},  # used up
        ],
    )
    no_rule = await insert_v2_bundle(db, shop, [{"productId": product(n)}], title="No discount", display_order=1)
    async with shop_flag(client, "V2_BUNDLE_ENGINE", shop, True):
        response = await proxy_get(client, "/proxy/bundles-for-product", shop, {"product_id": str(n)})
    assert response.json() == [
        {
            "id": bundle_id,
            "title": "V2 only",
            "discount": "12.5",
            "description": "",
            "products": [product(n), product(n + 1)],
        },
        {"id": no_rule, "title": "No discount", "discount": "", "description": "", "products": [product(n)]},
    ]


# ------------------------------------------------------------------------------------ /proxy/v2/bundles


async def _priced_bundle(db: asyncpg.Connection, shop: str, n: int) -> str:
    """30.01 of components; a 15 % BUNDLE_DISCOUNT (legacy), a higher-priority 6.00 off (V2 engine),
    and rules the engine must ignore (inactive, expired, not yet started, used up, customer-bound)."""
    now = utcnow()
    return await insert_v2_bundle(
        db,
        shop,
        [
            {
                "productId": product(n),
                "variantId": f"gid://shopify/ProductVariant/{n}",
                "title": "Mug",
                "price": "19.99",
                "imageUrl": "https://cdn.example/mug.png",
                "inventory": 7,
            },
            {"productId": product(n + 1), "title": "Coaster", "price": "5.01", "quantity": 2, "inventory": 5},
        ],
        name="mug-set",
        title="Mug set",
        description="A mug and two coasters",
        currency="EUR",
        featured_image="https://cdn.example/set.png",
        rules=[
            {"value": "15.00", "priority": 0},
            {"value": "6.00", "priority": 5, "discountType": "FIXED_AMOUNT"},
            {"value": "50", "priority": 100, "isActive": False},
            {"value": "70", "priority": 50, "ruleType": "TIME_LIMITED", "endsAt": now - timedelta(hours=1)},
            {"value": "70", "priority": 50, "ruleType": "TIME_LIMITED", "startsAt": now + timedelta(hours=1)},
            {"value": "70", "priority": 50, "usageLimit": 3, "usageCount": 3},
            {"value": "70", "priority": 50, "ruleType": "MEMBER_PRICE"},
        ],
    )


async def test_v2_bundles_shape_and_legacy_pricing(
    client: httpx.AsyncClient, db: asyncpg.Connection, shop: str
) -> None:
    n = unique_number()
    bundle_id = await _priced_bundle(db, shop, n)
    async with shop_flag(client, "V2_PRICING_ENGINE", shop, False):
        response = await proxy_get(client, "/proxy/v2/bundles", shop, {"product_id": product(n + 1)})
    assert response.status_code == 200, response.text
    assert response.headers["x-bundle-read-source"] == "v2"
    body = response.json()
    assert body == {
        "bundles": [
            {
                "id": bundle_id,
                "name": "mug-set",
                "title": "Mug set",
                "description": "A mug and two coasters",
                "type": "FIXED",
                "featuredImage": "https://cdn.example/set.png",
                "components": [
                    {
                        "productId": product(n),
                        "variantId": f"gid://shopify/ProductVariant/{n}",
                        "quantity": 1,
                        "title": "Mug",
                        "price": "19.99",
                        "imageUrl": "https://cdn.example/mug.png",
                    },
                    {
                        "productId": product(n + 1),
                        "variantId": None,
                        "quantity": 2,
                        "title": "Coaster",
                        "price": "5.01",
                        "imageUrl": None,
                    },
                ],
                # Legacy: 15 % off 30.01 = 25.5085 → 25.51; 4.50 / 30.01 = 14.995 % → 15.00 (half-even, above half).
                "pricing": {
                    "originalPrice": "30.01",
                    "discountedPrice": "25.51",
                    "savings": "4.50",
                    "savingsPercentage": "15.00",
                    "currency": "EUR",
                },
                # min(7 // 1, 5 // 2) = 2 whole bundles.
                "inventory": {"available": 2, "isInStock": True},
            }
        ]
    }
    StorefrontBundlesResponse.model_validate(body)


async def test_v2_bundles_with_v2_pricing_engine(client: httpx.AsyncClient, db: asyncpg.Connection, shop: str) -> None:
    n = unique_number()
    await _priced_bundle(db, shop, n)
    async with shop_flag(client, "V2_PRICING_ENGINE", shop, True):
        response = await proxy_get(client, "/proxy/v2/bundles", shop, {"product_id": str(n)})
        assert response.status_code == 200, response.text
        # V2 engine: the FIXED_AMOUNT rule (priority 5) wins: 30.01 - 6.00; 6 / 30.01 = 19.993 %.
        assert response.json()["bundles"][0]["pricing"] == {
            "originalPrice": "30.01",
            "discountedPrice": "24.01",
            "savings": "6.00",
            "savingsPercentage": "19.99",
            "currency": "EUR",
        }
    # Another shop of the same service keeps its own setting (flags are per shop).
    other = new_shop()
    await _priced_bundle(db, other, n)
    async with shop_flag(client, "V2_PRICING_ENGINE", other, False):
        response = await proxy_get(client, "/proxy/v2/bundles", other, {"product_id": str(n)})
        assert response.json()["bundles"][0]["pricing"]["discountedPrice"] == "25.51"


async def test_migrated_bundle_prices_the_same_under_both_engines(
    client: httpx.AsyncClient, db: asyncpg.Connection, shop: str
) -> None:
    n = unique_number()
    await insert_v2_bundle(
        db,
        shop,
        [{"productId": product(n), "price": "10.00"}, {"productId": product(n + 1), "price": "0.25", "quantity": 3}],
        rules=[{"name": "Bundle Discount", "value": "12.50"}],
    )
    prices = []
    for engine in (False, True):
        async with shop_flag(client, "V2_PRICING_ENGINE", shop, engine):
            response = await proxy_get(client, "/proxy/v2/bundles", shop, {"product_id": str(n)})
            prices.append(response.json()["bundles"][0]["pricing"])
    # 10.75 * 0.875 = 9.40625 → 9.41
    assert prices[0] == prices[1]
    assert prices[0] == {
        "originalPrice": "10.75",
        "discountedPrice": "9.41",
        "savings": "1.34",
        "savingsPercentage": "12.47",
        "currency": "USD",
    }


async def test_v2_bundles_only_active_and_only_this_shop(
    client: httpx.AsyncClient, db: asyncpg.Connection, shop: str
) -> None:
    n = unique_number()
    comps = [{"productId": product(n), "price": "1.00"}]
    active = await insert_v2_bundle(db, shop, comps, title="active")
    second = await insert_v2_bundle(db, shop, [*comps, {"productId": product(n), "price": "2.00"}], title="twice")
    for status in ("DRAFT", "SCHEDULED", "PAUSED", "ARCHIVED"):
        await insert_v2_bundle(db, shop, comps, title=status, status=status)
    await insert_v2_bundle(db, new_shop(), comps, title="other shop")
    await insert_v2_bundle(db, shop, [{"productId": product(n + 1)}], title="other product")

    response = await proxy_get(client, "/proxy/v2/bundles", shop, {"product_id": str(n)})
    bundles = response.json()["bundles"]
    assert sorted(b["id"] for b in bundles) == sorted([active, second])  # each once, even with P twice
    assert {b["title"] for b in bundles} == {"active", "twice"}

    # A bundle paused later, even by SQL outside the service, disappears within the read model's
    # bound: its trigger notifies every replica, which drops the cached answer within 1 s.
    await db.execute("""UPDATE "Bundle" SET status = 'PAUSED' WHERE id = $1""", second)

    async def only_active() -> bool:
        response = await proxy_get(client, "/proxy/v2/bundles", shop, {"product_id": str(n)})
        return [b["id"] for b in response.json()["bundles"]] == [active]

    assert await eventually(only_active, timeout_s=1.0)



async def test_a_repeated_product_id_reads_the_last_one_as_signed(
    client: httpx.AsyncClient, db: asyncpg.Connection, shop: str
) -> None:
    """The query string is parsed once per request (`core/auth.query_items`) for the log context, the
    signature and the handler: a repeated parameter is signed as Shopify joins it ("a,b") and read
    as Starlette reads it (the last value), on both storefront routes and both prefixes."""
    first, last = unique_number(), unique_number()
    await insert_v2_bundle(db, shop, [{"productId": product(first), "price": "1.00"}], title="first")
    wanted = await insert_v2_bundle(db, shop, [{"productId": product(last), "price": "1.00"}], title="last")
    items: list[tuple[str, str]] = [
        ("shop", shop),
        ("logged_in_customer_id", ""),
        ("path_prefix", "/apps/proxy"),
        ("timestamp", str(int(time.time()))),
        ("product_id", str(first)),
        ("product_id", f"{PRODUCT}{last}"),
    ]
    query: QueryItems = [*items, ("signature", sign_app_proxy_params(items, API_SECRET))]
    async with shop_flag(client, "V2_BUNDLE_ENGINE", shop, True):
        for prefix in ("/proxy", "/api/proxy_route"):
            response = await client.get(f"{prefix}/v2/bundles", params=query)
            assert response.status_code == 200, response.text
            assert [b["id"] for b in response.json()["bundles"]] == [wanted]
            response = await client.get(f"{prefix}/bundles-for-product", params=query)
            assert response.status_code == 200, response.text
            assert [b["title"] for b in response.json()] == ["last"]
    tampered = [(k, str(first) if k == "product_id" else v) for k, v in query]  # both values now "first"
    assert (await client.get("/proxy/v2/bundles", params=tampered)).status_code == 401

async def test_v2_bundles_inventory_rules(client: httpx.AsyncClient, db: asyncpg.Connection, shop: str) -> None:
    n = unique_number()
    p = product(n)
    await insert_v2_bundle(
        db, shop, [{"productId": p, "inventory": 0}, {"productId": product(n + 1), "inventory": 9}], title="sold out"
    )
    await insert_v2_bundle(
        db,
        shop,
        [{"productId": p, "inventory": 0}],
        title="oversell",
        inventory={"allowOversell": True},
        display_order=1,
    )
    await insert_v2_bundle(
        db,
        shop,
        [{"productId": p, "inventory": 0}],
        title="specific",
        display_order=2,
        inventory={"trackingMethod": "BUNDLE_SPECIFIC", "availableQuantity": 5, "reservedQuantity": 2},
    )
    await insert_v2_bundle(
        db,
        shop,
        [{"productId": p, "inventory": 0}],
        title="unlimited",
        display_order=3,
        inventory={"trackingMethod": "UNLIMITED"},
    )
    await insert_v2_bundle(db, shop, [{"productId": p}], title="never synced", display_order=4)
    await insert_v2_bundle(
        db,
        shop,
        [{"productId": p, "inventory": 4}, {"productId": product(n + 1), "inventory": 0, "isRequired": False}],
        title="optional part",
        display_order=5,
    )
    response = await proxy_get(client, "/proxy/v2/bundles", shop, {"product_id": p})
    got = {b["title"]: b["inventory"] for b in response.json()["bundles"]}
    assert got == {
        "sold out": {"available": 0, "isInStock": False},
        "oversell": {"available": 0, "isInStock": True},
        "specific": {"available": 3, "isInStock": True},
        "unlimited": {"available": None, "isInStock": True},
        "never synced": {"available": None, "isInStock": True},
        "optional part": {"available": 4, "isInStock": True},
    }
    # Order: displayOrder, then creation.
    assert list(got) == ["sold out", "oversell", "specific", "unlimited", "never synced", "optional part"]


async def test_v2_bundles_unknown_prices(client: httpx.AsyncClient, db: asyncpg.Connection, shop: str) -> None:
    n = unique_number()
    await insert_v2_bundle(db, shop, [{"productId": product(n)}], rules=[{"value": "10"}])
    response = await proxy_get(client, "/proxy/v2/bundles", shop, {"product_id": str(n)})
    bundle = response.json()["bundles"][0]
    assert bundle["components"][0]["price"] is None
    assert bundle["pricing"] == {
        "originalPrice": "0.00",
        "discountedPrice": "0.00",
        "savings": "0.00",
        "savingsPercentage": "0.00",
        "currency": "USD",
    }


# ------------------------------------------------------------------------------------ query plan


def _plan_nodes(node: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)


def _assert_index_plan(plan: Mapping[str, Any]) -> None:
    nodes = list(_plan_nodes(plan))
    scans = [(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes]
    assert not [s for s in scans if s[0] == "Seq Scan" and s[1] == "BundleComponent"], scans
    # The product probe itself is an index lookup on one of BundleComponent's product indexes
    # (an index-only scan of sb_component_product_bundle_idx, or a bitmap over it, as the planner likes).
    product_indexes = {"sb_component_product_bundle_idx", "BundleComponent_shopifyProductId_idx"}
    assert [
        n for n in nodes if n.get("Index Name") in product_indexes and "shopifyProductId" in n.get("Index Cond", "")
    ], scans


async def test_v2_storefront_query_uses_indexes_not_a_seq_scan(db: asyncpg.Connection) -> None:
    prefix = f"plan{uuid.uuid4().hex[:6]}"
    base = unique_number() * 10_000
    # A few thousand components spread over many bundles of other shops, then fresh statistics.
    await db.execute(
        f"""
        INSERT INTO "Bundle" (id, shop, name, title, slug, status, "updatedAt")
        SELECT '{prefix}b' || g, '{prefix}-' || (g % 200) || '.myshopify.com', 'n', 't', 's' || g,
               'ACTIVE', CURRENT_TIMESTAMP
        FROM generate_series(1, 1500) AS g;
        INSERT INTO "BundleComponent" (id, "bundleId", "shopifyProductId", "displayOrder", "cachedPrice", "updatedAt")
        SELECT '{prefix}c' || g, '{prefix}b' || (g % 1500 + 1), 'gid://shopify/Product/' || ({base} + g % 2500),
               g % 4, 9.99, CURRENT_TIMESTAMP
        FROM generate_series(1, 6000) AS g;
        INSERT INTO "BundlePricingRule" (id, "bundleId", name, "discountValue", "updatedAt")
        SELECT '{prefix}r' || g, '{prefix}b' || g, 'r', 10, CURRENT_TIMESTAMP FROM generate_series(1, 1500) AS g;
        INSERT INTO "BundleInventory" (id, "bundleId") SELECT '{prefix}i' || g, '{prefix}b' || g
        FROM generate_series(1, 1500) AS g;
        """
    )
    shop = new_shop()
    await insert_v2_bundle(db, shop, [{"productId": product(base + 7), "price": "3.00"}])
    await db.execute(
        'ANALYZE "Bundle"; ANALYZE "BundleComponent"; ANALYZE "BundlePricingRule"; ANALYZE "BundleInventory"'
    )

    # The exact statement with the request's parameters (the custom plan of the first executions)...
    raw = await db.fetchval("EXPLAIN (FORMAT JSON) " + V2_BUNDLES_FOR_PRODUCT_SQL, shop, product(base + 7))
    _assert_index_plan(json.loads(raw)[0]["Plan"])
    # ...and the generic plan PostgreSQL may switch a prepared statement to after five executions
    # (asyncpg reuses its prepared statements), which cannot look at the parameter values.
    await db.execute(f"PREPARE sb_storefront_plan (text, text) AS {V2_BUNDLES_FOR_PRODUCT_SQL}")
    try:
        await db.execute("SET plan_cache_mode = force_generic_plan")
        # EXPLAIN EXECUTE takes no protocol parameters: literals (generated above, no quotes in them).
        raw = await db.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE sb_storefront_plan('{shop}', '{product(base + 7)}')")
        _assert_index_plan(json.loads(raw)[0]["Plan"])
    finally:
        await db.execute("RESET plan_cache_mode; DEALLOCATE sb_storefront_plan")
    # And the query returns what it should on this data.
    rows = await db.fetch(V2_BUNDLES_FOR_PRODUCT_SQL, shop, product(base + 7))
    assert len(rows) == 1


# ------------------------------------------------------------------------------------ AI bundles


async def _ai_bundle(
    db: asyncpg.Connection, shop: str, product_id: str, confidence: float, *, active: bool = True, **extra: Any
) -> str:
    bundle_id = new_id()
    await db.execute(
        """
        INSERT INTO ai_fbt_bundles (id, shop, "productId", "bundledProductIds", "confidenceScore", support, lift,
            "isActive", "variantGroupId", "bundleMetaobjectId", "discountId")
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        """,
        bundle_id,
        shop,
        product_id,
        extra.get("bundled", ["gid://shopify/Product/900"]),
        confidence,
        extra.get("support", 0.05),
        extra.get("lift", 1.8),
        active,
        extra.get("variant"),
        extra.get("metaobject"),
        extra.get("discount"),
    )
    return bundle_id


async def test_ai_bundles_without_config_are_disabled(
    client: httpx.AsyncClient, db: asyncpg.Connection, shop: str
) -> None:
    await _ai_bundle(db, shop, "123", 0.9)
    response = await proxy_get(client, "/proxy/ai-bundles-for-product", shop, {"productId": "123"})
    assert response.status_code == 200, response.text
    assert response.json() == {"bundles": [], "enabled": False}


async def test_ai_bundles_disabled_config(client: httpx.AsyncClient, db: asyncpg.Connection, shop: str) -> None:
    await db.execute('INSERT INTO ai_fbt_config (shop, "isEnabled") VALUES ($1, false)', shop)
    await _ai_bundle(db, shop, "123", 0.9)
    await db.execute(
        """INSERT INTO ai_bundle_ab_assignments (id, shop, "sessionId", "productId", "variantGroupId", "expiresAt")
           VALUES ($1, $2, 's1', '123', 'A', $3)""",
        new_id(),
        shop,
        utcnow() + timedelta(hours=1),
    )
    response = await proxy_get(client, "/proxy/ai-bundles-for-product", shop, {"productId": "123", "sessionId": "s1"})
    assert response.json() == {"bundles": [], "enabled": False}


async def test_ai_bundles_enabled(client: httpx.AsyncClient, db: asyncpg.Connection, shop: str) -> None:
    n = unique_number()
    # maxBundlesPerProduct bounds what the generator makes, not what the endpoint shows (legacy: 3).
    await db.execute('INSERT INTO ai_fbt_config (shop, "isEnabled", "maxBundlesPerProduct") VALUES ($1, true, 2)', shop)
    best = await _ai_bundle(
        db,
        shop,
        str(n),
        0.91,
        bundled=[product(n + 1), product(n + 2)],  # GIDs, as an older dual write stored them
        variant="A",
        metaobject=f"{METAOBJECT}{n}",
        discount=f"gid://shopify/DiscountAutomaticNode/{n}",
        support=0.125,
        lift=2.5,
    )
    second = await _ai_bundle(db, shop, product(n), 0.5, bundled=None, variant="B")  # stored as a GID
    third = await _ai_bundle(db, shop, str(n), 0.4, bundled=[str(n + 3)])
    await _ai_bundle(db, shop, str(n), 0.3, variant="A")  # a fourth: beyond the three shown
    await _ai_bundle(db, shop, str(n), 0.99, active=False)
    await _ai_bundle(db, new_shop(), str(n), 0.99)
    await _ai_bundle(db, shop, str(n + 1), 0.99)

    expected_best = {
        "id": best,
        "productId": str(n),
        "bundledProductIds": [str(n + 1), str(n + 2)],
        "confidenceScore": 0.91,
        "support": 0.125,
        "lift": 2.5,
        "variantGroupId": "A",
        "discountId": f"gid://shopify/DiscountAutomaticNode/{n}",
        "bundleMetaobjectId": f"{METAOBJECT}{n}",
    }
    expected_second = {
        "id": second,
        "productId": str(n),
        "bundledProductIds": [],
        "confidenceScore": 0.5,
        "support": 0.05,
        "lift": 1.8,
        "variantGroupId": "B",
        "discountId": None,
        "bundleMetaobjectId": None,
    }
    expected_third = {**expected_second, "id": third, "bundledProductIds": [str(n + 3)], "confidenceScore": 0.4}
    expected_third["variantGroupId"] = None
    expected_bundles = [expected_best, expected_second, expected_third]
    for product_id in (str(n), product(n)):
        response = await proxy_get(client, "/proxy/ai-bundles-for-product", shop, {"productId": product_id})
        assert response.status_code == 200, response.text
        assert response.headers["x-bundle-read-source"] == "legacy"
        assert response.json() == {"bundles": expected_bundles, "enabled": True}
        AiBundlesResponse.model_validate(response.json())

    # A/B: a session with a live assignment gets its group's bundles only (the stored product id of
    # the assignment may be either form); a group without bundles of this product falls back to all;
    # expired, foreign, other-product or absent assignments do not filter.
    now = utcnow()
    await db.executemany(
        """INSERT INTO ai_bundle_ab_assignments (id, shop, "sessionId", "productId", "variantGroupId", "assignedAt",
               "expiresAt") VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        [
            (new_id(), shop, "live-b", str(n), "B", now, now + timedelta(days=1)),
            (new_id(), shop, "live-a", product(n), "A", now, now + timedelta(days=1)),
            (new_id(), shop, "live-z", str(n), "Z", now, now + timedelta(days=1)),
            (new_id(), shop, "other-product", str(n + 1), "B", now, now + timedelta(days=1)),
            (new_id(), shop, "expired", str(n), "A", now - timedelta(days=2), now - timedelta(seconds=5)),
            (new_id(), new_shop(), "foreign", str(n), "A", now, now + timedelta(days=1)),
        ],
    )

    async def for_session(session: str) -> Any:
        response = await proxy_get(
            client, "/proxy/ai-bundles-for-product", shop, {"productId": str(n), "sessionId": session}
        )
        assert response.status_code == 200, response.text
        return response.json()

    assert await for_session("live-b") == {"bundles": [expected_second], "enabled": True, "variantGroupId": "B"}
    live_a = await for_session("live-a")
    assert [b["id"] for b in live_a["bundles"]] == [best, live_a["bundles"][1]["id"]]
    assert {b["variantGroupId"] for b in live_a["bundles"]} == {"A"} and live_a["variantGroupId"] == "A"
    assert await for_session("live-z") == {"bundles": expected_bundles, "enabled": True, "variantGroupId": "Z"}
    for session in ("other-product", "expired", "foreign", "unknown", ""):
        assert await for_session(session) == {"bundles": expected_bundles, "enabled": True}, session


async def test_ai_bundles_enabled_without_bundles(client: httpx.AsyncClient, db: asyncpg.Connection, shop: str) -> None:
    await db.execute('INSERT INTO ai_fbt_config (shop, "isEnabled") VALUES ($1, true)', shop)
    response = await proxy_get(client, "/proxy/ai-bundles-for-product", shop, {"productId": "5"})
    assert response.json() == {"bundles": [], "enabled": True}


def test_pricing_expectations_match_the_engine() -> None:
    """The literal prices above, recomputed with the engine, so a typo in a test cannot hide a bug."""
    from app.rules.pricing import PricedComponent, PricingRule, legacy_price, price_bundle

    parts = [PricedComponent(Decimal("19.99"), 1), PricedComponent(Decimal("5.01"), 2)]
    legacy = legacy_price(parts, Decimal("15"))
    assert (legacy.discounted_price, legacy.savings, legacy.savings_percentage) == (
        Decimal("25.51"),
        Decimal("4.50"),
        Decimal("15.00"),
    )
    rule = PricingRule(5, True, "FIXED_AMOUNT", Decimal("6"), None, None, None, 0)
    v2 = price_bundle(parts, [rule], now=datetime(2030, 1, 1))
    assert (v2.discounted_price, v2.savings_percentage) == (Decimal("24.01"), Decimal("19.99"))
