"""The write-through outbox dispatcher: delivers `sb_outbox` rows to Shopify, in order per bundle.

Why an outbox: an update must change the V2 row, the legacy rows *and* the bundle's metaobject in
Shopify, and no transaction spans PostgreSQL and Shopify. Calling Shopify inside the request either
loses the Shopify change when the process dies after the commit, or makes the API fail whenever
Shopify does. Instead the request writes an outbox row in its own transaction (so the change and
the promise to tell Shopify commit together) and this dispatcher delivers it, retrying until
Shopify has it. The legacy view is thereby *eventually* consistent; `sb_outbox_lag_seconds` (age
of the oldest undelivered row, series `{outbox="shopify_write_through"}`, updated every dispatcher loop)
measures how far behind it is.

Delivery, per row (one transaction per row):

1. Claim: `SELECT ... FOR UPDATE SKIP LOCKED` of the oldest due pending row **that is the oldest
   pending row of its bundle**: rows of one bundle are delivered strictly in `seq` order, rows of
   different bundles in parallel (`OUTBOX_CONCURRENCY` loops, on their own small pool). The row
   lock is the lease: a dispatcher killed with SIGKILL drops its connection, PostgreSQL releases
   the lock, and the row is claimable again at once.
2. Call Shopify. `upsert`: `metaobjectUpdate` by id with the full field set and the publishable
   status (`ACTIVE` for an ACTIVE bundle, else `DRAFT`), then
   `discountAutomaticBasicUpdate` when the row carries a discount part. `delete`:
   `metaobjectDelete` + `discountAutomaticDelete` of the objects no committed bundle names any more
   (NOT_FOUND counts as deleted). Every call writes a full state or deletes, so delivering a row
   twice has the effect of delivering it once.
3. Mark `delivered` and commit. A crash between 2 and 3 redelivers the row: same effect (2).

`compensate` rows are a create's intent, written before its Shopify calls and due only after
`CREATE_INTENT_GRACE_S`; a create that commits (or compensates) deletes its intent. A due one means
the create died in between: its metaobject (by handle) and discount (by title and `startsAt`) are
deleted unless a committed bundle names them (`write_through.compensate_intent`).

Failures: `userErrors`, GraphQL errors and shop errors (401/402/423/404) are failures of the row:
`attempts + 1`, retried after an exponential backoff with jitter, and after `OUTBOX_MAX_ATTEMPTS`
such attempts the row is `dead` (listed by `GET /admin/outbox`; the next row of the bundle goes on,
and reconciliation repairs the bundle). A transient failure (Shopify down: 5xx, timeouts,
throttling after the client's own retries) is retried with the same backoff but never kills the
row: an outage only delays delivery.

`shopibundle outbox run` runs a dispatcher alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

import asyncpg

from app.core.container import Container
from app.core.db import asyncpg_connect_kwargs, create_pool
from app.core.metrics import OUTBOX_LAG
from app.core.tasks import stop_tasks, wait_event
from app.repos import bundles as bundle_repo
from app.repos import outbox as repo
from app.repos import runner
from app.services.bundles.legacy_reader import get_legacy_reader
from app.services.shopify_sync import shopify_objects
from app.services.shopify_sync import write_through as wt
from app.shopify.client import ShopifyClient
from app.shopify.errors import ShopifyError

log = logging.getLogger(__name__)

#: `sb_outbox_lag_seconds` is shared with the job engine's dispatch queue (sampled by /metrics without
#: labels); this outbox's series carries this label so the two never overwrite each other.
LAG_LABELS = {"outbox": "shopify_write_through"}
OnDelivered = Callable[[str, str], None]


class Postponed(Exception):
    """The row is not to be delivered yet (not a failure): try again after `delay_s`."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"postponed by {delay_s} s")
        self.delay_s = delay_s


def dispatcher_enabled(settings: Any) -> bool:
    """`OUTBOX_DISPATCHER` when set, else follows `SHOPIFY_WRITE_THROUGH`."""
    explicit = getattr(settings, "outbox_dispatcher", None)
    return bool(getattr(settings, "shopify_write_through", False) if explicit is None else explicit)


async def deliver(shopify: ShopifyClient, conn: Any, row: dict[str, Any]) -> None:
    """Apply one row to Shopify (raises `ShopifyError` on failure). See the module docstring, step 2."""
    shop = row["shop"]
    payload = row["payload"] or {}
    if row["op"] == "upsert":
        await shopify_objects.update_metaobject(
            shopify, shop, payload["metaobjectId"], payload["fields"], payload.get("status")
        )
        discount = payload.get("discount")
        if discount:
            await shopify_objects.update_discount(shopify, shop, discount["id"], discount["input"])
        return
    if row["op"] == "delete":
        metaobject_id, discount_id = payload.get("metaobjectId"), payload.get("discountId")
        keep = await repo.shopify_refs(conn, shop, metaobject_id, discount_id)
        if discount_id and discount_id not in keep:
            await shopify_objects.delete_discount(shopify, shop, discount_id)
        if metaobject_id and metaobject_id not in keep:
            await shopify_objects.delete_metaobject(shopify, shop, metaobject_id)
        return
    if row["op"] == "compensate":
        if not await wt.compensate_intent(shopify, conn, row):
            raise Postponed(float(payload.get("graceS") or 60.0))
        return
    raise ValueError(f"unknown outbox op {row['op']!r}")


class OutboxDispatcher:
    """`concurrency` delivery loops plus a lag loop; woken by NOTIFY on enqueue, else polling."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        shopify: ShopifyClient,
        *,
        database_url: str | None = None,
        concurrency: int = 4,
        poll_interval_s: float = 1.0,
        max_attempts: int = 10,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        on_delivered: OnDelivered | None = None,
        owns_pool: bool = False,
    ) -> None:
        self.pool = pool
        self.shopify = shopify
        self.database_url = database_url
        self.concurrency = max(1, concurrency)
        self.poll_interval_s = max(0.01, poll_interval_s)
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.on_delivered = on_delivered
        self._owns_pool = owns_pool
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None
        self.delivered = 0
        self.failed = 0

    @classmethod
    async def for_container(cls, container: Container, **overrides: Any) -> OutboxDispatcher:
        """A dispatcher on its own small pool (a Shopify outage must not hold the API's connections)."""
        settings = container.settings
        concurrency = int(overrides.pop("concurrency", getattr(settings, "outbox_concurrency", 4)))
        pool = await create_pool(container.session_database_url, max_size=concurrency + 1)

        def invalidate(shop: str, metaobject_id: str) -> None:

            get_legacy_reader(container).cache.invalidate(shop, metaobject_id)

        options: dict[str, Any] = {
            "database_url": container.session_database_url,
            "concurrency": concurrency,
            "poll_interval_s": float(getattr(settings, "outbox_poll_interval_s", 1.0)),
            "max_attempts": int(getattr(settings, "outbox_max_attempts", 10)),
            "backoff_base_s": float(getattr(settings, "outbox_backoff_base_s", 1.0)),
            "backoff_max_s": float(getattr(settings, "outbox_backoff_max_s", 300.0)),
            "on_delivered": invalidate,
            "owns_pool": True,
        }
        options.update(overrides)
        return cls(pool, container.shopify, **options)

    # ------------------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    async def start(self) -> None:
        self._stopping.clear()
        await self._listen()
        self._tasks = [asyncio.create_task(self._deliver_loop(i), name=f"outbox-{i}") for i in range(self.concurrency)]
        self._tasks.append(asyncio.create_task(self._lag_loop(), name="outbox-lag"))
        log.info("outbox dispatcher started (concurrency=%d)", self.concurrency)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop claiming; a delivery in flight finishes (bounded), then its transaction ends either way."""
        self._stopping.set()
        self._wake.set()
        await stop_tasks(self._tasks, grace_s=timeout_s)
        self._tasks = []
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        if self._owns_pool:
            await self.pool.close()
        log.info("outbox dispatcher stopped (delivered=%d, failed attempts=%d)", self.delivered, self.failed)

    async def _listen(self) -> None:
        """LISTEN on the outbox channel (an enqueue's NOTIFY arrives at its commit); polling covers a loss."""
        if self.database_url is None or (self._listener is not None and not self._listener.is_closed()):
            return

        try:
            conn = await asyncpg.connect(**asyncpg_connect_kwargs(self.database_url))
            await conn.add_listener(repo.CHANNEL, lambda *_: self._wake.set())
        except Exception:
            log.warning("outbox: LISTEN failed; polling only", exc_info=True)
            return
        self._listener = conn

    async def _pause(self, seconds: float) -> None:
        await wait_event(self._wake, seconds)
        self._wake.clear()

    async def _deliver_loop(self, index: int) -> None:
        while not self._stopping.is_set():
            try:
                worked = await self.deliver_one()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox delivery loop failed")
                worked = False
                await asyncio.sleep(self.poll_interval_s)
            if not worked and not self._stopping.is_set():
                await self._pause(self.poll_interval_s)

    async def _lag_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.update_lag()
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("outbox lag update failed", exc_info=True)
            await wait_event(self._stopping, self.poll_interval_s)

    async def update_lag(self) -> float:
        return await update_outbox_lag(self.pool)

    # ------------------------------------------------------------------------------ delivery

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with jitter in [50%, 100%], so a recovering Shopify is not hit in step."""
        base = min(self.backoff_max_s, self.backoff_base_s * (2 ** max(0, attempts - 1)))
        return base * random.uniform(0.5, 1.0)

    async def deliver_one(self) -> bool:
        """Claim and deliver one row; False when nothing is due. One transaction per row (module docstring)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await repo.claim_next(conn)
            if row is None:
                return False
            attempts = int(row["attempts"]) + 1
            try:
                await deliver(self.shopify, conn, row)
            except Postponed as exc:
                await repo.postpone(conn, row["id"], exc.delay_s)
                return True
            except ShopifyError as exc:
                self.failed += 1
                dead = not exc.transient and attempts >= self.max_attempts
                await repo.mark_failed(conn, row["id"], attempts, self.backoff(attempts), str(exc), dead)
                level = logging.ERROR if dead else logging.WARNING
                log.log(level, "outbox row %s (%s %s) failed: %s", row["id"], row["op"], row["bundleId"], exc)
                return True
            except (KeyError, TypeError, ValueError) as exc:  # a malformed payload never gets better
                self.failed += 1
                await repo.mark_failed(conn, row["id"], attempts, 0, f"{type(exc).__name__}: {exc}", True)
                log.error("outbox row %s is malformed: %s", row["id"], exc)
                return True
            await repo.mark_delivered(conn, row["id"], attempts)
        self.delivered += 1
        metaobject_id = (row["payload"] or {}).get("metaobjectId")
        if self.on_delivered is not None and metaobject_id:
            self.on_delivered(row["shop"], metaobject_id)
        return True

    async def drain(self, timeout_s: float = 30.0) -> bool:
        """Deliver everything due now (tests, CLI); True when nothing pending is left."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            if not await self.deliver_one():
                async with self.pool.acquire() as conn:
                    if (await repo.stats(conn))["pending"] == 0:
                        return True
                await asyncio.sleep(0.05)
        return False


async def enqueue_push(container: Container, shop: str, bundle_id: str) -> int | None:
    """Enqueue the bundle's full current state (metaobject fields and discount) as an `upsert` row.

    Used by reconciliation to repair drift V2 → Shopify *through* the outbox, so the repair is
    ordered after any row already queued for the bundle and delivered like any other change.
    """

    async def work(conn: Any) -> int | None:
        current = await bundle_repo.lock_bundle(conn, shop, bundle_id)
        if current is None:
            return None
        full = await bundle_repo.fetch_full(conn, shop, [current["id"]])
        payload = wt.upsert_payload(None, full[0], force=True) if full else None
        if payload is None:
            return None
        row = await repo.insert(conn, shop, current["id"], "upsert", payload)
        return int(row["id"])

    result: int | None = await runner.run_transaction(container.pool, work)
    return result


# --------------------------------------------------------------------------------------------
# Admin view
# --------------------------------------------------------------------------------------------


async def outbox_stats(container: Container, *, shop: str | None = None, limit: int = 50) -> dict[str, Any]:
    """`GET /admin/outbox`: pending, due, retrying, oldest pending age, dead letters (listed)."""

    async def q(conn: Any) -> dict[str, Any]:
        counts = await repo.stats(conn, shop)
        dead = await repo.list_by_status(conn, "dead", shop=shop, limit=limit)
        return {"counts": counts, "dead": dead}

    result = await runner.run_read(container.pool, q)
    counts = result["counts"]
    return {
        "pending": int(counts["pending"]),
        "due": int(counts["due"]),
        "retrying": int(counts["retrying"]),
        "delivered": int(counts["delivered"]),
        "deadLetters": int(counts["dead"]),
        "oldestPendingAgeSeconds": counts["oldest_age"],
        "dispatcherRunning": bool(container.outbox_dispatcher is not None and container.outbox_dispatcher.running),
        "dead": [
            {
                "id": r["id"],
                "shop": r["shop"],
                "bundleId": r["bundleId"],
                "seq": r["seq"],
                "op": r["op"],
                "attempts": r["attempts"],
                "lastError": r["lastError"],
                "createdAt": r["createdAt"],
                "payload": r["payload"],
            }
            for r in result["dead"]
        ],
    }


# --------------------------------------------------------------------------------------------
# Lifecycle hooks and the stand-alone entry point
# --------------------------------------------------------------------------------------------


async def start_dispatcher(container: Container) -> OutboxDispatcher | None:
    """Called by lifecycle.start(): run a dispatcher in this replica when the settings enable it."""
    if not dispatcher_enabled(container.settings):
        return None
    dispatcher = await OutboxDispatcher.for_container(container)
    await dispatcher.start()
    container.outbox_dispatcher = dispatcher
    return dispatcher


async def stop_dispatcher(container: Container) -> None:
    dispatcher, container.outbox_dispatcher = container.outbox_dispatcher, None
    if dispatcher is not None:
        await dispatcher.stop()


async def update_outbox_lag(pool: asyncpg.Pool) -> float:
    """Age of the oldest undelivered outbox row, recorded as `sb_outbox_lag_seconds` and returned."""
    async with pool.acquire() as conn:
        age = await repo.oldest_pending_age_s(conn)
    OUTBOX_LAG.set(age, LAG_LABELS)
    return age
