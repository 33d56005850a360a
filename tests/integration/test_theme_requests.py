"""The legacy theme scripts' requests, exactly as they reach the service through Shopify's App Proxy.

The legacy app's theme extension (`extensions/product-bundle/assets/bundle.js` and `ai-bundle.js`)
is installed in merchants' themes and will not change at the cutover. On a product page it sends:

* bundle.js: `GET /apps/proxy/bundles-for-product?product_id=<id>&shop=<Shopify.shop or "">`; it
  needs a JSON array, reads `length` and `[0].id`, `[0].title`, `[0].discount`.
* ai-bundle.js: `GET /apps/proxy/ai-bundles-for-product?shop=<shop>&productId=<id>&sessionId=<s>`
  (`sessionId` = `session_<9 base36 chars>_<ms>`); it reads `enabled`, `bundles` and of each bundle
  `id`, `productId`, `bundledProductIds` (`.includes`), `variantGroupId`, `confidenceScore`
  (`* 100`), `bundleMetaobjectId` (truthy: "add to cart" fetches `/products/<id>.js` for
  `[productId, ...bundledProductIds]`, so those must be numeric ids).
* ai-bundle.js, per AI bundle: `GET /apps/proxy/bundles-for-product?shop=<shop>&productId=<id>`
  (`productId`, not `product_id`: the legacy endpoint answered 400; the script then reads
  `data.bundles`, undefined, and shows nothing), and `POST /apps/proxy/ai/events/track` (no such
  route behind the legacy proxy either: 404, the script ignores the answer).

Shopify forwards `/apps/proxy/<rest>` to `<App Proxy URL>/<rest>` with the theme's query string
unchanged (so `shop` may come twice: the theme's and its own) and appends `shop`,
`logged_in_customer_id`, `path_prefix`, `timestamp`, `signature`. The signature is computed here
from shopify.md, independently of the service's code. The App Proxy URL is `<host>/api/proxy_route`
today; the service also serves `/proxy`. Each request is sent under both prefixes and on both read
paths (`V2_BUNDLE_ENGINE` off: legacy store, on: V2), without any admin credential.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, quote

import asyncpg
import httpx
import pytest

from app.core.ids import new_id
from app.core.time import utcnow
from tests.conftest import API_SECRET
from tests.integration.test_storefront import (
    _legacy_shop_with_bundle,
    insert_v2_bundle,
    shop_flag,
    unique_number,
)

PREFIXES = ("/api/proxy_route", "/proxy")
PRODUCT = "gid://shopify/Product/"
METAOBJECT = "gid://shopify/Metaobject/"


def shopify_signature(query: str) -> str:
    """shopify.md, "App proxy": every parameter but `signature`, a repeated key's values joined with
    ",", `key=value` unencoded, sorted, concatenated, HMAC-SHA256 hex with the app's secret."""
    grouped: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "signature":
            grouped.setdefault(key, []).append(value)
    message = "".join(sorted(f"{key}={','.join(values)}" for key, values in grouped.items()))
    return hmac.new(API_SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()


def forwarded(prefix: str, theme_path: str, shop: str) -> str:
    """The URL Shopify's App Proxy requests for the theme's `/apps/proxy/<theme_path>`."""
    path, _, theme_query = theme_path.partition("?")
    appended = (
        f"shop={shop}&logged_in_customer_id=&path_prefix={quote('/apps/proxy', safe='')}&timestamp={int(time.time())}"
    )
    query = f"{theme_query}&{appended}" if theme_query else appended
    return f"{prefix}/{path}?{query}&signature={shopify_signature(query)}"


@pytest.fixture
async def storefront(client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The same service instance as `client`, reached as Shopify reaches it: no Authorization header."""
    app = client.app  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test") as c:
        yield c


async def theme_get(storefront: httpx.AsyncClient, theme_path: str, shop: str) -> dict[str, httpx.Response]:
    """The theme's GET through the App Proxy under each prefix; the answers must be identical."""
    answers = {prefix: await storefront.get(forwarded(prefix, theme_path, shop)) for prefix in PREFIXES}
    first, second = answers.values()
    assert (first.status_code, first.content) == (second.status_code, second.content), theme_path
    assert first.headers.get("content-type") == second.headers.get("content-type")
    assert first.headers.get("x-bundle-read-source") == second.headers.get("x-bundle-read-source")
    return answers


def theme_session_id() -> str:
    """ai-bundle.js: 'session_' + Math.random().toString(36).substr(2, 9) + '_' + Date.now()."""
    return f"session_{uuid.uuid4().hex[:9]}_{int(time.time() * 1000)}"


def add_to_cart_urls(bundle: dict[str, Any]) -> list[str]:
    """What ai-bundle.js's handleAddToCart fetches (nothing without a metaobject)."""
    if not bundle["bundleMetaobjectId"]:
        return []
    return [f"/products/{pid}.js" for pid in [bundle["productId"], *bundle["bundledProductIds"]]]


async def test_legacy_theme_requests_through_both_prefixes_on_both_read_paths(
    client: httpx.AsyncClient, storefront: httpx.AsyncClient, db: asyncpg.Connection, sim: Any, shop: str
) -> None:
    n = unique_number()
    page, other, ai_other, ai_later, generated_other = n, n + 1, n + 2, n + 3, n + 4

    # A manual bundle of the page's product, in the legacy store and (as the migration copies it) in V2.
    manual = f"{METAOBJECT}{n}"
    await _legacy_shop_with_bundle(
        db,
        sim,
        shop,
        manual,
        {
            "bundle_name": "Camp Set",
            "bundle_title": "Camp Set",
            "description": "Tent and lantern",
            "discount": "15",
            "products": json.dumps([f"{PRODUCT}{page}", f"{PRODUCT}{other}"]),
        },
        f"gid://shopify/DiscountAutomaticNode/{n}",
    )
    await insert_v2_bundle(
        db,
        shop,
        [{"productId": f"{PRODUCT}{page}"}, {"productId": f"{PRODUCT}{other}"}],
        name="Camp Set",
        title="Camp Set",
        description="Tent and lantern",
        metaobject_id=manual,
        rules=[{"name": "Bundle Discount", "value": "15"}],
    )

    # An AI bundle written through the V2 API (dual write into ai_fbt_bundles), with its metaobject.
    ai_metaobject = f"{METAOBJECT}{n + 1}"
    ai_fields = {
        "bundle_name": "AI pair",
        "bundle_title": "Frequently Bought Together",
        "description": "Often bought with it",
        "discount": "10",
        "products": json.dumps([f"{PRODUCT}{page}", f"{PRODUCT}{ai_other}"]),
    }
    await sim.add_metaobjects(shop, [{"id": ai_metaobject, "type": "product-bundles", "fields": ai_fields}])
    created = await client.post(
        f"/api/v2/shops/{shop}/bundles",
        json={
            "name": "AI pair",
            "title": "Frequently Bought Together",
            "description": "Often bought with it",
            "status": "ACTIVE",
            "shopifyMetaobjectId": ai_metaobject,
            "components": [{"shopifyProductId": f"{PRODUCT}{page}"}, {"shopifyProductId": f"{PRODUCT}{ai_other}"}],
            "pricingRules": [{"name": "Bundle Discount", "discountType": "PERCENTAGE", "discountValue": "10"}],
            "discounts": [{"shopifyDiscountId": f"gid://shopify/DiscountAutomaticNode/{n + 1}"}],
            "metadata": {"source": "AI", "confidence": 0.9, "support": 0.1, "lift": 2.0},
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["legacySync"] == "synced"
    api_ai_id = created.json()["metadata"]["ai_bundle_id"]

    # An AI bundle as the legacy generator wrote it (numeric ids, an A/B variant group, no metaobject).
    generated_ai_id = new_id()
    await db.execute(
        """INSERT INTO ai_fbt_bundles (id, shop, "productId", "bundledProductIds", "confidenceScore", support, lift,
               "isActive", "variantGroupId") VALUES ($1, $2, $3, $4, 0.82, 0.05, 1.5, true, 'variant_abc123xyz')""",
        generated_ai_id,
        shop,
        str(page),
        [str(generated_other)],
    )
    await db.execute('INSERT INTO ai_fbt_config (shop, "isEnabled") VALUES ($1, true)', shop)
    assigned_session, new_session = theme_session_id(), theme_session_id()
    await db.execute(
        """INSERT INTO ai_bundle_ab_assignments (id, shop, "sessionId", "productId", "variantGroupId", "expiresAt")
           VALUES ($1, $2, $3, $4, 'variant_abc123xyz', $5)""",
        new_id(),
        shop,
        assigned_session,
        str(page),
        utcnow() + timedelta(days=7),
    )

    expected_array = [
        {
            "id": manual,
            "title": "Camp Set",
            "discount": "15",
            "description": "Tent and lantern",
            "products": [f"{PRODUCT}{page}", f"{PRODUCT}{other}"],
        },
        {
            "id": ai_metaobject,
            "title": "Frequently Bought Together",
            "discount": "10",
            "description": "Often bought with it",
            "products": [f"{PRODUCT}{page}", f"{PRODUCT}{ai_other}"],
        },
    ]
    api_ai = {
        "id": api_ai_id,
        "productId": str(page),
        "bundledProductIds": [str(ai_other)],
        "confidenceScore": 0.9,
        "variantGroupId": None,
        "bundleMetaobjectId": ai_metaobject,
    }
    generated_ai = {
        "id": generated_ai_id,
        "productId": str(page),
        "bundledProductIds": [str(generated_other)],
        "confidenceScore": 0.82,
        "variantGroupId": "variant_abc123xyz",
        "bundleMetaobjectId": None,
    }

    def consumed(bundles: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{key: b[key] for key in api_ai} for b in bundles]

    by_read_path: dict[bool, dict[str, bytes]] = {}
    for v2_reads in (False, True):
        async with shop_flag(client, "V2_BUNDLE_ENGINE", shop, v2_reads):
            source = "v2" if v2_reads else "legacy"
            seen: dict[str, bytes] = {}

            # bundle.js, with Shopify.shop set and with the fallback "" (the theme's own shop= is blank).
            for theme_shop in (shop, ""):
                answers = await theme_get(storefront, f"bundles-for-product?product_id={page}&shop={theme_shop}", shop)
                response = answers[PREFIXES[0]]
                assert response.status_code == 200, response.text
                assert response.headers["x-bundle-read-source"] == source
                bundles = response.json()
                assert isinstance(bundles, list) and len(bundles) > 0  # `bundles.length > 0`
                assert bundles == expected_array
                first = bundles[0]  # injectBundleDisplay(bundles[0]): title, discount, id
                assert (first["id"], first["title"], float(first["discount"])) == (manual, "Camp Set", 15.0)
                seen["bundle.js"] = response.content

            # ai-bundle.js loadAIBundles: a session assigned to the generator's variant group sees only
            # that group; a new session sees every active bundle, highest confidence first.
            for session, expected in ((assigned_session, [generated_ai]), (new_session, [api_ai, generated_ai])):
                answers = await theme_get(
                    storefront, f"ai-bundles-for-product?shop={shop}&productId={page}&sessionId={session}", shop
                )
                response = answers[PREFIXES[0]]
                assert response.status_code == 200, response.text
                data = response.json()
                assert data["enabled"] is True and len(data["bundles"]) > 0
                assert consumed(data["bundles"]) == expected, session
                for bundle in data["bundles"]:
                    assert isinstance(bundle["confidenceScore"], float)
                    for url in add_to_cart_urls(bundle):
                        assert re.fullmatch(r"/products/[0-9]+\.js", url), url
                seen[session] = response.content
            urls = add_to_cart_urls(consumed(json.loads(seen[new_session])["bundles"])[0])
            assert urls == [f"/products/{page}.js", f"/products/{ai_other}.js"]

            # ai-bundle.js loadBundleProducts: `productId=` where the endpoint takes `product_id`.
            # Legacy: 400 and the script reads `data.bundles` (undefined): nothing shown, no crash.
            answers = await theme_get(storefront, f"bundles-for-product?shop={shop}&productId={page}", shop)
            response = answers[PREFIXES[0]]
            assert 400 <= response.status_code < 500, response.text
            assert "bundles" not in response.json()

            # ai-bundle.js trackEvent: no such route behind the App Proxy, then as now.
            for prefix in PREFIXES:
                tracked = await storefront.post(
                    forwarded(prefix, "ai/events/track", shop),
                    json={"shop": shop, "bundleId": api_ai_id, "productId": str(page), "eventType": "impression"},
                )
                assert tracked.status_code == 404, tracked.text
            by_read_path[v2_reads] = seen

    # The flag changes which store answers, not one byte of what the theme receives.
    assert by_read_path[False] == by_read_path[True]

    # A merchant edit of the AI bundle through the V2 API keeps the storefront's numeric ids.
    patched = await client.patch(
        f"/api/v2/shops/{shop}/bundles/{created.json()['id']}",
        json={"components": [{"shopifyProductId": f"{PRODUCT}{page}"}, {"shopifyProductId": f"{PRODUCT}{ai_later}"}]},
    )
    assert patched.status_code == 200, patched.text
    row = await db.fetchrow('SELECT "productId", "bundledProductIds" FROM ai_fbt_bundles WHERE id = $1', api_ai_id)
    assert (row["productId"], row["bundledProductIds"]) == (str(page), [str(ai_later)])
    answers = await theme_get(
        storefront, f"ai-bundles-for-product?shop={shop}&productId={page}&sessionId={new_session}", shop
    )
    assert add_to_cart_urls(answers[PREFIXES[0]].json()["bundles"][0]) == [
        f"/products/{page}.js",
        f"/products/{ai_later}.js",
    ]


async def test_theme_shop_naming_another_shop_is_refused(storefront: httpx.AsyncClient, shop: str) -> None:
    """The theme's own `shop=` is signed too, but a request naming two different shops is forged."""
    for prefix in PREFIXES:
        response = await storefront.get(
            forwarded(prefix, "bundles-for-product?product_id=1&shop=victim.myshopify.com", shop)
        )
        assert response.status_code == 401, response.text
