"""The migration job worker: runs inside every service replica by default (`RUN_WORKER`), or alone
as `shopibundle worker`.

Dispatch is pgqueuer: one queue row per (job, shop) with a dedupe key, picked with
`FOR UPDATE SKIP LOCKED`, kept alive by heartbeats and re-picked by any worker once its heartbeat
is older than `JOB_LEASE_S` (the worker died). LISTEN/NOTIFY (pgqueuer's trigger) starts work as
soon as a job is created; a short poll catches re-picks. A dispatch processes its shop's batches
one after the other. Up to `WORKER_MAX_SHOPS` dispatches are held per worker, but only
`WORKER_CONCURRENCY` batches run at once (the slots): a shop whose Shopify bucket has not refilled
enough for its next batch waits *before* taking a slot, so shops with points left use the slots
meanwhile (a waiting shop holding a slot would cap a job at `WORKER_CONCURRENCY` buckets' refill).
The ShopifyClient's own semaphore bounds requests across all of them. `MIGRATION_MAX_ITEMS_PER_S`
paces a worker's batches (0: as fast as it goes), so a replica serving the storefront can give a
job only what the storefront does not need.

Per batch (`_run_batch`): claim up to batchSize pending items of the shop (an item-level lease,
heartbeated while `migrate_batch` runs), call `migrate_batch`, settle outcomes
(`migration_jobs.settle_outcomes`), and record outcomes + counters in one transaction
(`migration_jobs.record_batch`). Transient failures stay pending and are retried with backoff.

A sweeper (every replica, every second) keeps jobs moving whatever happened to a dispatch:
re-dispatches shops of active jobs that have work but no queue row, marks jobs whose items all
have outcomes `succeeded`, and settles `cancelling` jobs once no batch is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
from opentelemetry import trace
from pgqueuer.db import AsyncpgPoolDriver
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries

from app.core.container import Container
from app.core.db import create_pool
from app.core.logging import bind_shop
from app.core.tasks import cancel_and_wait, stop_tasks, wait_event
from app.repos import jobs as repo
from app.services.migration import jobs as svc
from app.services.migration.items import dispatch as migration_items
from app.services.migration.items.common import ItemKind, ItemOutcome, MigrationContext
from app.shopify.client import ShopifyClient

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# Job kinds whose batches read metaobjects from Shopify (the others need Shopify only to fill caches).
BUCKET_BOUND_KINDS = frozenset({"bundles", "all"})

MigrateBatch = Callable[[MigrationContext, str, ItemKind, list[str]], Awaitable[list[ItemOutcome]]]


async def _real_migrate_batch(
    ctx: MigrationContext, shop: str, item_kind: ItemKind, legacy_ids: list[str]
) -> list[ItemOutcome]:
    """Late-bound so the worker always calls the current `migration_items.migrate_batch`."""
    return await migration_items.migrate_batch(ctx, shop, item_kind, legacy_ids)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobWorker:
    """One worker: a pgqueuer QueueManager for `queue` plus the sweeper. `start`/`stop` are quick;
    `stop` lets in-flight batches record (bounded by `stop_timeout_s`) and leaves unfinished shops
    for any other replica's sweeper to re-dispatch."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        shopify: ShopifyClient,
        *,
        concurrency: int = 4,
        lease_s: float = svc.DEFAULT_LEASE_S,
        queue: str = svc.DEFAULT_QUEUE,
        worker_id: str | None = None,
        migrate_batch: MigrateBatch | None = None,
        max_attempts: int = svc.DEFAULT_MAX_ATTEMPTS,
        retry_backoff_s: float = 0.5,
        retry_backoff_max_s: float = 8.0,
        poll_interval_s: float = 1.0,
        sweep_interval_s: float = 1.0,
        owns_pool: bool = False,
        max_shops: int = 32,
        max_items_per_s: float = 0.0,
    ) -> None:
        self.pool = pool
        self.shopify = shopify
        self.concurrency = max(1, concurrency)
        self.lease_s = lease_s
        self.queue = queue
        self.worker_id = worker_id or default_worker_id()
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.retry_backoff_max_s = retry_backoff_max_s
        self.poll_interval_s = poll_interval_s
        self.sweep_interval_s = sweep_interval_s
        self._migrate: MigrateBatch = migrate_batch or _real_migrate_batch
        self._owns_pool = owns_pool
        self._slots = asyncio.Semaphore(self.concurrency)
        self.max_shops = max(self.concurrency, max_shops)
        self.max_items_per_s = max(0.0, max_items_per_s)
        self._pace_next = 0.0  # monotonic time from which the next batch may start (pacing)
        self._stopping = asyncio.Event()
        self._qm: Any = None
        self._runner: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.batches_run = 0

    @classmethod
    async def for_container(cls, container: Container, **overrides: Any) -> JobWorker:
        """A worker on its own small pool, so a migration cannot starve the API's connections."""
        settings = container.settings
        concurrency = int(overrides.pop("concurrency", settings.worker_concurrency))
        pool = await create_pool(container.session_database_url, max_size=concurrency + 4)
        return cls(
            pool,
            container.shopify,
            concurrency=concurrency,
            lease_s=float(overrides.pop("lease_s", settings.job_lease_s)),
            max_shops=int(overrides.pop("max_shops", settings.worker_max_shops)),
            max_items_per_s=float(overrides.pop("max_items_per_s", settings.migration_max_items_per_s)),
            owns_pool=True,
            **overrides,
        )

    # ------------------------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    async def start(self) -> None:
        self._stopping.clear()
        self._runner = asyncio.create_task(self._supervise(), name=f"job-worker-{self.queue}")
        self._sweeper = asyncio.create_task(self._sweep_loop(), name=f"job-sweeper-{self.queue}")
        log.info("job worker %s started (queue=%s, concurrency=%d)", self.worker_id, self.queue, self.concurrency)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop claiming, let batches in flight record, then cancel whatever is left."""
        self._stopping.set()
        if self._qm is not None:
            self._qm.shutdown.set()
        await stop_tasks((self._runner, self._sweeper), grace_s=timeout_s)
        self._runner = self._sweeper = None
        if self._owns_pool:
            await self.pool.close()
        log.info("job worker %s stopped", self.worker_id)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when the worker stops."""
        await wait_event(self._stopping, seconds)

    async def _supervise(self) -> None:
        """Run pgqueuer's QueueManager; restart it after an unexpected error (database restart...)."""

        while not self._stopping.is_set():
            qm = QueueManager(Queries(AsyncpgPoolDriver(self.pool)))
            qm.entrypoint(svc.entrypoint_for(self.queue), accepts_context=False)(self._handle)
            self._qm = qm
            if self._stopping.is_set():
                break
            try:
                await qm.run(
                    dequeue_timeout=timedelta(seconds=self.poll_interval_s),
                    batch_size=1,
                    max_concurrent_tasks=max(2, self.max_shops),
                    heartbeat_timeout=timedelta(seconds=self.lease_s),
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job worker queue loop failed; restarting")
            await self._pause(2.0)

    async def _sweep_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job sweeper failed")
            await self._pause(self.sweep_interval_s)

    async def sweep(self) -> None:
        """Push every active job along (any replica may do it; every step is idempotent)."""
        for row in await repo.active_jobs(self.pool):
            if self._stopping.is_set():
                return
            if row["status"] == "cancelling":
                await repo.cancel_if_idle(self.pool, row["id"], self.lease_s)
            elif row["processed"] >= row["total"]:
                await repo.finish_if_done(self.pool, row["id"])
            else:
                await svc.ensure_dispatched(self.pool, row)

    # ------------------------------------------------------------------------------- work

    async def _handle(self, job: Any) -> None:
        payload = orjson.loads(job.payload or b"{}")
        await self.process_shop(str(payload["jobId"]), str(payload["shop"]))

    def _backoff(self, round_: int) -> float:
        base = min(self.retry_backoff_max_s, self.retry_backoff_s * (2 ** max(0, round_ - 1)))
        return base * random.uniform(0.5, 1.0)

    async def process_shop(self, job_id: str, shop: str) -> None:
        """Run one shop's batches until it has no claimable item, the job stops running, or the
        worker stops (then another replica's sweeper re-dispatches the shop)."""
        retry_round = 0
        while not self._stopping.is_set():
            row = await repo.get_job(self.pool, job_id)
            if row is None:
                return
            if row["status"] == "queued":
                await repo.start_if_queued(self.pool, job_id)
                continue
            if row["status"] == "cancelling":
                await repo.cancel_if_idle(self.pool, job_id, self.lease_s)
                return
            if row["status"] != "running":
                return
            await self._await_turn(row, shop)
            if self._stopping.is_set():
                return
            async with self._slots:
                result = await self._run_batch(row, shop)
            if result is None:
                if await repo.has_live_claims(self.pool, job_id, shop, self.lease_s):
                    # Another (possibly dead) worker still holds a lease on this shop's items.
                    await self._pause(min(1.0, self.lease_s / 4))
                    continue
                await repo.finish_if_done(self.pool, job_id)
                return
            if result.retrying:
                retry_round += 1
                await self._pause(self._backoff(retry_round))
            else:
                retry_round = 0

    async def _await_turn(self, row: dict[str, Any], shop: str) -> None:
        """Wait, without a slot, for the worker's pace and for the shop's Shopify bucket to hold its
        next batch's metaobject read (the client would otherwise wait inside the slot)."""
        batch = int(row["batchSize"])
        if self.max_items_per_s > 0:
            now = time.monotonic()
            start = max(now, self._pace_next)
            self._pace_next = start + batch / self.max_items_per_s
            await self._pause(start - now)
        # (Tests drive the worker with a stand-in client that models no bucket.)
        if row["kind"] in BUCKET_BOUND_KINDS and isinstance(self.shopify, ShopifyClient):
            delay = self.shopify.batched_read_delay(shop, "metaobject", batch)
            if delay > 0:
                await self._pause(delay)

    async def _heartbeat(self, job_id: str, token: str) -> None:
        while True:
            await asyncio.sleep(max(0.1, self.lease_s / 3))
            try:
                await repo.extend_claims(self.pool, job_id, token)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("could not extend the lease of batch %s", token, exc_info=True)

    async def _run_batch(self, row: dict[str, Any], shop: str) -> svc.BatchResult | None:
        """Claim, migrate, record one batch; None when the shop has nothing claimable."""
        job_id = row["id"]
        token = f"{self.worker_id}/{uuid.uuid4().hex[:12]}"
        claimed_rows = await repo.claim_batch(
            self.pool, job_id, shop, limit=int(row["batchSize"]), token=token, lease_s=self.lease_s
        )
        if not claimed_rows:
            return None
        claimed = [
            svc.ClaimedItem(
                item_kind=r["itemKind"],
                legacy_id=r["legacyId"],
                position=r["position"],
                attempts=r["attempts"],
                was_claimed=r["wasClaimed"],
            )
            for r in claimed_rows
        ]
        item_kind: ItemKind = claimed[0].item_kind  # type: ignore[assignment]
        attributes = {
            "migration.job_id": job_id,
            "migration.item_kind": item_kind,
            "shopify.shop": shop,
            "migration.batch.size": len(claimed),
        }
        # A span per batch: its database and Shopify work nest below it (app/core/telemetry.py).
        with tracer.start_as_current_span("migration.batch", attributes=attributes) as span, bind_shop(shop):
            result = await self._migrate_and_record(row, shop, item_kind, claimed, token)
            span.set_attribute("migration.batch.migrated", result.migrated)
            span.set_attribute("migration.batch.failed", result.failed)
            span.set_attribute("migration.batch.skipped", result.skipped)
            span.set_attribute("migration.batch.retrying", result.retrying)
        self.batches_run += 1
        return result

    async def _migrate_and_record(
        self, row: dict[str, Any], shop: str, item_kind: ItemKind, claimed: list[svc.ClaimedItem], token: str
    ) -> svc.BatchResult:
        job_id = row["id"]
        ctx = MigrationContext(
            pool=self.pool,
            shopify=self.shopify,
            dry_run=bool(row["dryRun"]),
            fill_products=bool((row.get("options") or {}).get("fillProducts")),
        )
        outcomes: list[ItemOutcome] | None = None
        error: str | None = None
        heartbeat = asyncio.create_task(self._heartbeat(job_id, token))
        try:
            outcomes = await self._migrate(ctx, shop, item_kind, [c.legacy_id for c in claimed])
        except asyncio.CancelledError:
            # Hard stop: hand the batch back at once; the claim marker stays (it may have written).
            await asyncio.shield(repo.expire_claims(self.pool, job_id, token))
            raise
        except Exception as exc:
            log.exception("migrate_batch failed for job %s shop %s (%d items)", job_id, shop, len(claimed))
            error = f"{type(exc).__name__}: {exc}"
        finally:
            await cancel_and_wait(heartbeat)
        writes = svc.settle_outcomes(claimed, outcomes, max_attempts=self.max_attempts, error=error)
        result = await svc.record_batch(
            self.pool, job_id, shop, token, writes, worker_id=self.worker_id, lease_s=self.lease_s
        )
        if error is not None:
            await repo.set_last_error(self.pool, job_id, error[:2000])
        return result
