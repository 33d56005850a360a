"""Acceptance: kill -9 of the worker mid-job, then a restart: the job finishes with the same final
counts as an uninterrupted run over an identical fixture (and the right ones: every shop's
`auto_bundle_data`, copied into `auto_bundle_rules` by the legacy app's own SQL, is one rule counted
once), and no duplicate V2 rows exist.

The interrupted run uses the real thing end to end: `shopibundle migrate start` and
`shopibundle worker` as subprocesses (`python -m app.cli`), the real item logic, the session's
database and Shopify simulator. The worker consumes a private queue, so the service replicas of
the test session cannot help it along: only the restarted worker can finish the job.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.core.db import create_pool
from app.services.migration import jobs as svc
from tests.conftest import new_shop
from tests.legacy_fixtures import copy_auto_bundle_data, seed_bulk_manual_bundles

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]
PER_SHOP = 60


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    p = await create_pool(db_url, max_size=4)
    yield p
    await p.close()


def cli_env(db_url: str, simulator: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": db_url,
            "SHOPIFY_ADMIN_URL_TEMPLATE": simulator.url_template,
            "SHOPIFY_TIMEOUT_S": "5",
            "JOB_LEASE_S": "2",
            "WORKER_CONCURRENCY": "2",
            "AUTO_MIGRATE": "false",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
            "PYTHONUNBUFFERED": "1",
            # production mode (DATABASE_URL set) refuses to start without the app's own credentials
            "SHOPIFY_API_KEY": env.get("SHOPIFY_API_KEY") or "test-api-key",
            "SHOPIFY_API_SECRET": env.get("SHOPIFY_API_SECRET") or "test-api-secret",
        }
    )
    env.pop("ADMIN_API_TOKEN", None)  # a worker needs none
    return env


def start_worker(env: dict[str, str], queue: str, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--queue", queue],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_kill_9_mid_job_then_restart_finishes_with_exact_counts(
    client: httpx.AsyncClient, db: asyncpg.Connection, pool: asyncpg.Pool[Any], sim: Any, simulator: Any, db_url: str
) -> None:
    killed_shops = [new_shop("kill"), new_shop("kill")]
    reference_shops = [new_shop("ref"), new_shop("ref")]
    await seed_bulk_manual_bundles(db, sim, killed_shops + reference_shops, PER_SHOP)
    for shop in killed_shops + reference_shops:
        await db.execute(
            """INSERT INTO auto_bundle_data (shop, collections, tags, "minPrice", "maxPrice", "minProducts", discount)
               VALUES ($1, '{}', '{summer}', '', '100', '2', '10')""",
            shop,
        )
        await copy_auto_bundle_data(db, shop)
    # per shop: PER_SHOP bundles, the copied rule (migrated) and its auto_bundle_data row (a duplicate)
    total = 2 * (PER_SHOP + 2)

    # 1. the uninterrupted reference run (over HTTP, on the service's own worker)
    r = await client.post("/admin/migrations/jobs", json={"kind": "all", "shops": reference_shops, "batchSize": 5})
    assert r.status_code == 202, r.text
    reference = await svc.get_job(pool, r.json()["id"])
    deadline = time.monotonic() + 60
    while reference.status != "succeeded":
        assert time.monotonic() < deadline, reference.stats
        await asyncio.sleep(0.1)
        reference = await svc.get_job(pool, reference.id)

    # 2. the same work on a worker subprocess, killed with SIGKILL mid-job
    await sim.set_faults(latency_ms=60)  # slow enough to catch it in the middle
    env = cli_env(db_url, simulator)
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryFile() as log:
        worker = start_worker(env, queue, log)
        try:
            args = ["migrate", "start", "--kind", "all", "--batch-size", "5", "--queue", queue, "--json"]
            for s in killed_shops:
                args += ["--shop", s]
            code, out = await run_cli(env, *args)
            assert code == 0, out
            job_id = json.loads(out)["id"]

            # Kill when a batch is in flight, preferably one that has already written V2 rows whose
            # outcomes are not recorded yet: the dangerous instant for exact counts.
            in_flight = written_unrecorded = 0
            deadline = time.monotonic() + 60
            while True:
                job = await svc.get_job(pool, job_id)
                row = await pool.fetchrow(
                    """SELECT count(*) AS n, count(b.id) AS written FROM sb_migration_job_items i
                       LEFT JOIN "Bundle" b ON b.shop = i.shop AND b."shopifyMetaobjectId" = i."legacyId"
                       WHERE i."jobId" = $1 AND i.status = 'pending' AND i."claimedBy" IS NOT NULL""",
                    job_id,
                )
                assert row is not None
                in_flight, written_unrecorded = row["n"], row["written"]
                in_window = 0.1 * total < job.stats.processed < 0.9 * total
                if in_window and in_flight and (written_unrecorded or job.stats.processed > 0.6 * total):
                    break
                assert job.stats.processed < 0.9 * total, "missed the window: the job ran too fast"
                assert time.monotonic() < deadline and worker.poll() is None, _tail(log)
                await asyncio.sleep(0.005)
            worker.send_signal(signal.SIGKILL)
            assert worker.wait(timeout=10) == -signal.SIGKILL
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

        await asyncio.sleep(0.5)
        interrupted = await svc.get_job(pool, job_id)
        assert interrupted.status == "running" and interrupted.stats.processed < total
        print(
            f"killed at {interrupted.stats.processed}/{total} processed, {in_flight} items in flight, "
            f"{written_unrecorded} of them already written to V2"
        )

        # 3. restart: another worker picks the abandoned dispatches and claims up after the lease
        await sim.set_faults(latency_ms=0)
        restarted = start_worker(env, queue, log)
        restarted_at = time.monotonic()
        try:
            deadline = time.monotonic() + 45
            job = await svc.get_job(pool, job_id)
            while job.status != "succeeded":
                assert time.monotonic() < deadline and restarted.poll() is None, (job.stats, _tail(log))
                await asyncio.sleep(0.1)
                job = await svc.get_job(pool, job_id)
            print(f"the restarted worker finished the job in {time.monotonic() - restarted_at:.1f} s")
        finally:
            restarted.send_signal(signal.SIGTERM)  # graceful stop
            try:
                restarted.wait(timeout=15)
            except subprocess.TimeoutExpired:
                restarted.kill()
                restarted.wait()

    # 4. same final counts as the uninterrupted run, per job and per shop; no duplicate V2 rows
    assert job.stats == reference.stats
    assert job.stats.processed == job.stats.total == total
    assert (job.stats.migrated, job.stats.skipped, job.stats.failed) == (2 * (PER_SHOP + 1), 2, 0)
    assert sorted(s.model_dump(exclude={"shop"}).items() for s in job.perShop) == sorted(
        s.model_dump(exclude={"shop"}).items() for s in reference.perShop
    )
    duplicates = await db.fetch(
        """SELECT shop, "shopifyMetaobjectId", count(*) FROM "Bundle" WHERE shop = ANY($1::text[])
           GROUP BY shop, "shopifyMetaobjectId" HAVING count(*) > 1""",
        killed_shops,
    )
    assert duplicates == []
    v2 = await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = ANY($1::text[])', killed_shops)
    rules = await db.fetch(
        'SELECT shop, count(*) AS n FROM "AutoBundleRule" WHERE shop = ANY($1::text[]) GROUP BY shop', killed_shops
    )
    assert {r["shop"]: r["n"] for r in rules} == {shop: 1 for shop in killed_shops}
    assert v2 + len(rules) == job.stats.migrated
    pending = await db.fetchval(
        """SELECT count(*) FROM sb_migration_job_items WHERE "jobId" = $1 AND status = 'pending'""", job_id
    )
    assert pending == 0
    restart_completed = await db.fetchval(
        'SELECT count(*) FROM sb_migration_job_items WHERE "jobId" = $1 AND detail = $2', job_id, svc.RESTART_DETAIL
    )
    print(f"items whose V2 write survived the kill and were completed after restart: {restart_completed}")

    # 5. the CLI reads the same state
    code, out = await run_cli(env, "migrate", "status", job_id, "--json")
    assert code == 0 and json.loads(out)["stats"] == job.stats.model_dump()
    code, out = await run_cli(env, "migrate", "watch", job_id)
    assert code == 0 and f"{total}/{total}" in out and "succeeded" in out


def _tail(log: Any) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-3000:]
