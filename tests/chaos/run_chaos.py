"""Chaos run: two replicas on one database, concurrent writes, and the faults an operator meets.

What it does (``make chaos``; ``--duration`` seconds, default 60)::

    embedded PostgreSQL (temp data dir) + Shopify simulator + replicas A and B (uvicorn, app.main:app)
    8 clients create / rename / delete bundles in 10 shops through both replicas; a client retries
    with the same Idempotency-Key on 503 or a dropped connection, as api.md tells it to
    meanwhile: pg_terminate_backend of the services' connections every ~2 s, a migration job over
    three legacy shops, a flag flip, one PostgreSQL restart, one SIGKILL of replica B (restarted)

Afterwards it checks: every acknowledged write present exactly (V2 and legacy row), every
acknowledged delete gone, the seed's validation queries without divergence for these shops, no
duplicate from a retried create, no HTTP 500 at any point (503 must be problem+json with
Retry-After), both replicas ready again by themselves within 30 s of PostgreSQL's return, the job
finished or progressing, the flag change visible on both replicas. It prints a summary, writes JSON
(``--results``) and exits 1 when a check fails. Replica logs stay in the printed run directory.

The fast in-process version is tests/integration/test_db_faults.py (in ``make test``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from devtools.shopify_simulator import SimulatorControl  # noqa: E402
from tests.chaos.common import (  # noqa: E402
    ADMIN_TOKEN,
    HOST,
    EmbeddedPostgres,
    Process,
    admin_connect,
    create_database,
    http_status,
    loadavg,
    log_excerpt,
    migrate,
    replica_process,
    running,
    simulator_process,
    summary_counts,
    tracebacks,
)
from tests.integration.bundle_helpers import bundle_body, bundles_url  # noqa: E402
from tests.integration.test_dual_write import validation_queries  # noqa: E402

WRITERS = 8
WRITE_SHOPS = 10
KILL_EVERY_S = 2.0
READY_BUDGET_S = 30.0
LEGACY_SHOPS = 3
LEGACY_PER_SHOP = 400
FLAG = "V2_PRICING_ENGINE"
OP_BUDGET_S = 90.0  # one logical request keeps retrying this long before it counts as unanswered
RESULTS = ROOT / "tests" / "chaos" / "results"


@dataclass
class Ledger:
    """What the service acknowledged, and every answer it gave."""

    live: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (shop, name)
    deleted: dict[str, str] = field(default_factory=dict)  # id -> shop
    statuses: dict[str, list[int]] = field(default_factory=dict)  # method -> every status
    transport_errors: list[str] = field(default_factory=list)
    http_500: list[dict[str, Any]] = field(default_factory=list)
    bad_503: list[dict[str, Any]] = field(default_factory=list)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    unanswered: list[dict[str, Any]] = field(default_factory=list)
    retried_ops: int = 0
    replayed_creates: int = 0
    deletes_404_after_retry: int = 0
    acknowledged: dict[str, int] = field(default_factory=lambda: {"create": 0, "update": 0, "delete": 0})

    def record(self, method: str, status: int) -> None:
        self.statuses.setdefault(method, []).append(status)


class Harness:
    def __init__(self, replicas: list[Process], ledger: Ledger, t0: float) -> None:
        self.replicas = replicas
        self.ledger = ledger
        self.t0 = t0
        self.client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=httpx.Timeout(10.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    def url(self, replica: Process, path: str) -> str:
        return f"http://{HOST}:{replica.port}{path}"

    async def send(
        self, method: str, path: str, *, replica: Process | None = None, budget_s: float = OP_BUDGET_S, **kwargs: Any
    ) -> tuple[httpx.Response | None, int]:
        """One logical request, retried (same headers, same body) on 503 or a dropped connection
        until it has another answer; returns it and how many attempts went before it."""
        deadline = time.monotonic() + budget_s
        attempts = 0
        while time.monotonic() < deadline:
            target = replica or random.choice(self.replicas)
            attempts += 1
            try:
                response = await self.client.request(method, self.url(target, path), **kwargs)
            except httpx.TransportError as exc:
                self.ledger.transport_errors.append(type(exc).__name__)
                await asyncio.sleep(0.2)
                continue
            self.ledger.record(method, response.status_code)
            if response.status_code >= 500 and response.status_code != 503:
                self.ledger.http_500.append(
                    {
                        "at_s": round(time.monotonic() - self.t0, 2),
                        "replica": target.name,
                        "method": method,
                        "path": path,
                        "status": response.status_code,
                        "requestId": response.headers.get("x-request-id"),
                        "body": response.text[:300],
                    }
                )
                await asyncio.sleep(0.1)
                continue  # a client would retry; the 500 itself is already a failed check
            if response.status_code == 503:
                if (
                    not response.headers.get("content-type", "").startswith("application/problem+json")
                    or "retry-after" not in response.headers
                ):
                    self.ledger.bad_503.append(
                        {"replica": target.name, "method": method, "path": path, "headers": dict(response.headers)}
                    )
                retry_after = response.headers.get("retry-after", "1")
                await asyncio.sleep(min(float(retry_after) if retry_after.isdigit() else 1.0, 0.5))
                continue
            return response, attempts - 1
        return None, attempts

    async def aclose(self) -> None:
        await self.client.aclose()


async def writer(h: Harness, shops: list[str], seed: int, stop_at: float) -> None:
    rng = random.Random(seed)
    mine: list[str] = []
    led = h.ledger
    while time.monotonic() < stop_at:
        roll = rng.random()
        if roll < 0.5 or len(mine) < 3:
            shop = rng.choice(shops)
            body = bundle_body()
            response, retries = await h.send(
                "POST", bundles_url(shop), json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
            if response is None:
                led.unanswered.append({"op": "create", "shop": shop, "name": body["name"]})
                continue
            led.retried_ops += bool(retries)
            if response.status_code != 201:
                led.unexpected.append({"op": "create", "status": response.status_code, "body": response.text[:300]})
                continue
            led.replayed_creates += bool(retries)
            created = response.json()
            led.live[created["id"]] = (shop, body["name"])
            led.acknowledged["create"] += 1
            mine.append(created["id"])
        elif roll < 0.8:
            bundle_id = rng.choice(mine)
            shop, _ = led.live[bundle_id]
            name = f"Renamed {uuid.uuid4().hex[:8]}"
            response, retries = await h.send("PATCH", bundles_url(shop, bundle_id), json={"name": name})
            if response is None:
                led.unanswered.append({"op": "update", "id": bundle_id})
                mine.remove(bundle_id)  # its name is unknown now: leave it out of the exact check
                led.live.pop(bundle_id)
                continue
            led.retried_ops += bool(retries)
            if response.status_code != 200:
                led.unexpected.append({"op": "update", "status": response.status_code, "body": response.text[:300]})
                continue
            led.live[bundle_id] = (shop, name)
            led.acknowledged["update"] += 1
        else:
            bundle_id = mine.pop(rng.randrange(len(mine)))
            shop, _ = led.live.pop(bundle_id)
            response, retries = await h.send("DELETE", bundles_url(shop, bundle_id))
            if response is None:
                led.unanswered.append({"op": "delete", "id": bundle_id})
                continue
            led.retried_ops += bool(retries)
            if response.status_code == 404 and retries:
                led.deletes_404_after_retry += 1  # an earlier attempt's answer was lost, not its effect
            elif response.status_code != 204:
                led.unexpected.append({"op": "delete", "status": response.status_code, "body": response.text[:300]})
                led.live[bundle_id] = (shop, "?")
                continue
            led.deleted[bundle_id] = shop
            led.acknowledged["delete"] += 1


async def killer(db_url: str, stop: asyncio.Event, stats: dict[str, Any]) -> None:
    """pg_terminate_backend of every service connection, every ~2 s; reconnects after a restart."""
    conn = None
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=KILL_EVERY_S)
        if stop.is_set():
            break
        try:
            if conn is None or conn.is_closed():
                conn = await admin_connect(db_url)
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name LIKE 'shopibundle%' AND pid <> pg_backend_pid()"
            )
            stats["rounds"] += 1
            stats["terminated"] += killed
        except Exception as exc:  # PostgreSQL is being restarted: try again next round
            stats["skipped"] += 1
            stats["last_error"] = type(exc).__name__
            conn = None
    if conn is not None:
        await conn.close()


async def seed_legacy(db_url: str, sim: SimulatorControl, shops: list[str]) -> int:
    """Legacy bundles (bundle_discount_id + metaobjects + products + offline sessions) for the job."""
    conn = await admin_connect(db_url)
    rows = 0
    try:
        for s, shop in enumerate(shops):
            token = f"shpat_chaos_{s}"
            await sim.put_shop(shop, token=token, plan="standard")
            await conn.execute(
                'INSERT INTO "session" (id, content, shop) VALUES ($1, $2, $3)',
                f"offline_{shop}",
                json.dumps({"accessToken": token, "shop": shop, "scope": "read_products,write_products"}),
                shop,
            )
            base = 7_000_000 + s * 10_000
            await sim.add_products(
                shop,
                [
                    {"id": f"gid://shopify/Product/{base + n}", "title": f"Product {n}", "price": "19.99",
                     "sku": f"SKU-{s}-{n}", "imageUrl": f"https://cdn.example/{s}/{n}.jpg", "inventoryQuantity": 9}
                    for n in range(40)
                ],
            )  # fmt: skip
            metaobjects, legacy = [], []
            for n in range(LEGACY_PER_SHOP):
                gid = f"gid://shopify/Metaobject/{base + n}"
                products = [f"gid://shopify/Product/{base + (n + k) % 40}" for k in range(2)]
                fields = {
                    "bundle_name": f"Legacy {n}",
                    "bundle_title": f"Legacy bundle {n}",
                    "description": "From the legacy app",
                    "discount": str(5 + n % 20),
                    "products": json.dumps(products),
                    "created_at": "2025-06-01T10:00:00Z",
                }
                metaobjects.append({"id": gid, "handle": f"legacy-{n}", "type": "product-bundles", "fields": fields})
                legacy.append((gid, f"Legacy {n}", f"gid://shopify/DiscountAutomaticNode/{base + n}", shop))
            for i in range(0, len(metaobjects), 100):
                await sim.add_metaobjects(shop, metaobjects[i : i + 100])
            await conn.executemany("INSERT INTO bundle_discount_id VALUES ($1, $2, $3, $4)", legacy)
            rows += len(legacy)
    finally:
        await conn.close()
    return rows


async def readiness_after(replicas: list[Process], since: float, budget_s: float) -> float | None:
    """Seconds from `since` until every replica's /readyz answers 200 (None: not within budget)."""
    while time.monotonic() - since < budget_s:
        statuses = await asyncio.gather(*(asyncio.to_thread(http_status, r.port, "/readyz", 2.0) for r in replicas))
        if all(s == 200 for s in statuses):
            return round(time.monotonic() - since, 2)
        await asyncio.sleep(0.1)
    return None


async def flag_value_on(h: Harness, replica: Process, shop: str) -> bool | None:
    response, _ = await h.send("GET", f"/admin/flags/{FLAG}/evaluate?shop={shop}", replica=replica, budget_s=10)
    return None if response is None or response.status_code != 200 else bool(response.json()["value"])


async def flip_flag(h: Harness, shop: str, results: dict[str, Any]) -> None:
    """Flip the flag through replica A; measure when each replica evaluates the new value."""
    before, _ = await h.send("GET", f"/admin/flags/{FLAG}", replica=h.replicas[0])
    assert before is not None and before.status_code == 200, before
    target = not before.json()["enabled"]
    put, _ = await h.send(
        "PUT",
        f"/admin/flags/{FLAG}",
        replica=h.replicas[0],
        json={"enabled": target, "reason": "chaos run: flag flip under faults"},
    )
    flipped_at = time.monotonic()
    results["flag"] = {"name": FLAG, "to": target, "put_status": None if put is None else put.status_code}
    seen: dict[str, float | None] = {}
    for replica in h.replicas:
        seen[replica.name] = None
        while time.monotonic() - flipped_at < 10:
            if await flag_value_on(h, replica, shop) == target:
                seen[replica.name] = round((time.monotonic() - flipped_at) * 1000, 1)
                break
            await asyncio.sleep(0.01)
    results["flag"]["visible_after_ms"] = seen


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started_wall = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="sb-chaos-"))
    logdir = workdir / "logs"
    logdir.mkdir()
    results: dict[str, Any] = {
        "kind": "chaos",
        "date": started_wall.isoformat(timespec="seconds"),
        "duration_s": args.duration,
        "loadavg_start": loadavg(),
        "logs": str(logdir),
        "writers": WRITERS,
        "shops": WRITE_SHOPS,
    }
    pg = EmbeddedPostgres(workdir)
    processes: list[Process] = []
    try:
        db_url = create_database(pg, "chaos")
        migrate(db_url)
        sim = simulator_process(logdir)
        processes.append(sim)
        sim.start()
        sim.wait_http("/_sim/stats", 30)
        replicas = [
            replica_process(name, db_url, sim.port, logdir, JOB_LEASE_S="5") for name in ("replica-a", "replica-b")
        ]
        processes.extend(replicas)
        with running(processes):
            legacy_shops = [f"chaos-legacy-{i}.myshopify.com" for i in range(LEGACY_SHOPS)]
            async with SimulatorControl(f"http://{HOST}:{sim.port}") as control:
                results["legacy_rows_seeded"] = await seed_legacy(db_url, control, legacy_shops)
            for replica in replicas:
                replica.start()
            for replica in replicas:
                await asyncio.to_thread(replica.wait_http, "/readyz", 90)
            return await chaos(args, db_url, pg, replicas, legacy_shops, results)
    finally:
        pg.cleanup()


async def chaos(
    args: argparse.Namespace,
    db_url: str,
    pg: EmbeddedPostgres,
    replicas: list[Process],
    legacy_shops: list[str],
    results: dict[str, Any],
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    shops = [f"chaos-{tag}-{i}.myshopify.com" for i in range(WRITE_SHOPS)]
    ledger = Ledger()
    t0 = time.monotonic()
    h = Harness(replicas, ledger, t0)
    stop_at = t0 + args.duration
    kill_stats: dict[str, Any] = {"rounds": 0, "terminated": 0, "skipped": 0}
    stop = asyncio.Event()
    events: list[dict[str, Any]] = []

    def event(name: str, **extra: Any) -> None:
        events.append({"at_s": round(time.monotonic() - t0, 2), "event": name, **extra})

    async def scenario() -> None:
        await asyncio.sleep(args.duration * 0.08)
        job, _ = await h.send(
            "POST", "/admin/migrations/jobs", json={"kind": "bundles", "shops": legacy_shops, "batchSize": 50}
        )
        results["job_id"] = None if job is None or job.status_code != 202 else job.json()["id"]
        event("migration job started", status=None if job is None else job.status_code, id=results["job_id"])
        await asyncio.sleep(args.duration * 0.12)
        event("flag flip")
        await flip_flag(h, shops[0], results)
        event("flag visible", **results["flag"]["visible_after_ms"])
        await asyncio.sleep(max(0.0, t0 + args.duration * 0.4 - time.monotonic()))
        event("PostgreSQL stop")
        await asyncio.to_thread(pg.stop)
        await asyncio.sleep(1.0)
        # While the database is down, readiness says so (the fault really happened).
        results["readyz_while_pg_down"] = {
            r.name: await asyncio.to_thread(http_status, r.port, "/readyz", 6.0) for r in replicas
        }
        await asyncio.sleep(1.0)
        await asyncio.to_thread(pg.start)
        back = time.monotonic()
        event("PostgreSQL started again")
        results["ready_after_pg_restart_s"] = await readiness_after(replicas, back, READY_BUDGET_S)
        event("both replicas ready", after_s=results["ready_after_pg_restart_s"])
        await asyncio.sleep(max(0.0, t0 + args.duration * 0.65 - time.monotonic()))
        victim = replicas[1]
        event("SIGKILL", replica=victim.name)
        await asyncio.to_thread(victim.kill)
        victim.start()
        restarted = time.monotonic()
        results["killed_replica_ready_s"] = await readiness_after([victim], restarted, READY_BUDGET_S)
        event("killed replica ready again", after_s=results["killed_replica_ready_s"])

    kill_task = asyncio.create_task(killer(db_url, stop, kill_stats))
    scenario_task = asyncio.create_task(scenario())
    try:
        await asyncio.gather(*(writer(h, shops, seed, stop_at) for seed in range(WRITERS)))
        await scenario_task
    finally:
        stop.set()
        await kill_task
        scenario_task.cancel()
    event("writers stopped")
    results["ready_at_end_s"] = await readiness_after(replicas, time.monotonic(), READY_BUDGET_S)
    results["events"] = events
    results["killer"] = kill_stats
    results["loadavg_end"] = loadavg()
    results["job"] = await job_state(h, results.get("job_id"))
    results["flag_final"] = {r.name: await flag_value_on(h, r, shops[1]) for r in replicas}
    results["ledger"] = {
        "acknowledged": ledger.acknowledged,
        "live": len(ledger.live),
        "deleted": len(ledger.deleted),
        "statuses": {m: summary_counts(s) for m, s in ledger.statuses.items()},
        "transport_errors": summary_counts(ledger.transport_errors),
        "retried_ops": ledger.retried_ops,
        "replayed_creates": ledger.replayed_creates,
        "deletes_404_after_retry": ledger.deletes_404_after_retry,
        "http_500": ledger.http_500[:50],
        "bad_503": ledger.bad_503[:10],
        "unexpected": ledger.unexpected[:20],
        "unanswered": ledger.unanswered[:20],
    }
    results["data"] = await verify(db_url, shops, legacy_shops, ledger)
    results["replica_exceptions"] = {r.name: summary_counts(tracebacks(r)) for r in replicas}
    if ledger.http_500:
        request_id = ledger.http_500[0].get("requestId") or ""
        results["first_500_log"] = [line for r in replicas for line in log_excerpt(r, request_id, 30)][:80]
    await h.aclose()
    results["checks"] = checks(results, ledger)
    return results


async def job_state(h: Harness, job_id: str | None) -> dict[str, Any]:
    if job_id is None:
        return {"error": "no job started"}

    async def get() -> dict[str, Any]:
        response, _ = await h.send("GET", f"/admin/migrations/jobs/{job_id}")
        assert response is not None and response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    first = await get()
    state: dict[str, Any] = {"status": first["status"], "stats": first["stats"], "progress": first["progress"]}
    failures, _ = await h.send("GET", f"/admin/migrations/jobs/{job_id}/failures?limit=200")
    if failures is not None and failures.status_code == 200:
        body = failures.json()
        items = body["items"] if isinstance(body, dict) else body
        state["failure_reasons"] = summary_counts([item["reason"] for item in items])
    if first["status"] in ("queued", "running"):
        await asyncio.sleep(5)
        second = await get()
        state["progressing"] = (
            second["stats"]["processed"] > first["stats"]["processed"] or second["status"] != first["status"]
        )
        state["status_after_5s"] = second["status"]
        state["stats_after_5s"] = second["stats"]
    return state


async def verify(db_url: str, shops: list[str], legacy_shops: list[str], ledger: Ledger) -> dict[str, Any]:
    """Compare the database with what the service acknowledged (read as an operator would)."""
    conn = await admin_connect(db_url)
    try:
        rows = await conn.fetch('SELECT id, shop, name FROM "Bundle" WHERE shop = ANY($1::text[])', shops)
        in_db = {r["id"]: (r["shop"], r["name"]) for r in rows}
        legacy = await conn.fetch(
            'SELECT bd."bundleId", bd."bundleName", b.id FROM bundle_discount_id bd '
            'LEFT JOIN "Bundle" b ON b."shopifyMetaobjectId" = bd."bundleId" WHERE bd.shop = ANY($1::text[])',
            shops,
        )
        unknown = {u.get("id") for u in ledger.unanswered} | {
            bid for bid, (_, name) in ledger.live.items() if name == "?"
        }
        wrong = [
            {"id": bid, "expected": exp, "found": in_db.get(bid)}
            for bid, exp in ledger.live.items()
            if bid not in unknown and in_db.get(bid) != exp
        ]
        resurrected = [bid for bid in ledger.deleted if bid in in_db]
        extra = [bid for bid in in_db if bid not in ledger.live and bid not in unknown]
        legacy_names = {r["id"]: r["bundleName"] for r in legacy if r["id"] is not None}
        legacy_wrong = [
            bid for bid, (_, name) in ledger.live.items() if bid not in unknown and legacy_names.get(bid) != name
        ]
        counts_q, unmigrated_q, mismatch_q = validation_queries()
        per_shop: dict[str, dict[str, int]] = {}
        for row in await conn.fetch(counts_q):
            per_shop.setdefault(row["shop"], {"old": 0, "new": 0})[row["source"]] = row["count"]
        count_divergence = {
            shop: per_shop.get(shop, {"old": 0, "new": 0})
            for shop in shops
            if per_shop.get(shop, {"old": 0, "new": 0})["old"] != per_shop.get(shop, {"old": 0, "new": 0})["new"]
        }
        unmigrated = [r["bundleId"] for r in await conn.fetch(unmigrated_q) if r["shop"] in shops]
        mismatches = [r["id"] for r in await conn.fetch(mismatch_q) if r["id"] in in_db]
        job_shops = {shop: per_shop.get(shop, {"old": 0, "new": 0}) for shop in legacy_shops}
    finally:
        await conn.close()
    return {
        "bundles_in_db": len(in_db),
        "acknowledged_live": len(ledger.live),
        "wrong_or_missing": wrong[:20],
        "wrong_or_missing_count": len(wrong),
        "deleted_but_present": resurrected[:20],
        "duplicates_or_unacknowledged": extra[:20],
        "duplicates_or_unacknowledged_count": len(extra),
        "legacy_name_mismatch_count": len(legacy_wrong),
        "validation": {
            "count_divergence": count_divergence,
            "unmigrated": unmigrated[:20],
            "discount_mismatches": mismatches[:20],
        },
        "job_shops_counts": job_shops,
    }


def checks(results: dict[str, Any], ledger: Ledger) -> dict[str, bool]:
    data = results["data"]
    job = results["job"]
    flag = results.get("flag", {})
    return {
        "writes_acknowledged": ledger.acknowledged["create"] > 0,
        "every_acknowledged_write_present": data["wrong_or_missing_count"] == 0,
        "every_acknowledged_delete_gone": not data["deleted_but_present"],
        "no_duplicates": data["duplicates_or_unacknowledged_count"] == 0,
        "legacy_rows_match": data["legacy_name_mismatch_count"] == 0,
        "validation_zero_divergence": not any(data["validation"].values()),
        "no_http_500": not ledger.http_500,
        "every_503_problem_json_with_retry_after": not ledger.bad_503,
        "no_unexpected_answers": not ledger.unexpected and not ledger.unanswered,
        "connections_terminated": results["killer"]["terminated"] > 0,
        "ready_after_pg_restart_within_30s": results.get("ready_after_pg_restart_s") is not None,
        "killed_replica_ready_within_30s": results.get("killed_replica_ready_s") is not None,
        "ready_at_end": results.get("ready_at_end_s") is not None,
        "job_items_no_internal_error": "internal_error" not in job.get("failure_reasons", {}),
        "readyz_503_while_pg_down": all(v == 503 for v in results.get("readyz_while_pg_down", {"-": None}).values()),
        "job_finished_or_progressing": job.get("status") in ("succeeded", "failed") or bool(job.get("progressing")),
        "flag_visible_on_both_replicas": all(v is not None for v in flag.get("visible_after_ms", {"-": None}).values())
        and all(v == flag.get("to") for v in results["flag_final"].values()),
    }


def print_summary(results: dict[str, Any]) -> None:
    led = results["ledger"]
    print(f"chaos run {results['date']}  duration {results['duration_s']} s  loadavg {results['loadavg_start']}")
    print(f"  acknowledged: {led['acknowledged']}  retried ops: {led['retried_ops']}")
    print(f"  statuses: {led['statuses']}")
    print(f"  transport errors: {led['transport_errors']}")
    print(f"  killer: {results['killer']}")
    for e in results["events"]:
        print(f"  {e['at_s']:>7.2f}s  {e['event']}  { ({k: v for k, v in e.items() if k not in ('at_s', 'event')}) }")
    print(f"  job: {results['job']}")
    print(f"  flag: {results.get('flag')}  final: {results['flag_final']}")
    data = results["data"]
    print(
        f"  data: {data['bundles_in_db']} bundles in db, {data['acknowledged_live']} acknowledged live, "
        f"wrong/missing {data['wrong_or_missing_count']}, deleted-but-present {len(data['deleted_but_present'])}, "
        f"duplicates {data['duplicates_or_unacknowledged_count']}, validation {data['validation']}"
    )
    if led["http_500"]:
        print(f"  HTTP 500s: {len(led['http_500'])}; first: {led['http_500'][0]}")
    print(f"  replica exceptions: {results['replica_exceptions']}")
    for name, ok in results["checks"].items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    print(f"  logs: {results['logs']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of writes under faults")
    parser.add_argument("--results", type=Path, default=RESULTS / "chaos-latest.json")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_summary(results)
    print(f"  results: {args.results}")
    return 0 if all(results["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
