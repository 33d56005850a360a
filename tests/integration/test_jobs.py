"""Migration jobs: the engine against a scripted `migrate_batch` (exact counts, retries, pause,
resume, cancel, retry-failed, restart after an interrupted batch, 409s), then end to end over HTTP
with the real item logic and the Shopify simulator (faults, a revoked token, dry run).

Engine tests run their own worker on a private queue, so the service replicas alive in the test
session never pick their jobs up; every test uses fresh shops and restricts its jobs to them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
import httpx
import pytest

from app.core.db import create_pool
from app.core.errors import Conflict, NotFound
from app.services.migration import jobs as svc
from app.services.migration.items.common import ItemKind, ItemOutcome, MigrationContext, PlannedItem
from app.services.migration.worker import JobWorker
from tests.conftest import new_shop

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def wait_until(predicate: Callable[[], Awaitable[bool]], within: float = 20.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(step)
    raise AssertionError("condition not reached in time")


async def job_status(pool: asyncpg.Pool[Any], job_id: str) -> svc.JobOut:
    return await svc.get_job(pool, job_id)


async def wait_status(pool: asyncpg.Pool[Any], job_id: str, *statuses: str, within: float = 20.0) -> svc.JobOut:
    async def done() -> bool:
        return (await job_status(pool, job_id)).status in statuses

    await wait_until(done, within)
    return await job_status(pool, job_id)


# ----------------------------------------------------------------------------------- fakes


@dataclass
class FakeItems:
    """A scripted item store: `plan` lists N items per shop, `migrate` decides per legacy id and,
    like the real one, is idempotent (a second run of a migrated item is skipped/already_migrated)."""

    per_shop: dict[str, int]
    fail: set[str] = field(default_factory=set)  # permanent failures
    skip: set[str] = field(default_factory=set)  # e.g. not representable
    transient: Counter[str] = field(default_factory=Counter)  # id → transient failures before success
    gate: asyncio.Event | None = None  # when set up: batches wait for it (pause/cancel tests)
    hang_after_write: bool = False  # simulate a worker dying between the V2 write and the outcome write
    written: set[str] = field(default_factory=set)
    calls: list[list[str]] = field(default_factory=list)
    in_flight: int = 0

    def ids(self, shop: str) -> list[str]:
        return [f"{shop}/{i:04d}" for i in range(self.per_shop.get(shop, 0))]

    async def plan(self, conn: Any, item_kind: ItemKind, shops: list[str] | None) -> list[PlannedItem]:
        if item_kind != "bundle":
            return []
        return [
            PlannedItem("bundle", lid, s)
            for s in sorted(self.per_shop)
            if shops is None or s in shops
            for lid in self.ids(s)
        ]

    async def migrate(
        self, ctx: MigrationContext, shop: str, item_kind: ItemKind, legacy_ids: list[str]
    ) -> list[ItemOutcome]:
        self.calls.append(list(legacy_ids))
        self.in_flight += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            out = []
            for lid in legacy_ids:
                if self.transient[lid] > 0:
                    self.transient[lid] -= 1
                    out.append(ItemOutcome(lid, "failed", "shopify_unavailable", "503", transient=True))
                elif lid in self.fail:
                    out.append(ItemOutcome(lid, "failed", "metaobject_not_found", f"{lid} is gone"))
                elif lid in self.skip:
                    out.append(ItemOutcome(lid, "skipped", "not_representable", "no products"))
                elif lid in self.written:
                    out.append(ItemOutcome(lid, "skipped", "already_migrated", v2_id=f"v2-{lid}"))
                else:
                    if not ctx.dry_run:
                        self.written.add(lid)
                    out.append(ItemOutcome(lid, "migrated", v2_id=f"v2-{lid}"))
            if self.hang_after_write:
                await asyncio.Event().wait()  # never returns: the "process" dies here
            return out
        finally:
            self.in_flight -= 1


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    p = await create_pool(db_url, max_size=8)
    yield p
    await p.close()


WorkerFactory = Callable[..., Awaitable[JobWorker]]


@pytest.fixture
async def engine(pool: asyncpg.Pool[Any]) -> AsyncIterator[tuple[str, WorkerFactory]]:
    """A private queue name and a factory of workers on it (stopped, and jobs cancelled, at teardown)."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    workers: list[JobWorker] = []
    by_shop: dict[str, FakeItems] = {}

    async def route(ctx: MigrationContext, shop: str, item_kind: ItemKind, ids: list[str]) -> list[ItemOutcome]:
        """Any worker of the queue may run any job: each shop's script answers for it."""
        return await by_shop[shop].migrate(ctx, shop, item_kind, ids)

    async def make(items: FakeItems, **kw: Any) -> JobWorker:
        by_shop.update(dict.fromkeys(items.per_shop, items))
        options: dict[str, Any] = {
            "queue": queue,
            "migrate_batch": route,
            "lease_s": 1.0,
            "poll_interval_s": 0.1,
            "sweep_interval_s": 0.2,
            "retry_backoff_s": 0.02,
            "concurrency": 3,
        }
        options.update(kw)
        worker = JobWorker(pool, cast(Any, None), **options)
        await worker.start()
        workers.append(worker)
        return worker

    yield queue, make
    for w in workers:
        await w.stop(timeout_s=2)
    rows = await pool.fetch(
        "SELECT id FROM sb_migration_jobs WHERE options->>'queue' = $1 AND status NOT IN "
        "('succeeded', 'failed', 'cancelled')",
        queue,
    )
    for r in rows:
        await pool.execute("UPDATE sb_migration_jobs SET status = 'cancelled' WHERE id = $1", r["id"])


async def create(pool: asyncpg.Pool[Any], queue: str, items: FakeItems, **kw: Any) -> svc.JobOut:
    options: dict[str, Any] = {"kind": "bundles", "shops": sorted(items.per_shop), "batch_size": 7}
    options.update(kw)
    return await svc.create_job(pool, queue=queue, plan=items.plan, **options)


# ----------------------------------------------------------------------------------- engine


async def test_job_runs_to_exact_counts_with_failures_listed(
    pool: asyncpg.Pool[Any], engine: tuple[str, WorkerFactory]
) -> None:
    queue, make = engine
    shops = [new_shop("e"), new_shop("e"), new_shop("e")]
    items = FakeItems({shops[0]: 25, shops[1]: 12, shops[2]: 3})
    items.fail = {f"{shops[0]}/0003", f"{shops[0]}/0020", f"{shops[1]}/0000"}
    items.skip = {f"{shops[2]}/0001"}
    job = await create(pool, queue, items)
    assert (job.status, job.stats.total) == ("queued", 40)  # total known up front
    assert {s.shop: s.total for s in job.perShop} == {shops[0]: 25, shops[1]: 12, shops[2]: 3}

    await make(items)
    done = await wait_status(pool, job.id, "succeeded")
    assert done.stats.model_dump() == {"total": 40, "migrated": 36, "failed": 3, "skipped": 1, "processed": 40}
    assert done.progress == 1.0 and done.etaSeconds == 0.0 and done.startedAt and done.finishedAt
    by_shop = {s.shop: s for s in done.perShop}
    assert (by_shop[shops[0]].migrated, by_shop[shops[0]].failed) == (23, 2)
    assert sum(s.migrated + s.failed + s.skipped for s in done.perShop) == 40
    # every batch is one shop's, at most batchSize items, each item handed over exactly once
    assert all(len(c) <= 7 and len({i.split("/")[0] for i in c}) == 1 for c in items.calls)
    assert sorted(i for c in items.calls for i in c) == sorted(i for s in shops for i in items.ids(s))

    page1 = await svc.list_failures(pool, job.id, limit=2)
    assert len(page1.items) == 2 and page1.nextCursor
    page2 = await svc.list_failures(pool, job.id, limit=2, cursor=page1.nextCursor)
    assert page2.nextCursor is None
    failures = page1.items + page2.items
    assert {f.legacyId for f in failures} == items.fail
    assert {f.reason for f in failures} == {"metaobject_not_found"}
    assert all(f.attempts == 1 and f.lastAttemptAt and f.detail for f in failures)
    only = await svc.list_failures(pool, job.id, shop=shops[1])
    assert [f.legacyId for f in only.items] == [f"{shops[1]}/0000"]


async def test_transient_failures_are_retried_until_they_succeed_or_give_up(
    pool: asyncpg.Pool[Any], engine: tuple[str, WorkerFactory]
) -> None:
    queue, make = engine
    shop = new_shop("r")
    items = FakeItems({shop: 10})
    items.transient.update({f"{shop}/0002": 2, f"{shop}/0005": 1, f"{shop}/0007": 99})
    job = await create(pool, queue, items, batch_size=4)
    await make(items, max_attempts=4)
    done = await wait_status(pool, job.id, "succeeded")
    assert (done.stats.migrated, done.stats.failed, done.stats.processed) == (9, 1, 10)
    (failure,) = (await svc.list_failures(pool, job.id)).items
    assert (failure.legacyId, failure.reason, failure.attempts) == (f"{shop}/0007", "shopify_unavailable", 4)
    attempts = await pool.fetchval(
        'SELECT attempts FROM sb_migration_job_items WHERE "jobId" = $1 AND "legacyId" = $2', job.id, f"{shop}/0002"
    )
    assert attempts == 3


async def test_pause_resume_and_cancel(pool: asyncpg.Pool[Any], engine: tuple[str, WorkerFactory]) -> None:
    queue, make = engine
    shop = new_shop("p")
    items = FakeItems({shop: 30}, gate=asyncio.Event())
    job = await create(pool, queue, items, batch_size=5)
    await make(items)

    async def in_flight() -> bool:
        return items.in_flight > 0

    await wait_until(in_flight)
    paused = await svc.pause_job(pool, job.id)
    assert paused.status == "paused"
    assert (await svc.pause_job(pool, job.id)).status == "paused"  # idempotent
    items.gate.set()  # type: ignore[union-attr]
    # the batch in flight still records; no new batch is claimed while paused
    await wait_until(lambda: _processed_is(pool, job.id, 5))
    await asyncio.sleep(0.5)
    assert (await job_status(pool, job.id)).stats.processed == 5
    assert len(items.calls) == 1
    with pytest.raises(Conflict):
        await svc.retry_failed(pool, job.id)  # not finished yet

    resumed = await svc.resume_job(pool, job.id)
    assert resumed.status == "running"
    done = await wait_status(pool, job.id, "succeeded")
    assert done.stats.migrated == 30
    with pytest.raises(Conflict):
        await svc.resume_job(pool, job.id)  # invalid transition
    with pytest.raises(Conflict):
        await svc.cancel_job(pool, job.id)

    # cancel: cancelling while a batch is in flight, cancelled when it ends; the rest stays pending
    shop2 = new_shop("c")
    items2 = FakeItems({shop2: 30}, gate=asyncio.Event())
    job2 = await create(pool, queue, items2, batch_size=5)
    await make(items2)

    async def in_flight2() -> bool:
        return items2.in_flight > 0

    await wait_until(in_flight2)
    cancelling = await svc.cancel_job(pool, job2.id, lease_s=1.0)
    assert cancelling.status == "cancelling"
    items2.gate.set()  # type: ignore[union-attr]
    cancelled = await wait_status(pool, job2.id, "cancelled")
    assert cancelled.stats.processed == 5 and cancelled.finishedAt is not None
    assert cancelled.etaSeconds is None
    with pytest.raises(NotFound):
        await svc.cancel_job(pool, "cnosuchjob")


async def _processed_is(pool: asyncpg.Pool[Any], job_id: str, n: int) -> bool:
    return (await job_status(pool, job_id)).stats.processed == n


async def test_cancel_a_queued_job_is_immediate(pool: asyncpg.Pool[Any], engine: tuple[str, WorkerFactory]) -> None:
    queue, _ = engine  # no worker on this queue: the job stays queued
    items = FakeItems({new_shop("q"): 3})
    job = await create(pool, queue, items)
    assert (await svc.cancel_job(pool, job.id)).status == "cancelled"


async def test_overlapping_jobs_conflict(pool: asyncpg.Pool[Any], engine: tuple[str, WorkerFactory]) -> None:
    queue, _ = engine  # no worker: jobs stay queued (unfinished)
    a, b, c = new_shop("o"), new_shop("o"), new_shop("o")
    items = FakeItems({a: 2, b: 2, c: 2})
    first = await create(pool, queue, items, shops=[a, b])
    with pytest.raises(Conflict) as exc:
        await create(pool, queue, items, shops=[b, c])
    assert exc.value.extra["conflictingJobId"] == first.id
    with pytest.raises(Conflict):
        await create(pool, queue, items, kind="all", shops=[a])  # `all` overlaps every kind
    disjoint = await create(pool, queue, items, shops=[c])  # other shops: fine
    other_kind = await create(pool, queue, items, kind="ai_bundles", shops=[a])  # other kind: fine
    assert other_kind.status == "succeeded"  # (the scripted planner has no AI bundles)
    dry = await create(pool, queue, items, shops=[a], dry_run=True)  # a dry run never conflicts
    await svc.pause_job(pool, first.id)
    with pytest.raises(Conflict):
        await create(pool, queue, items, shops=[a])  # paused is still unfinished
    await svc.cancel_job(pool, first.id)
    again = await create(pool, queue, items, shops=[a, b])  # finished jobs no longer block
    for job in (disjoint, dry, again):
        await svc.cancel_job(pool, job.id)

    # two creates racing for the same shops: exactly one wins
    d = new_shop("o")
    race = FakeItems({d: 2})
    results = await asyncio.gather(*(create(pool, queue, race) for _ in range(4)), return_exceptions=True)
    winners = [r for r in results if isinstance(r, svc.JobOut)]
    assert len(winners) == 1 and all(isinstance(r, Conflict) for r in results if r not in winners)
    await svc.cancel_job(pool, winners[0].id)


async def test_retry_failed_runs_a_new_job_over_the_failures(
    pool: asyncpg.Pool[Any], engine: tuple[str, WorkerFactory]
) -> None:
    queue, make = engine
    shops = [new_shop("f"), new_shop("f")]
    items = FakeItems({shops[0]: 8, shops[1]: 8})
    items.fail = {f"{shops[0]}/0001", f"{shops[1]}/0006", f"{shops[1]}/0007"}
    job = await create(pool, queue, items)
    await make(items)
    done = await wait_status(pool, job.id, "succeeded")
    assert done.stats.failed == 3

    items.fail = set()  # the cause was fixed
    retry = await svc.retry_failed(pool, job.id)
    assert retry.parentJobId == job.id and retry.kind == job.kind and retry.stats.total == 3
    assert retry.shops == sorted(shops)
    finished = await wait_status(pool, retry.id, "succeeded")
    assert (finished.stats.migrated, finished.stats.failed) == (3, 0)
    with pytest.raises(Conflict):
        await svc.retry_failed(pool, retry.id)  # nothing failed


async def test_interrupted_batch_is_completed_by_another_worker_with_exact_counts(
    pool: asyncpg.Pool[Any], engine: tuple[str, WorkerFactory]
) -> None:
    """A worker that dies after writing V2 rows but before recording outcomes: the next worker
    re-runs the batch, the item logic answers already_migrated, and it still counts as migrated."""
    queue, make = engine
    shop = new_shop("k")
    items = FakeItems({shop: 12}, hang_after_write=True)
    job = await create(pool, queue, items, batch_size=5)
    doomed = await make(items, lease_s=0.6)

    async def wrote() -> bool:
        return len(items.written) == 5

    await wait_until(wrote)
    # hard stop while the batch is stuck after its write: like kill -9, no outcome is recorded
    await doomed.stop(timeout_s=0.1)
    assert (await job_status(pool, job.id)).stats.processed == 0
    items.hang_after_write = False
    await make(items, lease_s=0.6)
    done = await wait_status(pool, job.id, "succeeded")
    assert done.stats.model_dump() == {"total": 12, "migrated": 12, "failed": 0, "skipped": 0, "processed": 12}
    restarted = await pool.fetchval(
        """SELECT count(*) FROM sb_migration_job_items WHERE "jobId" = $1 AND detail = $2""",
        job.id,
        svc.RESTART_DETAIL,
    )
    assert restarted == 5


async def test_dry_run_counts_without_writing(pool: asyncpg.Pool[Any], engine: tuple[str, WorkerFactory]) -> None:
    queue, make = engine
    shop = new_shop("d")
    items = FakeItems({shop: 9})
    items.fail = {f"{shop}/0004"}
    job = await create(pool, queue, items, dry_run=True)
    assert job.dryRun
    await make(items)
    done = await wait_status(pool, job.id, "succeeded")
    assert (done.stats.migrated, done.stats.failed) == (8, 1)
    assert items.written == set()


async def test_planning_error_is_a_failed_job(pool: asyncpg.Pool[Any], engine: tuple[str, WorkerFactory]) -> None:
    queue, _ = engine

    async def broken(conn: Any, item_kind: ItemKind, shops: list[str] | None) -> list[PlannedItem]:
        raise RuntimeError("legacy table unreadable")

    job = await svc.create_job(pool, kind="bundles", shops=[new_shop("x")], queue=queue, plan=broken)
    assert job.status == "failed" and "legacy table unreadable" in (job.lastError or "")
    assert job.stats.total == 0


async def test_empty_job_succeeds_at_once(pool: asyncpg.Pool[Any], engine: tuple[str, WorkerFactory]) -> None:
    queue, _ = engine
    shop = new_shop("z")
    job = await create(pool, queue, FakeItems({}), shops=[shop])
    assert (job.status, job.stats.total, job.progress) == ("succeeded", 0, 1.0)
    assert [(s.shop, s.total) for s in job.perShop] == [(shop, 0)]


# ----------------------------------------------------------------------------------- HTTP


async def test_http_contract_basics(client: httpx.AsyncClient) -> None:
    r = await client.post("/admin/migrations/jobs", json={"kind": "nope"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    r = await client.post("/admin/migrations/jobs", json={"kind": "bundles", "shops": ["not a shop"]})
    assert r.status_code == 422
    r = await client.post("/admin/migrations/jobs", json={"kind": "bundles", "batchSize": 0})
    assert r.status_code == 422
    r = await client.post("/admin/migrations/jobs", json={"kind": "bundles", "dryrun": True})
    assert r.status_code == 422  # unknown fields are refused
    assert (await client.get("/admin/migrations/jobs/cnope")).status_code == 404
    assert (await client.get("/admin/migrations/jobs/cnope/failures")).status_code == 404
    for action in ("cancel", "pause", "resume", "retry-failed"):
        assert (await client.post(f"/admin/migrations/jobs/cnope/{action}")).status_code == 404
    assert (await client.get("/admin/migrations/jobs", params={"cursor": "garbage"})).status_code == 422
    anon = await client.get("/admin/migrations/jobs", headers={"Authorization": ""})
    assert anon.status_code == 401


# ----------------------------------------------------------------------------------- end to end (real items)

JOBS = "/admin/migrations/jobs"


async def poll(client: httpx.AsyncClient, url: str, *statuses: str, within: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        r = await client.get(url)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] in statuses:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"job still {body['status']}: {body['stats']}")
        await asyncio.sleep(0.1)


async def all_failures(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        r = await client.get(f"{JOBS}/{job_id}/failures", params=params)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["nextCursor"]
        if cursor is None:
            return items


def stats_of_shop(job: dict[str, Any], shop: str, key: str) -> int:
    return int(next(s[key] for s in job["perShop"] if s["shop"] == shop))


async def v2_bundles(db: asyncpg.Connection, shops: list[str]) -> int:
    return int(await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = ANY($1::text[])', shops))


async def test_http_job_end_to_end_on_messy_legacy_data(
    client: httpx.AsyncClient, db: asyncpg.Connection, sim: Any
) -> None:
    from tests.legacy_fixtures import seed_messy_legacy

    shops = [new_shop("m") for _ in range(5)]
    # with the copy the legacy app's own SQL made of auto_bundle_data: one rule, counted once
    exp = await seed_messy_legacy(db, sim, shops, copied_auto_rule=True)
    r = await client.post(JOBS, json={"kind": "all", "shops": shops, "batchSize": 4})
    assert r.status_code == 202, r.text
    created = r.json()
    assert r.headers["location"] == created["statusUrl"] == f"{JOBS}/{created['id']}"
    assert created["stats"]["total"] == len(exp.outcomes)  # known up front
    assert created["status"] in ("queued", "running")

    job = await poll(client, created["statusUrl"], "succeeded")
    want = Counter(e.status for e in exp.outcomes.values())
    stats = job["stats"]
    assert (stats["migrated"], stats["failed"], stats["skipped"]) == (want["migrated"], want["failed"], want["skipped"])
    assert stats["processed"] == stats["total"] == len(exp.outcomes)
    assert stats["total"] == stats["migrated"] + stats["failed"] + stats["skipped"]
    auto_rules = await db.fetchval('SELECT count(*) FROM "AutoBundleRule" WHERE shop = $1', exp.auto_data_shop)
    assert (
        auto_rules
        == 1
        == stats_of_shop(job, exp.auto_data_shop, "migrated")
        - len(exp.keys("bundle", exp.auto_data_shop, status="migrated"))
    )
    assert job["progress"] == 1.0 and job["etaSeconds"] == 0 and job["ratePerSecond"] > 0
    for key in ("total", "migrated", "failed", "skipped"):
        assert sum(s[key] for s in job["perShop"]) == stats[key]
    per_shop = {s["shop"]: s for s in job["perShop"]}
    unauthorized = per_shop[exp.unauthorized_shop]
    assert unauthorized["failed"] == len(exp.keys("bundle", exp.unauthorized_shop))

    failures = await all_failures(client, job["id"])
    assert {f["legacyId"]: f["reason"] for f in failures} == {
        legacy_id: e.reason for (_, legacy_id), e in exp.outcomes.items() if e.status == "failed"
    }
    assert all({"legacyId", "shop", "reason", "detail", "attempts", "lastAttemptAt"} <= set(f) for f in failures)
    listed = (await client.get(JOBS, params={"limit": 200})).json()["items"]
    assert job["id"] in [j["id"] for j in listed]

    # a second run migrates nothing new: what was migrated or skipped is skipped, failures fail again
    before = await v2_bundles(db, shops)
    again = (await client.post(JOBS, json={"kind": "all", "shops": shops})).json()
    second = await poll(client, again["statusUrl"], "succeeded")
    assert second["stats"]["migrated"] == 0
    assert second["stats"]["skipped"] == want["migrated"] + want["skipped"]
    assert second["stats"]["failed"] == want["failed"]
    assert await v2_bundles(db, shops) == before


async def test_http_overlap_409_pause_resume_cancel(
    client: httpx.AsyncClient, db: asyncpg.Connection, sim: Any
) -> None:
    from tests.legacy_fixtures import seed_bulk_manual_bundles

    shops = [new_shop("h"), new_shop("h")]
    await seed_bulk_manual_bundles(db, sim, shops, 25)
    await sim.set_faults(latency_ms=40)
    first = (await client.post(JOBS, json={"kind": "bundles", "shops": shops, "batchSize": 3})).json()
    r = await client.post(f"{JOBS}/{first['id']}/pause")
    assert r.status_code == 202 and r.json()["status"] == "paused"

    r = await client.post(JOBS, json={"kind": "bundles", "shops": [shops[1]]})
    assert r.status_code == 409 and r.json()["conflictingJobId"] == first["id"]
    r = await client.post(JOBS, json={"kind": "all"})  # all shops, all kinds
    assert r.status_code == 409
    assert (await client.post(JOBS, json={"kind": "bundles", "shops": shops, "dryRun": True})).status_code == 202

    await asyncio.sleep(0.5)  # batches in flight at pause time record; nothing new is claimed
    paused = (await client.get(first["statusUrl"])).json()
    assert paused["status"] == "paused" and paused["stats"]["processed"] < 50 and paused["etaSeconds"] is None
    await asyncio.sleep(0.4)
    assert (await client.get(first["statusUrl"])).json()["stats"]["processed"] == paused["stats"]["processed"]

    assert (await client.post(f"{JOBS}/{first['id']}/resume")).status_code == 202
    await sim.set_faults(latency_ms=0)
    done = await poll(client, first["statusUrl"], "succeeded")
    assert done["stats"]["migrated"] == 50
    assert (await client.post(f"{JOBS}/{first['id']}/resume")).status_code == 409
    assert (await client.post(f"{JOBS}/{first['id']}/pause")).status_code == 409
    assert (await client.post(f"{JOBS}/{first['id']}/cancel")).status_code == 409
    assert (await client.post(f"{JOBS}/{first['id']}/retry-failed")).status_code == 409  # nothing failed

    other = [new_shop("h")]
    await seed_bulk_manual_bundles(db, sim, other, 30)
    await sim.set_faults(latency_ms=40)
    job = (await client.post(JOBS, json={"kind": "bundles", "shops": other, "batchSize": 2})).json()
    await asyncio.sleep(0.3)
    r = await client.post(f"{JOBS}/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["status"] in ("cancelling", "cancelled")
    cancelled = await poll(client, job["statusUrl"], "cancelled")
    assert cancelled["stats"]["processed"] < 30 and cancelled["finishedAt"]
    assert await v2_bundles(db, other) == cancelled["stats"]["migrated"]


async def test_http_revoked_token_fails_only_that_shop_then_retry_failed(
    client: httpx.AsyncClient, db: asyncpg.Connection, sim: Any
) -> None:
    from app.repos.sessions import get_offline_token
    from tests.legacy_fixtures import seed_bulk_manual_bundles

    shops = [new_shop("v"), new_shop("v"), new_shop("v")]
    await seed_bulk_manual_bundles(db, sim, shops, 6)
    revoked = shops[1]
    await sim.revoke_token(revoked)
    job = (await client.post(JOBS, json={"kind": "bundles", "shops": shops, "batchSize": 4})).json()
    done = await poll(client, job["statusUrl"], "succeeded")
    per_shop = {s["shop"]: s for s in done["perShop"]}
    assert per_shop[revoked]["failed"] == 6 and per_shop[revoked]["migrated"] == 0
    assert all(per_shop[s]["migrated"] == 6 for s in shops if s != revoked)
    failures = await all_failures(client, done["id"])
    assert len(failures) == 6 and {(f["shop"], f["reason"]) for f in failures} == {(revoked, "shop_unauthorized")}

    # the merchant reinstalls: retry just the failures
    token = await get_offline_token(cast(Any, db), revoked)
    await sim.put_shop(revoked, token)
    r = await client.post(f"{JOBS}/{done['id']}/retry-failed")
    assert r.status_code == 202, r.text
    retry = r.json()
    assert retry["parentJobId"] == done["id"] and retry["stats"]["total"] == 6 and retry["shops"] == [revoked]
    finished = await poll(client, retry["statusUrl"], "succeeded")
    assert (finished["stats"]["migrated"], finished["stats"]["failed"]) == (6, 0)
    assert await v2_bundles(db, shops) == 18


async def test_http_dry_run_writes_nothing(client: httpx.AsyncClient, db: asyncpg.Connection, sim: Any) -> None:
    from tests.legacy_fixtures import seed_bulk_manual_bundles

    shops = [new_shop("y")]
    await seed_bulk_manual_bundles(db, sim, shops, 9)
    job = (await client.post(JOBS, json={"kind": "bundles", "shops": shops, "dryRun": True})).json()
    assert job["dryRun"] is True
    done = await poll(client, job["statusUrl"], "succeeded")
    assert done["stats"]["migrated"] == 9
    assert await v2_bundles(db, shops) == 0
    real = (await client.post(JOBS, json={"kind": "bundles", "shops": shops})).json()
    assert (await poll(client, real["statusUrl"], "succeeded"))["stats"]["migrated"] == 9
    assert await v2_bundles(db, shops) == 9


async def test_job_converges_under_30_percent_shopify_faults(
    pool: asyncpg.Pool[Any], db: asyncpg.Connection, sim: Any, simulator: Any
) -> None:
    """5xx, THROTTLED and timeouts at 10% each: Shopify client retries, then the worker's item
    retries, and every item ends migrated, exactly once."""
    from tests.legacy_fixtures import seed_bulk_manual_bundles, shopify_client

    shops = [new_shop("u") for _ in range(3)]
    await seed_bulk_manual_bundles(db, sim, shops, 20)
    await sim.reset_stats()
    await sim.set_faults(error5xx=0.1, throttle429=0.1, timeout_rate=0.1, timeout_sleep_s=3, seed=7)
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    async with shopify_client(pool, simulator.url_template, timeout_s=0.3, max_attempts=2) as shopify:
        worker = JobWorker(pool, shopify, queue=queue, lease_s=3.0, poll_interval_s=0.1, retry_backoff_s=0.05)
        await worker.start()
        try:
            job = await svc.create_job(pool, kind="bundles", shops=shops, batch_size=3, queue=queue)
            done = await wait_status(pool, job.id, "succeeded", within=60)
        finally:
            await worker.stop(timeout_s=5)
    assert sum((await sim.stats())["faultsInjected"].values()) >= 3
    assert done.stats.model_dump() == {"total": 60, "migrated": 60, "failed": 0, "skipped": 0, "processed": 60}
    dupes = await db.fetchval(
        """SELECT count(*) FROM (SELECT 1 FROM "Bundle" WHERE shop = ANY($1::text[])
           GROUP BY shop, "shopifyMetaobjectId" HAVING count(*) > 1) d""",
        shops,
    )
    assert dupes == 0 and await v2_bundles(db, shops) == 60
    retried = await pool.fetchval(
        'SELECT count(*) FROM sb_migration_job_items WHERE "jobId" = $1 AND attempts > 1', job.id
    )
    print(f"items retried by the worker: {retried}")
