"""The bundle API contract (api.md): create/read/update/delete, slugs, idempotency, ETags, auth, errors.

Reads here run with V2_BUNDLE_ENGINE on for the test's shop (the `v2_shop` fixture), so they do not
need Shopify; the legacy read path has its own tests (test_read_path.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from app.core.security import make_session_token
from tests.conftest import API_KEY, API_SECRET, new_shop
from tests.integration.bundle_helpers import (
    bundle_body,
    bundles_url,
    discount_gid,
    flag_override,
    product_gid,
)

PROBLEM = "application/problem+json"


@pytest.fixture
async def v2_shop(client: httpx.AsyncClient) -> AsyncIterator[str]:
    shop = new_shop("api")
    async with flag_override(client, "V2_BUNDLE_ENGINE", shop, True):
        yield shop


async def create(client: httpx.AsyncClient, shop: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await client.post(bundles_url(shop), json=body, headers=headers)


async def test_create_returns_location_etag_and_full_body(client: httpx.AsyncClient, v2_shop: str) -> None:
    product = product_gid()
    body = bundle_body(
        name="Café Crème Set",
        products=[product, "12345"],
        tags=["summer"],
        images=["https://cdn.example/a.png"],
        inventory={"trackingMethod": "BUNDLE_SPECIFIC", "bundleQuantity": 5},
        metadata={"note": "ünïcode ✓"},
    )
    response = await create(client, v2_shop, body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/api/v2/shops/{v2_shop}/bundles/{created['id']}"
    assert response.headers["etag"].startswith('W/"')
    assert created["slug"] == "cafe-creme-set"
    assert created["type"] == "FIXED" and created["status"] == "DRAFT"
    assert created["legacySync"] == "synced"
    assert [c["shopifyProductId"] for c in created["components"]] == [product, "gid://shopify/Product/12345"]
    assert [c["quantity"] for c in created["components"]] == [1, 2]
    assert created["pricingRules"][0]["discountValue"] == "15.00"
    assert created["inventory"]["trackingMethod"] == "BUNDLE_SPECIFIC"
    assert created["inventory"]["bundleQuantity"] == 5
    assert created["metadata"] == {"note": "ünïcode ✓"}
    assert created["createdAt"].endswith("Z") and created["updatedAt"].endswith("Z")

    read = await client.get(response.headers["location"])
    assert read.status_code == 200
    assert read.headers["x-bundle-read-source"] == "v2"
    assert read.headers["etag"] == response.headers["etag"]
    assert read.json() == {**created, "legacySync": None}


async def test_slugs_are_unique_per_shop(client: httpx.AsyncClient, v2_shop: str) -> None:
    first = await create(client, v2_shop, bundle_body(name="Gift Box"))
    second = await create(client, v2_shop, bundle_body(name="Gift Box"))
    assert (first.json()["slug"], second.json()["slug"]) == ("gift-box", "gift-box-2")
    other_shop = await create(client, new_shop(), bundle_body(name="Gift Box"))
    assert other_shop.json()["slug"] == "gift-box"

    taken = await create(client, v2_shop, bundle_body(slug="gift-box"))
    assert taken.status_code == 409
    assert taken.headers["content-type"].startswith(PROBLEM)
    assert taken.json()["detail"] == "slug taken"

    racing = await asyncio.gather(*(create(client, v2_shop, bundle_body(name="Race")) for _ in range(6)))
    assert all(r.status_code == 201 for r in racing)
    assert sorted(r.json()["slug"] for r in racing) == sorted(["race"] + [f"race-{n}" for n in range(2, 7)])


async def test_idempotency_key_replays_and_rejects_other_body(
    client: httpx.AsyncClient, v2_shop: str, db: asyncpg.Connection
) -> None:
    body = bundle_body()
    first = await create(client, v2_shop, body, **{"Idempotency-Key": "key-1"})
    again = await create(client, v2_shop, body, **{"Idempotency-Key": "key-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["location"] == first.headers["location"]
    assert again.headers.get("idempotent-replayed") == "true"

    other = await create(client, v2_shop, {**body, "name": "Something else"}, **{"Idempotency-Key": "key-1"})
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "header.Idempotency-Key"

    assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = $1', v2_shop) == 1
    bad_key = await create(client, v2_shop, bundle_body(), **{"Idempotency-Key": "x" * 300})
    assert bad_key.status_code == 422


async def test_concurrent_requests_with_one_key_create_one_bundle(
    client: httpx.AsyncClient, v2_shop: str, db: asyncpg.Connection
) -> None:
    body = bundle_body()
    responses = await asyncio.gather(*(create(client, v2_shop, body, **{"Idempotency-Key": "same"}) for _ in range(10)))
    assert [r.status_code for r in responses] == [201] * 10
    assert len({r.json()["id"] for r in responses}) == 1
    assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = $1', v2_shop) == 1
    assert await db.fetchval("SELECT count(*) FROM sb_idempotency_keys WHERE shop = $1", v2_shop) == 1


async def test_patch_honours_if_match_and_moves_the_etag(client: httpx.AsyncClient, v2_shop: str) -> None:
    created = await create(client, v2_shop, bundle_body(products=[product_gid(), product_gid()]))
    url = created.headers["location"]
    etag = created.headers["etag"]

    new_product = product_gid()
    patched = await client.patch(
        url,
        json={"title": "New title", "components": [{"shopifyProductId": new_product, "quantity": 3}]},
        headers={"If-Match": etag},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "New title"
    assert [(c["shopifyProductId"], c["quantity"]) for c in patched.json()["components"]] == [(new_product, 3)]
    assert patched.json()["name"] == created.json()["name"]  # untouched fields stay
    assert patched.headers["etag"] != etag

    stale = await client.patch(url, json={"title": "Lost update"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert stale.headers["content-type"].startswith(PROBLEM)

    # Back-to-back updates within one millisecond still get distinct ETags.
    tags = [patched.headers["etag"]]
    for i in range(3):
        r = await client.patch(url, json={"description": f"v{i}"}, headers={"If-Match": tags[-1]})
        assert r.status_code == 200
        tags.append(r.headers["etag"])
    assert len(set(tags)) == 4
    assert (await client.patch(url, json={"name": None})).status_code == 422
    cleared = await client.patch(url, json={"description": None})
    assert cleared.json()["description"] is None


async def test_delete_and_if_match_on_delete(client: httpx.AsyncClient, v2_shop: str, db: asyncpg.Connection) -> None:
    created = await create(client, v2_shop, bundle_body())
    url = created.headers["location"]
    await client.patch(url, json={"title": "changed"})
    assert (await client.delete(url, headers={"If-Match": created.headers["etag"]})).status_code == 412
    deleted = await client.delete(url)
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await client.get(url)).status_code == 404
    assert (await client.delete(url)).status_code == 404
    assert (await client.patch(url, json={"title": "x"})).status_code == 404
    bundle_id = created.json()["id"]
    assert await db.fetchval('SELECT count(*) FROM "BundleComponent" WHERE "bundleId" = $1', bundle_id) == 0


async def test_another_shops_bundle_is_404(client: httpx.AsyncClient, v2_shop: str) -> None:
    created = (await create(client, v2_shop, bundle_body())).json()
    other = new_shop("other")
    async with flag_override(client, "V2_BUNDLE_ENGINE", other, True):
        for ref in (created["id"], quote(created["shopifyMetaobjectId"], safe="")):
            assert (await client.get(bundles_url(other, ref))).status_code == 404
            assert (await client.patch(bundles_url(other, ref), json={"title": "x"})).status_code == 404
            assert (await client.delete(bundles_url(other, ref))).status_code == 404
    assert (await client.get(bundles_url(v2_shop, created["id"]))).status_code == 200


async def test_get_by_url_encoded_metaobject_gid(client: httpx.AsyncClient, v2_shop: str) -> None:
    created = (await create(client, v2_shop, bundle_body())).json()
    encoded = quote(created["shopifyMetaobjectId"], safe="")
    response = await client.get(bundles_url(v2_shop, encoded))
    assert response.status_code == 200
    assert response.json()["id"] == created["id"]
    patched = await client.patch(bundles_url(v2_shop, encoded), json={"title": "via gid"})
    assert patched.status_code == 200 and patched.json()["id"] == created["id"]


async def test_list_is_newest_first_paginated_and_filtered(client: httpx.AsyncClient, v2_shop: str) -> None:
    shared = product_gid()
    ids = []
    for i in range(5):
        body = bundle_body(
            name=f"List {i}",
            products=[shared if i % 2 == 0 else product_gid()],
            status="ACTIVE" if i < 2 else "DRAFT",
            type="MIX_MATCH" if i == 4 else "FIXED",
        )
        ids.append((await create(client, v2_shop, body)).json()["id"])
    url = bundles_url(v2_shop)

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await client.get(url, params=params)
        assert page.status_code == 200, page.text
        assert page.headers["x-bundle-read-source"] == "v2"
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["nextCursor"]
        pages += 1
        if cursor is None:
            break
    assert seen == list(reversed(ids)) and pages == 3

    async def ids_for(**params: Any) -> list[str]:
        response = await client.get(url, params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert set(await ids_for(status="ACTIVE")) == {ids[0], ids[1]}
    assert await ids_for(type="MIX_MATCH") == [ids[4]]
    expected = {ids[0], ids[2], ids[4]}
    assert set(await ids_for(productId=shared)) == expected
    assert set(await ids_for(productId=shared.rsplit("/", 1)[1])) == expected

    for params in ({"limit": 0}, {"limit": 201}, {"cursor": "garbage!"}, {"status": "NOPE"}, {"productId": "x"}):
        response = await client.get(url, params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
    forged = base64.urlsafe_b64encode(json.dumps({"k": "v2", "t": "nope", "i": 1}).encode()).decode()
    assert (await client.get(url, params={"cursor": forged})).status_code == 422


async def test_auth_session_tokens(client: httpx.AsyncClient, v2_shop: str) -> None:
    url = bundles_url(v2_shop)
    own = make_session_token(v2_shop, API_KEY, API_SECRET)
    assert (await client.get(url, headers={"Authorization": f"Bearer {own}"})).status_code == 200
    created = await client.post(url, json=bundle_body(), headers={"Authorization": f"Bearer {own}"})
    assert created.status_code == 201

    other = make_session_token(new_shop(), API_KEY, API_SECRET)
    assert (await client.get(url, headers={"Authorization": f"Bearer {other}"})).status_code == 403
    expired = make_session_token(v2_shop, API_KEY, API_SECRET, now=time.time() - 3600)
    assert (await client.get(url, headers={"Authorization": f"Bearer {expired}"})).status_code == 401

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {"iss": f"https://{v2_shop}/admin", "dest": f"https://{v2_shop}", "aud": API_KEY, "exp": now + 60}
    alg_none = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({**claims, 'nbf': now})}."
    response = await client.get(url, headers={"Authorization": f"Bearer {alg_none}"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM)
    assert (await client.get(url, headers={"Authorization": ""})).status_code == 401
    assert (await client.get(bundles_url("not a shop"))).status_code == 422
    assert (await client.get(bundles_url("evil.example.com"))).status_code == 422


async def test_validation_errors_name_the_field(client: httpx.AsyncClient, v2_shop: str) -> None:
    async def fields(body: Any) -> list[str]:
        response = await create(client, v2_shop, body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        return [e["field"] for e in response.json()["errors"]]

    base = bundle_body()
    assert "body.components.0.quantity" in await fields(
        {**base, "components": [{"shopifyProductId": "1", "quantity": 0}]}
    )
    assert "body.components" in await fields({**base, "components": []})
    assert "body.components" in await fields({**base, "components": [{"shopifyProductId": "1"}] * 101})
    assert "body.type" in await fields({**base, "type": "HUGE"})
    assert "body.name" in await fields({**base, "name": "   "})
    assert "body.shopifyMetaobjectId" in await fields({**base, "shopifyMetaobjectId": "gid://shopify/Product/1"})
    assert "body.components.0.shopifyProductId" in await fields(
        {**base, "components": [{"shopifyProductId": "gid://shopify/Metaobject/1"}]}
    )
    dup = discount_gid()
    assert "body.discounts.1.shopifyDiscountId" in await fields(
        {**base, "discounts": [{"shopifyDiscountId": dup}, {"shopifyDiscountId": dup}]}
    )
    assert "body.discounts.0.discountCode" in await fields(
        {**base, "discounts": [{"shopifyDiscountId": dup, "discountType": "code"}]}
    )
    assert "body.pricingRules.0.discountValue" in await fields(
        {**base, "pricingRules": [{"discountType": "PERCENTAGE", "discountValue": "150"}]}
    )
    assert "body.components.0.minQuantity" in await fields(
        {**base, "components": [{"shopifyProductId": "1", "minQuantity": 5, "maxQuantity": 1}]}
    )
    assert "body.surprise" in await fields({**base, "surprise": 1})


GARBAGE_BODIES: list[tuple[str, bytes, int]] = [
    ("malformed json", b'{"name": ', 400),
    ("trailing garbage", b"{}}", 400),
    ("array", b"[]", 422),
    ("null", b"null", 422),
    ("string", b'"bundle"', 422),
    ("empty object", b"{}", 422),
    ("wrong types", json.dumps({"name": 1, "title": [], "components": "many"}).encode(), 422),
    ("nulls", json.dumps({"name": None, "title": None, "components": None}).encode(), 422),
    ("nul char", json.dumps({**bundle_body(), "name": "a\x00b"}).encode(), 422),
    ("lone surrogate", b'{"name": "\\ud800", "title": "t", "components": [{"shopifyProductId": "1"}]}', 422),
    ("surrogate in metadata", json.dumps(bundle_body()).encode()[:-1] + b', "metadata": {"k": "\\udfff"}}', 422),
    ("nan in metadata", json.dumps(bundle_body()).encode()[:-1] + b', "metadata": {"k": NaN}}', 422),
    ("infinite price", json.dumps(bundle_body()).encode()[:-1] + b', "pricingRules": [{"discountValue": 1e400}]}', 422),
    ("huge string", json.dumps({**bundle_body(), "name": "x" * 300_000}).encode(), 422),
    (
        "huge int",
        json.dumps({**bundle_body(), "components": [{"shopifyProductId": "1", "quantity": 10**30}]}).encode(),
        422,
    ),
    (
        "negative quantity",
        json.dumps({**bundle_body(), "components": [{"shopifyProductId": "1", "quantity": -2}]}).encode(),
        422,
    ),
    (
        "bool quantity",
        json.dumps({**bundle_body(), "components": [{"shopifyProductId": "1", "quantity": "lots"}]}).encode(),
        422,
    ),
    ("101 components", json.dumps({**bundle_body(), "components": [{"shopifyProductId": "1"}] * 101}).encode(), 422),
    ("unknown enum", json.dumps({**bundle_body(), "status": "LIVE"}).encode(), 422),
    ("unicode everywhere", json.dumps({**bundle_body(), "tags": ["🎁" * 300]}).encode(), 422),
    (
        "deep metadata",
        json.dumps(bundle_body()).encode()[:-1] + b', "metadata": ' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"}",
        422,
    ),
    ("too deep json", b'{"metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
    (
        "bad date",
        json.dumps({**bundle_body(), "pricingRules": [{"discountValue": "1", "startsAt": "yesterday"}]}).encode(),
        422,
    ),
    ("over 1 MiB", json.dumps({**bundle_body(), "description": "x" * (1024 * 1024 + 10)}).encode(), 413),
]


@pytest.mark.parametrize(("label", "raw", "status"), GARBAGE_BODIES, ids=[g[0] for g in GARBAGE_BODIES])
async def test_garbage_bodies_are_problems_never_500(
    client: httpx.AsyncClient, v2_shop: str, label: str, raw: bytes, status: int
) -> None:
    headers = {"Content-Type": "application/json"}
    response = await client.post(bundles_url(v2_shop), content=raw, headers=headers)
    assert response.status_code == status, (label, response.text[:500])
    assert response.headers["content-type"].startswith(PROBLEM)
    if status != 413:
        created = (await create(client, v2_shop, bundle_body())).headers["location"]
        patched = await client.patch(created, content=raw, headers=headers)
        expected = {200} if label == "empty object" else {400, 413, 422}  # `{}` is a valid (empty) PATCH
        assert patched.status_code in expected, (label, patched.text[:500])


async def test_garbage_ids_and_query_params_are_never_500(client: httpx.AsyncClient, v2_shop: str) -> None:
    legacy_shop = new_shop("garbage")
    for shop in (v2_shop, legacy_shop):  # both read paths
        for ref in ("%00", "a%00b", "x" * 400, "%F0%9F%8E%81", "gid%3A%2F%2Fshopify%2FMetaobject%2F%00"):
            url = f"{bundles_url(shop)}/{ref}"
            # NUL cannot be stored in PostgreSQL text: the request guard refuses it (422) for every
            # input alike; other garbage is simply an unknown bundle.
            expected = 422 if "%00" in ref else 404
            for method in ("GET", "DELETE"):
                assert (await client.request(method, url)).status_code == expected, (shop, ref, method)
            assert (await client.patch(url, json={"title": "x"})).status_code == expected, (shop, ref)
        for params in ({"productId": "\x00"}, {"cursor": "\x00"}, {"limit": "many"}, {"type": "\x00"}):
            response = await client.get(bundles_url(shop), params=params)
            assert response.status_code == 422, (shop, params, response.text)
    response = await client.post(bundles_url(v2_shop), json=bundle_body(), headers={"Idempotency-Key": "ключ".encode()})
    assert response.status_code == 422
