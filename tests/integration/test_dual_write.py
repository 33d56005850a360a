"""Dual write (api.md): V2 and legacy tables change together, in one transaction, or not at all."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.conftest import new_shop
from tests.integration.bundle_helpers import (
    bundle_body,
    bundles_url,
    container_of,
    discount_gid,
    flag_override,
    legacy_row,
    metaobject_gid,
    product_gid,
    v2_counts,
)

PLAN = Path(__file__).resolve().parents[3] / "shared" / "seed" / "migration-plan-v2.md"
PROBLEM = "application/problem+json"


def validation_queries() -> list[str]:
    """The plan's "Data Validation Queries", verbatim, split on ';'."""
    text = PLAN.read_text()
    section = text[text.index("## Data Validation Queries") :]
    block = re.search(r"```sql\n(.*?)```", section, re.S)
    assert block is not None
    return [q.strip() for q in block.group(1).split(";") if q.strip()]


async def metric_value(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    text = (await client.get("/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def ai_row(db: asyncpg.Connection, ai_id: str) -> dict[str, Any]:
    row = await db.fetchrow("SELECT * FROM ai_fbt_bundles WHERE id = $1", ai_id)
    assert row is not None
    return dict(row)


async def test_create_update_delete_keep_both_stores_consistent(
    client: httpx.AsyncClient, shop: str, db: asyncpg.Connection
) -> None:
    metaobject, discount = metaobject_gid(), discount_gid()
    body = bundle_body(name="Original", metaobject=metaobject, discount=discount, products=[product_gid()] * 1)
    body["components"].append({"shopifyProductId": product_gid(), "quantity": 2})
    created = await client.post(bundles_url(shop), json=body)
    assert created.status_code == 201, created.text
    bundle = created.json()
    assert bundle["legacySync"] == "synced"
    counts = await v2_counts(db, bundle["id"])
    assert counts == {
        "Bundle": 1,
        "BundleComponent": 2,
        "BundlePricingRule": 1,
        "BundleDiscount": 1,
        "BundleInventory": 1,
    }
    assert await legacy_row(db, metaobject) == {
        "bundleId": metaobject,
        "bundleName": "Original",
        "discountId": discount,
        "shop": shop,
    }
    updated_at = await db.fetchval('SELECT "updatedAt" FROM "Bundle" WHERE id = $1', bundle["id"])
    assert updated_at is not None

    # Rename + change the discount: the legacy row follows.
    new_discount = discount_gid()
    url = bundles_url(shop, bundle["id"])
    patched = await client.patch(url, json={"name": "Renamed", "discounts": [{"shopifyDiscountId": new_discount}]})
    assert patched.status_code == 200 and patched.json()["legacySync"] == "synced"
    row = await legacy_row(db, metaobject)
    assert row is not None and (row["bundleName"], row["discountId"]) == ("Renamed", new_discount)
    assert await db.fetchval('SELECT "updatedAt" FROM "Bundle" WHERE id = $1', bundle["id"]) > updated_at
    assert await db.fetchval('SELECT count(*) FROM "BundleDiscount" WHERE "bundleId" = $1', bundle["id"]) == 1

    # Another metaobject: the legacy row moves.
    moved_to = metaobject_gid()
    patched = await client.patch(url, json={"shopifyMetaobjectId": moved_to})
    assert patched.status_code == 200
    assert await legacy_row(db, metaobject) is None
    assert (await legacy_row(db, moved_to) or {}).get("bundleName") == "Renamed"

    # No active discount any more: the legacy table cannot hold it.
    patched = await client.patch(url, json={"discounts": [{"shopifyDiscountId": new_discount, "isActive": False}]})
    assert patched.json()["legacySync"] == "not_representable"
    assert await legacy_row(db, moved_to) is None
    patched = await client.patch(url, json={"discounts": [{"shopifyDiscountId": new_discount}]})
    assert patched.json()["legacySync"] == "synced"
    assert await legacy_row(db, moved_to) is not None

    assert (await client.delete(url)).status_code == 204
    assert await legacy_row(db, moved_to) is None
    assert await v2_counts(db, bundle["id"]) == dict.fromkeys(counts, 0)


async def test_not_representable_bundles_say_so_and_are_counted(
    client: httpx.AsyncClient, shop: str, db: asyncpg.Connection
) -> None:
    before = await metric_value(client, "sb_dual_writes_total", outcome="not_representable")
    no_metaobject = await client.post(bundles_url(shop), json=bundle_body(metaobject=None))
    no_discount = await client.post(bundles_url(shop), json=bundle_body(discount=None))
    assert no_metaobject.json()["legacySync"] == "not_representable"
    assert no_discount.json()["legacySync"] == "not_representable"
    assert await legacy_row(db, no_discount.json()["shopifyMetaobjectId"]) is None
    assert await db.fetchval("SELECT count(*) FROM bundle_discount_id WHERE shop = $1", shop) == 0
    after = await metric_value(client, "sb_dual_writes_total", outcome="not_representable")
    assert after - before == 2


async def test_dual_write_off_touches_only_v2(client: httpx.AsyncClient, shop: str, db: asyncpg.Connection) -> None:
    async with flag_override(client, "DUAL_WRITE", shop, False):
        created = await client.post(bundles_url(shop), json=bundle_body())
        assert created.status_code == 201
        assert created.json()["legacySync"] == "disabled"
        assert await legacy_row(db, created.json()["shopifyMetaobjectId"]) is None
    synced = await client.post(bundles_url(shop), json=bundle_body())
    assert synced.json()["legacySync"] == "synced"


async def test_ai_bundles_write_through_to_ai_fbt_bundles(
    client: httpx.AsyncClient, shop: str, db: asyncpg.Connection
) -> None:
    first, second, third = product_gid(), product_gid(), product_gid()
    body = bundle_body(
        metaobject=None,
        products=[first, second],
        metadata={"source": "AI", "confidence": 0.7, "support": 0.1, "lift": 2.5},
    )
    created = await client.post(bundles_url(shop), json=body)
    assert created.status_code == 201, created.text
    bundle = created.json()
    ai_id = bundle["metadata"]["ai_bundle_id"]
    assert bundle["legacySync"] == "synced"
    row = await ai_row(db, ai_id)
    # Numeric ids, as the legacy generator stores them (the theme builds /products/<id>.js from them).
    numeric = {p: p.removeprefix("gid://shopify/Product/") for p in (first, second, third)}
    assert (row["shop"], row["productId"], row["bundledProductIds"]) == (shop, numeric[first], [numeric[second]])
    assert (row["isActive"], row["confidenceScore"], row["lift"], row["source"]) == (False, 0.7, 2.5, "AI")
    assert row["discountId"] == bundle["discounts"][0]["shopifyDiscountId"]

    url = bundles_url(shop, bundle["id"])
    metaobject = metaobject_gid()
    patched = await client.patch(
        url,
        json={"status": "ACTIVE", "shopifyMetaobjectId": metaobject, "components": [{"shopifyProductId": third}]},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["metadata"]["ai_bundle_id"] == ai_id
    row = await ai_row(db, ai_id)
    assert (row["productId"], row["bundledProductIds"], row["isActive"]) == (numeric[third], [], True)
    assert (row["bundleMetaobjectId"], row["isManualOverride"]) == (metaobject, True)
    assert await legacy_row(db, metaobject) is not None  # metaobject + discount: also in bundle_discount_id

    assert (await client.delete(url)).status_code == 204
    assert await db.fetchval("SELECT count(*) FROM ai_fbt_bundles WHERE id = $1", ai_id) == 0
    assert await legacy_row(db, metaobject) is None


async def test_ai_bundle_id_must_name_an_ai_bundle_of_the_shop(
    client: httpx.AsyncClient, shop: str, db: asyncpg.Connection
) -> None:
    existing = f"cai{random.randrange(10**20)}"
    await db.execute(
        'INSERT INTO ai_fbt_bundles (id, shop, "productId", "bundledProductIds", "confidenceScore", support, lift) '
        "VALUES ($1, $2, 'gid://shopify/Product/1', ARRAY['gid://shopify/Product/2'], 0.5, 0.1, 1.5)",
        existing,
        shop,
    )
    product = product_gid()
    adopted = await client.post(
        bundles_url(shop),
        json=bundle_body(metaobject=None, products=[product], metadata={"source": "AI", "ai_bundle_id": existing}),
    )
    assert adopted.status_code == 201, adopted.text
    row = await ai_row(db, existing)
    assert (row["productId"], row["confidenceScore"]) == (product.removeprefix("gid://shopify/Product/"), 0.5)
    duplicate = await client.post(
        bundles_url(shop), json=bundle_body(metaobject=None, metadata={"source": "AI", "ai_bundle_id": existing})
    )
    assert duplicate.status_code == 409
    for unknown_shop, ai_id in ((shop, "cnosuchaibundle"), (new_shop(), existing)):
        response = await client.post(
            bundles_url(unknown_shop),
            json=bundle_body(metaobject=None, metadata={"source": "AI", "ai_bundle_id": ai_id}),
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "body.metadata.ai_bundle_id"


async def test_legacy_conflict_leaves_nothing_behind(
    client: httpx.AsyncClient, shop: str, db: asyncpg.Connection
) -> None:
    metaobject = metaobject_gid()
    other = new_shop("other")
    await db.execute(
        'INSERT INTO bundle_discount_id ("bundleId", "bundleName", "discountId", shop) VALUES ($1, $2, $3, $4)',
        metaobject,
        "theirs",
        "d",
        other,
    )
    conflicts_before = await metric_value(client, "sb_dual_writes_total", outcome="conflict")
    product = product_gid()
    response = await client.post(
        bundles_url(shop),
        json=bundle_body(metaobject=metaobject, products=[product]),
        headers={"Idempotency-Key": "conflict-1"},
    )
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["detail"] == "metaobject already bundled"
    assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = $1', shop) == 0
    for table in ("BundleComponent",):
        assert await db.fetchval(f'SELECT count(*) FROM "{table}" WHERE "shopifyProductId" = $1', product) == 0
    orphans = await db.fetchval(
        'SELECT count(*) FROM "BundleInventory" i LEFT JOIN "Bundle" b ON b.id = i."bundleId" WHERE b.id IS NULL'
    )
    assert orphans == 0
    assert await db.fetchval("SELECT count(*) FROM sb_idempotency_keys WHERE shop = $1", shop) == 0
    assert (await legacy_row(db, metaobject) or {}).get("shop") == other
    assert await metric_value(client, "sb_dual_writes_total", outcome="conflict") == conflicts_before + 1

    # A legacy bundle of this very shop that no V2 bundle owns yet: also taken (migrate it instead).
    unmigrated = metaobject_gid()
    await db.execute(
        'INSERT INTO bundle_discount_id ("bundleId", "bundleName", "discountId", shop) VALUES ($1, \'old\', \'d\', $2)',
        unmigrated,
        shop,
    )
    assert (await client.post(bundles_url(shop), json=bundle_body(metaobject=unmigrated))).status_code == 409

    # V2 side: two bundles of one shop cannot share a metaobject; neither can an update steal one.
    mine = metaobject_gid()
    assert (await client.post(bundles_url(shop), json=bundle_body(metaobject=mine))).status_code == 201
    again = await client.post(bundles_url(shop), json=bundle_body(metaobject=mine))
    assert again.status_code == 409 and again.json()["detail"] == "metaobject already bundled"
    second = (await client.post(bundles_url(shop), json=bundle_body())).json()
    steal = await client.patch(bundles_url(shop, second["id"]), json={"shopifyMetaobjectId": mine})
    assert steal.status_code == 409
    assert await legacy_row(db, second["shopifyMetaobjectId"]) is not None  # the failed update changed nothing
    assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = $1', shop) == 2


async def test_connection_killed_between_the_two_writes(
    client: httpx.AsyncClient, shop: str, db: asyncpg.Connection
) -> None:
    killed: list[int] = []

    async def kill(target_shop: str, backend_pid: int) -> None:
        if target_shop == shop:
            await db.execute("SELECT pg_terminate_backend($1)", backend_pid)
            killed.append(backend_pid)

    container = container_of(client)
    metaobject, product = metaobject_gid(), product_gid()
    existing = (await client.post(bundles_url(shop), json=bundle_body())).json()
    container.fault_hooks.after_v2_write = kill
    try:
        created = await client.post(
            bundles_url(shop),
            json=bundle_body(metaobject=metaobject, products=[product]),
            headers={"Idempotency-Key": "killed-1"},
        )
        updated = await client.patch(bundles_url(shop, existing["id"]), json={"name": "never"})
        deleted = await client.delete(bundles_url(shop, existing["id"]))
    finally:
        container.fault_hooks.after_v2_write = None
    assert len(killed) == 3
    for response in (created, updated, deleted):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
    assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = $1', shop) == 1
    assert await db.fetchval('SELECT count(*) FROM "BundleComponent" WHERE "shopifyProductId" = $1', product) == 0
    assert await legacy_row(db, metaobject) is None
    assert await db.fetchval("SELECT count(*) FROM sb_idempotency_keys WHERE shop = $1", shop) == 0
    assert await db.fetchval('SELECT name FROM "Bundle" WHERE id = $1', existing["id"]) == existing["name"]
    assert (await legacy_row(db, existing["shopifyMetaobjectId"]) or {}).get("bundleName") == existing["name"]

    # The pool recovered: the same request now succeeds.
    retried = await client.post(
        bundles_url(shop),
        json=bundle_body(metaobject=metaobject, products=[product]),
        headers={"Idempotency-Key": "killed-1"},
    )
    assert retried.status_code == 201
    assert await legacy_row(db, metaobject) is not None


async def test_concurrent_mixed_writes_pass_the_plans_validation_queries(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    shops = [new_shop(f"cc{i}") for i in range(10)]

    async def create(shop: str) -> dict[str, Any]:
        response = await client.post(bundles_url(shop), json=bundle_body())
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    seeded = await asyncio.gather(*(create(shop) for shop in shops for _ in range(10)))
    by_shop: dict[str, list[dict[str, Any]]] = {shop: [] for shop in shops}
    for bundle in seeded:
        by_shop[bundle["shop"]].append(bundle)

    operations: list[tuple[str, Any]] = []
    for shop, bundles in by_shop.items():
        operations += [("create", shop)] * 8
        for bundle in bundles[:3]:  # two concurrent updates of the same bundle
            operations.append(("rename", bundle))
            operations.append(("discount", bundle))
        operations += [("move", bundle) for bundle in bundles[3:5]]
        operations += [("delete", bundle) for bundle in bundles[5:9]]
    assert len(operations) == 200
    random.shuffle(operations)

    async def run(op: str, target: Any) -> int:
        if op == "create":
            return (await client.post(bundles_url(target), json=bundle_body())).status_code
        url = bundles_url(target["shop"], target["id"])
        if op == "rename":
            payload: dict[str, Any] = {"name": f"Renamed {random.random()}"}
        elif op == "discount":
            payload = {"discounts": [{"shopifyDiscountId": discount_gid()}]}
        elif op == "move":
            payload = {"shopifyMetaobjectId": metaobject_gid()}
        else:
            return (await client.delete(url)).status_code
        return (await client.patch(url, json=payload)).status_code

    statuses = await asyncio.gather(*(run(op, target) for op, target in operations))
    expected = {"create": 201, "rename": 200, "discount": 200, "move": 200, "delete": 204}
    assert [s for s in statuses] == [expected[op] for op, _ in operations]

    counts, unmigrated, mismatches = validation_queries()
    rows = await db.fetch(counts)
    per_shop: dict[str, dict[str, int]] = {}
    for row in rows:
        if row["shop"] in by_shop:
            per_shop.setdefault(row["shop"], {})[row["source"]] = row["count"]
    assert per_shop == {shop: {"old": 14, "new": 14} for shop in shops}
    assert [r for r in await db.fetch(unmigrated) if r["shop"] in by_shop] == []
    test_ids = {r["id"] for r in await db.fetch('SELECT id FROM "Bundle" WHERE shop = ANY($1::text[])', shops)}
    assert [r for r in await db.fetch(mismatches) if r["id"] in test_ids] == []
    # Every V2 row agrees with its legacy row on name and discount, not just on existence.
    disagreeing = await db.fetch(
        """
        SELECT b.id FROM "Bundle" b
        JOIN bundle_discount_id old ON old."bundleId" = b."shopifyMetaobjectId"
        WHERE b.shop = ANY($1::text[]) AND (old."bundleName" <> b.name OR old.shop <> b.shop)
        """,
        shops,
    )
    assert disagreeing == []
