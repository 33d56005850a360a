"""DATABASE_READ_URL: read-only paths use the read pool, writes and the read model stay on the primary.

No real replication here: the "replica" URL is the same database under another
`application_name`, and what ran where is read from the server's own view (`pg_stat_activity`):
a backend of the read pool whose state changed ran a statement (its `query` is then the pool's
reset on release, so the test reads each request's effect by itself).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest

from app.core.config import Settings
from app.core.db import resolve_direct_url, url_application_name, uses_pgbouncer
from app.core.security import sign_app_proxy_params
from tests.conftest import API_SECRET
from tests.integration.bundle_helpers import bundle_body, bundles_url, product_gid

Activity = frozenset[tuple[int, Any, str]]


def replica_url(db_url: str, application_name: str) -> str:
    return f"{db_url}{'&' if '?' in db_url else '?'}application_name={application_name}"


async def activity(db: asyncpg.Connection, application_name: str) -> Activity:
    """(pid, state_change, last query) of every backend under `application_name`."""
    rows = await db.fetch(
        "SELECT pid, state_change, query FROM pg_stat_activity WHERE application_name = $1", application_name
    )
    return frozenset((r["pid"], r["state_change"], r["query"]) for r in rows)


def ran(before: Activity, after: Activity) -> list[str]:
    """The last statement of every backend that ran something between the two snapshots."""
    return sorted(query for (_pid, _changed, query) in after - before)


def signed(shop: str, product: str, param: str = "product_id") -> list[tuple[str, str]]:
    items = [("shop", shop), ("timestamp", str(int(time.time()))), (param, product)]
    return [*items, ("signature", sign_app_proxy_params(items, API_SECRET))]


async def set_flag_override(client: Any, name: str, shop: str, value: bool) -> None:
    state = (await client.get(f"/admin/flags/{name}")).json()
    body = {key: state[key] for key in ("enabled", "rolloutPercent", "sampleRate")}
    overrides = {**state["shopOverrides"], shop: value}
    response = await client.put(f"/admin/flags/{name}", json={**body, "shopOverrides": overrides, "reason": "replica"})
    assert response.status_code == 200, response.text
    store = client.app.state.container.flags
    deadline = time.monotonic() + 5
    while store.is_enabled(name, shop) != value:
        assert time.monotonic() < deadline, f"{name} did not propagate"
        await asyncio.sleep(0.01)


async def test_read_paths_use_the_read_pool_and_writes_do_not(
    app_factory: Any, db: asyncpg.Connection, db_url: str, shop: str
) -> None:
    name = f"sb-replica-{uuid.uuid4().hex[:8]}"
    product = product_gid()
    async with app_factory(DATABASE_READ_URL=replica_url(db_url, name), STOREFRONT_CACHE=False) as client:
        container = client.app.state.container
        assert container.read_pool is not None and container.read_only_pool is container.read_pool
        for flag in ("V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE"):
            await set_flag_override(client, flag, shop, True)
        # No background shadow comparison may read the replica while a write is being watched.
        await set_flag_override(client, "SHADOW_READS", shop, False)
        assert await activity(db, name), "the read pool holds a connection under its application_name"

        # Writes: nothing runs on the read pool, the rows are on the primary.
        before = await activity(db, name)
        created = await client.post(bundles_url(shop), json=bundle_body(products=[product], status="ACTIVE"))
        assert created.status_code == 201, created.text
        bundle_id = created.json()["id"]
        patched = await client.patch(bundles_url(shop, bundle_id), json={"title": "Read from the replica"})
        assert patched.status_code == 200, patched.text
        assert ran(before, await activity(db, name)) == []
        assert await db.fetchval('SELECT title FROM "Bundle" WHERE id = $1', bundle_id) == "Read from the replica"

        # Bundle GET and list (V2 path) read the replica.
        before = await activity(db, name)
        got = await client.get(bundles_url(shop, bundle_id))
        assert got.status_code == 200 and got.json()["title"] == "Read from the replica"
        assert ran(before, await activity(db, name)), "the GET ran on the read pool"
        before = await activity(db, name)
        listed = await client.get(bundles_url(shop))
        assert listed.status_code == 200 and [b["id"] for b in listed.json()["items"]] == [bundle_id]
        assert ran(before, await activity(db, name)), "the list ran on the read pool"

        # Storefront (read model off): both V2 endpoints and the AI endpoint read the replica.
        for path, param in (
            ("/proxy/v2/bundles", "product_id"),
            ("/proxy/bundles-for-product", "product_id"),
            ("/proxy/ai-bundles-for-product", "productId"),
        ):
            before = await activity(db, name)
            answer = await client.get(path, params=signed(shop, product, param))
            assert answer.status_code == 200, (path, answer.text)
            assert ran(before, await activity(db, name)), f"{path} did not read the read pool"
        v2 = (await client.get("/proxy/v2/bundles", params=signed(shop, product))).json()
        assert [b["id"] for b in v2["bundles"]] == [bundle_id]

        # A delete is a write: the replica stays idle.
        before = await activity(db, name)
        deleted = await client.delete(bundles_url(shop, bundle_id), headers={"If-Match": patched.headers["ETag"]})
        assert deleted.status_code == 204, deleted.text
        assert ran(before, await activity(db, name)) == []
        assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE id = $1', bundle_id) == 0
    assert not await activity(db, name), "the read pool is closed with the service"


async def test_the_read_model_computes_on_the_primary(
    app_factory: Any, db: asyncpg.Connection, db_url: str, shop: str
) -> None:
    """A cached answer must include every write whose notification arrived; a lagging replica
    does not promise that, so with the read model on the storefront's V2 answers come from the primary."""
    name = f"sb-replica-{uuid.uuid4().hex[:8]}"
    product = product_gid()
    async with app_factory(DATABASE_READ_URL=replica_url(db_url, name)) as client:
        container = client.app.state.container
        assert container.storefront_cache is not None
        await set_flag_override(client, "V2_BUNDLE_ENGINE", shop, True)
        await set_flag_override(client, "SHADOW_READS", shop, False)
        created = await client.post(bundles_url(shop), json=bundle_body(products=[product], status="ACTIVE"))
        assert created.status_code == 201, created.text
        await container.storefront_cache_listener.sync()
        before = await activity(db, name)
        for path in ("/proxy/v2/bundles", "/proxy/bundles-for-product"):
            answer = await client.get(path, params=signed(shop, product))
            assert answer.status_code == 200, answer.text
            assert created.json()["id"] in answer.text or created.json()["shopifyMetaobjectId"] in answer.text
        assert ran(before, await activity(db, name)) == []
        assert container.storefront_cache.misses >= 2


def test_direct_url_and_pgbouncer_detection() -> None:
    plain = "postgresql://u@db:5432/app"
    bouncer = "postgresql://u@bouncer:6432/app"
    assert url_application_name(plain + "?application_name=x") == "x" and url_application_name(plain) is None
    assert not uses_pgbouncer(Settings(DATABASE_URL=plain), plain)
    assert uses_pgbouncer(Settings(DATABASE_URL=bouncer), bouncer)
    assert not uses_pgbouncer(Settings(DATABASE_URL=bouncer, DATABASE_PGBOUNCER=False), bouncer)
    assert uses_pgbouncer(Settings(DATABASE_URL=plain, DATABASE_PGBOUNCER=True), plain)
    assert resolve_direct_url(Settings(DATABASE_URL=plain), plain) == plain
    assert resolve_direct_url(Settings(DATABASE_URL=bouncer, DATABASE_DIRECT_URL=plain), bouncer) == plain
    with pytest.raises(RuntimeError, match="DATABASE_DIRECT_URL"):
        resolve_direct_url(Settings(DATABASE_URL=bouncer), bouncer)
