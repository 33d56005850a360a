"""The storefront read model's invalidation: triggers notify every shop a write touches, and each
replica's listener drops that shop's cached answers within a second."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from app.core.migrations import downgrade, upgrade_async
from app.core.read_cache import InvalidationListener, ReadCache
from app.repos import storefront as storefront_repo
from tests import pg

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
