"""The migration engine's and dual write's performance targets, each a ratio measured side by side
in one run, printed as a table (figure / target / measured / holds) and saved as JSON under
bench/results/.

Phases (all by default; `--only NAME` for one):

* `bucket`: Standard-plan Shopify (restore 100 points/s, every shop's bucket drained at the start,
  so every point is refill). Achieved items/s against the bound the charged query costs allow:
  each shop needs (its items x the points a metaobject costs) / 100 s, shops refill in parallel, so
  the bound is the slowest shop's need. Target: achieved >= 90% of it. The per-metaobject cost is
  read from the simulator's answer to the engine's own `nodes` query of one batch.
* `rss`: peak RSS of a process running only the job engine (container + JobWorker, the simulator
  and the fixture in this process) for a job of 10,000 and of 50,000 items (20 shops each, the
  simulator's latency lowered to `--rss-latency-ms`). Target: 50k / 10k <= 1.3.
* `storefront`: one service process (uvicorn, its in-process worker on, `MIGRATION_MAX_ITEMS_PER_S`
  = `--pace`) serving `/proxy/v2/bundles` to wrk (distinct signed URLs, `bench/wrk_paths.lua`)
  while idle and while a migration job runs in it (paused and resumed between rounds so rounds
  alternate). Target: p99 during the job <= 1.3x idle at the first `--pace` (default 50 items/s);
  a second pace (default 200) shows the trade-off. The job's rate during the rounds is shown.
* `dualwrite`: one service process, two shops, `DUAL_WRITE` overridden on for one and off for the
  other; sequential creates and then updates (PATCH name + discount) alternating between the two
  shops (httpx, one request at a time: latency, not throughput). Target: p50 on / off <= 1.2x.

The migration benchmark against the plan's literal script (the 100x target) is
`bench/bench_migration.py`; `make bench` runs both.

    .venv/bin/python bench/bench_migration_targets.py                      # all phases
    .venv/bin/python bench/bench_migration_targets.py --only bucket
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402

from app.core.db import asyncpg_connect_kwargs  # noqa: E402
from app.core.migrations import upgrade_async  # noqa: E402
from app.shopify.documents import METAOBJECT_NODES_QUERY  # noqa: E402
from bench.bench_migration import run_engine  # noqa: E402
from bench.bench_storefront import (  # noqa: E402
    API_SECRET,
    HOST,
    RESULTS,
    Server,
    Shape,
    database,
    loadavg,
    machine,
    run_wrk,
    signed_paths,
    table,
)
from bench.bench_storefront import seed as seed_storefront  # noqa: E402
from devtools.shopify_simulator import SimulatorControl, SimulatorServer  # noqa: E402
from devtools.shopify_simulator.state import PLAN_RESTORE_RATES  # noqa: E402
from tests.legacy_fixtures import seed_bulk_manual_bundles  # noqa: E402

COMMAND = ".venv/bin/python bench/bench_migration_targets.py"
PHASES = ("bucket", "rss", "storefront", "dualwrite")
Row = tuple[str, str, str, bool | None]


def engine_args(**overrides: Any) -> argparse.Namespace:
    """What `bench_migration.run_engine` reads: the service's defaults unless overridden."""
    return argparse.Namespace(**{"worker_concurrency": None, "batch_size": 100, **overrides})


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(**asyncpg_connect_kwargs(url))


# ------------------------------------------------------------------------------ bucket-bound rate


async def metaobject_cost(
    control: SimulatorControl, simulator: SimulatorServer, conn: asyncpg.Connection, shop: str
) -> float:
    """Points Shopify (the simulator) charges per metaobject for the engine's own batched query."""
    ids = [
        r["bundleId"]
        for r in await conn.fetch('SELECT "bundleId" FROM bundle_discount_id WHERE shop = $1 LIMIT 100', shop)
    ]
    token = json.loads(await conn.fetchval("SELECT content FROM session WHERE id = $1", f"offline_{shop}"))
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            simulator.url_template.format(shop=shop, version="2026-01"),
            json={"query": METAOBJECT_NODES_QUERY, "variables": {"ids": ids}},
            headers={"X-Shopify-Access-Token": token["accessToken"]},
        )
    cost = response.json()["extensions"]["cost"]
    return float(cost["actualQueryCost"]) / len(ids)


async def bucket_phase(url: str, args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    simulator = SimulatorServer(host=HOST).start()
    try:
        async with SimulatorControl(simulator.base_url) as control:
            prefix = f"bstd-{secrets.token_hex(3)}"
            shops = [f"{prefix}-{i:02d}.myshopify.com" for i in range(args.bucket_shops)]
            conn = await connect(url)
            try:
                await seed_bulk_manual_bundles(conn, control, shops, args.bucket_per_shop, plan="standard")
                per_item = await metaobject_cost(control, simulator, conn, shops[0])
            finally:
                await conn.close()
            await control.set_faults(latency_ms=args.bucket_latency_ms)
            for shop in shops:  # every point the job spends is refill: the bound is exact
                await control.put_shop(shop, currently_available=0)
            engine = await run_engine(
                url, simulator, control, shops, engine_args(worker_max_shops=args.bucket_max_shops)
            )
            stats = await control.stats()
    finally:
        simulator.stop()
    restore = PLAN_RESTORE_RATES["standard"]
    bound_s = args.bucket_per_shop * per_item / restore  # shops refill in parallel and are equal
    share = bound_s / engine.seconds if engine.seconds > 0 else 0.0
    throttled = sum(int(stats.get("throttled", {}).get(shop, 0)) for shop in shops)
    detail = {
        "shops": args.bucket_shops,
        "items_per_shop": args.bucket_per_shop,
        "latency_ms": args.bucket_latency_ms,
        "restore_points_per_s": restore,
        "points_per_metaobject": per_item,
        "bound_s": round(bound_s, 2),
        "engine_s": round(engine.seconds, 2),
        "items": engine.items,
        "migrated": engine.migrated,
        "status": engine.status,
        "shopify_calls": engine.calls,
        "throttled_answers": throttled,
        "share_of_bound": round(share, 3),
        "worker_max_shops": args.bucket_max_shops or "default",
    }
    rows: list[Row] = [
        (
            "Standard plan: achieved / rate the charged costs allow",
            ">= 0.90",
            f"{share:.2f} ({engine.items:,} items in {engine.seconds:.1f} s; bound {bound_s:.1f} s = "
            f"{args.bucket_per_shop} x {per_item:g} points / {restore:g} points/s per shop, {args.bucket_shops} shops; "
            f"{throttled} throttled answers)",
            share >= 0.90,
        )
    ]
    return rows, detail


# ------------------------------------------------------------------------------ peak RSS


def child_engine(argv: Sequence[str]) -> None:
    """`--child-engine URL TEMPLATE SHOP,...`: run one job to the end, print peak RSS as JSON."""
    url, template, shops_csv = argv
    shops = shops_csv.split(",")

    class _Sim:  # what run_engine reads of the simulator
        url_template = template

    class _NoStats:
        async def reset_stats(self) -> None:
            return None

        async def stats(self) -> dict[str, Any]:
            return {}

    result = asyncio.run(run_engine(url, _Sim(), _NoStats(), shops, engine_args()))  # type: ignore[arg-type]
    status = Path("/proc/self/status").read_text()
    hwm_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    print(
        "CHILD_JSON "
        + json.dumps(
            {"items": result.items, "seconds": result.seconds, "status": result.status, "vmhwm_mb": hwm_kb / 1024}
        ),
        flush=True,
    )


def run_child(url: str, template: str, shops: list[str]) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child-engine", url, template, ",".join(shops)]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("CHILD_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"engine child failed ({out.returncode}): {out.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(line.removeprefix("CHILD_JSON "))
    return data


async def rss_phase(url: str, args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    simulator = SimulatorServer(host=HOST).start()
    runs: dict[str, dict[str, Any]] = {}
    try:
        async with SimulatorControl(simulator.base_url) as control:
            prefix = f"brss-{secrets.token_hex(3)}"
            sets = {
                size: [f"{prefix}-{size // 1000}k-{i:02d}.myshopify.com" for i in range(args.rss_shops)]
                for size in (10_000, 50_000)
            }
            conn = await connect(url)
            try:
                for size, shops in sets.items():
                    await seed_bulk_manual_bundles(conn, control, shops, size // args.rss_shops, plan="plus")
            finally:
                await conn.close()
            await control.set_faults(latency_ms=args.rss_latency_ms)
            for size, shops in sets.items():
                runs[str(size)] = await asyncio.to_thread(run_child, url, simulator.url_template, shops)
                print(f"  rss: {size:,} items -> {runs[str(size)]}", flush=True)
    finally:
        simulator.stop()
    small, large = runs["10000"]["vmhwm_mb"], runs["50000"]["vmhwm_mb"]
    ratio = large / small
    detail = {"latency_ms": args.rss_latency_ms, "shops": args.rss_shops, "runs": runs, "ratio": round(ratio, 3)}
    rows: list[Row] = [
        (
            "peak RSS of the engine process, 50,000 / 10,000 items",
            "<= 1.3x",
            f"{ratio:.2f}x ({large:.0f} / {small:.0f} MiB; "
            f"{runs['50000']['items']:,} items in {runs['50000']['seconds']:.1f} s, "
            f"{runs['10000']['items']:,} in {runs['10000']['seconds']:.1f} s)",
            ratio <= 1.3,
        )
    ]
    return rows, detail


# ------------------------------------------------------------------------------ service helpers


def service_env(url: str, simulator: SimulatorServer, admin_token: str, **extra: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": url,
        "ADMIN_API_TOKEN": admin_token,
        "SHOPIFY_API_SECRET": API_SECRET,
        "SHOPIFY_API_KEY": "bench",
        "SHOPIFY_ADMIN_URL_TEMPLATE": simulator.url_template,
        "AUTO_MIGRATE": "false",
        "PROXY_SIGNATURE_MAX_AGE_S": "86400",  # the URLs are signed once, before the run
        "LOG_FORMAT": "json",
        **extra,
    }
    for name in list(os.environ):  # the service as configured by default, not by this shell
        if name.startswith(("OTEL_", "FEATURE_FLAG_")):
            env[name] = ""
    return env


def admin_call(port: int, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        data: dict[str, Any] = json.loads(response.read() or b"{}")
        return data


def processed(port: int, token: str, job: dict[str, Any] | None) -> int:
    if job is None:
        return 0
    return int(admin_call(port, token, "GET", f"/admin/migrations/jobs/{job['id']}")["stats"]["processed"])


async def settled(port: int, token: str, job: dict[str, Any]) -> None:
    """After a pause: wait until the batches in flight have recorded (the count stops moving)."""
    last = -1
    for _ in range(40):
        now = processed(port, token, job)
        if now == last:
            return
        last = now
        await asyncio.sleep(0.5)


# ------------------------------------------------------------------------------ storefront during a job


async def storefront_phase(url: str, args: argparse.Namespace, tmp: Path) -> tuple[list[Row], dict[str, Any]]:
    shape = Shape(shops=50, bundles_per_shop=100, products_per_shop=40, urls_per_shop=20)
    await seed_storefront(url, shape)
    paths = signed_paths(shape, "/proxy/v2/bundles")
    paths_file = tmp / "sf_paths.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    simulator = SimulatorServer(host=HOST).start()
    admin = secrets.token_urlsafe(24)
    rounds: list[dict[str, Any]] = []
    try:
        async with SimulatorControl(simulator.base_url) as control:
            legacy_shops = [f"bsfj-{secrets.token_hex(3)}-{i:02d}.myshopify.com" for i in range(10)]
            conn = await connect(url)
            try:
                await seed_bulk_manual_bundles(conn, control, legacy_shops, args.sf_job_items // 10, plan="plus")
            finally:
                await conn.close()
            env = service_env(url, simulator, admin, RUN_WORKER="true", MIGRATION_MAX_ITEMS_PER_S=str(args.pace))
            service = Server("service", "app.main:create_app", 1, env)
            service.start(tmp)
            try:
                service.wait_ready(paths[0])
                wrk_args = argparse.Namespace(threads=1, connections=16, duration=args.sf_duration)
                warm_up = argparse.Namespace(threads=1, connections=16, duration=3)
                run_wrk(service, "/proxy/v2/bundles", paths_file, warm_up, 0)
                job: dict[str, Any] | None = None
                for round_no in range(1, args.sf_rounds + 1):
                    for phase in ("idle", "job"):
                        if phase == "job":
                            if job is None:
                                job = admin_call(
                                    service.port, admin, "POST", "/admin/migrations/jobs",
                                    {"kind": "bundles", "shops": legacy_shops, "batchSize": args.sf_batch_size},
                                )  # fmt: skip
                            else:
                                admin_call(service.port, admin, "POST", f"/admin/migrations/jobs/{job['id']}/resume")
                            await asyncio.sleep(0.5)
                        before = processed(service.port, admin, job)
                        run = run_wrk(service, "/proxy/v2/bundles", paths_file, wrk_args, round_no)
                        items = processed(service.port, admin, job) - before
                        entry = {
                            "phase": phase,
                            **vars(run),
                            "job_items": items,
                            "job_items_per_s": items / run.seconds,
                        }
                        rounds.append(entry)
                        print(
                            f"  storefront round {round_no} {phase}: {run.rps:,.0f} req/s p99 {run.p99_ms:.1f} ms, "
                            f"job {items / run.seconds:,.0f} items/s",
                            flush=True,
                        )
                        if phase == "job" and job is not None:
                            admin_call(service.port, admin, "POST", f"/admin/migrations/jobs/{job['id']}/pause")
                            await settled(service.port, admin, job)
            finally:
                service.stop()
    finally:
        simulator.stop()
    idle = [r for r in rounds if r["phase"] == "idle"]
    busy = [r for r in rounds if r["phase"] == "job"]
    p99_idle = statistics.median(r["p99_ms"] for r in idle)
    p99_job = statistics.median(r["p99_ms"] for r in busy)
    rps_idle = statistics.median(r["rps"] for r in idle)
    rps_job = statistics.median(r["rps"] for r in busy)
    job_rate = statistics.median(r["job_items_per_s"] for r in busy)
    ratio = p99_job / p99_idle if p99_idle else float("inf")
    # Each job round against the idle round just before it: the spread shows the machine's noise.
    pairwise = [b["p99_ms"] / a["p99_ms"] for a, b in zip(idle, busy, strict=True) if a["p99_ms"]]
    detail = {
        "pairwise_p99_ratios": [round(x, 2) for x in pairwise],
        "pace_items_per_s": args.pace,
        "batch_size": args.sf_batch_size,
        "rounds": rounds,
        "p99_ratio": round(ratio, 3),
    }
    rows: list[Row] = [
        (
            f"storefront p99 while a job runs / idle (/proxy/v2/bundles), pace {args.pace:g} items/s",
            "<= 1.3x" if args.pace_is_target else "- (a faster pace, for the trade-off)",
            f"{ratio:.2f}x ({p99_job:.1f} / {p99_idle:.1f} ms; {rps_job:,.0f} / {rps_idle:,.0f} req/s; "
            f"job/idle per round pair {', '.join(f'{x:.2f}' for x in pairwise)}; "
            f"job at {job_rate:,.0f} items/s, MIGRATION_MAX_ITEMS_PER_S={args.pace:g}, batch {args.sf_batch_size})",
            (ratio <= 1.3) if args.pace_is_target else None,
        )
    ]
    return rows, detail


# ------------------------------------------------------------------------------ dual write on vs off


def bundle_body(i: int, token: int) -> dict[str, Any]:
    return {
        "name": f"Bench bundle {i}",
        "title": "Summer set",
        "description": "Two things together",
        "shopifyMetaobjectId": f"gid://shopify/Metaobject/{token}{9_000_000 + i}",
        "components": [
            {"shopifyProductId": f"gid://shopify/Product/{7_000_000 + i}", "quantity": 1},
            {"shopifyProductId": f"gid://shopify/Product/{8_000_000 + i}", "quantity": 2},
        ],
        "pricingRules": [{"name": "Bundle Discount", "discountType": "PERCENTAGE", "discountValue": "15"}],
        "discounts": [{"shopifyDiscountId": f"gid://shopify/DiscountAutomaticNode/{token}{6_000_000 + i}"}],
    }


async def dualwrite_phase(url: str, args: argparse.Namespace, tmp: Path) -> tuple[list[Row], dict[str, Any]]:
    simulator = SimulatorServer(host=HOST).start()
    admin = secrets.token_urlsafe(24)
    suffix = secrets.token_hex(3)
    number = 100 + secrets.randbelow(900)  # ids unique to this run
    shops = {"on": f"bdw-on-{suffix}.myshopify.com", "off": f"bdw-off-{suffix}.myshopify.com"}
    latencies: dict[str, dict[str, list[float]]] = {"create": {"on": [], "off": []}, "update": {"on": [], "off": []}}
    try:
        async with SimulatorControl(simulator.base_url) as control:
            conn = await connect(url)
            try:
                for shop in shops.values():
                    await seed_bulk_manual_bundles(conn, control, [shop], 0)  # installation: session + shop
                now = datetime.now(UTC).replace(tzinfo=None)
                await conn.execute(
                    'INSERT INTO sb_feature_flags ("name", "enabled", "rolloutPercent", "shopOverrides", "sampleRate", '
                    "\"updatedAt\", \"updatedBy\") VALUES ('DUAL_WRITE', false, 0, $1::jsonb, 0, $2, 'bench') "
                    'ON CONFLICT ("name") DO UPDATE SET "shopOverrides" = EXCLUDED."shopOverrides"',
                    json.dumps({shops["on"]: True, shops["off"]: False}),
                    now,
                )
            finally:
                await conn.close()
            service = Server(
                "service", "app.main:create_app", 1, service_env(url, simulator, admin, RUN_WORKER="false")
            )
            service.start(tmp)
            try:
                service.wait_ready("/healthz")
                headers = {"Authorization": f"Bearer {admin}"}
                async with httpx.AsyncClient(
                    base_url=f"http://{HOST}:{service.port}", headers=headers, timeout=30
                ) as http:
                    ids: dict[str, list[str]] = {"on": [], "off": []}
                    sides = ("on", "off")
                    for i in range(args.dw_requests * 2 + 20):
                        side = sides[(i + i // 2) % 2]  # on, off, off, on, ...: neither always goes first
                        started = time.perf_counter()
                        response = await http.post(f"/api/v2/shops/{shops[side]}/bundles", json=bundle_body(i, number))
                        elapsed = time.perf_counter() - started
                        if response.status_code != 201:
                            raise RuntimeError(f"create failed: {response.status_code} {response.text[:500]}")
                        body = response.json()
                        if side == "on" and body.get("legacySync") == "disabled":
                            raise RuntimeError("DUAL_WRITE override not in effect")
                        ids[side].append(body["id"])
                        if i >= 20:  # the first 20 warm up
                            latencies["create"][side].append(elapsed * 1000)
                    for i in range(min(len(ids["on"]), len(ids["off"])) * 2):
                        side = sides[(i + i // 2) % 2]
                        bundle_id = ids[side][i // 2]
                        patch = {
                            "name": f"Renamed {i}",
                            "discounts": [
                                {"shopifyDiscountId": f"gid://shopify/DiscountAutomaticNode/{number}{5_000_000 + i}"}
                            ],
                        }
                        started = time.perf_counter()
                        response = await http.patch(f"/api/v2/shops/{shops[side]}/bundles/{bundle_id}", json=patch)
                        elapsed = time.perf_counter() - started
                        if response.status_code != 200:
                            raise RuntimeError(f"update failed: {response.status_code} {response.text[:500]}")
                        if i >= 20:
                            latencies["update"][side].append(elapsed * 1000)
            finally:
                service.stop()
    finally:
        simulator.stop()
    rows: list[Row] = []
    detail: dict[str, Any] = {"requests_per_side": args.dw_requests}
    for op in ("create", "update"):
        on, off = statistics.median(latencies[op]["on"]), statistics.median(latencies[op]["off"])
        ratio = on / off
        detail[op] = {"p50_on_ms": round(on, 2), "p50_off_ms": round(off, 2), "ratio": round(ratio, 3),
                      "n_on": len(latencies[op]["on"]), "n_off": len(latencies[op]["off"])}  # fmt: skip
        rows.append(
            (
                f"{op} p50, DUAL_WRITE on / off",
                "<= 1.2x",
                f"{ratio:.2f}x ({on:.1f} / {off:.1f} ms, {len(latencies[op]['on'])} requests each)",
                ratio <= 1.2,
            )
        )
    return rows, detail


# ------------------------------------------------------------------------------ main


async def run_phase(phase: str, url: str, args: argparse.Namespace, tmp: Path) -> tuple[list[Row], dict[str, Any]]:
    """One phase on its own fresh database (each phase's simulator numbers its objects from 1)."""
    await upgrade_async(url)
    print(f"{phase}: running (load {loadavg()}) ...", flush=True)
    started = time.monotonic()
    if phase == "bucket":
        rows, detail = await bucket_phase(url, args)
    elif phase == "rss":
        rows, detail = await rss_phase(url, args)
    elif phase == "storefront":
        rows, detail = await storefront_phase(url, args, tmp)
    else:
        rows, detail = await dualwrite_phase(url, args, tmp)
    detail["seconds"] = round(time.monotonic() - started, 1)
    detail["loadavg_after"] = loadavg()
    return rows, detail


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    )
    parser.add_argument("--only", action="append", choices=PHASES, help="run only these phases")
    parser.add_argument("--bucket-shops", type=int, default=10)
    parser.add_argument("--bucket-per-shop", type=int, default=1000)
    parser.add_argument("--bucket-latency-ms", type=float, default=5.0)
    parser.add_argument(
        "--bucket-max-shops",
        type=int,
        default=None,
        help="WORKER_MAX_SHOPS (default: the service's); 4 = one shop per slot, the scheduling before the change",
    )
    parser.add_argument("--rss-shops", type=int, default=20)
    parser.add_argument("--rss-latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--pace",
        type=float,
        action="append",
        help="MIGRATION_MAX_ITEMS_PER_S of the storefront phase (repeatable; the first is held to the target; "
        "default 50 then 200)",
    )
    parser.add_argument("--sf-job-items", type=int, default=10_000)
    parser.add_argument("--sf-rounds", type=int, default=3)
    parser.add_argument("--sf-batch-size", type=int, default=25, help="batch size of the job the storefront shares")
    parser.add_argument("--sf-duration", type=int, default=8, help="seconds per wrk round")
    parser.add_argument("--dw-requests", type=int, default=150, help="measured requests per side and operation")
    args = parser.parse_args(argv)
    args.phases = args.only or list(PHASES)
    args.paces = args.pace or [50.0, 200.0]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["--child-engine"]:
        child_engine(raw[1:])
        return 0
    args = parse_args(raw)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report: dict[str, Any] = {
        "command": " ".join([COMMAND, *raw]),
        "machine": machine(),
        "loadavg_start": loadavg(),
        "started": stamp,
    }
    rows: list[Row] = []
    details: dict[str, Any] = {}
    runs = [
        (
            f"storefront_pace_{pace:g}",
            phase,
            argparse.Namespace(**{**vars(args), "pace": pace, "pace_is_target": i == 0}),
        )
        if phase == "storefront"
        else (phase, phase, args)
        for phase in args.phases
        for i, pace in enumerate(args.paces if phase == "storefront" else [0.0])
    ]
    for key, phase, phase_args in runs:
        with tempfile.TemporaryDirectory(prefix="sbbenchmt-") as tmp, database(args.database_url) as url:
            phase_rows, details[key] = asyncio.run(run_phase(phase, url, phase_args, Path(tmp)))
        rows.extend(phase_rows)
    report["loadavg_end"] = loadavg()
    report["phases"] = details
    report["table"] = [{"figure": f, "target": t, "measured": m, "holds": h} for f, t, m, h in rows]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"migration-targets-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(rows))
    print(
        f"load average: start {report['loadavg_start']}, end {report['loadavg_end']}; results: {out.relative_to(ROOT)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
