"""The write-through outbox: written in the bundle's transaction, delivered in order per bundle,
retried through a Shopify outage, dead-lettered on permanent failures, and exactly-once in effect
across a SIGKILL of the dispatcher mid-call.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.core.db import create_pool
from app.repos import outbox as repo
from app.services.shopify_sync import write_through as wt
from app.services.shopify_sync.outbox import OutboxDispatcher
from tests.integration.bundle_helpers import (
    bundle_body,
    bundles_url,
    container_of,
    eventually,
    metaobject_gid,
    metaobject_item,
    product_gid,
    register_shop,
)
from tests.integration.test_write_through import (
    fields_of,
    outbox_stats,
    reconcile,
    sim_metaobjects,
    wait_drained,
    wt_body,
    wt_client,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(db_url, max_size=4)
    yield p
    await p.close()


async def rows_of(db: asyncpg.Connection, bundle_id: str) -> list[dict[str, Any]]:
    return await repo.rows_for_bundle(db, bundle_id)


async def test_rows_commit_with_the_change_and_deliver_in_order_per_bundle(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await register_shop(sim, db, shop)
    async with wt_client(app_factory, OUTBOX_DISPATCHER=False) as client:
        first = (await client.post(bundles_url(shop), json=wt_body())).json()
        second = (await client.post(bundles_url(shop), json=wt_body())).json()
        for i in range(3):
            response = await client.patch(bundles_url(shop, first["id"]), json={"title": f"Title {i}"})
            assert response.status_code == 200
        await client.patch(bundles_url(shop, second["id"]), json={"description": "other bundle"})
        # A write Shopify cannot see (inventory) enqueues nothing; a rolled-back write leaves no row.
        await client.patch(bundles_url(shop, second["id"]), json={"inventory": {"availableQuantity": 5}})
        stale = await client.patch(bundles_url(shop, first["id"]), json={"title": "x"}, headers={"If-Match": '"no"'})
        assert stale.status_code == 412
        rows = await rows_of(db, first["id"])
        assert [(r["seq"], r["op"], r["status"]) for r in rows] == [(i, "upsert", "pending") for i in (1, 2, 3)]
        assert rows[2]["payload"]["fields"]["bundle_title"] == "Title 2"
        assert rows[2]["payload"]["discount"]["input"]["title"] == "Title 2"
        assert len(await rows_of(db, second["id"])) == 1

        # Only the oldest pending row of a bundle can be claimed; other bundles are not blocked.
        async with pool.acquire() as a, pool.acquire() as b, a.transaction(), b.transaction():
            claimed_a = await repo.claim_next(a, shop)
            claimed_b = await repo.claim_next(b, shop)
            assert claimed_a is not None and claimed_b is not None
            assert {(claimed_a["bundleId"], claimed_a["seq"]), (claimed_b["bundleId"], claimed_b["seq"])} == {
                (first["id"], 1),
                (second["id"], 1),
            }
            async with pool.acquire() as c, c.transaction():
                assert await repo.claim_next(c, shop) is None  # seq 2 waits for seq 1, whoever holds it

        dispatcher = OutboxDispatcher(pool, container_of(client).shopify, concurrency=1)
        assert await dispatcher.drain()
    delivered = await rows_of(db, first["id"])
    assert [r["status"] for r in delivered] == ["delivered"] * 3
    assert [r["deliveredAt"] for r in delivered] == sorted(r["deliveredAt"] for r in delivered)
    stored = await sim.get_metaobject(shop, first["shopifyMetaobjectId"])
    assert fields_of(stored)["bundle_title"] == "Title 2"
    discount = next(d for d in await sim.list_discounts(shop) if d["id"] == first["discounts"][0]["shopifyDiscountId"])
    assert discount["title"] == "Title 2"


async def test_shopify_outage_grows_the_outbox_then_it_drains_with_every_metaobject_correct(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """Acceptance: Shopify answers 5xx to everything while 100 bundles are updated; the API keeps
    answering, the outbox grows and its lag shows; once Shopify is back the outbox drains to zero."""
    await register_shop(sim, db, shop)
    metaobjects = [metaobject_gid() for _ in range(100)]
    await sim.add_metaobjects(
        shop, [metaobject_item(m, name=f"B{i}", title="T", discount="10", products=[product_gid()]) for i, m in
               enumerate(metaobjects)]
    )  # fmt: skip
    async with wt_client(app_factory) as client:
        ids = []
        for metaobject in metaobjects:
            response = await client.post(bundles_url(shop), json=bundle_body(metaobject=metaobject))
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])

        await sim.set_faults(shop, error5xx=1.0)
        started = time.monotonic()
        try:
            responses = await asyncio.gather(
                *(
                    client.patch(bundles_url(shop, bundle_id), json={"name": f"Renamed {i}", "description": f"d{i}"})
                    for i, bundle_id in enumerate(ids)
                )
            )
            assert [r.status_code for r in responses] == [200] * 100
            assert time.monotonic() - started < 15  # no Shopify call on the request path
            await asyncio.sleep(1.0)  # the dispatcher keeps failing meanwhile
            stats = await outbox_stats(client, shop)
            assert stats["pending"] == 100 and stats["deadLetters"] == 0, stats
            assert stats["retrying"] > 0 and stats["oldestPendingAgeSeconds"] >= 1.0, stats
            metrics = (await client.get("/metrics")).text
            [lag] = [
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("sb_outbox_lag_seconds{") and 'outbox="shopify_write_through"' in line
            ]
            assert lag >= 0.5, lag
        finally:
            await sim.set_faults(shop, error5xx=0.0)
        await wait_drained(client, shop, timeout_s=30)
        assert (await outbox_stats(client, shop))["deadLetters"] == 0
    stored = {m["id"]: fields_of(m) for m in await sim_metaobjects(sim, shop)}
    assert len(stored) == 100
    for i, metaobject in enumerate(metaobjects):
        assert (stored[metaobject]["bundle_name"], stored[metaobject]["description"]) == (f"Renamed {i}", f"d{i}")


async def test_deleting_a_bundle_whose_shopify_objects_are_already_gone_completes(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """Shopify answers RECORD_NOT_FOUND (metaobject) and INVALID on `id` (discount: its error codes
    have no not-found) for objects already deleted: a redelivered delete is done, not dead."""
    await register_shop(sim, db, shop)
    async with wt_client(app_factory) as client:
        created = (await client.post(bundles_url(shop), json=wt_body())).json()
        [discount] = created["discounts"]
        assert await sim.delete_metaobject(shop, created["shopifyMetaobjectId"])
        await wt.delete_discount(container_of(client).shopify, shop, discount["shopifyDiscountId"])
        assert await sim.list_discounts(shop) == []
        assert (await client.delete(bundles_url(shop, created["id"]))).status_code == 204
        await wait_drained(client, shop, timeout_s=15)
        stats = await outbox_stats(client, shop)
        assert stats["deadLetters"] == 0 and stats["pending"] == 0, stats


async def test_permanent_failures_dead_letter_and_reconciliation_resolves_them(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    await register_shop(sim, db, shop)
    async with wt_client(app_factory) as client:
        created = (await client.post(bundles_url(shop), json=wt_body())).json()
        assert await sim.delete_metaobject(shop, created["shopifyMetaobjectId"])  # gone behind our back
        await client.patch(bundles_url(shop, created["id"]), json={"description": "never delivered"})

        async def dead() -> bool:
            return (await outbox_stats(client, shop))["deadLetters"] == 1

        assert await eventually(dead, 10)
        stats = await outbox_stats(client, shop)
        [letter] = stats["dead"]
        assert letter["bundleId"] == created["id"] and letter["attempts"] == 3
        assert "RECORD_NOT_FOUND" in letter["lastError"]
        assert stats["pending"] == 0

        report = await reconcile(client, shop)
        assert [(c["kind"], c["applied"]) for c in report["changes"]] == [("metaobject_missing", True)]
        await wait_drained(client, shop)
        stats = await outbox_stats(client, shop)
        assert stats["deadLetters"] == 0 and stats["dead"] == []
    [stored] = await sim_metaobjects(sim, shop)
    assert fields_of(stored)["description"] == "never delivered"


def dispatcher_env(db_url: str, simulator: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": db_url,
            "SHOPIFY_ADMIN_URL_TEMPLATE": simulator.url_template,
            "SHOPIFY_TIMEOUT_S": "10",
            "AUTO_MIGRATE": "false",
            "OUTBOX_POLL_INTERVAL_S": "0.05",
            "OUTBOX_BACKOFF_BASE_S": "0.05",
            "OUTBOX_BACKOFF_MAX_S": "0.2",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
            "PYTHONUNBUFFERED": "1",
            # production mode (DATABASE_URL set) refuses to start without the app's own credentials
            "SHOPIFY_API_KEY": env.get("SHOPIFY_API_KEY") or "test-api-key",
            "SHOPIFY_API_SECRET": env.get("SHOPIFY_API_SECRET") or "test-api-secret",
        }
    )
    env.pop("ADMIN_API_TOKEN", None)
    return env


def start_dispatcher(env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "outbox", "run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def tail(log: Any) -> str:
    log.seek(0)
    return bytes(log.read()[-3000:]).decode(errors="replace")


async def test_kill_9_between_commit_and_shopify_call_delivers_exactly_once_in_effect(
    app_factory: Any, sim: Any, simulator: Any, shop: str, db: asyncpg.Connection, db_url: str
) -> None:
    """Acceptance: the update is committed (outbox row pending), the dispatcher process is killed with
    SIGKILL while its Shopify call is in flight; after a restart the change is delivered, once in
    effect: the final metaobject is right and there is still exactly one metaobject and one discount."""
    await register_shop(sim, db, shop)
    async with wt_client(app_factory, OUTBOX_DISPATCHER=False) as client:
        created = (await client.post(bundles_url(shop), json=wt_body())).json()
        response = await client.patch(bundles_url(shop, created["id"]), json={"title": "After the crash"})
        assert response.status_code == 200
    [row] = await rows_of(db, created["id"])
    assert row["status"] == "pending"

    env = dispatcher_env(db_url, simulator)
    await sim.set_faults(shop, latency_ms=2500)  # every call to the shop hangs: the kill lands mid-call
    baseline = (await sim.stats())["requests"].get(shop, 0)
    with tempfile.TemporaryFile() as log:
        proc = start_dispatcher(env, log)
        try:
            deadline = time.monotonic() + 30
            while (await sim.stats())["requests"].get(shop, 0) == baseline:
                assert time.monotonic() < deadline and proc.poll() is None, tail(log)
                await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
        [row] = await rows_of(db, created["id"])
        assert (row["status"], row["attempts"]) == ("pending", 0)  # the commit of the delivery never happened

        await sim.set_faults(shop, latency_ms=0)
        proc = start_dispatcher(env, log)
        try:
            deadline = time.monotonic() + 30
            while (await rows_of(db, created["id"]))[0]["status"] != "delivered":
                assert time.monotonic() < deadline and proc.poll() is None, tail(log)
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0, tail(log)
        finally:
            if proc.poll() is None:
                proc.kill()
    # The killed call, still sleeping in the simulator, lands too (Shopify may apply a request whose
    # client died): it carries the same full state, so it changes nothing.
    await asyncio.sleep(max(0.0, 2.6 - (time.monotonic() - killed_at)))
    [stored] = await sim_metaobjects(sim, shop)
    assert stored["id"] == created["shopifyMetaobjectId"]
    assert fields_of(stored)["bundle_title"] == "After the crash"
    [discount] = await sim.list_discounts(shop)
    assert discount["title"] == "After the crash"
    [row] = await rows_of(db, created["id"])
    assert (row["status"], row["attempts"]) == ("delivered", 1)


async def test_delete_of_a_bundle_whose_metaobject_is_reused_keeps_it(
    app_factory: Any, sim: Any, shop: str, db: asyncpg.Connection
) -> None:
    """Delete delivery only removes objects no committed bundle names: a new bundle that took the
    metaobject over before the delete was delivered keeps it."""
    await register_shop(sim, db, shop)
    async with wt_client(app_factory, OUTBOX_DISPATCHER=False) as client:
        created = (await client.post(bundles_url(shop), json=wt_body())).json()
        assert (await client.delete(bundles_url(shop, created["id"]))).status_code == 204
        body = bundle_body(metaobject=created["shopifyMetaobjectId"])
        assert (await client.post(bundles_url(shop), json=body)).status_code == 201
        container = container_of(client)
        dispatcher = await OutboxDispatcher.for_container(container, concurrency=1)
        try:
            assert await dispatcher.drain()
        finally:
            await dispatcher.stop()
    assert [m["id"] for m in await sim_metaobjects(sim, shop)] == [created["shopifyMetaobjectId"]]
    assert await sim.list_discounts(shop) == []  # the deleted bundle's own discount did go


async def test_cli_reconcile_and_outbox_stats(
    app_factory: Any, sim: Any, simulator: Any, shop: str, db: asyncpg.Connection, db_url: str
) -> None:
    await register_shop(sim, db, shop)
    async with wt_client(app_factory, OUTBOX_DISPATCHER=False) as client:
        created = (await client.post(bundles_url(shop), json=wt_body())).json()
    env = dispatcher_env(db_url, simulator)

    async def cli(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", *args, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        return int(proc.returncode or 0), out.decode() + err.decode()

    await sim.delete_metaobject(shop, created["shopifyMetaobjectId"])
    code, out = await cli("reconcile", "--shop", shop, "--dry-run")
    assert code == 0, out
    assert '"metaobject_missing"' in out and '"applied": false' in out
    code, out = await cli("outbox", "stats", "--shop", shop)
    assert code == 0 and '"pending": 0' in out, out
