"""The three migrations per item, on real PostgreSQL and the simulator over HTTP.

Assertions are on data: the outcome of every legacy item (status + reason code), the V2 rows each
one became, that a second run writes nothing, that the plan's own validation queries agree, and
that the backfill running concurrently with API-like writes on the very same rows neither
duplicates, resurrects nor overwrites anything.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.core.db import create_pool
from app.core.ids import new_id
from app.core.time import utcnow
from app.repos import migration as repo_migration
from app.repos.migration import Conn
from app.services.migration.items.common import ItemOutcome, MigrationContext
from app.services.migration.items.dispatch import migrate_batch, plan_items
from app.services.migration.validation import build_validation_report
from tests.conftest import new_shop
from tests.legacy_fixtures import (
    AUTO_GENERATED_KEY,
    ExpectedOutcomes,
    copy_auto_bundle_data,
    migrate_items,
    seed_bulk_manual_bundles,
    seed_messy_legacy,
    shopify_client,
)

PLAN_MD = Path(__file__).resolve().parents[3] / "shared" / "seed" / "migration-plan-v2.md"
V2_TABLES_BY_BUNDLE = ("BundleComponent", "BundlePricingRule", "BundleDiscount", "BundleInventory")


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_url, max_size=8)
    yield pool
    await pool.close()


@pytest.fixture
async def ctx(pool: asyncpg.Pool, simulator: Any) -> AsyncIterator[MigrationContext]:
    async with shopify_client(pool, simulator.url_template) as client:
        yield MigrationContext(pool=pool, shopify=client)


@pytest.fixture
async def messy(db: asyncpg.Connection, sim: Any) -> ExpectedOutcomes:
    return await seed_messy_legacy(
        db, sim, [new_shop("messy"), new_shop("clean"), new_shop("nosess"), new_shop("auto")]
    )


async def fingerprint(conn: asyncpg.Connection, shops: list[str]) -> dict[str, tuple[int, str | None]]:
    """(row count, md5 of all rows) of every V2 table, restricted to these shops: equal means untouched."""
    out: dict[str, tuple[int, str | None]] = {}
    digest = "SELECT count(*) AS n, md5(string_agg(t::text, '|' ORDER BY t.id)) AS h"
    for table in ("Bundle", "AutoBundleRule"):
        row = await conn.fetchrow(f'{digest} FROM "{table}" t WHERE t.shop = ANY($1)', shops)
        assert row is not None
        out[table] = (row["n"], row["h"])
    for table in V2_TABLES_BY_BUNDLE:
        row = await conn.fetchrow(
            f'{digest} FROM "{table}" t JOIN "Bundle" b ON b.id = t."bundleId" WHERE b.shop = ANY($1)', shops
        )
        assert row is not None
        out[table] = (row["n"], row["h"])
    return out


def assert_outcomes(expected: ExpectedOutcomes, outcomes: dict[tuple[str, str], ItemOutcome]) -> None:
    assert set(outcomes) == set(expected.outcomes)
    wrong = {
        key: (o.status, o.reason, o.detail)
        for key, o in outcomes.items()
        if (o.status, o.reason) != (expected.outcomes[key].status, expected.outcomes[key].reason)
    }
    assert not wrong, wrong


def plan_queries() -> list[str]:
    """The plan's "Data Validation Queries" block, split on ';' (run verbatim)."""
    text = PLAN_MD.read_text()
    block = text.split("## Data Validation Queries", 1)[1]
    sql = re.search(r"```sql\n(.*?)```", block, re.S)
    assert sql is not None
    queries = [
        q.strip()
        for q in sql.group(1).split(";")
        if q.strip() and not all(line.strip().startswith("--") for line in q.strip().splitlines())
    ]
    assert len(queries) == 3
    return queries


# ---------------------------------------------------------------------------------- messy legacy data


async def test_messy_legacy_every_item_ends_with_its_reason(
    ctx: MigrationContext, db: asyncpg.Connection, messy: ExpectedOutcomes
) -> None:
    outcomes = await migrate_items(ctx, messy.shops)
    assert_outcomes(messy, outcomes)
    for kind in ("auto_rule", "ai_bundle", "bundle"):
        mine = [o for (k, _), o in outcomes.items() if k == kind]
        counts = Counter(o.status for o in mine)
        assert len(mine) == counts["migrated"] + counts["failed"] + counts["skipped"]
    assert all(o.reason for o in outcomes.values() if o.status != "migrated")
    assert all(o.v2_id for o in outcomes.values() if o.status == "migrated")
    # shop-level failures are not transient; everything here is deterministic
    assert not any(o.transient for o in outcomes.values())

    shop = messy.messy_shop
    bundles = {
        r["legacy"]: r
        for r in await db.fetch(
            """SELECT b.*, b.metadata ->> 'legacyBundleId' AS legacy,
                      (SELECT count(*) FROM "BundleComponent" c WHERE c."bundleId" = b.id) AS components,
                      (SELECT "discountValue" FROM "BundlePricingRule" p WHERE p."bundleId" = b.id) AS discount,
                      (SELECT count(*) FROM "BundleInventory" i WHERE i."bundleId" = b.id) AS inventories,
                      (SELECT array_agg("shopifyDiscountId") FROM "BundleDiscount" d
                        WHERE d."bundleId" = b.id) AS discounts
               FROM "Bundle" b WHERE b.shop = $1 AND b.metadata ->> 'source' = 'MANUAL'""",
            shop,
        )
    }
    legacy = {r["bundleId"]: r for r in await db.fetch("SELECT * FROM bundle_discount_id WHERE shop = $1", shop)}
    migrated = [k for (kind, k), e in messy.outcomes.items() if kind == "bundle" and e.status == "migrated"]
    migrated_here = [k for k in migrated if messy.shop_of("bundle", k) == shop]
    assert sorted(bundles) == sorted(migrated_here)
    for key, bundle in bundles.items():
        assert bundle["status"] == "ACTIVE" and bundle["type"] == "FIXED"
        assert bundle["inventories"] == 1
        assert bundle["components"] >= 1
        assert bundle["discounts"] == [legacy[key]["discountId"]]  # the BundleDiscount is the legacy discount
    for key, name in messy.names.items():
        assert bundles[key]["name"] == name
    for key, title in messy.titles.items():
        assert bundles[key]["title"] == title
    for key, value in messy.discount_values.items():
        assert bundles[key]["discount"] == value
    for key, count in messy.component_counts.items():
        if key in bundles:
            assert bundles[key]["components"] == count
    for keys, slugs in messy.slug_groups:
        assert {bundles[k]["slug"] for k in keys} == slugs
    for key, real_gid in messy.handle_targets.items():
        assert bundles[key]["shopifyMetaobjectId"] == real_gid
        assert json.loads(bundles[key]["metadata"])["legacyHandle"]
    missing = next(k for k in messy.names if messy.names[k] == "Bare Bundle")
    assert bundles[missing]["description"] is None

    # components of the "objects" bundle: variant and quantity kept, numeric id normalised
    objects_key = next(k for k, r in legacy.items() if r["bundleName"] == "Objects Set")
    comps = await db.fetch(
        'SELECT * FROM "BundleComponent" WHERE "bundleId" = $1 ORDER BY "displayOrder"', bundles[objects_key]["id"]
    )
    assert [c["quantity"] for c in comps] == [2, 1]
    assert comps[0]["shopifyVariantId"].startswith("gid://shopify/ProductVariant/")
    assert comps[1]["shopifyProductId"].startswith("gid://shopify/Product/")
    assert comps[0]["maxQuantity"] >= comps[0]["quantity"]

    # AI bundles: source AI, scores, PAUSED for inactive, the metaobject row's discount attached, one bundle
    ai = {
        r["ai"]: r
        for r in await db.fetch(
            """SELECT b.*, b.metadata ->> 'ai_bundle_id' AS ai,
                      (SELECT count(*) FROM "BundleComponent" c WHERE c."bundleId" = b.id) AS components,
                      (SELECT coalesce(array_agg("shopifyDiscountId"), '{}') FROM "BundleDiscount" d
                        WHERE d."bundleId" = b.id) AS discounts
               FROM "Bundle" b WHERE b.shop = ANY($1) AND b.metadata ->> 'source' = 'AI'""",
            messy.shops,
        )
    }
    assert set(ai) == set(messy.ai_statuses)
    for ai_id, status in messy.ai_statuses.items():
        assert ai[ai_id]["status"] == status
        meta = json.loads(ai[ai_id]["metadata"])
        assert meta["source"] == "AI" and meta["confidence"] > 0 and meta["lift"] > 0
    for ai_id, discounts in messy.ai_discounts.items():
        assert set(ai[ai_id]["discounts"]) == discounts
    for ai_id in messy.ai_statuses:
        if ai_id in messy.component_counts:
            assert ai[ai_id]["components"] == messy.component_counts[ai_id]
    ai_metaobject_key = next(k for k, r in legacy.items() if r["bundleName"] == "AI generated")
    assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE "shopifyMetaobjectId" = $1', ai_metaobject_key) == 1

    # auto rules: legacy key, mapping, discount of the auto-rule row / Auto Generated Bundle row
    rules = {
        json.loads(r["conditions"])["legacyRuleId"]: r
        for r in await db.fetch('SELECT * FROM "AutoBundleRule" WHERE shop = ANY($1)', messy.shops)
    }
    assert set(rules) == {
        k for (kind, k), e in messy.outcomes.items() if kind == "auto_rule" and e.status == "migrated"
    }
    for key, discount_id in messy.rule_discounts.items():
        assert json.loads(rules[key]["bundleTemplate"])["discount"]["shopifyDiscountId"] == discount_id
    inactive = [r for r in rules.values() if not r["isActive"]]
    assert len(inactive) == 1
    tagged = json.loads(inactive[0]["conditions"])
    assert inactive[0]["triggerType"] == "TAG_BASED" and tagged["tags"] == ["summer", "sale"]
    assert tagged["price"] == {"min": "10.00", "max": None}
    assert json.loads(inactive[0]["bundleTemplate"])["discount"]["value"] == "12.5"
    data_rule = rules[f"auto_bundle_data:{messy.auto_data_shop}"]
    assert data_rule["isActive"] and json.loads(data_rule["conditions"])["legacySource"] == "auto_bundle_data"

    # ------------------------------------------------------------ a second run writes nothing
    before = await fingerprint(db, messy.shops)
    again = await migrate_items(ctx, messy.shops)
    assert set(again) == set(outcomes)
    for key, first in outcomes.items():
        second = again[key]
        if first.status == "migrated":
            assert (second.status, second.reason) == ("skipped", "already_migrated"), (key, second)
        else:
            assert (second.status, second.reason) == (first.status, first.reason), (key, second)
    assert await fingerprint(db, messy.shops) == before


async def test_auto_bundle_data_copied_by_the_legacy_sql_migrates_once(
    ctx: MigrationContext, db: asyncpg.Connection, sim: Any
) -> None:
    """The legacy app's own SQL copied `auto_bundle_data` into `auto_bundle_rules` ('Migrated Auto
    Bundle', same values): one rule, one AutoBundleRule, with the `Auto Generated Bundle` discount;
    the data row is a skip, not a second migrated item."""
    messy = await seed_messy_legacy(
        db, sim, [new_shop("cmessy"), new_shop("cclean"), new_shop("cnosess"), new_shop("cauto")], copied_auto_rule=True
    )
    shop = messy.auto_data_shop
    data_key = f"auto_bundle_data:{shop}"
    copy_id = messy.copied_rules[data_key]
    outcomes = await migrate_items(ctx, messy.shops)
    assert_outcomes(messy, outcomes)
    rules = await db.fetch('SELECT * FROM "AutoBundleRule" WHERE shop = $1', shop)
    assert len(rules) == 1
    rule = rules[0]
    conditions = json.loads(rule["conditions"])
    assert conditions["legacyRuleId"] == copy_id and conditions["legacyCopyOf"] == data_key
    assert rule["name"] == "Migrated Auto Bundle" and rule["isActive"]
    assert json.loads(rule["bundleTemplate"])["discount"]["shopifyDiscountId"] == messy.rule_discounts[copy_id]
    duplicate = outcomes[("auto_rule", data_key)]
    assert copy_id in (duplicate.detail or "")  # planned before its copy (keys sort so): no V2 id yet
    generated = outcomes[("bundle", AUTO_GENERATED_KEY)]
    assert generated.v2_id == rule["id"]
    rule_items = [
        o for (kind, _), o in outcomes.items() if kind == "auto_rule" and messy.shop_of(kind, o.legacy_id) == shop
    ]
    assert Counter(o.status for o in rule_items) == {"migrated": 1, "skipped": 1}

    # The validation report finds the data row's rule through its copy.
    report = await build_validation_report(ctx.pool, shop)
    assert report["autoBundleRules"]["unmigratedCount"] == 0 and report["ok"] is True, report
    assert report["explainedRows"][0]["v2Id"] == rule["id"]

    # A second run writes nothing and counts the same way.
    before = await fingerprint(db, messy.shops)
    again = await migrate_items(ctx, messy.shops)
    assert await fingerprint(db, messy.shops) == before
    assert (again[("auto_rule", copy_id)].status, again[("auto_rule", copy_id)].reason) == (
        "skipped",
        "already_migrated",
    )
    assert (again[("auto_rule", data_key)].status, again[("auto_rule", data_key)].reason) == (
        "skipped",
        "duplicate_of_rule",
    )
    assert again[("auto_rule", data_key)].v2_id == rule["id"]

    # A dry run on fresh data predicts the same outcomes.
    dry_messy = await seed_messy_legacy(
        db, sim, [new_shop("dmessy"), new_shop("dclean"), new_shop("dnosess"), new_shop("dauto")], copied_auto_rule=True
    )
    dry = await migrate_items(MigrationContext(pool=ctx.pool, shopify=ctx.shopify, dry_run=True), dry_messy.shops)
    data_key = f"auto_bundle_data:{dry_messy.auto_data_shop}"
    assert (dry[("auto_rule", data_key)].status, dry[("auto_rule", data_key)].reason) == (
        "skipped",
        "duplicate_of_rule",
    )


async def test_copied_rule_outcome_does_not_depend_on_item_order(ctx: MigrationContext, db: asyncpg.Connection) -> None:
    """Data row before its copy, the `Auto Generated Bundle` row before both, a copy made twice, a copy the
    merchant has since edited: each shop ends with one rule per distinct legacy rule."""
    copied, edited, uncopied = new_shop("order"), new_shop("edited"), new_shop("nocopy")
    for shop in (copied, edited, uncopied):
        await db.execute(
            """INSERT INTO auto_bundle_data (shop, collections, tags, "minPrice", "maxPrice", "minProducts", discount)
               VALUES ($1, $2, NULL, '10', '', '2', '15')""",
            shop,
            ["gid://shopify/Collection/7"],
        )
    first_copy = await copy_auto_bundle_data(db, copied)
    await db.execute(
        """UPDATE auto_bundle_rules SET "createdAt" = "createdAt" - interval '1 day' WHERE id = $1""", first_copy
    )
    second_copy = await copy_auto_bundle_data(db, copied)  # the hand-run SQL ran twice
    edited_copy = await copy_auto_bundle_data(db, edited)
    await db.execute("UPDATE auto_bundle_rules SET discount = '20' WHERE id = $1", edited_copy)
    generated = f"gid://shopify/DiscountAutomaticNode/{random.randint(10**9, 10**10)}"
    await db.execute(
        """INSERT INTO bundle_discount_id ("bundleId", "bundleName", "discountId", shop) VALUES ($1, $1, $2, $3)
           ON CONFLICT ("bundleId") DO UPDATE SET "discountId" = EXCLUDED."discountId", shop = EXCLUDED.shop""",
        AUTO_GENERATED_KEY,
        generated,
        copied,
    )

    async def one(shop: str, kind: Any, legacy_id: str) -> ItemOutcome:
        [outcome] = await migrate_batch(ctx, shop, kind, [legacy_id])
        return outcome

    # The discount row and the data row run before the copies.
    assert (await one(copied, "bundle", AUTO_GENERATED_KEY)).reason == "auto_generated_discount"
    data = await one(copied, "auto_rule", f"auto_bundle_data:{copied}")
    assert (data.status, data.reason, data.v2_id) == ("skipped", "duplicate_of_rule", None)
    assert first_copy in (data.detail or "")
    assert (await one(copied, "auto_rule", second_copy)).status == "migrated"
    assert (await one(copied, "auto_rule", first_copy)).status == "migrated"
    rules = {
        json.loads(r["conditions"])["legacyRuleId"]: r
        for r in await db.fetch('SELECT * FROM "AutoBundleRule" WHERE shop = $1', copied)
    }
    assert set(rules) == {first_copy, second_copy}  # two rows of the live table, the data row is the first
    first = json.loads(rules[first_copy]["conditions"])
    assert first["legacyCopyOf"] == f"auto_bundle_data:{copied}" and first["collections"] == [
        "gid://shopify/Collection/7"
    ]
    assert "legacyCopyOf" not in json.loads(rules[second_copy]["conditions"])
    assert json.loads(rules[first_copy]["bundleTemplate"])["discount"]["shopifyDiscountId"] == generated
    assert "shopifyDiscountId" not in json.loads(rules[second_copy]["bundleTemplate"])["discount"]
    again = await one(copied, "auto_rule", f"auto_bundle_data:{copied}")
    assert (again.reason, again.v2_id) == ("duplicate_of_rule", rules[first_copy]["id"])

    # Once migrated from its copy, the rule keeps standing for the data row even if the legacy app
    # deletes the copy afterwards: no second rule appears.
    await db.execute("DELETE FROM auto_bundle_rules WHERE id = ANY($1::text[])", [first_copy, second_copy])
    later = await one(copied, "auto_rule", f"auto_bundle_data:{copied}")
    assert (later.reason, later.v2_id) == ("duplicate_of_rule", rules[first_copy]["id"])
    assert await db.fetchval('SELECT count(*) FROM "AutoBundleRule" WHERE shop = $1', copied) == 2

    # A copy edited since (other values) is another rule: the data row migrates as the superseded one.
    assert (await one(edited, "auto_rule", edited_copy)).status == "migrated"
    superseded = await one(edited, "auto_rule", f"auto_bundle_data:{edited}")
    assert superseded.status == "migrated" and "superseded" in (superseded.detail or "")
    # No copy at all: the data row is the shop's one rule, active.
    alone = await one(uncopied, "auto_rule", f"auto_bundle_data:{uncopied}")
    assert alone.status == "migrated"
    assert await db.fetchval('SELECT "isActive" FROM "AutoBundleRule" WHERE id = $1', alone.v2_id) is True


async def test_dry_run_predicts_and_writes_nothing(
    ctx: MigrationContext, db: asyncpg.Connection, messy: ExpectedOutcomes
) -> None:
    dry = MigrationContext(pool=ctx.pool, shopify=ctx.shopify, dry_run=True)
    before = await fingerprint(db, messy.shops)
    outcomes = await migrate_items(dry, messy.shops)
    assert await fingerprint(db, messy.shops) == before
    assert set(outcomes) == set(messy.outcomes)
    for key, expected in messy.outcomes.items():
        got = outcomes[key]
        if expected.status == "failed":
            assert (got.status, got.reason) == (expected.status, expected.reason), (key, got)
        elif expected.reason == "ai_bundle_metaobject":
            # nothing was written, so the AI bundle is not there yet: this row would create it
            assert got.status == "migrated" and "AI bundle" in (got.detail or "")
        else:
            assert (got.status, got.reason) == (expected.status, expected.reason), (key, got)


async def test_fill_products_caches_component_facts(ctx: MigrationContext, db: asyncpg.Connection, sim: Any) -> None:
    shop = new_shop("fill")
    await seed_bulk_manual_bundles(db, sim, [shop], 12, products_per_shop=4)
    filling = MigrationContext(pool=ctx.pool, shopify=ctx.shopify, fill_products=True)
    await sim.reset_stats()
    outcomes = await migrate_items(filling, [shop], kinds=("bundle",))
    assert {o.status for o in outcomes.values()} == {"migrated"}
    stats = await sim.stats()
    assert stats["requests"][shop] == 2  # one nodes() for the metaobjects, one for the products
    products = {p["id"]: p for p in await sim.list_products(shop)}
    comps = await db.fetch(
        """SELECT c.* FROM "BundleComponent" c JOIN "Bundle" b ON b.id = c."bundleId" WHERE b.shop = $1""", shop
    )
    assert comps
    for comp in comps:
        product = products[comp["shopifyProductId"]]
        assert comp["cachedTitle"] == product["title"]
        assert comp["cachedImageUrl"] == product["imageUrl"]
        assert comp["cachedPrice"] == Decimal(product["price"])
        assert comp["cachedSku"] == product["sku"]
        assert comp["lastSyncedAt"] is not None


# ---------------------------------------------------------------------------------- the plan's queries


async def test_plan_validation_queries_verbatim(ctx: MigrationContext, db: asyncpg.Connection, sim: Any) -> None:
    """The plan's three queries, as written, on shops whose legacy rows are all ordinary and migratable
    (the odd kinds and AI bundles make the literal counts differ by design: the validation report
    explains those). Equal counts per shop, no such shop's row unmigrated, no discount mismatch."""
    shops = [new_shop("plan"), new_shop("plan")]
    await seed_bulk_manual_bundles(db, sim, shops, 15)
    outcomes = await migrate_items(ctx, shops, kinds=("bundle",))
    assert {o.status for o in outcomes.values()} == {"migrated"}
    counts, unmigrated, mismatches = plan_queries()

    by_shop: dict[str, dict[str, int]] = {}
    for row in await db.fetch(counts):
        if row["shop"] in shops:
            by_shop.setdefault(row["shop"], {})[row["source"]] = row["count"]
    assert by_shop == {shop: {"old": 15, "new": 15} for shop in shops}
    assert [r for r in await db.fetch(unmigrated) if r["shop"] in shops] == []
    ids = {r["id"] for r in await db.fetch('SELECT id FROM "Bundle" WHERE shop = ANY($1)', shops)}
    assert [r for r in await db.fetch(mismatches) if r["id"] in ids] == []


# ---------------------------------------------------------------------------------- races with the API


async def api_create(conn: Conn, shop: str, name: str) -> str:
    """What the bundle API's create does with DUAL_WRITE on: V2 rows, then the legacy row, one transaction."""
    gid = f"gid://shopify/Metaobject/{random.randint(10**12, 10**13)}"
    bundle_id, now = new_id(), utcnow()
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO "Bundle" (id, shop, name, title, slug, status, "shopifyMetaobjectId", metadata, "updatedAt")
               VALUES ($1, $2, $3, $3, $4, 'ACTIVE', $5, '{"source": "API"}', $6)""",
            bundle_id,
            shop,
            name,
            f"api-{bundle_id}",
            gid,
            now,
        )
        await conn.execute(
            """INSERT INTO "BundleComponent" (id, "bundleId", "shopifyProductId", "updatedAt")
               VALUES ($1, $2, 'gid://shopify/Product/1', $3)""",
            new_id(),
            bundle_id,
            now,
        )
        await conn.execute(
            """INSERT INTO "BundleDiscount" (id, "bundleId", "shopifyDiscountId", "updatedAt")
               VALUES ($1, $2, 'gid://shopify/DiscountAutomaticNode/1', $3)""",
            new_id(),
            bundle_id,
            now,
        )
        await conn.execute(
            """INSERT INTO bundle_discount_id ("bundleId", "bundleName", "discountId", shop)
               VALUES ($1, $2, 'gid://shopify/DiscountAutomaticNode/1', $3) ON CONFLICT DO NOTHING""",
            gid,
            name,
            shop,
        )
    return gid


async def api_delete(conn: Conn, shop: str, gid: str, legacy_first: bool) -> bool:
    """The API's delete (V2 row locked and deleted, then the legacy row), or with `legacy_first` the order
    of a writer that locks the legacy row first. Only acts on a bundle that is in V2 (else 404)."""
    async with conn.transaction():
        if legacy_first:
            await conn.fetchrow('SELECT 1 FROM bundle_discount_id WHERE "bundleId" = $1 FOR UPDATE', gid)
        bundle = await conn.fetchval(
            'SELECT id FROM "Bundle" WHERE shop = $1 AND "shopifyMetaobjectId" = $2 FOR UPDATE', shop, gid
        )
        if bundle is None:
            return False
        await conn.execute('DELETE FROM "Bundle" WHERE id = $1', bundle)
        await conn.execute('DELETE FROM bundle_discount_id WHERE "bundleId" = $1 AND shop = $2', gid, shop)
    return True


async def api_rename(conn: Conn, shop: str, gid: str, name: str, legacy_first: bool) -> bool:
    """The API's rename: both stores in one transaction; only a bundle that is in V2."""
    async with conn.transaction():
        if legacy_first:
            await conn.fetchrow('SELECT 1 FROM bundle_discount_id WHERE "bundleId" = $1 FOR UPDATE', gid)
        bundle = await conn.fetchval(
            'SELECT id FROM "Bundle" WHERE shop = $1 AND "shopifyMetaobjectId" = $2 FOR UPDATE', shop, gid
        )
        if bundle is None:
            return False
        await conn.execute('UPDATE "Bundle" SET name = $2, "updatedAt" = $3 WHERE id = $1', bundle, name, utcnow())
        await conn.execute(
            'UPDATE bundle_discount_id SET "bundleName" = $3 WHERE "bundleId" = $1 AND shop = $2', gid, shop, name
        )
    return True


class _Rollback(Exception):
    pass


async def legacy_app_delete(conn: Conn, shop: str, gid: str) -> bool:
    """The legacy Node app deleting a bundle it still owns: the legacy row, in a transaction that only
    commits if no V2 bundle exists once the row is locked. (Deleting a bundle V2 already owns goes
    through the API; a legacy-only delete serialised after the migration is not "deleted meanwhile".)"""
    try:
        async with conn.transaction():
            gone = await conn.execute('DELETE FROM bundle_discount_id WHERE "bundleId" = $1 AND shop = $2', gid, shop)
            owned = await conn.fetchval(
                'SELECT 1 FROM "Bundle" WHERE shop = $1 AND "shopifyMetaobjectId" = $2', shop, gid
            )
            if gone == "DELETE 0" or owned:
                raise _Rollback
    except _Rollback:
        return False
    return True


async def legacy_app_rename(conn: Conn, shop: str, gid: str, name: str) -> bool:
    """The legacy app renaming a bundle V2 does not own yet (same commit rule as `legacy_app_delete`)."""
    try:
        async with conn.transaction():
            done = await conn.execute(
                'UPDATE bundle_discount_id SET "bundleName" = $3 WHERE "bundleId" = $1 AND shop = $2', gid, shop, name
            )
            owned = await conn.fetchval(
                'SELECT 1 FROM "Bundle" WHERE shop = $1 AND "shopifyMetaobjectId" = $2', shop, gid
            )
            if done == "UPDATE 0" or owned:
                raise _Rollback
    except _Rollback:
        return False
    return True


async def test_backfill_races_api_writes_on_the_same_rows(
    ctx: MigrationContext, db: asyncpg.Connection, db_url: str, sim: Any, pool: asyncpg.Pool
) -> None:
    shops = [new_shop("race"), new_shop("race")]
    await seed_bulk_manual_bundles(db, sim, shops, 60)
    await sim.set_faults(latency_ms=5)  # widen the window between the batch read and the item transactions
    rng = random.Random(4)
    deleted: set[str] = set()
    renamed: dict[str, str] = {}
    created: set[str] = set()
    outcomes: list[ItemOutcome] = []

    async def api_writer(shop: str, ids: list[str], round_no: int) -> None:
        async with pool.acquire() as conn:
            for step in range(30):
                await asyncio.sleep(rng.uniform(0, 0.01))
                gid = rng.choice(ids)
                legacy_first = bool(step % 2)
                action = rng.random()
                if gid in deleted:
                    continue
                if action < 0.3:
                    if await api_delete(conn, shop, gid, legacy_first) or await legacy_app_delete(conn, shop, gid):
                        deleted.add(gid)
                        renamed.pop(gid, None)
                elif action < 0.8:
                    name = f"Renamed {round_no}-{step}"
                    if await api_rename(conn, shop, gid, name, legacy_first) or await legacy_app_rename(
                        conn, shop, gid, name
                    ):
                        renamed[gid] = name
                else:
                    created.add(await api_create(conn, shop, f"API made {round_no}-{step}"))

    async def migrator(shop: str, ids: list[str]) -> None:
        for start in range(0, len(ids), 10):
            outcomes.extend(await migrate_batch(ctx, shop, "bundle", ids[start : start + 10]))

    for round_no in range(3):
        tasks = []
        for shop in shops:
            async with pool.acquire() as conn:
                ids = [i.legacy_id for i in await plan_items(conn, "bundle", [shop])]
            tasks += [migrator(shop, ids), migrator(shop, list(reversed(ids))), api_writer(shop, ids, round_no)]
        await asyncio.gather(*tasks)
    await sim.set_faults(latency_ms=0)
    final = await migrate_items(ctx, shops, kinds=("bundle",))  # finish whatever the races left over
    outcomes.extend(final.values())

    assert {o.status for o in outcomes} <= {"migrated", "skipped"}, [o for o in outcomes if o.status == "failed"]
    assert {o.reason for o in outcomes if o.status == "skipped"} <= {"already_migrated", "deleted_meanwhile"}
    assert deleted and renamed and created

    # no duplicate V2 bundle per metaobject (and none per legacy key)
    dupes = await db.fetch(
        """SELECT "shopifyMetaobjectId", count(*) FROM "Bundle" WHERE shop = ANY($1)
           GROUP BY 1 HAVING count(*) > 1""",
        shops,
    )
    assert dupes == []
    # a deleted bundle never comes back, in either store
    back = await db.fetch(
        """SELECT "shopifyMetaobjectId" FROM "Bundle" WHERE shop = ANY($1) AND "shopifyMetaobjectId" = ANY($2)
           UNION ALL SELECT "bundleId" FROM bundle_discount_id WHERE "bundleId" = ANY($2)""",
        shops,
        list(deleted),
    )
    assert back == []
    # every surviving legacy row has exactly one V2 bundle, and the names agree (the API's rename won)
    pairs = await db.fetch(
        """SELECT bd."bundleId", bd."bundleName", b.name, b.id,
                  (SELECT count(*) FROM "BundleInventory" i WHERE i."bundleId" = b.id) AS inventories,
                  (SELECT count(*) FROM "BundleComponent" c WHERE c."bundleId" = b.id) AS components
           FROM bundle_discount_id bd
           LEFT JOIN "Bundle" b ON b.shop = bd.shop AND b."shopifyMetaobjectId" = bd."bundleId"
           WHERE bd.shop = ANY($1)""",
        shops,
    )
    assert pairs and all(p["id"] is not None for p in pairs)
    assert all(p["bundleName"] == p["name"] for p in pairs), [dict(p) for p in pairs if p["bundleName"] != p["name"]]
    by_gid = {p["bundleId"]: p for p in pairs}
    for gid, name in renamed.items():
        assert by_gid[gid]["name"] == name
    for gid in created - deleted:  # later rounds may delete or rename what an earlier round created
        assert gid in by_gid
    assert all(p["inventories"] <= 1 and p["components"] >= 1 for p in pairs)
    migrated_count = Counter(o.legacy_id for o in outcomes if o.status == "migrated")
    assert max(migrated_count.values()) == 1  # each legacy row migrated exactly once across the racing runs


async def test_an_api_delete_between_the_batch_reads_is_not_a_failure(
    ctx: MigrationContext, db: asyncpg.Connection, db_url: str, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API deletes a bundle from both stores right after the batch has read the legacy rows and
    before it looks for their V2 bundles. Read one statement at a time, the row is there and its
    bundle is not, so the item went to Shopify for a metaobject nobody has and failed as
    `metaobject_not_found` (seen in CI). One snapshot sees both or neither."""
    shop = new_shop("snap")
    await seed_bulk_manual_bundles(db, sim, [shop], 2)
    gid = await api_create(db, shop, "Made by the API")  # no metaobject in the simulator
    real_fetch = repo_migration.fetch_bundle_rows
    deleted: list[bool] = []

    async def fetch_then_delete(conn: Conn, shop_: str, ids: Any) -> Any:
        rows = await real_fetch(conn, shop_, ids)
        if not deleted:
            other = await asyncpg.connect(db_url)
            try:
                deleted.append(await api_delete(other, shop, gid, legacy_first=False))
            finally:
                await other.close()
        return rows

    monkeypatch.setattr(repo_migration, "fetch_bundle_rows", fetch_then_delete)
    async with ctx.pool.acquire() as conn:
        ids = [i.legacy_id for i in await plan_items(conn, "bundle", [shop])]
    assert gid in ids
    outcomes = {o.legacy_id: o for o in await migrate_batch(ctx, shop, "bundle", ids)}
    assert deleted == [True]
    assert (outcomes[gid].status, outcomes[gid].reason) == ("skipped", "already_migrated")
    assert sorted(o.status for o in outcomes.values()) == ["migrated", "migrated", "skipped"]
    assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE "shopifyMetaobjectId" = $1', gid) == 0


async def test_a_legacy_app_delete_during_the_shopify_read_is_deleted_meanwhile(
    ctx: MigrationContext, db: asyncpg.Connection, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The legacy app deletes the metaobject in Shopify and then its row (pages/api/deleteBundles.ts).
    Both happen while the batch reads Shopify: the metaobject is missing because the bundle was
    deleted, which the recheck of the row tells from a row whose metaobject never existed."""
    shop = new_shop("gone")
    await seed_bulk_manual_bundles(db, sim, [shop], 3)
    async with ctx.pool.acquire() as conn:
        ids = [i.legacy_id for i in await plan_items(conn, "bundle", [shop])]
    deleted_in_time, row_kept = ids[0], ids[1]  # the second's row stays: a real metaobject_not_found
    real_fetch = ctx.shopify.fetch_metaobjects_detailed

    async def legacy_app_deletes_meanwhile(shop_: str, gids: Any) -> Any:
        for gid in (deleted_in_time, row_kept):
            assert await sim.delete_metaobject(shop, gid)
        result = await real_fetch(shop_, gids)
        await db.execute('DELETE FROM bundle_discount_id WHERE "bundleId" = $1', deleted_in_time)
        return result

    monkeypatch.setattr(ctx.shopify, "fetch_metaobjects_detailed", legacy_app_deletes_meanwhile)
    outcomes = {o.legacy_id: o for o in await migrate_batch(ctx, shop, "bundle", ids)}
    assert (outcomes[deleted_in_time].status, outcomes[deleted_in_time].reason) == ("skipped", "deleted_meanwhile")
    assert (outcomes[row_kept].status, outcomes[row_kept].reason) == ("failed", "metaobject_not_found")
    assert outcomes[ids[2]].status == "migrated"
    assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = $1', shop) == 1


# ---------------------------------------------------------------------------------- Shopify faults


async def test_shopify_faults_fail_items_transiently_never_raise(
    pool: asyncpg.Pool, db: asyncpg.Connection, sim: Any, simulator: Any
) -> None:
    shops = [new_shop("fault") for _ in range(4)]
    await seed_bulk_manual_bundles(db, sim, shops, 8)
    await sim.set_faults(error5xx=0.4, throttle429=0.05, malformed=0.15, seed=7)
    async with shopify_client(pool, simulator.url_template, max_attempts=2) as client:
        ctx = MigrationContext(pool=pool, shopify=client)
        outcomes = await migrate_items(ctx, shops, kinds=("bundle",), batch_size=4)
        assert len(outcomes) == 32
        failed = [o for o in outcomes.values() if o.status == "failed"]
        assert {o.status for o in outcomes.values()} <= {"migrated", "failed"}
        assert all(o.transient and o.reason in {"shopify_unavailable", "shopify_bad_response"} for o in failed), failed
        assert failed, "with these fault rates some batch should exhaust its two attempts"
        await sim.set_faults(error5xx=0, throttle429=0, malformed=0)
        retried = await migrate_items(ctx, shops, kinds=("bundle",))
    for key, first in outcomes.items():
        expected = ("migrated", None) if first.status == "failed" else ("skipped", "already_migrated")
        assert (retried[key].status, retried[key].reason) == expected
    assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = ANY($1)', shops) == 32


async def test_revoked_token_fails_only_that_shop(ctx: MigrationContext, db: asyncpg.Connection, sim: Any) -> None:
    ok_shop, revoked = new_shop("tok"), new_shop("tok")
    await seed_bulk_manual_bundles(db, sim, [ok_shop, revoked], 6)
    await sim.revoke_token(revoked)
    outcomes = await migrate_items(ctx, [ok_shop, revoked], kinds=("bundle",))
    async with ctx.pool.acquire() as conn:
        shop_of = {i.legacy_id: i.shop for i in await plan_items(conn, "bundle", [ok_shop, revoked])}
    for (_, legacy_id), outcome in outcomes.items():
        if shop_of[legacy_id] == revoked:
            assert (outcome.status, outcome.reason, outcome.transient) == ("failed", "shop_unauthorized", False)
        else:
            assert outcome.status == "migrated"
    assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = $1', revoked) == 0


async def test_frozen_shop_and_unknown_kind_never_raise(
    ctx: MigrationContext, db: asyncpg.Connection, sim: Any
) -> None:
    shop = new_shop("frozen")
    await seed_bulk_manual_bundles(db, sim, [shop], 3)
    await sim.put_shop(shop, status="frozen")
    async with ctx.pool.acquire() as conn:
        ids = [i.legacy_id for i in await plan_items(conn, "bundle", [shop])]
    outcomes = await migrate_batch(ctx, shop, "bundle", [*ids, ids[0], "gid://shopify/Metaobject/999999999999"])
    assert [o.legacy_id for o in outcomes] == [*ids, "gid://shopify/Metaobject/999999999999"]
    assert [(o.status, o.reason) for o in outcomes[:3]] == [("failed", "shop_frozen")] * 3
    assert (outcomes[3].status, outcomes[3].reason) == ("skipped", "deleted_meanwhile")
    weird = await migrate_batch(ctx, shop, "nonsense", ["x"])  # type: ignore[arg-type]
    assert (weird[0].status, weird[0].reason) == ("failed", "internal_error")


async def test_handle_lookup_error_is_transient_not_not_found(
    ctx: MigrationContext, db: asyncpg.Connection, sim: Any
) -> None:
    """A null metaobjectByHandle *with* an error (partial response) may hide an existing bundle."""
    shop = new_shop("handle")
    await seed_bulk_manual_bundles(db, sim, [shop], 1)
    handle = f"imported-{new_id()}"
    await sim.add_metaobjects(
        shop, [{"type": "product-bundles", "handle": handle, "fields": {"products": '["gid://shopify/Product/5"]'}}]
    )
    key = f"gid://shopify/Metaobject/{handle}"
    await db.execute(
        """INSERT INTO bundle_discount_id ("bundleId", "bundleName", "discountId", shop) VALUES ($1, 'H', 'd1', $2)""",
        key,
        shop,
    )
    await sim.set_faults(shop, next_faults=[{"kind": "malformed", "variant": "partial"}])
    [failed] = await migrate_batch(ctx, shop, "bundle", [key])
    assert (failed.status, failed.reason, failed.transient) == ("failed", "shopify_unavailable", True)
    [ok] = await migrate_batch(ctx, shop, "bundle", [key])
    assert ok.status == "migrated"
    real_gid = await db.fetchval('SELECT "shopifyMetaobjectId" FROM "Bundle" WHERE id = $1', ok.v2_id)
    assert real_gid.startswith("gid://shopify/Metaobject/") and real_gid != key
