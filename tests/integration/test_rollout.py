"""Rollbacks and the Phase 5 cleanup (`app/services/cutover/`, `app/api/cutover.py`, the CLI).

* Immediate rollback over HTTP on one service instance flips reads back to legacy on a SECOND
  instance within a second (both on the session database; the flags are put back afterwards).
* Cleanup and restore run on a database of their own (created and migrated here): they move the
  legacy tables between schemas, which the session database's other tests would not survive. A
  service instance on that database shows what the service does meanwhile: V2 reads and writes
  keep working, validation / job creation / immediate rollback answer 409 instead of a 500.
* The full rollback runs through the CLI function on another database of its own: the V2 rows
  end up in backup tables, and upgrading works again afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import NoMatchFound

from app.api.cutover import router as rollout_router
from app.cli import main as cli_main
from app.core.config import get_settings
from app.core.db import create_pool
from app.core.migrations import head_revision, upgrade_async
from app.main import create_app
from app.services.cutover import cleanup as cleanup_service
from app.services.cutover import rollback as rollback_service
from app.services.cutover import stage as stage_service
from app.services.cutover.guard import ARCHIVED_LEGACY_TABLES, LegacyTablesArchived, legacy_table_locations
from app.services.cutover.rollback import BASELINE_REVISION
from app.services.migration import jobs as migration_jobs
from app.services.migration.validation import build_validation_report
from tests import pg
from tests.conftest import ADMIN_TOKEN, AppFactory, as_actor, make_settings, new_shop
from tests.integration.bundle_helpers import (
    bundle_body,
    bundles_url,
    legacy_row,
    metaobject_gid,
    metaobject_item,
    product_gid,
    register_shop,
)
from tests.legacy_fixtures import seed_bulk_manual_bundles

FLAGS = ("V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE", "DUAL_WRITE", "SHADOW_READS")
SETTABLE = ("enabled", "rolloutPercent", "shopOverrides", "sampleRate")
PROPAGATION_S = 1.0
PROBLEM = "application/problem+json"


def with_rollout_routes(app: FastAPI) -> FastAPI:
    """Include `app/api/cutover.py` unless app/main.py already does (it is wired there separately)."""
    try:
        app.url_path_for("post_rollback")
    except NoMatchFound:
        app.include_router(rollout_router)
    return app


async def _flags(c: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await c.get("/admin/flags")
    assert response.status_code == 200, response.text
    return {f["name"]: f for f in response.json()["items"]}


async def _restore(c: httpx.AsyncClient, before: dict[str, dict[str, Any]]) -> None:
    after = await _flags(c)
    for name, old in before.items():
        if any(after[name][k] != old[k] for k in SETTABLE):
            response = await c.put(
                f"/admin/flags/{name}",
                json={**{k: old[k] for k in SETTABLE}, "reason": "test teardown: restore"},
                headers=as_actor("tests"),
            )
            assert response.status_code == 200, response.text


# ------------------------------------------------------------------------------ immediate rollback


async def test_immediate_rollback_reaches_a_second_instance_within_one_second(
    app_factory: AppFactory, sim: Any, db: asyncpg.Connection
) -> None:
    shop = new_shop("rb")
    await register_shop(sim, db, shop)
    async with app_factory() as first, app_factory() as second:
        with_rollout_routes(first.app)
        before = await _flags(first)
        try:
            # A bundle both stores can answer for: dual-written, its metaobject in Shopify.
            metaobject, products = metaobject_gid(), [product_gid()]
            name = f"Rollback {metaobject[-6:]}"
            await sim.add_metaobjects(
                shop, [metaobject_item(metaobject, name=name, title="T", discount="10", products=products)]
            )
            created = await first.post(
                bundles_url(shop), json=bundle_body(name=name, metaobject=metaobject, products=products)
            )
            assert created.status_code == 201, created.text
            bundle_id = created.json()["id"]

            async def source(client: httpx.AsyncClient) -> str:
                response = await client.get(bundles_url(shop, bundle_id))
                assert response.status_code == 200, response.text
                return str(response.headers["x-bundle-read-source"])

            live = await first.put("/admin/migration-stage", json={"stage": "live", "reason": "test: go live"})
            assert live.status_code == 200, live.text
            deadline = time.monotonic() + 2
            while await source(second) != "v2":
                assert time.monotonic() < deadline, "second instance never went live"
                await asyncio.sleep(0.05)

            started = time.monotonic()
            response = await first.post(
                "/admin/rollback", json={"reason": "incident 42"}, headers=as_actor("oncall")
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["action"] == "immediate_rollback" and body["stage"] == "dualwrite"
            assert set(body["changedFlags"]) == {"V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE", "SHADOW_READS"}
            flags = {f["name"]: f for f in body["flags"]}
            for name_ in ("V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE", "SHADOW_READS"):
                assert (flags[name_]["enabled"], flags[name_]["rolloutPercent"], flags[name_]["shopOverrides"]) == (
                    False,
                    0,
                    {},
                )
            assert (flags["DUAL_WRITE"]["enabled"], flags["DUAL_WRITE"]["rolloutPercent"]) == (True, 100)
            assert await source(first) == "legacy", "the instance that was asked answers from legacy at once"

            while (current := await source(second)) != "legacy":
                assert time.monotonic() - started < PROPAGATION_S, f"second instance still reads {current}"
                await asyncio.sleep(0.05)
            assert time.monotonic() - started < PROPAGATION_S

            # Dual write stayed on: a write on the second instance reaches the legacy table.
            renamed = await second.patch(bundles_url(shop, bundle_id), json={"name": "Renamed after rollback"})
            assert renamed.status_code == 200, renamed.text
            row = await legacy_row(db, metaobject)
            assert row is not None and row["bundleName"] == "Renamed after rollback"

            audit = (await first.get("/admin/flags/audit", params={"flag": "V2_BUNDLE_ENGINE", "limit": 1})).json()
            entry = audit["items"][0]
            assert entry["changedBy"] == "oncall" and entry["reason"] == "immediate rollback → dualwrite: incident 42"

            again = (await first.post("/admin/rollback", json={"reason": "again"})).json()
            assert again["changedFlags"] == [], "idempotent: nothing rewritten, nothing audited"
            blank = await first.post("/admin/rollback", json={"reason": "  "})
            assert blank.status_code == 422 and blank.headers["content-type"].startswith(PROBLEM)
            unknown = await first.post("/admin/rollback", json={"reason": "x", "stage": "off"})
            assert unknown.status_code == 422
            anonymous = await first.post("/admin/rollback", json={"reason": "x"}, headers={"Authorization": ""})
            assert anonymous.status_code == 401
        finally:
            await _restore(first, before)


# ------------------------------------------------------------------------------ a database of its own


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    url = await pg.create_database("sbrollout")
    try:
        await upgrade_async(url)
        yield url
    finally:
        await pg.drop_database(url)


@asynccontextmanager
async def service_on(url: str, simulator: Any) -> AsyncIterator[httpx.AsyncClient]:
    """One service instance (full lifespan, worker included) on `url`, rollout routes included."""
    app = with_rollout_routes(create_app(make_settings(url, simulator, JOB_LEASE_S=5.0)))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://service.test",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        ) as client:
            yield client


async def _table_digest(conn: asyncpg.Connection, schema: str, table: str) -> tuple[int, str]:
    row = await conn.fetchrow(
        f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS h "
        f'FROM "{schema}"."{table}" t'
    )
    assert row is not None
    return int(row["n"]), str(row["h"])


async def _schema_of(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = $1 AND c.relkind = 'r' ORDER BY 1",
        table,
    )
    return [r["nspname"] for r in rows]


async def _wait_job(client: httpx.AsyncClient, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = (await client.get(f"/admin/migrations/jobs/{job_id}")).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.1)


async def test_cleanup_archives_the_legacy_tables_and_restore_brings_them_back(simulator: Any, sim: Any) -> None:
    shops = [new_shop("cl"), new_shop("cl")]
    async with fresh_database() as url:
        conn = await pg.connect(url)
        try:
            await seed_bulk_manual_bundles(conn, sim, shops, per_shop=6, products_per_shop=4)
            await conn.execute(
                'INSERT INTO auto_bundle_rules (id, shop, name, collections, tags, "minPrice", "maxPrice", '
                '"minProducts", discount, "updatedAt") '
                "VALUES ($1, $2, 'Rule', $3, $4, '1', '99', '2', '10', now() AT TIME ZONE 'UTC')",
                "rule-cleanup-1",
                shops[0],
                ["gid://shopify/Collection/1"],
                [],
            )
            await conn.execute(
                "INSERT INTO auto_bundle_data VALUES ($1, $2, $3, '', '100', '2', '10%')", shops[1], [], ["summer"]
            )
            await conn.execute(
                'INSERT INTO ai_fbt_bundles (id, shop, "productId", "bundledProductIds", "confidenceScore", support, '
                "lift) VALUES ('ai-cleanup-1', $1, 'gid://shopify/Product/1', $2, 0.5, 0.1, 1.2)",
                shops[0],
                ["gid://shopify/Product/2"],
            )

            async with service_on(url, simulator) as client:
                job = (await client.post("/admin/migrations/jobs", json={"kind": "all"})).json()
                assert (await _wait_job(client, job["id"]))["stats"]["failed"] == 0
                validation = await client.get("/admin/migrations/validation")
                assert validation.status_code == 200 and validation.json()["ok"] is True, validation.text

                # Refusals that leave everything as it was.
                early = await client.post("/admin/cleanup", json={"reason": "too early"})
                assert early.status_code == 409 and "Phase 4" in early.json()["detail"], early.text
                pool = await create_pool(url, max_size=2)
                try:
                    pending = await migration_jobs.create_job(pool, kind="bundles", dry_run=True)
                    await migration_jobs.pause_job(pool, pending.id)
                    busy = await client.post("/admin/cleanup", json={"reason": "busy", "force": True})
                    assert busy.status_code == 409 and pending.id in busy.json()["unfinishedJobs"], busy.text
                    await migration_jobs.cancel_job(pool, pending.id, lease_s=5.0)
                finally:
                    await pool.close()
                assert set((await legacy_table_locations(conn)).values()) == {"public"}

                live = await client.put("/admin/migration-stage", json={"stage": "rampdown", "reason": "phase 4 done"})
                assert live.status_code == 200, live.text
                digests = {t: await _table_digest(conn, "public", t) for t in ARCHIVED_LEGACY_TABLES}
                kept = {t: await _table_digest(conn, "public", t) for t in ("session", "ai_fbt_bundles")}

                response = await client.post("/admin/cleanup", json={"reason": "30 days on V2"})
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["stage"] == "complete" and body["validation"]["ok"] is True
                assert [t["table"] for t in body["archivedTables"]] == list(ARCHIVED_LEGACY_TABLES)
                assert {t["table"]: t["rows"] for t in body["archivedTables"]} == {t: d[0] for t, d in digests.items()}
                assert "ai_fbt_bundles" in {t["table"] for t in body["keptTables"]}

                # Moved, never dropped: same rows, constraint and index with them; the rest untouched.
                for table, digest in digests.items():
                    assert await _schema_of(conn, table) == ["archive"]
                    assert await _table_digest(conn, "archive", table) == digest
                pkey_schema = await conn.fetchval(
                    "SELECT n.nspname FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace "
                    "WHERE k.conname = 'bundle_discount_id_pkey'"
                )
                assert pkey_schema == "archive"
                for table, digest in kept.items():
                    assert await _table_digest(conn, "public", table) == digest

                # The service meanwhile: clear 409s instead of 500s where the legacy tables are needed ...
                for method, path, payload in (
                    ("GET", "/admin/migrations/validation", None),
                    ("POST", "/admin/migrations/jobs", {"kind": "bundles"}),
                    ("POST", "/admin/rollback", {"reason": "cannot"}),
                    ("POST", "/admin/cleanup", {"reason": "twice", "force": True}),
                ):
                    refused = await client.request(method, path, json=payload)
                    assert refused.status_code == 409, (path, refused.text)
                    assert refused.headers["content-type"].startswith(PROBLEM)
                    assert "archive" in refused.json()["detail"]
                assert (await client.get("/admin/migrations/validation")).json()["archivedTables"] == list(
                    ARCHIVED_LEGACY_TABLES
                )
                # ... and V2 reads and writes keep working (dual write is off).
                listed = await client.get(bundles_url(shops[0]))
                assert listed.status_code == 200 and listed.headers["x-bundle-read-source"] == "v2"
                assert len(listed.json()["items"]) == 6 + 1, "six manual bundles and the AI one"
                created = await client.post(bundles_url(shops[0]), json=bundle_body())
                assert created.status_code == 201 and created.json()["legacySync"] == "disabled", created.text

                restored = await client.post("/admin/cleanup/restore", json={"reason": "need them back"})
                assert restored.status_code == 200, restored.text
                back = restored.json()
                assert back["stage"] == "rampdown" and back["changedFlags"] == ["DUAL_WRITE"]
                assert [t["table"] for t in back["restoredTables"]] == list(ARCHIVED_LEGACY_TABLES)
                assert back["bundlesChangedWhileArchived"] >= 1 and back["warnings"]
                for table, digest in digests.items():
                    assert await _schema_of(conn, table) == ["public"]
                    assert await _table_digest(conn, "public", table) == digest
                assert (await client.get("/admin/migrations/validation")).status_code == 200
                nothing = await client.post("/admin/cleanup/restore", json={"reason": "again"})
                assert nothing.status_code == 409
        finally:
            await conn.close()


async def test_service_functions_refuse_while_archived(simulator: Any) -> None:
    """The same guards without HTTP (the CLI path): typed conflicts, nothing half done."""
    async with fresh_database() as url:
        pool = await create_pool(url, max_size=3)
        try:
            settings = make_settings(url, simulator)
            await stage_service.set_stage(pool, "live", actor="tests", reason="go", settings=settings)
            result = await cleanup_service.phase5_cleanup(
                pool, actor="tests", reason="empty shop set", settings=settings, propagation_wait_s=0.1
            )
            assert result["stage"] == "complete"
            with pytest.raises(LegacyTablesArchived):
                await build_validation_report(pool, None)
            with pytest.raises(LegacyTablesArchived):
                await migration_jobs.create_job(pool, kind="all")
            with pytest.raises(LegacyTablesArchived):
                await stage_service.set_stage(pool, "rampdown", actor="tests", reason="no", settings=settings)
            with pytest.raises(LegacyTablesArchived):
                await rollback_service.immediate_rollback(pool, actor="tests", reason="no", settings=settings)
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT count(*) FROM sb_migration_jobs") == 0, "no failed job left behind"
            back = await cleanup_service.restore_from_archive(pool, actor="tests", reason="back", settings=settings)
            assert back["stage"] == "rampdown" and back["bundlesChangedWhileArchived"] == 0
        finally:
            await pool.close()


# ------------------------------------------------------------------------------ full rollback (CLI)


@pytest.fixture
def cli_database_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in FLAGS:
        monkeypatch.delenv(f"FEATURE_FLAG_{name}", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


async def _cli(argv: list[str]) -> int:
    def call() -> int:
        try:
            return cli_main(argv)
        except SystemExit as exc:
            return int(exc.code or 0)

    return await asyncio.to_thread(call)


async def test_full_rollback_via_the_cli_keeps_backups_and_upgrade_works_again(
    cli_database_env: pytest.MonkeyPatch,
) -> None:
    async with fresh_database() as url:
        cli_database_env.setenv("DATABASE_URL", url)
        get_settings.cache_clear()
        conn = await pg.connect(url)
        try:
            await conn.execute(
                "INSERT INTO bundle_discount_id VALUES ($1, 'Kit', 'gid://d/1', 'a.myshopify.com')",
                "gid://shopify/Metaobject/1",
            )
            await conn.execute(
                'INSERT INTO "Bundle" (id, shop, name, title, slug, "shopifyMetaobjectId", "updatedAt") '
                "VALUES ('b1', 'a.myshopify.com', 'Kit', 'Kit', 'kit', 'gid://shopify/Metaobject/1', now())"
            )
            await conn.execute(
                'INSERT INTO "BundleComponent" (id, "bundleId", "shopifyProductId", "updatedAt") '
                "VALUES ('c1', 'b1', 'gid://shopify/Product/7', now())"
            )
            assert await _cli(["stage", "set", "live", "--reason", "before the incident"]) == 0

            assert await _cli(["rollback", "full"]) == 2, "refuses without --yes"
            assert await conn.fetchval("SELECT version_num FROM alembic_version") == head_revision()

            assert await _cli(["rollback", "full", "--yes", "--reason", "test"]) == 0
            assert await conn.fetchval("SELECT version_num FROM alembic_version") == BASELINE_REVISION
            for gone in ('"Bundle"', '"BundleComponent"', "sb_feature_flags", "sb_migration_jobs"):
                assert await conn.fetchval(f"SELECT to_regclass('public.{gone}')") is None, gone
            assert await conn.fetchval("SELECT name FROM bundle_v2_backup") == "Kit"
            assert await conn.fetchval('SELECT "shopifyProductId" FROM bundle_component_backup') == (
                "gid://shopify/Product/7"
            )
            reasons = [r["reason"] for r in await conn.fetch("SELECT reason FROM sb_feature_flag_audit_backup")]
            assert "full rollback (before the downgrade): test" in reasons
            assert await conn.fetchval("SELECT count(*) FROM bundle_discount_id") == 1, "legacy rows untouched"

            assert await _cli(["db", "upgrade"]) == 0
            assert await conn.fetchval("SELECT version_num FROM alembic_version") == head_revision()
            assert await conn.fetchval('SELECT count(*) FROM "Bundle"') == 0
            assert await conn.fetchval("SELECT count(*) FROM bundle_v2_backup") == 1, "backups survive the upgrade"
        finally:
            await conn.close()


async def test_http_stage_and_flag_writes_refuse_while_archived(simulator: Any) -> None:
    """`PUT /admin/migration-stage` is the CLI's `set_stage` (advisory lock, archive guard), and a flag
    write that would read or write the archived legacy tables is refused the same way: 409, flags as
    they were, and the V2 bundle API keeps answering (no `relation does not exist`)."""
    shop = new_shop("ar")
    async with fresh_database() as url:
        async with service_on(url, simulator) as client:
            live = await client.put("/admin/migration-stage", json={"stage": "live", "reason": "phase 4"})
            assert live.status_code == 200 and live.json()["stage"] == "live", live.text
            cleaned = await client.post("/admin/cleanup", json={"reason": "phase 5"})
            assert cleaned.status_code == 200 and cleaned.json()["stage"] == "complete", cleaned.text
            before = await _flags(client)

            for stage in ("off", "dualwrite", "shadow", "live", "rampdown"):
                refused = await client.put("/admin/migration-stage", json={"stage": stage, "reason": "try"})
                assert refused.status_code == 409, (stage, refused.text)
                assert refused.headers["content-type"].startswith(PROBLEM)
                assert refused.json()["archivedTables"] == list(ARCHIVED_LEGACY_TABLES)
            for name, values in (
                ("DUAL_WRITE", {"enabled": True}),
                ("DUAL_WRITE", {"enabled": False, "rolloutPercent": 10}),
                ("DUAL_WRITE", {"enabled": False, "shopOverrides": {shop: True}}),
                ("V2_BUNDLE_ENGINE", {"enabled": False, "rolloutPercent": 50}),
                ("V2_BUNDLE_ENGINE", {"enabled": True, "shopOverrides": {shop: False}}),
            ):
                refused = await client.put(f"/admin/flags/{name}", json={**values, "reason": "try"})
                assert refused.status_code == 409, (name, values, refused.text)
                assert refused.json()["archivedTables"] == list(ARCHIVED_LEGACY_TABLES)
            assert await _flags(client) == before, "nothing written"
            stage = await client.get("/admin/migration-stage")
            assert stage.json()["stage"] == "complete"

            # Writes that keep away from the legacy tables still go through.
            same = await client.put("/admin/migration-stage", json={"stage": "complete", "reason": "again"})
            assert same.status_code == 200, same.text
            pricing = await client.put("/admin/flags/V2_PRICING_ENGINE", json={"enabled": True, "reason": "ok"})
            assert pricing.status_code == 200, pricing.text

            created = await client.post(bundles_url(shop), json=bundle_body())
            assert created.status_code == 201, created.text
            listed = await client.get(bundles_url(shop))
            assert listed.status_code == 200 and len(listed.json()["items"]) == 1, listed.text
