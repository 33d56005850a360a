"""The storefront read model's invalidation: triggers notify every shop a write touches, and each
replica's listener drops that shop's cached answers within a second."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.migrations import downgrade, upgrade_async
from app.core.read_cache import InvalidationListener, ReadCache
from app.core.security import sign_app_proxy_params
from app.repos import storefront as storefront_repo
from app.services.storefront import reads as storefront
from tests import pg
from tests.conftest import API_SECRET, new_shop
from tests.integration.bundle_helpers import (
    bundle_body,
    bundles_url,
    metaobject_item,
    product_gid,
    register_shop,
)

CHANNEL = "sb_storefront_changed"
NOTIFIED_TABLES = {"Bundle", "BundleComponent", "BundlePricingRule", "BundleInventory"}


class Notifications:
    """Collects the payloads of `CHANNEL` on a dedicated connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.payloads: list[str] = []

    def on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self.payloads.append(str(payload))

    async def settle(self) -> list[str]:
        """Everything committed so far (a marker of our own arrives after it), then reset."""
        marker = f"~test-{uuid.uuid4().hex}"
        await self.conn.execute("SELECT pg_notify($1, $2)", CHANNEL, marker)
        deadline = time.monotonic() + 5
        while marker not in self.payloads:
            assert time.monotonic() < deadline, "own marker never arrived"
            await asyncio.sleep(0.005)
        seen = [p for p in self.payloads if not p.startswith("~")]
        self.payloads.clear()
        return seen


@pytest.fixture
async def notifications(db_url: str) -> AsyncIterator[Notifications]:
    conn = await pg.connect(db_url)
    collector = Notifications(conn)
    await conn.add_listener(CHANNEL, collector.on_notify)
    try:
        await collector.settle()
        yield collector
    finally:
        await conn.close()


async def insert_bundle(db: asyncpg.Connection, shop: str, product: str = "gid://shopify/Product/1") -> str:
    bundle_id = "sc" + uuid.uuid4().hex[:20]
    await db.execute(
        'INSERT INTO "Bundle" (id, shop, name, title, slug, status, "updatedAt") '
        "VALUES ($1, $2, 'Cache', 'Cache set', $1, 'ACTIVE', CURRENT_TIMESTAMP)",
        bundle_id,
        shop,
    )
    await db.execute(
        'INSERT INTO "BundleComponent" (id, "bundleId", "shopifyProductId", "cachedPrice", "updatedAt") '
        "VALUES ($1 || 'c', $1, $2, 20.00, CURRENT_TIMESTAMP)",
        bundle_id,
        product,
    )
    return bundle_id


def shops() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"a-{tag}.myshopify.com", f"b-{tag}.myshopify.com"


def test_every_table_the_storefront_reads_is_notified() -> None:
    """A table added to the storefront's SQL without a trigger would serve stale answers."""
    read = set()
    for sql in (storefront_repo.V2_BUNDLES_FOR_PRODUCT_SQL, storefront_repo.LEGACY_SHAPE_FOR_PRODUCT_SQL):
        read |= set(re.findall(r'(?:FROM|JOIN)\s+"(\w+)"', sql))
    assert read == NOTIFIED_TABLES


async def test_triggers_exist_on_every_notified_table(db: asyncpg.Connection) -> None:
    rows = await db.fetch(
        "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgname LIKE 'sb_storefront_notify_%' AND NOT t.tgisinternal"
    )
    found = {(r["relname"], r["tgname"]) for r in rows}
    expected = {
        (table, f"sb_storefront_notify_{suffix}")
        for table in NOTIFIED_TABLES
        for suffix in ("ins", "upd", "del", "trunc")
    }
    assert found == expected


async def test_writes_notify_the_shops_they_touch(db: asyncpg.Connection, notifications: Notifications) -> None:
    shop_a, shop_b = shops()
    bundle_a = await insert_bundle(db, shop_a)
    assert await notifications.settle() == [shop_a, shop_a]  # one per statement (two transactions)
    bundle_b = await insert_bundle(db, shop_b)
    await notifications.settle()

    # Child tables map to the shop through "Bundle".
    await db.execute(
        'INSERT INTO "BundlePricingRule" (id, "bundleId", name, "discountValue", "updatedAt") '
        "VALUES ($1 || 'r', $1, 'Bundle Discount', 10, CURRENT_TIMESTAMP)",
        bundle_a,
    )
    assert await notifications.settle() == [shop_a]
    await db.execute(
        'INSERT INTO "BundleInventory" (id, "bundleId") VALUES ($1 || \'i\', $1)',
        bundle_b,
    )
    assert await notifications.settle() == [shop_b]
    await db.execute('UPDATE "BundlePricingRule" SET "discountValue" = 20 WHERE "bundleId" = $1', bundle_a)
    assert await notifications.settle() == [shop_a]

    # A component moved from a bundle of shop A to one of shop B: both shops' answers change.
    await db.execute('UPDATE "BundleComponent" SET "bundleId" = $2 WHERE "bundleId" = $1', bundle_a, bundle_b)
    assert sorted(await notifications.settle()) == sorted([shop_a, shop_b])

    # One statement touching two shops notifies each once; an UPDATE matching nothing notifies nothing.
    await db.execute("UPDATE \"Bundle\" SET title = title || '!' WHERE id = ANY($1::text[])", [bundle_a, bundle_b])
    assert sorted(await notifications.settle()) == sorted([shop_a, shop_b])
    await db.execute("UPDATE \"Bundle\" SET title = 'x' WHERE id = 'no-such-bundle'")
    assert await notifications.settle() == []

    # Deleting a bundle cascades to its children; the bundle's own trigger names the shop.
    await db.execute('DELETE FROM "Bundle" WHERE id = $1', bundle_b)
    assert await notifications.settle() == [shop_b]
    await db.execute('DELETE FROM "Bundle" WHERE id = $1', bundle_a)
    assert await notifications.settle() == [shop_a]


async def test_a_rolled_back_write_notifies_nobody(db: asyncpg.Connection, notifications: Notifications) -> None:
    shop_a, _ = shops()
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await insert_bundle(db, shop_a)
            raise RuntimeError("abort")
    assert await notifications.settle() == []
    async with db.transaction():  # one transaction, several statements: one notification
        bundle = await insert_bundle(db, shop_a)
        await db.execute("UPDATE \"Bundle\" SET title = 'y' WHERE id = $1", bundle)
    assert await notifications.settle() == [shop_a]
    await db.execute('DELETE FROM "Bundle" WHERE id = $1', bundle)


@pytest.fixture
async def replicas(db_url: str) -> AsyncIterator[list[InvalidationListener]]:
    """Two caches, each fed by its own listener, as two replicas hold them."""
    listeners = [InvalidationListener(ReadCache[Any](f"replica-{i}"), db_url, CHANNEL) for i in range(2)]
    for listener in listeners:
        await listener.start()
    try:
        assert all(listener.connected for listener in listeners)
        yield listeners
    finally:
        for listener in listeners:
            await listener.stop()


async def test_a_write_drops_the_shop_on_every_replica_within_a_second(
    db: asyncpg.Connection, replicas: list[InvalidationListener]
) -> None:
    shop_a, shop_b = shops()
    for listener in replicas:
        cache = listener.cache
        assert cache.serving
        for shop in (shop_a, shop_b):
            assert cache.put(shop, "product", f"answer of {shop}", cache.token(shop))
    bundle = await insert_bundle(db, shop_a)
    started = time.monotonic()
    while any((shop_a, "product") in listener.cache for listener in replicas):
        assert time.monotonic() - started < 1.0, "a replica still holds the stale answer after 1 s"
        await asyncio.sleep(0.005)
    for listener in replicas:
        assert listener.cache.get(shop_b, "product") == f"answer of {shop_b}"  # other shops untouched
    await db.execute('DELETE FROM "Bundle" WHERE id = $1', bundle)


async def test_sync_waits_for_every_committed_notification(
    db: asyncpg.Connection, replicas: list[InvalidationListener]
) -> None:
    shop_a, _ = shops()
    listener = replicas[0]
    token = listener.cache.token(shop_a)
    bundle = await insert_bundle(db, shop_a)
    await listener.sync()
    # The write's notification has been applied: an answer computed before it is refused.
    assert not listener.cache.put(shop_a, "product", "computed before the write", token)
    await db.execute('DELETE FROM "Bundle" WHERE id = $1', bundle)


async def test_a_lost_listener_connection_clears_and_reconnects(replicas: list[InvalidationListener]) -> None:
    shop_a, _ = shops()
    listener = replicas[0]
    cache = listener.cache
    cache.put(shop_a, "product", "answer", cache.token(shop_a))
    listener.terminate_connection()
    # Notifications may have been missed while down: nothing is served until LISTEN is back.
    assert not cache.serving and len(cache) == 0
    assert cache.get(shop_a, "product") is None
    deadline = time.monotonic() + 5
    while not (listener.connected and listener.connects == 2):
        assert time.monotonic() < deadline, "the listener did not reconnect"
        await asyncio.sleep(0.01)
    assert cache.serving
    assert cache.put(shop_a, "product", "answer", cache.token(shop_a))
    await listener.sync()  # and it receives again


async def test_revision_downgrades_and_upgrades_and_truncate_notifies_everyone() -> None:
    url = await pg.create_database("sbnotify")
    try:
        await upgrade_async(url)
        conn = await pg.connect(url)
        try:
            listener = Notifications(conn)
            await conn.add_listener(CHANNEL, listener.on_notify)
            await insert_bundle(conn, "t.myshopify.com")
            await listener.settle()
            await conn.execute('TRUNCATE "Bundle" CASCADE')  # no transition table: every shop
            assert await listener.settle() == ["*"]

            count_sql = (
                "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'sb_storefront_notify_%'), "
                "(SELECT count(*) FROM pg_proc WHERE proname LIKE 'sb_storefront_notify_%')"
            )
            assert tuple(await conn.fetchrow(count_sql)) == (16, 3)
            await asyncio.to_thread(downgrade, url, "0005_outbox")
            assert tuple(await conn.fetchrow(count_sql)) == (0, 0)
            await insert_bundle(conn, "t.myshopify.com")
            assert await listener.settle() == []
            await upgrade_async(url)
            assert tuple(await conn.fetchrow(count_sql)) == (16, 3)
        finally:
            await conn.close()
    finally:
        await pg.drop_database(url)


# ------------------------------------------------------------------------ the service's read model


def signed(shop: str, product: str) -> list[tuple[str, str]]:
    items = [("shop", shop), ("timestamp", str(int(time.time()))), ("product_id", product)]
    return [*items, ("signature", sign_app_proxy_params(items, API_SECRET))]


async def set_override(client: httpx.AsyncClient, name: str, shop: str, value: bool | None) -> None:
    """Merge (value) or remove (None) the shop's override of a flag (read-merge-write)."""
    state = (await client.get(f"/admin/flags/{name}")).json()
    overrides = dict(state["shopOverrides"])
    if value is None:
        overrides.pop(shop, None)
    else:
        overrides[shop] = value
    body = {key: state[key] for key in ("enabled", "rolloutPercent", "sampleRate")}
    response = await client.put(
        f"/admin/flags/{name}", json={**body, "shopOverrides": overrides, "reason": "storefront cache test"}
    )
    assert response.status_code == 200, response.text


def read_model(client: httpx.AsyncClient) -> tuple[ReadCache[Any], InvalidationListener]:
    container = client.app.state.container  # type: ignore[attr-defined]
    assert container.storefront_cache is not None and container.storefront_cache_listener is not None
    return container.storefront_cache, container.storefront_cache_listener


async def test_a_write_on_one_replica_drops_the_answer_on_the_other_within_a_second(
    app_factory: Any, shop: str
) -> None:
    product = product_gid()
    async with app_factory() as one, app_factory() as two:
        for name in ("V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE"):
            await set_override(one, name, shop, True)
        try:
            body = bundle_body(products=[product], status="ACTIVE", percent="10")
            created = await one.post(bundles_url(shop), json=body)
            assert created.status_code == 201, created.text
            bundle_id = created.json()["id"]
            cache_two, listener_two = read_model(two)
            await listener_two.sync()
            first = await two.get("/proxy/v2/bundles", params=signed(shop, product))
            assert [b["id"] for b in first.json()["bundles"]] == [bundle_id]
            hits = cache_two.hits
            assert (await two.get("/proxy/v2/bundles", params=signed(shop, product))).content == first.content
            assert cache_two.hits == hits + 1  # replica two serves it from its cache

            patched = await one.patch(bundles_url(shop, bundle_id), json={"title": "Renamed on replica one"})
            assert patched.status_code == 200, patched.text
            started = time.monotonic()
            while True:
                answer = await two.get("/proxy/v2/bundles", params=signed(shop, product))
                if answer.json()["bundles"][0]["title"] == "Renamed on replica one":
                    break
                assert time.monotonic() - started < 1.0, "replica two still serves the old title after 1 s"
                await asyncio.sleep(0.01)
        finally:
            for name in ("V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE"):
                await set_override(one, name, shop, None)


async def test_cache_off_by_setting(app_factory: Any) -> None:
    async with app_factory(STOREFRONT_CACHE=False) as client:
        container = client.app.state.container  # type: ignore[attr-defined]
        assert container.storefront_cache is None and container.storefront_cache_listener is None


# ------------------------------------------------------------------------ property: cached == computed

#: `make test` runs a few examples; `HYPOTHESIS_PROFILE=chaos` (make chaos) many more.
EXAMPLES = 100 if os.environ.get("HYPOTHESIS_PROFILE") == "chaos" else 15
PRODUCTS_PER_SHOP = 3
ENDPOINTS = ("/proxy/v2/bundles", "/proxy/bundles-for-product")
FLAGS = ("V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE")

#: A pricing rule: (discount type, value, priority, start, end); start/end in ms from when the
#: operation runs (None: open), so windows open and close while the sequence runs.
rules_st = st.lists(
    st.tuples(
        st.sampled_from(["PERCENTAGE", "FIXED_AMOUNT", "FIXED_PRICE"]),
        st.integers(1, 60),
        st.integers(0, 2),
        st.sampled_from([None, -5000, 300, 700, 1100]),
        st.sampled_from([None, 500, 900, 1300, 60_000]),
    ),
    max_size=2,
)
products_st = st.lists(st.integers(0, PRODUCTS_PER_SHOP - 1), min_size=1, max_size=3)
replica_st = st.integers(0, 1)
create_st = st.tuples(
    st.just("create"), replica_st, products_st, rules_st, st.sampled_from(["ACTIVE", "ACTIVE", "DRAFT"])
)
operation_st = st.one_of(
    create_st,
    st.tuples(st.just("update_rules"), replica_st, st.integers(0, 9), rules_st),
    st.tuples(st.just("update_components"), replica_st, st.integers(0, 9), products_st),
    st.tuples(st.just("update_status"), replica_st, st.integers(0, 9), st.sampled_from(["ACTIVE", "DRAFT"])),
    st.tuples(st.just("delete"), replica_st, st.integers(0, 9)),
    st.tuples(st.just("price_sync"), st.integers(0, 9), st.integers(1, 90), st.integers(0, 5)),
    st.tuples(st.just("migrate"), replica_st, products_st, st.integers(1, 50)),
    st.tuples(st.just("flag"), replica_st, st.sampled_from(FLAGS), st.booleans()),
    st.tuples(st.just("race"), replica_st, st.integers(0, 9), rules_st),
    st.tuples(st.just("wait"), st.sampled_from([100, 300, 600])),
    st.tuples(st.just("expire")),
    st.tuples(st.just("expire")),
)


def unique_gid(kind: str) -> str:
    """Hypothesis seeds `random` per example (the helpers' ids would repeat): ids from uuid4."""
    return f"gid://shopify/{kind}/{uuid.uuid4().int % 10**13}"


def rule_bodies(rules: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(tzinfo=None)
    bodies = []
    for discount_type, value, priority, start_ms, end_ms in rules:
        body: dict[str, Any] = {"discountType": discount_type, "discountValue": str(value), "priority": priority}
        if start_ms is not None:
            body["startsAt"] = (now + timedelta(milliseconds=start_ms)).isoformat(timespec="milliseconds")
        if end_ms is not None and (start_ms is None or end_ms > start_ms):
            body["endsAt"] = (now + timedelta(milliseconds=end_ms)).isoformat(timespec="milliseconds")
        bodies.append(body)
    return bodies


class World:
    """One example's shop, seen through two replicas."""

    def __init__(self, replicas: list[httpx.AsyncClient], db: asyncpg.Connection, sim: Any, shop: str) -> None:
        self.replicas = replicas
        self.db = db
        self.sim = sim
        self.shop = shop
        self.products = [unique_gid("Product") for _ in range(PRODUCTS_PER_SHOP)]
        self.bundles: list[str] = []

    def pick(self, index: int) -> str | None:
        return self.bundles[index % len(self.bundles)] if self.bundles else None

    async def price_sync(self, bundle_id: str, price: int, stock: int) -> None:
        """What the inventory/price sync writes, by plain SQL (a writer outside the API)."""
        await self.db.execute(
            'UPDATE "BundleComponent" SET "cachedPrice" = $2 + length(id) % 7, "cachedInventory" = $3 '
            'WHERE "bundleId" = $1',
            bundle_id,
            price,
            stock,
        )

    async def patch(self, replica: int, bundle_id: str, body: dict[str, Any]) -> None:
        response = await self.replicas[replica].patch(bundles_url(self.shop, bundle_id), json=body)
        assert response.status_code == 200, response.text

    async def apply(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "create":
            _, replica, product_ids, rules, status = op
            body = bundle_body(
                products=[self.products[i] for i in product_ids],
                status=status,
                metaobject=unique_gid("Metaobject"),
                discount=unique_gid("DiscountAutomaticNode"),
            )
            body["pricingRules"] = rule_bodies(rules)
            response = await self.replicas[replica].post(bundles_url(self.shop), json=body)
            assert response.status_code == 201, response.text
            self.bundles.append(response.json()["id"])
            await self.price_sync(self.bundles[-1], 20, 3)
        elif kind in ("update_rules", "update_components", "update_status", "delete", "race"):
            bundle_id = self.pick(op[2])
            if bundle_id is None:
                return
            replica = op[1]
            if kind == "update_rules":
                await self.patch(replica, bundle_id, {"pricingRules": rule_bodies(op[3])})
            elif kind == "update_components":
                components = [{"shopifyProductId": self.products[i]} for i in op[3]]
                await self.patch(replica, bundle_id, {"components": components})
                await self.price_sync(bundle_id, 15, 2)
            elif kind == "update_status":
                await self.patch(replica, bundle_id, {"status": op[3]})
            elif kind == "delete":
                response = await self.replicas[replica].delete(bundles_url(self.shop, bundle_id))
                assert response.status_code == 204, response.text
                self.bundles.remove(bundle_id)
            else:  # reads on the other replica while this one writes: no stale answer may stick
                other = self.replicas[1 - replica]
                reads = [other.get(path, params=signed(self.shop, p)) for path in ENDPOINTS for p in self.products]
                await asyncio.gather(self.patch(replica, bundle_id, {"pricingRules": rule_bodies(op[3])}), *reads)
        elif kind == "price_sync":
            bundle_id = self.pick(op[1])
            if bundle_id is not None:
                await self.price_sync(bundle_id, op[2], op[3])
        elif kind == "migrate":
            await self.migrate(op[1], [self.products[i] for i in op[2]], op[3])
        elif kind == "flag":
            _, replica, name, value = op
            await set_override(self.replicas[replica], name, self.shop, value)
            await self.flags_propagated(name, value)
        elif kind == "wait":
            await asyncio.sleep(op[1] / 1000)
        elif kind == "expire":  # no write at all: only time moves past the next rule boundary
            boundary = await self.db.fetchval(
                'SELECT min(w.at) FROM "BundlePricingRule" r JOIN "Bundle" b ON b.id = r."bundleId" '
                'CROSS JOIN LATERAL (VALUES (r."startsAt"), (r."endsAt")) AS w(at) '
                "WHERE b.shop = $1 AND w.at > (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')",
                self.shop,
            )
            if boundary is not None:
                delay = (boundary - datetime.now(UTC).replace(tzinfo=None)).total_seconds() + 0.02
                await asyncio.sleep(min(max(delay, 0), 2.0))

    async def flags_propagated(self, name: str, value: bool) -> None:
        deadline = time.monotonic() + 5
        for client in self.replicas:
            store = client.app.state.container.flags  # type: ignore[attr-defined]
            while store.is_enabled(name, self.shop) != value:
                assert time.monotonic() < deadline, f"{name} did not reach every replica"
                await asyncio.sleep(0.01)

    async def migrate(self, replica: int, products: list[str], percent: int) -> None:
        """A legacy bundle (metaobject + bundle_discount_id row) moved to V2 by a migration job."""
        gid = unique_gid("Metaobject")
        name = f"Legacy {gid[-6:]}"
        await self.sim.add_metaobjects(
            self.shop, [metaobject_item(gid, name=name, title="Legacy set", discount=str(percent), products=products)]
        )
        await self.db.execute(
            "INSERT INTO bundle_discount_id VALUES ($1, $2, $3, $4)",
            gid,
            name,
            unique_gid("DiscountAutomaticNode"),
            self.shop,
        )
        client = self.replicas[replica]
        response = await client.post("/admin/migrations/jobs", json={"kind": "bundles", "shops": [self.shop]})
        assert response.status_code == 202, response.text
        url = response.json()["statusUrl"]
        deadline = time.monotonic() + 30
        while (job := (await client.get(url)).json())["status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.05)
        assert job["status"] == "succeeded" and job["stats"]["failed"] == 0, job
        bundle_id = await self.db.fetchval('SELECT id FROM "Bundle" WHERE "shopifyMetaobjectId" = $1', gid)
        assert bundle_id is not None, job
        self.bundles.append(bundle_id)
        await self.price_sync(bundle_id, 30, 4)

    async def check(self) -> None:
        """Every replica's answer equals its own uncached computation, before or after the read
        (a pricing window may close in between); V2 path only, the legacy path is never cached."""
        for client in self.replicas:
            await read_model(client)[1].sync()  # every committed write's notification is applied
        for client in self.replicas:
            container = client.app.state.container  # type: ignore[attr-defined]
            for path, compute in zip(
                ENDPOINTS, (storefront.v2_bundles_for_product, storefront.bundles_for_product), strict=True
            ):
                for product in self.products:
                    before = await compute(container, self.shop, product, cached=False)
                    served = [await client.get(path, params=signed(self.shop, product)) for _ in range(2)]
                    after = await compute(container, self.shop, product, cached=False)
                    for response in served:
                        assert response.status_code == 200, response.text
                        source = response.headers["X-Bundle-Read-Source"]
                        assert source in (before.read_source, after.read_source)
                        if source == storefront.READ_SOURCE_V2:
                            assert response.content in (before.body, after.body), (
                                path,
                                product,
                                response.content,
                                before.body,
                                after.body,
                            )


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 15,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=create_st, operations=st.lists(operation_st, max_size=6))
async def test_cached_answers_equal_computed_answers_after_any_history(
    db: asyncpg.Connection,
    sim: Any,
    replica_pair: list[httpx.AsyncClient],
    first: tuple[Any, ...],
    operations: list[tuple[Any, ...]],
) -> None:
    """After any sequence of API writes (on either replica), plain-SQL writes, migration jobs, flag
    flips and pricing windows crossing now, each replica serves exactly what it would compute."""
    world = World(replica_pair, db, sim, new_shop("rm"))
    await register_shop(sim, db, world.shop)
    for name in FLAGS:
        await set_override(replica_pair[0], name, world.shop, True)
        await world.flags_propagated(name, True)
    try:
        await world.check()
        for op in [first, *operations]:
            await world.apply(op)
            await world.check()
    finally:
        for name in FLAGS:
            await set_override(replica_pair[0], name, world.shop, None)


@pytest.fixture
async def replica_pair(app_factory: Any) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with app_factory() as one, app_factory() as two:
        yield [one, two]
        hits = sum(read_model(client)[0].hits for client in (one, two))
        assert hits > 0, "the property ran without ever serving from the cache"


async def test_a_late_heartbeat_stops_serving_until_it_is_back_without_reconnecting(db_url: str) -> None:
    """Under load a heartbeat may come back late: the cache cannot vouch for that moment, so it
    stops serving (and empties), then serves again on the same connection once it is back."""
    cache: ReadCache[str] = ReadCache("late")
    listener = InvalidationListener(cache, db_url, CHANNEL, heartbeat_s=0.05, heartbeat_timeout_s=1e-6)
    await listener.start()
    try:
        states = set()
        deadline = time.monotonic() + 5
        while states != {True, False}:
            assert time.monotonic() < deadline, states
            if listener.connected:
                states.add(cache.serving)
            await asyncio.sleep(0.001)
        assert listener.connects == 1
    finally:
        await listener.stop()


class EchoSwallowingListener(InvalidationListener):
    """Drops its own heartbeat echoes while `swallow` is set: a heartbeat stays out."""

    swallow = False

    def _on_notify(self, conn: object, pid: int, channel: str, raw: object) -> None:
        if self.swallow and str(raw).startswith("~"):
            return
        super()._on_notify(conn, pid, channel, raw)


async def test_a_connection_lost_while_a_heartbeat_is_out_reconnects_at_once(db_url: str) -> None:
    cache: ReadCache[str] = ReadCache("lost-mid-heartbeat")
    listener = EchoSwallowingListener(cache, db_url, CHANNEL, heartbeat_s=0.01)
    await listener.start()
    try:
        listener.swallow = True
        deadline = time.monotonic() + 5
        while not (listener._markers and not listener._conn_lock.locked()):  # sent, echo awaited
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
        listener.swallow = False
        listener.terminate_connection()
        started = time.monotonic()
        while listener.connects < 2:  # not after the 10 s a silent connection is given
            assert time.monotonic() - started < 2.0, "waited for the heartbeat of a dead connection"
            await asyncio.sleep(0.01)
    finally:
        await listener.stop()
