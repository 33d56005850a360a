"""The manual bundles of a migration batch are written by ONE statement, with the per-item
semantics unchanged: slug races and renames met by that statement fall back to the item path,
which reports each item as before; a re-run writes nothing.

Statements are counted with asyncpg's query logger on the pool the migration uses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from app.core.db import asyncpg_connect_kwargs
from app.repos import migration as repo
from app.services.migration.items.common import MigrationContext
from app.services.migration.items.dispatch import migrate_batch
from tests.conftest import new_shop
from tests.legacy_fixtures import seed_bulk_manual_bundles, shopify_client

PER_SHOP = 30


class StatementLog:
    def __init__(self) -> None:
        self.queries: list[str] = []

    def __call__(self, record: Any) -> None:
        self.queries.append(record.query)

    def bundle_inserts(self) -> int:
        return sum(1 for q in self.queries if 'INSERT INTO "Bundle"' in q)


@pytest.fixture
async def logged() -> StatementLog:
    return StatementLog()


@pytest.fixture
async def pool(db_url: str, logged: StatementLog) -> AsyncIterator[asyncpg.Pool]:
    async def init(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(logged)

    pool = await asyncpg.create_pool(min_size=1, max_size=4, init=init, **asyncpg_connect_kwargs(db_url))
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture
async def ctx(pool: asyncpg.Pool, simulator: Any) -> AsyncIterator[MigrationContext]:
    async with shopify_client(pool, simulator.url_template) as client:
        yield MigrationContext(pool=pool, shopify=client)


async def legacy_ids(db: asyncpg.Connection, shop: str) -> list[str]:
    rows = await db.fetch('SELECT "bundleId" FROM bundle_discount_id WHERE shop = $1 ORDER BY "bundleId"', shop)
    return [r["bundleId"] for r in rows]


async def v2_summary(db: asyncpg.Connection, shop: str) -> dict[str, Any]:
    row = await db.fetchrow(
        """
        SELECT count(*) AS bundles, count(DISTINCT slug) AS slugs,
               (SELECT count(*) FROM "BundleComponent" c JOIN "Bundle" b ON b.id = c."bundleId" WHERE b.shop = $1)
                   AS components,
               (SELECT count(*) FROM "BundlePricingRule" p JOIN "Bundle" b ON b.id = p."bundleId" WHERE b.shop = $1)
                   AS rules,
               (SELECT count(*) FROM "BundleInventory" i JOIN "Bundle" b ON b.id = i."bundleId" WHERE b.shop = $1)
                   AS inventories,
               (SELECT count(*) FROM "BundleDiscount" d JOIN "Bundle" b ON b.id = d."bundleId" WHERE b.shop = $1)
                   AS discounts
        FROM "Bundle" WHERE shop = $1
        """,
        shop,
    )
    assert row is not None
    return dict(row)


async def test_a_batch_of_manual_bundles_is_one_write_statement_and_rerun_writes_nothing(
    ctx: MigrationContext, db: asyncpg.Connection, sim: Any, logged: StatementLog
) -> None:
    shop = new_shop("batchw")
    await seed_bulk_manual_bundles(db, sim, [shop], PER_SHOP)
    ids = await legacy_ids(db, shop)

    outcomes = await migrate_batch(ctx, shop, "bundle", ids)

    assert Counter(o.status for o in outcomes) == {"migrated": PER_SHOP}
    assert logged.bundle_inserts() == 1
    summary = await v2_summary(db, shop)
    assert summary["bundles"] == summary["slugs"] == PER_SHOP  # five "Gift Set"s got distinct slugs
    assert summary["components"] == 2 * PER_SHOP
    assert summary["rules"] == summary["inventories"] == PER_SHOP
    assert summary["discounts"] == PER_SHOP  # every seeded row has a discount id
    slugs = {r["slug"] for r in await db.fetch('SELECT slug FROM "Bundle" WHERE shop = $1', shop)}
    assert {"gift-set", "gift-set-2", "gift-set-5"} <= slugs

    logged.queries.clear()
    again = await migrate_batch(ctx, shop, "bundle", ids)
    assert {(o.status, o.reason) for o in again} == {("skipped", "already_migrated")}
    assert logged.bundle_inserts() == 0
    assert await v2_summary(db, shop) == summary


async def test_slug_race_in_the_batch_statement_falls_back_item_by_item(
    ctx: MigrationContext, db: asyncpg.Connection, sim: Any, logged: StatementLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = new_shop("batchs")
    await seed_bulk_manual_bundles(db, sim, [shop], PER_SHOP)
    ids = await legacy_ids(db, shop)
    # A writer took "gift-set" after the batch read the taken slugs: the first read misses it.
    await db.execute(
        """INSERT INTO "Bundle" (id, shop, name, title, slug, type, status, metadata, "createdAt", "updatedAt")
           VALUES ('api-gift-set', $1, 'Gift Set', 'Gift Set', 'gift-set', 'FIXED', 'ACTIVE', '{}', now(), now())""",
        shop,
    )
    real_taken = repo.taken_slugs
    calls = 0

    async def stale_taken(conn: repo.Conn, shop_: str, bases: Any) -> set[str]:
        nonlocal calls
        calls += 1
        return set() if calls == 1 else await real_taken(conn, shop_, bases)

    monkeypatch.setattr(repo, "taken_slugs", stale_taken)

    outcomes = await migrate_batch(ctx, shop, "bundle", ids)

    assert Counter(o.status for o in outcomes) == {"migrated": PER_SHOP}
    assert logged.bundle_inserts() > 1  # the batch statement failed, the items were written one by one
    summary = await v2_summary(db, shop)
    assert summary["bundles"] == summary["slugs"] == PER_SHOP + 1
    assert summary["components"] == 2 * PER_SHOP  # nothing half-written by the failed statement
    assert summary["rules"] == summary["inventories"] == summary["discounts"] == PER_SHOP


async def test_row_renamed_before_the_batch_statement_is_rebuilt_from_the_locked_name(
    ctx: MigrationContext, db: asyncpg.Connection, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = new_shop("batchr")
    await seed_bulk_manual_bundles(db, sim, [shop], 5)
    ids = await legacy_ids(db, shop)
    renamed = ids[2]
    real_fetch = repo.fetch_bundle_rows

    async def fetch_then_rename(conn: repo.Conn, shop_: str, legacy: Any) -> dict[str, repo.LegacyBundleRow]:
        rows = await real_fetch(conn, shop_, legacy)
        # The API renames the row right after the batch read it (before the write locks it).
        await db.execute(
            """UPDATE bundle_discount_id SET "bundleName" = 'Renamed Meanwhile' WHERE shop = $1 AND "bundleId" = $2""",
            shop,
            renamed,
        )
        return rows

    monkeypatch.setattr(repo, "fetch_bundle_rows", fetch_then_rename)

    outcomes = {o.legacy_id: o for o in await migrate_batch(ctx, shop, "bundle", ids)}

    assert {o.status for o in outcomes.values()} == {"migrated"}
    name = await db.fetchval('SELECT name FROM "Bundle" WHERE id = $1', outcomes[renamed].v2_id)
    assert name == "Renamed Meanwhile"
    assert (await v2_summary(db, shop))["bundles"] == 5
