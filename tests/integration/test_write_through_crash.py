"""Write-through create intents: a create that dies between its Shopify calls and its
commit, or whose discount create answer is lost, leaves no orphan metaobject or discount once the
dispatcher has handled the create's `compensate` intent; a committed create leaves no intent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from app.schemas.bundles import BundleCreate
from app.services.bundles import writes as bundles_service
from app.services.shopify_sync import write_through as wt
from app.services.shopify_sync.outbox import OutboxDispatcher
from app.shopify.client import ShopifyClient
from tests.integration.bundle_helpers import bundles_url, container_of, eventually, register_shop
from tests.integration.test_write_through import sim_metaobjects, wt_body, wt_client

GRACE_S = 0.2
#: No dispatcher in the app: each test runs one itself, once, after the grace period.
CRASH_SETTINGS: dict[str, Any] = {"OUTBOX_DISPATCHER": False, "CREATE_INTENT_GRACE_S": GRACE_S}


async def intents(db: asyncpg.Connection, shop: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT id, status, payload::text AS payload FROM sb_outbox WHERE shop = $1 AND op = 'compensate'", shop
    )
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]


async def run_dispatcher_once(pool: asyncpg.Pool, shopify: ShopifyClient) -> None:
    await asyncio.sleep(GRACE_S + 0.1)  # the intent is due
    dispatcher = OutboxDispatcher(pool, shopify, concurrency=1)
    while await dispatcher.deliver_one():
        pass


async def test_crash_between_shopify_create_and_commit_leaves_no_orphans(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """The process dies after the metaobject and the discount exist in Shopify and before the
    transaction (the service's Shopify step runs, then nothing): the due intent removes both."""
    await register_shop(sim, db, shop)
    async with wt_client(app_factory, **CRASH_SETTINGS) as client:
        container = container_of(client)
        body = BundleCreate.model_validate(wt_body())
        created = await wt.before_create(
            container,
            shop,
            body,
            "crash-key",
            bundle_id="crashed-bundle",
            request_hash=bundles_service._request_hash(body),
        )
        assert created is not None and created.discount_id is not None and created.intent_id is not None
        # ... killed here: no transaction, no compensation.
        assert [m["id"] for m in await sim_metaobjects(sim, shop)] == [created.metaobject_id]
        assert [d["id"] for d in await sim.list_discounts(shop)] == [created.discount_id]
        [intent] = await intents(db, shop)
        assert intent["status"] == "pending" and intent["payload"]["handle"] == created.handle

        await run_dispatcher_once(container.pool, container.shopify)
        assert [i["status"] for i in await intents(db, shop)] == ["delivered"]
    assert await sim_metaobjects(sim, shop) == []
    assert await sim.list_discounts(shop) == []
    assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = $1', shop) == 0


async def test_lost_discount_create_answer_is_found_by_title_and_deleted(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The discount create times out after Shopify applied it: the request fails (503), the
    metaobject is compensated at once, and the due intent finds the unknown discount by its title
    (and start time) and deletes it."""
    await register_shop(sim, db, shop)
    original = wt.create_discount

    async def answer_lost(shopify: ShopifyClient, target: str, state: Any, starts_at: str) -> str:
        await sim.set_faults(target, next_faults=[{"kind": "timeout", "sleepS": 5}])
        return await original(shopify, target, state, starts_at)

    monkeypatch.setattr(wt, "create_discount", answer_lost)
    async with wt_client(app_factory, SHOPIFY_TIMEOUT_S=0.5, **CRASH_SETTINGS) as client:
        container = container_of(client)
        response = await client.post(bundles_url(shop), json=wt_body(title="Lost answer"))
        assert response.status_code == 503, response.text
        assert response.json()["type"].endswith("shopify-unavailable")

        async def applied() -> bool:  # Shopify ran the create after the client gave up
            return len(await sim.list_discounts(shop)) == 1

        assert await eventually(applied, 10)
        assert await sim_metaobjects(sim, shop) == []  # compensated at once
        [intent] = await intents(db, shop)
        assert intent["status"] == "pending" and intent["payload"]["discountTitle"] == "Lost answer"

        await run_dispatcher_once(container.pool, container.shopify)
        assert [i["status"] for i in await intents(db, shop)] == ["delivered"]
    assert await sim.list_discounts(shop) == []
    assert await sim_metaobjects(sim, shop) == []


async def test_committed_create_leaves_no_intent_and_keeps_its_objects(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """The normal path: the create's transaction deletes its intent; a dispatcher run afterwards
    (and an older crashed attempt's intent with the same handle) leaves the bundle's objects alone."""
    await register_shop(sim, db, shop)
    async with wt_client(app_factory, **CRASH_SETTINGS) as client:
        container = container_of(client)
        created = await client.post(bundles_url(shop), json=wt_body(), headers={"Idempotency-Key": "ok-1"})
        assert created.status_code == 201, created.text
        assert await intents(db, shop) == []
        await run_dispatcher_once(container.pool, container.shopify)
        out = created.json()
        assert [m["id"] for m in await sim_metaobjects(sim, shop)] == [out["shopifyMetaobjectId"]]
        assert [d["id"] for d in await sim.list_discounts(shop)] == [out["discounts"][0]["shopifyDiscountId"]]


async def test_retry_commits_after_a_crashed_attempt_and_the_old_intent_keeps_its_objects(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """A crashed attempt, then the client's retry with the same key commits (reusing the metaobject):
    the crashed attempt's intent deletes only its own discount, never the committed bundle's objects."""
    await register_shop(sim, db, shop)
    payload = wt_body()
    async with wt_client(app_factory, **CRASH_SETTINGS) as client:
        container = container_of(client)
        body = BundleCreate.model_validate(payload)
        crashed = await wt.before_create(
            container, shop, body, "retry-key", bundle_id="crashed-1", request_hash=bundles_service._request_hash(body)
        )
        assert crashed is not None
        retried = await client.post(bundles_url(shop), json=payload, headers={"Idempotency-Key": "retry-key"})
        assert retried.status_code == 201, retried.text
        out = retried.json()
        assert out["shopifyMetaobjectId"] == crashed.metaobject_id
        await run_dispatcher_once(container.pool, container.shopify)
        assert [i["status"] for i in await intents(db, shop)] == ["delivered"]
    assert [m["id"] for m in await sim_metaobjects(sim, shop)] == [out["shopifyMetaobjectId"]]
    assert [d["id"] for d in await sim.list_discounts(shop)] == [out["discounts"][0]["shopifyDiscountId"]]


async def test_create_that_outlives_its_intent_does_not_commit_deleted_objects(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create stalled past the grace period: the dispatcher has already compensated it, so its
    transaction (which must delete a still pending intent) refuses to commit: 503, nothing kept."""
    await register_shop(sim, db, shop)
    original = wt.before_create
    async with wt_client(app_factory, **CRASH_SETTINGS) as client:
        container = container_of(client)

        async def stalled(*args: Any, **kwargs: Any) -> Any:
            created = await original(*args, **kwargs)
            await run_dispatcher_once(container.pool, container.shopify)
            return created

        monkeypatch.setattr(wt, "before_create", stalled)
        response = await client.post(bundles_url(shop), json=wt_body())
        assert response.status_code == 503, response.text
        assert response.json()["reason"] == "intent_expired"
    assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = $1', shop) == 0
    assert await sim_metaobjects(sim, shop) == []
    assert await sim.list_discounts(shop) == []
