"""Read path (api.md): V2_BUNDLE_ENGINE picks the store per shop; shadow reads compare the other one.

Legacy reads go to Shopify for real (the simulator, over HTTP): each test registers its shop there,
gives it an offline session row and creates the bundle metaobjects.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import asyncpg
import httpx

from app.core.db import create_pool
from app.services.migration.items.common import MigrationContext
from app.services.migration.items.dispatch import migrate_batch
from tests.conftest import new_shop
from tests.integration.bundle_helpers import (
    bundle_body,
    bundles_url,
    discount_gid,
    drain_shadow,
    eventually,
    flag_override,
    forget_legacy_cache,
    metaobject_gid,
    metaobject_item,
    product_gid,
    register_shop,
    retitled_metaobject,
)
from tests.legacy_fixtures import shopify_client

PROBLEM = "application/problem+json"


async def seeded_bundle(
    client: httpx.AsyncClient, sim: Any, shop: str, *, title: str = "Legacy title", discount: str = "15"
) -> dict[str, Any]:
    """A bundle created through the API (dual-written) whose metaobject exists in the simulator."""
    metaobject, products = metaobject_gid(), [product_gid(), product_gid()]
    name = f"Bundle {metaobject[-6:]}"
    await sim.add_metaobjects(
        shop, [metaobject_item(metaobject, name=name, title=title, discount=discount, products=products)]
    )
    body = bundle_body(name=name, metaobject=metaobject, products=products, percent=discount)
    body["title"] = title
    body["components"] = [{"shopifyProductId": p} for p in products]
    response = await client.post(bundles_url(shop), json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_legacy_store_answers_by_default(
    client: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    await register_shop(sim, db, shop)
    created = await seeded_bundle(client, sim, shop, title="Title in Shopify")
    await client.patch(bundles_url(shop, created["id"]), json={"title": "Title only in V2"})
    metaobject = created["shopifyMetaobjectId"]

    response = await client.get(bundles_url(shop, quote(metaobject, safe="")))
    assert response.status_code == 200, response.text
    assert response.headers["x-bundle-read-source"] == "legacy"
    assert "etag" not in response.headers
    legacy = response.json()
    assert legacy["id"] == created["id"]  # the V2 id: ids do not change with the read flag
    assert legacy["shopifyMetaobjectId"] == metaobject
    assert legacy["title"] == "Title in Shopify"  # the metaobject's content, not the V2 row
    assert legacy["name"] == created["name"]
    assert legacy["status"] == "ACTIVE"
    assert sorted(c["shopifyProductId"] for c in legacy["components"]) == sorted(
        c["shopifyProductId"] for c in created["components"]
    )
    assert legacy["pricingRules"][0]["discountValue"] == "15.00"
    assert legacy["discounts"][0]["shopifyDiscountId"] == created["discounts"][0]["shopifyDiscountId"]
    assert set(legacy) == set(created)  # same response schema on both paths

    by_v2_id = await client.get(bundles_url(shop, created["id"]))
    assert by_v2_id.headers["x-bundle-read-source"] == "legacy"
    assert by_v2_id.json() == legacy
    listed = await client.get(bundles_url(shop))
    assert listed.headers["x-bundle-read-source"] == "legacy"
    assert [item["id"] for item in listed.json()["items"]] == [created["id"]]

    # A V2-only bundle (not representable in the legacy table) does not exist for the legacy store.
    v2_only = (await client.post(bundles_url(shop), json=bundle_body(metaobject=None))).json()
    assert (await client.get(bundles_url(shop, v2_only["id"]))).status_code == 404


async def test_flag_switches_one_shop_only(client: httpx.AsyncClient, sim: Any, db: asyncpg.Connection) -> None:
    switched, untouched = new_shop("rs"), new_shop("rs")
    bundles = {}
    for shop in (switched, untouched):
        await register_shop(sim, db, shop)
        bundles[shop] = await seeded_bundle(client, sim, shop)

    async def source(shop: str) -> str:
        response = await client.get(bundles_url(shop, bundles[shop]["id"]))
        assert response.status_code == 200, response.text
        value: str = response.headers["x-bundle-read-source"]
        return value

    assert (await source(switched), await source(untouched)) == ("legacy", "legacy")
    async with flag_override(client, "V2_BUNDLE_ENGINE", switched, True):
        assert await source(switched) == "v2"
        assert await source(untouched) == "legacy"
        listed = await client.get(bundles_url(switched))
        assert listed.headers["x-bundle-read-source"] == "v2"
        assert [i["id"] for i in listed.json()["items"]] == [bundles[switched]["id"]]
        legacy_cursor = (await client.get(bundles_url(untouched), params={"limit": 1})).json()["nextCursor"]
        assert legacy_cursor is None
    assert await source(switched) == "legacy"


async def test_legacy_list_pages_filters_and_ai_rows(
    client: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    await register_shop(sim, db, shop)
    first = await seeded_bundle(client, sim, shop)
    second = await seeded_bundle(client, sim, shop)
    # An unmigrated legacy bundle (no V2 row at all) and an AI bundle straight from the legacy tables.
    legacy_only, product = metaobject_gid(), product_gid()
    await sim.add_metaobjects(
        shop, [metaobject_item(legacy_only, name="Old one", title="Old", discount="10 %", products=[product])]
    )
    await db.execute(
        'INSERT INTO bundle_discount_id ("bundleId", "bundleName", "discountId", shop) VALUES ($1, $2, $3, $4)',
        legacy_only,
        "Old one",
        discount_gid(),
        shop,
    )
    await db.execute(
        'INSERT INTO ai_fbt_bundles (id, shop, "productId", "bundledProductIds", "confidenceScore", support, lift, '
        '"isActive") VALUES ($1, $2, $3, ARRAY[$4], 0.5, 0.1, 1.2, false)',
        f"cai{shop[:8]}",
        shop,
        product,
        product_gid(),
    )
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await client.get(bundles_url(shop), params=params)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["nextCursor"]
        if cursor is None:
            break
    ids = [i["id"] for i in items]
    # bundles with a V2 row answer with their V2 id, legacy-only ones with their legacy id
    assert sorted(ids) == sorted([first["id"], second["id"], legacy_only, f"cai{shop[:8]}"])
    old = next(i for i in items if i["id"] == legacy_only)
    assert (old["title"], old["pricingRules"][0]["discountValue"]) == ("Old", "10.00")
    ai = next(i for i in items if i["id"] == f"cai{shop[:8]}")
    assert (ai["status"], ai["metadata"]["source"], ai["title"]) == ("PAUSED", "AI", "Frequently Bought Together")

    with_product = await client.get(bundles_url(shop), params={"productId": product.rsplit("/", 1)[1]})
    assert sorted(i["id"] for i in with_product.json()["items"]) == sorted([legacy_only, f"cai{shop[:8]}"])
    paused = await client.get(bundles_url(shop), params={"status": "PAUSED"})
    assert [i["id"] for i in paused.json()["items"]] == [f"cai{shop[:8]}"]
    assert (await client.get(bundles_url(shop, f"cai{shop[:8]}"))).json()["id"] == f"cai{shop[:8]}"

    async with flag_override(client, "V2_BUNDLE_ENGINE", shop, True):
        other_source = await client.get(bundles_url(shop), params={"cursor": page.json().get("nextCursor") or ""})
        assert other_source.status_code == 200
        first_v2 = await client.get(bundles_url(shop), params={"limit": 1})
        v2_cursor = first_v2.json()["nextCursor"]
    stale = await client.get(bundles_url(shop), params={"cursor": v2_cursor})
    assert stale.status_code == 422  # a V2 cursor cannot continue a legacy listing


async def test_shopify_failures_are_problems_not_500(
    client: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    await register_shop(sim, db, shop)
    created = await seeded_bundle(client, sim, shop)
    url = bundles_url(shop, quote(created["shopifyMetaobjectId"], safe=""))
    await sim.set_faults(shop, error5xx=1.0)
    try:
        failing = await client.get(url)
        assert failing.status_code == 503, failing.text
        assert failing.headers["content-type"].startswith(PROBLEM)
        assert failing.json()["reason"] == "shopify_unavailable"
        assert (await client.get(bundles_url(shop))).status_code == 503
    finally:
        await sim.set_faults(shop, error5xx=0.0)
    assert (await client.get(url)).status_code == 200

    # Stale-if-error: once cached, a Shopify outage is bridged (cache entry older than the TTL).
    reader_cache = client.app.state.container.legacy_reader.cache  # type: ignore[attr-defined]
    reader_cache.ttl_s = 0.0
    await sim.set_faults(shop, error5xx=1.0)
    try:
        assert (await client.get(url)).status_code == 200
    finally:
        reader_cache.ttl_s = client.app.state.container.settings.legacy_read_cache_ttl_s  # type: ignore[attr-defined]
        await sim.set_faults(shop, error5xx=0.0)

    no_token = new_shop("notoken")
    await sim.put_shop(no_token, token="whatever")
    created = (await client.post(bundles_url(no_token), json=bundle_body())).json()
    response = await client.get(bundles_url(no_token, created["id"]))
    assert response.status_code == 409, response.text  # the shop's state, not an upstream failure
    assert response.json()["reason"] == "shop_unauthorized"


async def test_shadow_reads_record_differences_without_changing_the_answer(
    client: httpx.AsyncClient, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    await register_shop(sim, db, shop)
    drifted = await seeded_bundle(client, sim, shop)
    consistent = await seeded_bundle(client, sim, shop)
    drifted_url = bundles_url(shop, quote(drifted["shopifyMetaobjectId"], safe=""))
    consistent_url = bundles_url(shop, quote(consistent["shopifyMetaobjectId"], safe=""))

    await db.execute(
        'UPDATE bundle_discount_id SET "bundleName" = $2 WHERE "bundleId" = $1',
        drifted["shopifyMetaobjectId"],
        "Renamed behind our back",
    )
    plain = await client.get(drifted_url)
    assert plain.status_code == 200 and plain.json()["name"] == "Renamed behind our back"

    async with flag_override(client, "SHADOW_READS", shop, True, sampleRate=1.0):
        shadowed = await client.get(drifted_url)
        assert shadowed.status_code == 200
        assert shadowed.content == plain.content
        assert shadowed.headers["x-bundle-read-source"] == "legacy"
        assert (await client.get(consistent_url)).status_code == 200
        listed = await client.get(bundles_url(shop))
        assert listed.status_code == 200
        await drain_shadow(client)

        async with flag_override(client, "V2_BUNDLE_ENGINE", shop, True):
            v2_answer = await client.get(bundles_url(shop, drifted["id"]))
            assert v2_answer.headers["x-bundle-read-source"] == "v2"
            await drain_shadow(client)

    async def mismatches() -> list[dict[str, Any]]:
        response = await client.get("/admin/shadow-mismatches", params={"shop": shop})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    assert await eventually(lambda: _has(mismatches, 3))
    found = await mismatches()
    assert {m["bundleKey"] for m in found} == {drifted["shopifyMetaobjectId"]}
    assert all(m["fields"] == ["name"] for m in found)
    assert {m["endpoint"] for m in found} == {
        "GET /api/v2/shops/{shop}/bundles/{bundleId}",
        "GET /api/v2/shops/{shop}/bundles",
    }
    assert found[0]["legacy"]["name"] == "Renamed behind our back"
    assert found[0]["v2"]["name"] == drifted["name"]

    first_page = await client.get("/admin/shadow-mismatches", params={"shop": shop, "limit": 2})
    rest = await client.get(
        "/admin/shadow-mismatches", params={"shop": shop, "limit": 2, "cursor": first_page.json()["nextCursor"]}
    )
    paged = [m["id"] for m in first_page.json()["items"] + rest.json()["items"]]
    assert paged == [m["id"] for m in found] and rest.json()["nextCursor"] is None
    assert (await client.get("/admin/shadow-mismatches", headers={"Authorization": ""})).status_code == 401
    assert (await client.get("/admin/shadow-mismatches", params={"shop": "nope"})).status_code == 422

    # Shopify content drift is seen too (title changed in the metaobject).
    forget_legacy_cache(client, shop)
    item = retitled_metaobject(consistent, "Edited in Shopify")
    await sim.add_metaobjects(shop, [item])
    async with flag_override(client, "SHADOW_READS", shop, True, sampleRate=1.0):
        assert (await client.get(consistent_url)).json()["title"] == "Edited in Shopify"
        await drain_shadow(client)
    latest = (await mismatches())[0]
    assert (latest["bundleKey"], latest["fields"]) == (consistent["shopifyMetaobjectId"], ["title"])


async def _has(fetch: Any, count: int) -> bool:
    return len(await fetch()) >= count


async def test_ids_do_not_change_with_the_read_flag(
    client: httpx.AsyncClient, sim: Any, simulator: Any, shop: str, db: asyncpg.Connection, db_url: str
) -> None:
    """Whatever the flag, a bundle that has a V2 row answers with its V2 id (by V2 id, by metaobject
    GID, by legacy AI id, in lists); only bundles with no V2 row yet answer with their legacy id."""
    await register_shop(sim, db, shop)
    created = [await seeded_bundle(client, sim, shop) for _ in range(3)]
    legacy_only, product = metaobject_gid(), product_gid()
    await sim.add_metaobjects(
        shop, [metaobject_item(legacy_only, name="Unmigrated", title="Unmigrated", discount="10", products=[product])]
    )
    await db.execute(
        'INSERT INTO bundle_discount_id ("bundleId", "bundleName", "discountId", shop) VALUES ($1, $2, $3, $4)',
        legacy_only,
        "Unmigrated",
        discount_gid(),
        shop,
    )
    migrated_ai, unmigrated_ai = f"caim{shop[:8]}", f"caiu{shop[:8]}"
    for ai_id in (migrated_ai, unmigrated_ai):
        await db.execute(
            'INSERT INTO ai_fbt_bundles (id, shop, "productId", "bundledProductIds", "confidenceScore", support, '
            "lift) VALUES ($1, $2, $3, ARRAY[$4], 0.5, 0.1, 1.2)",
            ai_id,
            shop,
            product_gid(),
            product_gid(),
        )
    pool = await create_pool(db_url, max_size=2)
    try:
        async with shopify_client(pool, simulator.url_template) as shopify:
            [outcome] = await migrate_batch(
                MigrationContext(pool=pool, shopify=shopify), shop, "ai_bundle", [migrated_ai]
            )
    finally:
        await pool.close()
    assert outcome.status == "migrated" and outcome.v2_id
    expected = {b["shopifyMetaobjectId"]: b["id"] for b in created}
    expected |= {legacy_only: legacy_only, migrated_ai: outcome.v2_id, unmigrated_ai: unmigrated_ai}

    async def listing() -> tuple[set[str], set[str]]:
        ids: set[str] = set()
        sources: set[str] = set()
        cursor = None
        while True:
            page = await client.get(bundles_url(shop), params={"limit": 2, **({"cursor": cursor} if cursor else {})})
            assert page.status_code == 200, page.text
            sources.add(page.headers["x-bundle-read-source"])
            ids |= {i["id"] for i in page.json()["items"]}
            cursor = page.json()["nextCursor"]
            if cursor is None:
                return ids, sources

    async def get(ref: str) -> tuple[str, str]:
        response = await client.get(bundles_url(shop, quote(ref, safe="")))
        assert response.status_code == 200, (ref, response.text)
        return response.json()["id"], response.headers["x-bundle-read-source"]

    # legacy read path (the default)
    assert await listing() == (set(expected.values()), {"legacy"})  # paging by legacy id loses nothing
    for key, want in expected.items():
        assert await get(key) == (want, "legacy"), key
        if want != key:
            assert await get(want) == (want, "legacy"), want
    # V2 read path: the same ids for what V2 holds
    async with flag_override(client, "V2_BUNDLE_ENGINE", shop, True):
        v2_ids, sources = await listing()
        assert sources == {"v2"}
        assert v2_ids == {b["id"] for b in created} | {outcome.v2_id}
        for key, want in expected.items():
            if want != key:
                assert await get(key) == (want, "v2")
                assert await get(want) == (want, "v2")
