import asyncio, json
from typing import Any
from urllib.parse import quote
import asyncpg, httpx, pytest
from app.core.ids import new_id
from tests.conftest import new_shop
from tests.legacy_fixtures import seed_bulk_manual_bundles
from tests.integration.bundle_helpers import bundles_url, bundle_body, discount_gid

pytestmark = pytest.mark.asyncio(loop_scope="session")
JOBS = "/admin/migrations/jobs"

async def run(client, shops):
    r = await client.post(JOBS, json={"kind": "bundles", "shops": shops, "batchSize": 5})
    assert r.status_code == 202, r.text
    url = r.json()["statusUrl"]
    while True:
        b = (await client.get(url)).json()
        if b["status"] in ("succeeded", "failed", "cancelled"):
            return b
        await asyncio.sleep(0.05)

async def test_handle(client: httpx.AsyncClient, db: asyncpg.Connection, sim: Any) -> None:
    shop = new_shop("hd")
    await seed_bulk_manual_bundles(db, sim, [shop], 1)
    keys = []
    for i in range(3):
        handle = f"imported-{new_id()}"
        [mo] = await sim.add_metaobjects(shop, [{"type": "product-bundles", "handle": handle, "fields": {"bundle_name": "H", "products": '["gid://shopify/Product/5"]'}}])
        key = f"gid://shopify/Metaobject/{handle}"
        await db.execute("""INSERT INTO bundle_discount_id ("bundleId", "bundleName", "discountId", shop) VALUES ($1, $2, 'd1', $3)""", key, f"H{i}", shop)
        keys.append((key, mo["id"]))
    # create on the real GID of a not-yet-migrated handle row
    r = await client.post(bundles_url(shop), json=bundle_body(name="Takeover", metaobject=keys[2][1], discount=discount_gid()))
    print("create on real gid of unmigrated handle row:", r.status_code, r.text[:100])
    job = await run(client, [shop])
    print(job["stats"])
    (k0, g0), (k1, g1), _ = keys
    r = await client.patch(bundles_url(shop, quote(g0, safe="")), json={"name": "Renamed"})
    print("patch", r.status_code, r.json().get("legacySync"))
    r = await client.delete(bundles_url(shop, quote(g1, safe="")))
    print("delete", r.status_code)
    print([dict(x) for x in await db.fetch('SELECT "bundleId", "bundleName" FROM bundle_discount_id WHERE shop=$1', shop)])
    job = await run(client, [shop])
    print(job["stats"])
    print([dict(x) for x in await db.fetch('SELECT "shopifyMetaobjectId", name, metadata FROM "Bundle" WHERE shop=$1', shop)])
