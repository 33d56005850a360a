"""The backfill job runs while the real bundle API writes to the very bundles it migrates.

`test_migration_items.py::test_backfill_races_api_writes_on_the_same_rows` imitates the API's
transactions in SQL. This file drives the real thing, at the same time and on the same rows:

* **The job**: `POST /admin/migrations/jobs {kind: "bundles", shops, batchSize: 3-5}`, run by the
  job workers of two service replicas (the session's `client` instance and a second one from
  `app_factory`; both consume the default queue). Per-shop simulator latency (60-200 ms) holds each
  batch's Shopify phase open: the window between the batch read of the legacy rows and the item
  transactions that write V2.
* **The bundle API over HTTP**, requests spread over both replicas:
  - renames (PATCH by metaobject GID, half of them followed by a second rename with `If-Match`) and
    deletes (DELETE by GID), fired the moment the job's insert of that bundle commits (a watcher
    polls the V2 table; `GET` would not do, it answers from the legacy store while
    `V2_BUNDLE_ENGINE` is off), plus "blind" deletes that just retry while the API answers 404:
    a legacy bundle the job has not migrated yet does not exist for the V2 write path;
  - creates with fresh metaobject GIDs that exist in the simulator (named "Gift Set", a seeded name,
    so the API's slug choice races the job's): 201;
  - creates with GIDs the job is migrating right now (fired in the batch's Shopify window, or a batch
    or two ahead of the job, or just behind it): always 409 `metaobject already bundled`, whether
    they reach the database before the item (the legacy row belongs to no V2 bundle) or after it
    (the unique index). A 503 is only ever "retry": the service's answer after three deadlocks
    between its V2-then-legacy lock order and the item's legacy-then-V2 one (docs/migration.md);
  - re-creates: after the legacy app deleted a not-yet-migrated bundle, the merchant creates a new
    V2 bundle on the same metaobject (201). The job's item for that GID must then neither add a
    second bundle nor put the old legacy name back.
* **The legacy Node app**, which still writes its own tables, deletes rows the job has not migrated
  yet, timed like the creates above. Its delete takes the row lock a plain `DELETE` takes, then
  checks in a fresh READ COMMITTED snapshot that no V2 bundle exists, and only then deletes: a
  legacy-app delete of an *already migrated* row is a write after migration, which the backfill
  cannot carry over by design (docs/migration.md, "What the backfill cannot do"). When the job won
  that race the merchant deletes through the API instead ("too late" below), so every intended
  delete still happens.

Every shop also holds legacy rows keyed by a metaobject *handle* (the legacy import's mistake): the
job migrates them under the real GID, and the API must keep writing to the handle-keyed row (see
`test_api_writes_on_handle_migrated_bundles_keep_their_legacy_row` below for the bug this caught).

Each round (3, seeded RNG: different latency, batch size and timing) uses three fresh shops of 50
ordinary + 4 handle-keyed legacy manual bundles and checks, once the job has succeeded:

1. one V2 bundle per (shop, metaobject) and per legacy key;
2. no deleted bundle (by API or legacy app) is in V2 or in `bundle_discount_id`; the surviving set
   is exactly what the writes leave, in both stores;
3. every API rename (the last one) is the V2 name and the legacy `bundleName`; created bundles keep
   the API's name; untouched ones their legacy name;
4. the job's counts add up (total = migrated + skipped + failed, per shop too) and every item has
   the outcome its history implies: `deleted_meanwhile` for rows the legacy app deleted first,
   `migrated` for bundles the API deleted or renamed after the job wrote them;
5. the plan's "Find unmigrated bundles" query (verbatim from the plan) returns nothing for these
   shops except items the job recorded as failed with a reason, and the handle-keyed rows, which the
   plan's join by `shopifyMetaobjectId` cannot match (their V2 bundle is found by
   `metadata.legacyBundleId`, as the validation report does); its "Verify discount mappings" query
   returns nothing either.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from app.core.db import create_pool
from app.core.ids import new_id
from tests.conftest import AppFactory, new_shop
from tests.integration.bundle_helpers import bundle_body, bundles_url, discount_gid, product_gid
from tests.legacy_fixtures import METAOBJECT_PREFIX, seed_bulk_manual_bundles

pytestmark = pytest.mark.asyncio(loop_scope="session")

PLAN_MD = Path(__file__).resolve().parents[3] / "shared" / "seed" / "migration-plan-v2.md"
JOBS = "/admin/migrations/jobs"
ROUNDS = 3
SHOPS_PER_ROUND = 3
PER_SHOP = 50
HANDLE_ROWS_PER_SHOP = 4
SEED = 20260417
METAOBJECT_CONFLICT = "metaobject already bundled"
TERMINAL = ("succeeded", "failed", "cancelled")
#: A 503 from the write path means "nothing changed, retry" (deadlock retries exhausted, pool saturated).
MAX_503_RETRIES = 8
ROUND_TIMEOUT_S = 30.0
# The item transaction found the row gone (it was in the batch read: the race inside the Shopify window),
# as opposed to the batch read itself not finding it (deleted before the batch started).
GONE_IN_FLIGHT = "bundle_discount_id row is gone"
DEADLOCKS_SQL = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"


def plan_query(title: str) -> str:
    """One statement of the plan's "Data Validation Queries" block, verbatim, found by its `-- title` comment."""
    text = PLAN_MD.read_text()
    block = re.search(r"```sql\n(.*?)```", text.split("## Data Validation Queries", 1)[1], re.S)
    assert block is not None
    for statement in block.group(1).split(";"):
        lines = statement.strip().splitlines()
        if lines and lines[0].strip() == f"-- {title}":
            return "\n".join(lines[1:]).strip()
    raise AssertionError(f"no query {title!r} in {PLAN_MD}")


@dataclass(frozen=True)
class Trigger:
    """Fire once the job's frontier (highest position migrated in the shop) reaches `frontier`, `delay_s` later."""

    frontier: int
    delay_s: float


@dataclass
class ShopScript:
    """One shop's writes for a round, drawn from the seeded RNG before anything runs, and what came of them.

    Bundles are named by their legacy key (`bundle_discount_id."bundleId"`); `gid(key)` is the metaobject
    GID their V2 bundle has, which differs for handle-keyed rows.
    """

    shop: str
    order: list[str]  # legacy keys in the job's order
    legacy_names: dict[str, str]
    handle_gids: dict[str, str]  # handle key → real metaobject GID
    watch_delete: dict[str, float] = field(default_factory=dict)  # key → delay after it appears in V2
    blind_delete: dict[str, float] = field(default_factory=dict)  # key → start offset (s)
    rename: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # key → (delay, 2nd rename delay)
    # key → Trigger: the legacy app's deletes, and creates on GIDs the job is about to migrate
    legacy_delete: dict[str, Trigger] = field(default_factory=dict)
    recreate: set[str] = field(default_factory=set)  # ⊆ legacy_delete: re-created through the API afterwards
    create_taken: dict[str, Trigger] = field(default_factory=dict)
    create_new: dict[str, float] = field(default_factory=dict)  # new GID (in the simulator) → frontier fraction
    # ---- what happened
    deleted_api: set[str] = field(default_factory=set)
    deleted_legacy: set[str] = field(default_factory=set)
    too_late: set[str] = field(default_factory=set)  # the job migrated it before the legacy app's delete
    names: dict[str, str] = field(default_factory=dict)  # key → the name the API gave it last
    created: set[str] = field(default_factory=set)
    answers: Counter[str] = field(default_factory=Counter)  # e.g. "blind 404", "taken 409", "503"

    def __post_init__(self) -> None:
        self.index = {key: i for i, key in enumerate(self.order)}

    def gid(self, key: str) -> str:
        return self.handle_gids.get(key, key)


class Api:
    """The bundle API behind a "load balancer": requests alternate between the two replicas."""

    def __init__(self, replicas: list[httpx.AsyncClient]) -> None:
        self.replicas = replicas
        self.calls = 0

    async def send(
        self, script: ShopScript, method: str, url: str, *, json_body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """One request; a 503 ("nothing changed, retry") is retried like a client would, and counted."""
        for _ in range(MAX_503_RETRIES):
            self.calls += 1
            replica = self.replicas[self.calls % len(self.replicas)]
            response = await replica.request(method, url, json=json_body, headers=headers)
            if response.status_code != 503:
                return response
            script.answers["503"] += 1
            await asyncio.sleep(0.05)
        raise AssertionError(f"{method} {url}: still 503 after {MAX_503_RETRIES} attempts: {response.text}")


def gid_url(shop: str, gid: str) -> str:
    return bundles_url(shop, quote(gid, safe=""))


def draw_script(
    rng: random.Random,
    shop: str,
    rows: list[asyncpg.Record],
    handle_gids: dict[str, str],
    batch: int,
    latency_s: float,
) -> ShopScript:
    """Disjoint random sets of bundles for each kind of write; timings relative to the job's progress.

    The job claims a shop's items in batches of `batch` consecutive positions. A trigger either aims
    at the Shopify window of the item's own batch (after the previous batch's last insert, a fraction
    of the simulator latency later: the batch has read the legacy row, its items have not run), or
    fires 0 to 2 batches ahead of the job's frontier (before the batch read, or just behind it).

    Handle-keyed rows get renames and deletes only: a create on the real GID of a handle row the job
    has not migrated yet is the known limitation of docs/migration.md (the API cannot tell, without
    Shopify, that the GID is that row's).
    """
    script = ShopScript(
        shop, [r["bundleId"] for r in rows], {r["bundleId"]: r["bundleName"] for r in rows}, handle_gids
    )
    index = script.index

    def trigger(key: str) -> Trigger:
        position = index[key]
        if rng.random() < 0.5:
            return Trigger(position - position % batch - 2, rng.uniform(0.1, 0.9) * latency_s)
        return Trigger(position - rng.randint(0, 2 * batch), 0.0)

    def rename_timing() -> tuple[float, float | None]:
        return rng.uniform(0.0, 0.05), rng.uniform(0.0, 0.3) if rng.random() < 0.5 else None

    handles = sorted(handle_gids)
    rng.shuffle(handles)
    script.rename = {key: rename_timing() for key in handles[:2]}
    script.watch_delete = {handles[2]: rng.uniform(0.0, 0.05)}
    script.legacy_delete = {handles[3]: trigger(handles[3])}

    pool = [key for key in script.order if key not in handle_gids]
    rng.shuffle(pool)

    def take(count: int, *, early: bool = False) -> list[str]:
        chosen = [key for key in pool if not early or index[key] < len(script.order) // 2][:count]
        for key in chosen:
            pool.remove(key)
        return chosen

    script.blind_delete = {key: rng.uniform(0.0, 0.8) for key in take(3, early=True)}
    plain_legacy_deletes = take(6)
    script.recreate = set(plain_legacy_deletes[:2])
    script.legacy_delete.update({key: trigger(key) for key in plain_legacy_deletes})
    script.create_taken = {key: trigger(key) for key in take(5)}
    script.watch_delete.update({key: rng.uniform(0.0, 0.05) for key in take(5)})
    script.rename.update({key: rename_timing() for key in take(6)})
    return script


async def new_metaobjects(sim: Any, shop: str, count: int) -> list[str]:
    """Fresh `product-bundles` metaobjects in the simulator: what the merchant's new bundles point at."""
    items = [
        {
            "type": "product-bundles",
            "fields": {
                "bundle_name": f"New {i}",
                "bundle_title": f"New {i}",
                "discount": "10",
                "products": json.dumps([product_gid()]),
            },
        }
        for i in range(count)
    ]
    return [str(mo["id"]) for mo in await sim.add_metaobjects(shop, items)]


async def seed_handle_rows(db: asyncpg.Connection, sim: Any, shop: str, count: int) -> dict[str, str]:
    """`count` legacy bundles whose `bundle_discount_id` key is `gid://shopify/Metaobject/<handle>` (the legacy
    import's mistake, shopify.md): handle key → the real metaobject GID the backfill resolves it to."""
    suffix = new_id()[-8:]
    items = [
        {
            "type": "product-bundles",
            "handle": f"legacy-import-{suffix}-{i}",
            "fields": {
                "bundle_name": f"Imported {i}",
                "bundle_title": f"Imported {i}",
                "discount": "10",
                "products": json.dumps([product_gid()]),
            },
        }
        for i in range(count)
    ]
    created = await sim.add_metaobjects(shop, items)
    keys = {f"{METAOBJECT_PREFIX}{item['handle']}": str(mo["id"]) for item, mo in zip(items, created, strict=True)}
    await db.executemany(
        'INSERT INTO bundle_discount_id ("bundleId", "bundleName", "discountId", shop) VALUES ($1, $2, $3, $4)',
        [(key, f"Imported {i}", discount_gid(), shop) for i, key in enumerate(keys)],
    )
    return keys


# ---------------------------------------------------------------------------------- the writers


async def api_rename(api: Api, script: ShopScript, key: str, tag: str) -> None:
    """Rename right after the job wrote the bundle; maybe once more with If-Match (the newest write must win)."""
    delay, second = script.rename[key]
    await asyncio.sleep(delay)
    url = gid_url(script.shop, script.gid(key))
    name = f"API rename {tag}"
    response = await api.send(script, "PATCH", url, json_body={"name": name})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == name and response.json()["legacySync"] == "synced", response.text
    script.names[key] = name
    if second is None:
        return
    await asyncio.sleep(second)
    name = f"API rename {tag} again"
    response = await api.send(
        script, "PATCH", url, json_body={"name": name}, headers={"If-Match": response.headers["ETag"]}
    )
    assert response.status_code == 200, response.text
    script.names[key] = name


async def api_delete(api: Api, script: ShopScript, key: str, delay: float) -> None:
    await asyncio.sleep(delay)
    response = await api.send(script, "DELETE", gid_url(script.shop, script.gid(key)))
    assert response.status_code == 204, response.text
    script.deleted_api.add(key)


async def blind_delete(api: Api, script: ShopScript, key: str, job_done: asyncio.Event) -> None:
    """DELETE by GID until it is no longer 404: 404 while the bundle is legacy-only, then 204 once migrated."""
    await asyncio.sleep(script.blind_delete[key])
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while True:
        finished = job_done.is_set()  # read first: a request sent after the job succeeded must find the bundle
        response = await api.send(script, "DELETE", gid_url(script.shop, script.gid(key)))
        if response.status_code == 204:
            script.deleted_api.add(key)
            return
        assert response.status_code == 404, response.text
        assert not finished, f"{key}: 404 after the job succeeded, so it was never migrated"
        assert time.monotonic() < deadline, f"{key}: still 404 after {ROUND_TIMEOUT_S}s"
        script.answers["blind 404"] += 1
        await asyncio.sleep(0.07)


async def legacy_app_delete(api: Api, script: ShopScript, key: str, pool: asyncpg.Pool, tag: str, delay: float) -> None:
    """The legacy app deletes a row the job has not migrated yet (see the module docstring for the check)."""
    await asyncio.sleep(delay)
    shop = script.shop
    async with pool.acquire() as conn, conn.transaction():
        locked = await conn.fetchval(
            'SELECT 1 FROM bundle_discount_id WHERE "bundleId" = $1 AND shop = $2 FOR UPDATE', key, shop
        )
        assert locked, f"legacy row {key} vanished: nothing else deletes it"
        migrated = await conn.fetchval(
            'SELECT EXISTS (SELECT 1 FROM "Bundle" WHERE shop = $1 AND "shopifyMetaobjectId" = $2)',
            shop,
            script.gid(key),
        )
        if not migrated:
            await conn.execute('DELETE FROM bundle_discount_id WHERE "bundleId" = $1 AND shop = $2', key, shop)
    if migrated:
        script.too_late.add(key)
        await api_delete(api, script, key, 0.0)  # the merchant deletes it where it lives now
        return
    script.deleted_legacy.add(key)
    if key in script.recreate:
        await api_create(api, script, key, f"Re-created {tag}", expect_created=True)


async def api_create(
    api: Api, script: ShopScript, gid: str, name: str, *, expect_created: bool, delay: float = 0.0
) -> None:
    await asyncio.sleep(delay)
    body = bundle_body(name=name, metaobject=gid, discount=discount_gid())
    response = await api.send(script, "POST", bundles_url(script.shop), json_body=body)
    if expect_created:
        assert response.status_code == 201, response.text
        assert response.json()["legacySync"] == "synced", response.text
        script.created.add(gid)
        script.names[gid] = name
    else:
        # A legacy bundle being migrated is never taken over by a create, before or after its item ran.
        assert response.status_code == 409, response.text
        assert response.json()["detail"] == METAOBJECT_CONFLICT, response.text
        script.answers["taken 409"] += 1


async def drive_shop(
    api: Api,
    script: ShopScript,
    pool: asyncpg.Pool,
    job: tuple[asyncio.Event, asyncio.Event],
    round_no: int,
    rng: random.Random,
) -> None:
    """Once the job is planned, watch its progress in this shop and fire each scripted write at its moment."""
    job_started, job_done = job
    await job_started.wait()
    index = script.index
    key_of = {script.gid(key): key for key in script.order}
    waiting = set(script.watch_delete) | set(script.rename)
    triggers = {("legacy", k): t for k, t in script.legacy_delete.items()}
    triggers.update({("taken", k): t for k, t in script.create_taken.items()})
    fresh = dict(script.create_new)
    tasks: list[asyncio.Task[None]] = [
        asyncio.create_task(blind_delete(api, script, key, job_done)) for key in script.blind_delete
    ]
    shop_no = script.shop.split("-", 1)[1][:4]

    def fire(work: Coroutine[Any, Any, None]) -> None:
        tasks.append(asyncio.create_task(work))

    async with pool.acquire() as conn:
        while True:
            finished = job_done.is_set()  # read first: the pass after the job ended sees every V2 row
            rows = await conn.fetch(
                'SELECT "shopifyMetaobjectId" FROM "Bundle" WHERE shop = $1 AND "shopifyMetaobjectId" = ANY($2)',
                script.shop,
                list(key_of),
            )
            present = {key_of[r[0]] for r in rows}
            frontier = max((index[key] for key in present), default=-1)
            for key in sorted(waiting & present):
                waiting.discard(key)
                if key in script.rename:
                    fire(api_rename(api, script, key, f"r{round_no}-{shop_no}-{index[key]}"))
                else:
                    fire(api_delete(api, script, key, script.watch_delete[key]))
            for (what, key), when in sorted(triggers.items()):
                if finished or frontier >= when.frontier:
                    del triggers[(what, key)]
                    delay = 0.0 if finished else when.delay_s
                    if what == "legacy":
                        fire(legacy_app_delete(api, script, key, pool, f"r{round_no}-{shop_no}-{index[key]}", delay))
                    else:
                        fire(api_create(api, script, key, f"Hijack {key}", expect_created=False, delay=delay))
            for gid, fraction in sorted(fresh.items()):
                if finished or frontier >= fraction * len(script.order):
                    del fresh[gid]
                    # "Gift Set" is also a seeded name: the API's slug choice races the job's for `gift-set-<n>`
                    fire(api_create(api, script, gid, "Gift Set", expect_created=True))
            if finished:
                break
            await asyncio.sleep(rng.uniform(0.005, 0.02))
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    assert not waiting, f"never migrated, so never renamed/deleted: {sorted(waiting)}"


async def run_job(
    client: httpx.AsyncClient, shops: list[str], batch: int, job_started: asyncio.Event, job_done: asyncio.Event
) -> dict[str, Any]:
    """Start the job (its items are planned by then, so `total` covers every seeded row) and poll it to the end."""
    try:
        response = await client.post(JOBS, json={"kind": "bundles", "shops": shops, "batchSize": batch})
        assert response.status_code == 202, response.text
        url = response.json()["statusUrl"]
    finally:
        job_started.set()
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    try:
        while True:
            body: dict[str, Any] = (await client.get(url)).json()
            if body["status"] in TERMINAL:
                return body
            assert time.monotonic() < deadline, f"job still {body['status']}: {body['stats']}"
            await asyncio.sleep(0.05)
    finally:
        job_done.set()


# ---------------------------------------------------------------------------------- the checks


async def check_round(
    client: httpx.AsyncClient, db: asyncpg.Connection, job: dict[str, Any], scripts: list[ShopScript]
) -> Counter[str]:
    shops = [s.shop for s in scripts]
    # (4) counts add up, overall and per shop
    assert job["status"] == "succeeded", job
    stats = job["stats"]
    assert stats["total"] == SHOPS_PER_ROUND * (PER_SHOP + HANDLE_ROWS_PER_SHOP)
    assert stats["total"] == stats["migrated"] + stats["skipped"] + stats["failed"] == stats["processed"], stats
    per_shop = {s["shop"]: s for s in job["perShop"]}
    for script in scripts:
        row = per_shop[script.shop]
        assert row["total"] == len(script.order) == row["migrated"] + row["skipped"] + row["failed"], row
    items = {
        r["legacyId"]: r
        for r in await db.fetch(
            'SELECT "legacyId", shop, status, reason, detail FROM sb_migration_job_items WHERE "jobId" = $1', job["id"]
        )
    }
    assert len(items) == stats["total"]
    failed = {key: r["reason"] for key, r in items.items() if r["status"] == "failed"}
    coverage: Counter[str] = Counter()
    for script in scripts:
        for key in script.order:
            item = items[key]
            got = (item["status"], item["reason"])
            if key in script.recreate and key in script.deleted_legacy:
                # the item saw either no legacy row, or the API's new one with its V2 bundle: never a second copy
                assert got in {("skipped", "deleted_meanwhile"), ("skipped", "already_migrated")}, (key, dict(item))
            elif key in script.deleted_legacy:
                assert got == ("skipped", "deleted_meanwhile"), (key, dict(item))
                in_flight = item["detail"] == GONE_IN_FLIGHT
                coverage[
                    f"legacy delete {'in the batch Shopify window' if in_flight else 'before the batch read'}"
                ] += 1
            else:  # migrated, and possibly renamed or deleted through the API afterwards
                assert got == ("migrated", None), (key, dict(item))
    assert not failed, f"failed items: {failed}"
    listed = await client.get(f"{JOBS}/{job['id']}/failures", params={"limit": 200})
    assert listed.status_code == 200 and listed.json()["items"] == [], listed.text

    # (1) no duplicate, by metaobject or by legacy key
    dupes = await db.fetch(
        """SELECT shop, "shopifyMetaobjectId", count(*) FROM "Bundle" WHERE shop = ANY($1::text[])
           GROUP BY 1, 2 HAVING count(*) > 1
           UNION ALL
           SELECT shop, metadata ->> 'legacyBundleId', count(*) FROM "Bundle"
           WHERE shop = ANY($1::text[]) AND metadata ? 'legacyBundleId' GROUP BY 1, 2 HAVING count(*) > 1""",
        shops,
    )
    assert dupes == [], [dict(d) for d in dupes]

    v2 = await db.fetch(
        """SELECT b.shop, b."shopifyMetaobjectId" AS gid, b.name,
                  (SELECT count(*) FROM "BundleInventory" i WHERE i."bundleId" = b.id) AS inventories,
                  (SELECT count(*) FROM "BundleComponent" c WHERE c."bundleId" = b.id) AS components
           FROM "Bundle" b WHERE b.shop = ANY($1::text[])""",
        shops,
    )
    legacy = await db.fetch(
        'SELECT shop, "bundleId" AS key, "bundleName" AS name FROM bundle_discount_id WHERE shop = ANY($1::text[])',
        shops,
    )
    for script in scripts:
        deleted = script.deleted_api | (script.deleted_legacy - script.created)
        alive = (set(script.order) - script.deleted_api - script.deleted_legacy) | script.created
        v2_names = {r["gid"]: r["name"] for r in v2 if r["shop"] == script.shop}
        legacy_names = {r["key"]: r["name"] for r in legacy if r["shop"] == script.shop}
        # (2) nothing deleted comes back, in either store; the survivors are exactly what the writes leave
        back = {key for key in deleted if script.gid(key) in v2_names or key in legacy_names}
        assert not back, sorted(back)
        want_v2 = {script.gid(key) for key in alive}
        assert set(v2_names) == want_v2, (sorted(set(v2_names) - want_v2), sorted(want_v2 - set(v2_names)))
        assert set(legacy_names) == alive, (sorted(set(legacy_names) - alive), sorted(alive - set(legacy_names)))
        # (3) the newest write wins: API renames and creates, else the legacy name; both stores agree
        for key in alive:
            want = script.names.get(key, script.legacy_names.get(key))
            assert v2_names[script.gid(key)] == legacy_names[key] == want, (key, v2_names[script.gid(key)], want)
        coverage["renamed"] += len(script.rename)
        coverage["deleted through the API"] += len(script.deleted_api)
        coverage["legacy delete too late (deleted through the API)"] += len(script.too_late)
        coverage["re-created"] += len(script.created & script.deleted_legacy)
        coverage.update(script.answers)
    assert all(r["inventories"] == 1 and r["components"] >= 1 for r in v2), "a V2 bundle without all its children"

    # (5) the plan's own validation queries, verbatim, restricted to these shops
    unmigrated = await db.fetch(
        f"""SELECT q.*, EXISTS (SELECT 1 FROM "Bundle" b WHERE b.shop = q.shop
                                AND b.metadata ->> 'legacyBundleId' = q."bundleId") AS by_legacy_key
            FROM ({plan_query("Find unmigrated bundles")}) AS q WHERE q.shop = ANY($1::text[])""",
        shops,
    )
    handle_keys = {key for script in scripts for key in script.handle_gids}
    unexplained = [
        dict(r)
        for r in unmigrated
        if not failed.get(r["bundleId"]) and not (r["bundleId"] in handle_keys and r["by_legacy_key"])
    ]
    assert unexplained == [], unexplained
    mismatches = await db.fetch(
        f"""SELECT * FROM ({plan_query("Verify discount mappings")}) AS q
            WHERE q.id IN (SELECT id FROM "Bundle" WHERE shop = ANY($1::text[]))""",
        shops,
    )
    assert mismatches == [], [dict(r) for r in mismatches]
    return coverage


# ---------------------------------------------------------------------------------- the race


@pytest.fixture
async def writer_pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    """Connections for the watchers and the legacy app (apart from the service's pools)."""
    pool = await create_pool(db_url, max_size=12)
    yield pool
    await pool.close()


async def test_backfill_job_races_the_real_api_on_the_same_bundles(
    client: httpx.AsyncClient,
    app_factory: AppFactory,
    db: asyncpg.Connection,
    sim: Any,
    writer_pool: asyncpg.Pool,
) -> None:
    coverage: Counter[str] = Counter()
    async with app_factory(DB_POOL_SIZE=10) as replica:
        api = Api([client, replica])
        for round_no in range(ROUNDS):
            rng = random.Random(SEED + round_no)
            batch = rng.choice([3, 4, 5])
            shops = [new_shop(f"br{round_no}") for _ in range(SHOPS_PER_ROUND)]
            await seed_bulk_manual_bundles(db, sim, shops, PER_SHOP)
            scripts = []
            for shop in shops:
                handle_gids = await seed_handle_rows(db, sim, shop, HANDLE_ROWS_PER_SHOP)
                rows = await db.fetch(  # in the job's order (plan_items: ORDER BY shop, "bundleId")
                    'SELECT "bundleId", "bundleName" FROM bundle_discount_id WHERE shop = $1 ORDER BY "bundleId"', shop
                )
                latency_ms = rng.choice([60, 120, 200])
                await sim.set_faults(shop, latency_ms=latency_ms)
                script = draw_script(rng, shop, rows, handle_gids, batch, latency_ms / 1000)
                script.create_new = {gid: rng.random() for gid in await new_metaobjects(sim, shop, 3)}
                scripts.append(script)

            deadlocks = await db.fetchval(DEADLOCKS_SQL)
            events = (asyncio.Event(), asyncio.Event())  # job started (planned), job finished
            started = time.monotonic()
            job, *_ = await asyncio.gather(
                run_job(client, shops, batch, *events),
                *(drive_shop(api, s, writer_pool, events, round_no, random.Random(rng.random())) for s in scripts),
            )
            elapsed = time.monotonic() - started
            round_coverage = await check_round(client, db, job, scripts)
            round_coverage["deadlocks (database-wide, informational)"] = await db.fetchval(DEADLOCKS_SQL) - deadlocks
            print(f"round {round_no}: batch {batch}, {elapsed:.1f}s, {dict(sorted(round_coverage.items()))}")
            coverage.update(round_coverage)
    # The races this test exists for did happen (counted over all rounds).
    assert coverage["legacy delete in the batch Shopify window"] >= 1, coverage
    assert coverage["legacy delete before the batch read"] >= 1, coverage
    assert coverage["blind 404"] >= 1 and coverage["taken 409"] >= 1, coverage
    assert coverage["re-created"] >= 1, coverage


# ---------------------------------------------------------------------------------- handle-keyed legacy rows


async def finished_job(client: httpx.AsyncClient, shops: list[str]) -> dict[str, Any]:
    job = await run_job(client, shops, 5, asyncio.Event(), asyncio.Event())
    assert job["status"] == "succeeded", job
    return job


async def shop_state(db: asyncpg.Connection, shop: str) -> tuple[dict[str, str], dict[str, str]]:
    """(legacy key → bundleName, V2 metaobject GID → name) of one shop."""
    legacy = await db.fetch('SELECT "bundleId", "bundleName" FROM bundle_discount_id WHERE shop = $1', shop)
    v2 = await db.fetch('SELECT "shopifyMetaobjectId", name FROM "Bundle" WHERE shop = $1', shop)
    return {r[0]: r[1] for r in legacy}, {r[0]: r[1] for r in v2}


async def test_api_writes_on_handle_migrated_bundles_keep_their_legacy_row(
    client: httpx.AsyncClient, db: asyncpg.Connection, sim: Any
) -> None:
    """A bundle migrated from a handle-keyed row lives in V2 under its real GID, but its legacy row keeps the
    handle key (metadata.legacyHandle / legacyBundleId). The API's dual write must treat *that* row as the
    bundle's. It used to key by the GID: a rename added a second legacy row (the legacy app showed the
    bundle twice, once under the old name), and a delete left the handle row behind (the legacy app still
    showed the bundle, and the next backfill run migrated it again: a deleted bundle came back)."""
    shop = new_shop("hk")
    await seed_bulk_manual_bundles(db, sim, [shop], 1)
    keys = await seed_handle_rows(db, sim, shop, 4)
    (renamed, gid_renamed), (deleted, gid_deleted), (kept, gid_kept), (moved, gid_moved) = keys.items()
    first = await finished_job(client, [shop])
    assert (first["stats"]["migrated"], first["stats"]["failed"]) == (5, 0), first["stats"]

    response = await client.patch(gid_url(shop, gid_renamed), json={"name": "Renamed in V2"})
    assert response.status_code == 200 and response.json()["legacySync"] == "synced", response.text
    for gid in (gid_deleted, gid_kept):
        assert (await client.patch(gid_url(shop, gid), json={"name": f"Renamed {gid}"})).status_code == 200
    assert (await client.delete(gid_url(shop, gid_deleted))).status_code == 204
    # a client that replaces metadata cannot cut the link to the legacy row (the service owns it)...
    response = await client.patch(gid_url(shop, gid_kept), json={"metadata": {"note": "mine"}})
    assert response.status_code == 200, response.text
    link = {"legacyHandle": kept.removeprefix(METAOBJECT_PREFIX), "legacyBundleId": kept}
    assert response.json()["metadata"] == {"note": "mine", **link}
    # ...but pointing the bundle at another metaobject moves its legacy row there, like any bundle's
    [other] = await new_metaobjects(sim, shop, 1)
    response = await client.patch(gid_url(shop, gid_moved), json={"shopifyMetaobjectId": other})
    assert response.status_code == 200, response.text
    assert not {"legacyHandle", "legacyBundleId"} & set(response.json()["metadata"]), response.text
    # a create cannot claim a legacy row through metadata
    fake = f"{METAOBJECT_PREFIX}not-migrated-{new_id()}"
    [fresh] = await new_metaobjects(sim, shop, 1)
    body = bundle_body(
        metaobject=fresh, metadata={"legacyHandle": fake.removeprefix(METAOBJECT_PREFIX), "legacyBundleId": fake}
    )
    response = await client.post(bundles_url(shop), json=body)
    assert response.status_code == 201 and response.json()["metadata"] == {}, response.text

    legacy, v2 = await shop_state(db, shop)
    assert legacy[renamed] == v2[gid_renamed] == "Renamed in V2" and gid_renamed not in legacy
    assert deleted not in legacy and gid_deleted not in legacy and gid_deleted not in v2
    assert legacy[kept] == f"Renamed {gid_kept}" and gid_kept not in legacy
    assert moved not in legacy and legacy[other] == v2[other] == "Imported 3"
    assert fake not in legacy and fresh in legacy
    assert len(v2) == 5 and len(legacy) == 5

    # a second backfill run finds nothing to do: the deleted bundle stays deleted
    second = await finished_job(client, [shop])
    assert second["stats"]["migrated"] == 0 and second["stats"]["failed"] == 0, second["stats"]
    assert await shop_state(db, shop) == (legacy, v2)
