"""The service behind a real PgBouncer in transaction mode (Debian's package, 1.18).

DATABASE_URL goes through PgBouncer (DATABASE_PGBOUNCER=true: no server-side statement cache),
DATABASE_DIRECT_URL reaches the test server directly for what needs a session (the LISTEN
connections of the flag store and the read model, pgqueuer). The bouncer listens on loopback with
`auth_type = any` (every login becomes the test server's user) and gives the service only a few
server connections, so clients really share them between transactions.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.core.db import asyncpg_connect_kwargs, create_pool, database_name
from app.core.security import sign_app_proxy_params
from tests.conftest import API_SECRET
from tests.integration.bundle_helpers import (
    bundle_body,
    bundles_url,
    metaobject_item,
    product_gid,
    register_shop,
)

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None
)

pytestmark = pytest.mark.skipif(
    PGBOUNCER is None,
    reason="PgBouncer is not installed (Debian: apt-get install pgbouncer; .ci/run installs it when it can)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Bouncer:
    port: int
    log: Path
    user: str

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"


def _write_config(directory: Path, target: dict[str, Any], port: int, database: str) -> Path:
    server = f"host={target['host']} port={target['port']} user={target['user']}"
    if target.get("password"):
        server += f" password={target['password']}"
    config = directory / "pgbouncer.ini"
    config.write_text(
        "\n".join(
            [
                "[databases]",
                # The service's database, with a few server connections for all its clients.
                f"{database} = {server} dbname={database} pool_size=4",
                # Two server connections (the statement-cache control below).
                f"pair = {server} dbname={database} pool_size=2",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = any",
                "pool_mode = transaction",
                "max_client_conn = 200",
                "ignore_startup_parameters = extra_float_digits,options",
                "server_connect_timeout = 3",
                "server_login_retry = 1",
                f"logfile = {directory / 'pgbouncer.log'}",
                f"pidfile = {directory / 'pgbouncer.pid'}",
                "",
            ]
        )
    )
    return config


@pytest.fixture
async def bouncer(db: asyncpg.Connection, db_url: str) -> AsyncIterator[Bouncer]:
    assert PGBOUNCER is not None
    # Not under pytest's private temporary root: PgBouncer may run as another user (see below).
    directory = Path(tempfile.mkdtemp(prefix="sb-pgbouncer-"))
    # The server as the test connection sees it (a socket directory for the embedded server).
    kwargs = asyncpg_connect_kwargs(db_url)
    target = {
        "host": kwargs.get("host") or "127.0.0.1",
        "port": int(await db.fetchval("SELECT current_setting('port')")),
        "user": await db.fetchval("SELECT current_user"),
        "password": kwargs.get("password"),
    }
    port = free_port()
    config = _write_config(directory, target, port, database_name(db_url))
    command = [PGBOUNCER, str(config)]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root: it runs as the owner of the server's socket directory
        # (the embedded server), else as the PostgreSQL system user.
        os.chmod(directory, 0o777)
        owner = "postgres"
        if str(target["host"]).startswith("/"):
            owner = pwd.getpwuid(os.stat(target["host"]).st_uid).pw_name
        command[1:1] = ["-u", owner]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    bouncer = Bouncer(port, directory / "pgbouncer.log", target["user"])
    try:
        deadline = time.monotonic() + 15
        while True:  # up, and able to reach the server
            try:
                probe = await asyncpg.connect(bouncer.url(database_name(db_url)), timeout=5, statement_cache_size=0)
                await probe.close()
                break
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = bouncer.log.read_text() if bouncer.log.exists() else ""
                    pytest.fail(f"PgBouncer is not usable ({exc!r}); its log:\n{log}")
                await asyncio.sleep(0.1)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def signed(shop: str, product: str) -> list[tuple[str, str]]:
    items = [("shop", shop), ("timestamp", str(int(time.time()))), ("product_id", product)]
    return [*items, ("signature", sign_app_proxy_params(items, API_SECRET))]


async def eventually(check: Any, what: str, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_a_statement_cache_breaks_behind_transaction_pooling(bouncer: Bouncer) -> None:
    """The control: asyncpg's default statement cache prepares by name on one server connection and
    later runs the statement on whichever PgBouncer hands out; the pools this service builds for
    PgBouncer (`pgbouncer=True`) keep no such state."""
    first = await asyncpg.connect(bouncer.url("pair"))
    second = await asyncpg.connect(bouncer.url("pair"))
    try:
        assert await first.fetchval("SELECT $1::int + 1", 1) == 2  # prepared by name on server one
        async with second.transaction():  # holds server one: the next statement of `first` gets server two
            await second.fetchval("SELECT 1")
            with pytest.raises(asyncpg.PostgresError, match="prepared statement"):
                await first.fetchval("SELECT $1::int + 1", 1)
    finally:
        await first.close()
        await second.close()

    pool = await create_pool(bouncer.url("pair"), max_size=6, pgbouncer=True)
    try:
        answers = await asyncio.gather(*(pool.fetchval("SELECT $1::int * 2", i) for i in range(200)))
        assert answers == [i * 2 for i in range(200)]
    finally:
        await pool.close()


@pytest.fixture
def service_settings(bouncer: Bouncer, db_url: str) -> Iterator[dict[str, Any]]:
    yield {
        "DATABASE_URL": bouncer.url(database_name(db_url)),
        "DATABASE_DIRECT_URL": db_url,
        "DATABASE_PGBOUNCER": True,
        "WORKER_CONCURRENCY": 2,
    }


async def test_the_service_works_behind_pgbouncer(
    app_factory: Any,
    service_settings: dict[str, Any],
    bouncer: Bouncer,
    db: asyncpg.Connection,
    db_url: str,
    sim: Any,
    shop: str,
) -> None:
    product = product_gid()
    async with app_factory(**service_settings) as client:
        container = client.app.state.container
        assert container.session_database_url == db_url and container.database_url == service_settings["DATABASE_URL"]
        assert container.flags.listening and container.storefront_cache_listener.connected

        # A flag change: written through the bouncer, announced to the direct LISTEN connection.
        for name in ("V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE"):
            state = (await client.get(f"/admin/flags/{name}")).json()
            body = {key: state[key] for key in ("enabled", "rolloutPercent", "sampleRate")}
            overrides = {**state["shopOverrides"], shop: True}
            put = await client.put(
                f"/admin/flags/{name}", json={**body, "shopOverrides": overrides, "reason": "pgbouncer test"}
            )
            assert put.status_code == 200, put.text
            await eventually(lambda name=name: flag_is_on(container, name, shop), f"{name} propagated")
        overrides_row = await db.fetchval(
            "SELECT \"shopOverrides\"::jsonb ->> $1 FROM sb_feature_flags WHERE name = 'V2_BUNDLE_ENGINE'", shop
        )
        assert overrides_row == "true"

        # Creates, updates, reads, concurrently (more clients than server connections).
        bodies = [bundle_body(products=[product], status="ACTIVE", percent=str(5 + i)) for i in range(8)]
        created = await asyncio.gather(*(client.post(bundles_url(shop), json=b) for b in bodies))
        assert [r.status_code for r in created] == [201] * 8, [r.text for r in created]
        ids = [r.json()["id"] for r in created]
        assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE shop = $1', shop) == 8
        patched = await asyncio.gather(
            *(client.patch(bundles_url(shop, i), json={"title": f"Behind the bouncer {n}"}) for n, i in enumerate(ids))
        )
        assert [r.status_code for r in patched] == [200] * 8, [r.text for r in patched]
        titles = await db.fetch('SELECT id, title FROM "Bundle" WHERE id = ANY($1::text[])', ids)
        assert {r["id"]: r["title"] for r in titles} == {i: f"Behind the bouncer {n}" for n, i in enumerate(ids)}
        got = await asyncio.gather(*(client.get(bundles_url(shop, i)) for i in ids))
        assert [g.json()["title"] for g in got] == [f"Behind the bouncer {n}" for n in range(8)]
        listed = await client.get(bundles_url(shop), params={"limit": 50})
        assert sorted(b["id"] for b in listed.json()["items"]) == sorted(ids)

        # The storefront read model: answers cached, a write through the bouncer drops them.
        await container.storefront_cache_listener.sync()
        first = await client.get("/proxy/v2/bundles", params=signed(shop, product))
        assert first.status_code == 200, first.text
        assert sorted(b["id"] for b in first.json()["bundles"]) == sorted(ids)
        hits = container.storefront_cache.hits
        assert (await client.get("/proxy/v2/bundles", params=signed(shop, product))).content == first.content
        assert container.storefront_cache.hits == hits + 1
        renamed = await client.patch(bundles_url(shop, ids[0]), json={"title": "Renamed"})
        assert renamed.status_code == 200, renamed.text

        async def renamed_on_storefront() -> bool:
            answer = await client.get("/proxy/v2/bundles", params=signed(shop, product))
            return any(b["title"] == "Renamed" for b in answer.json()["bundles"])

        await eventually(renamed_on_storefront, "the storefront still serves the old title", timeout_s=5.0)

        # Deletes.
        deleted = await client.delete(bundles_url(shop, ids[-1]), headers={"If-Match": patched[-1].headers["ETag"]})
        assert deleted.status_code == 204, deleted.text
        assert await db.fetchval('SELECT count(*) FROM "Bundle" WHERE id = $1', ids[-1]) == 0

        # A small migration job: created through the bouncer, run by the worker on the direct URL.
        await register_shop(sim, db, shop)
        legacy = []
        for n in range(3):
            gid = f"gid://shopify/Metaobject/{uuid.uuid4().int % 10**12}"
            legacy.append(gid)
            await sim.add_metaobjects(
                shop,
                [
                    metaobject_item(
                        gid, name=f"Legacy {n} {gid[-6:]}", title="Legacy set", discount="10", products=[product]
                    )
                ],
            )
            await db.execute(
                "INSERT INTO bundle_discount_id VALUES ($1, $2, $3, $4)",
                gid,
                f"Legacy {n} {gid[-6:]}",
                f"gid://shopify/DiscountAutomaticNode/{uuid.uuid4().int % 10**12}",
                shop,
            )
        started = await client.post("/admin/migrations/jobs", json={"kind": "bundles", "shops": [shop]})
        assert started.status_code == 202, started.text
        status_url = started.json()["statusUrl"]

        async def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = (await client.get(status_url)).json()
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        job = await eventually(finished, "the migration job did not finish", timeout_s=30.0)
        assert job["status"] == "succeeded" and job["stats"]["failed"] == 0, job
        migrated = await db.fetchval(
            'SELECT count(*) FROM "Bundle" WHERE shop = $1 AND "shopifyMetaobjectId" = ANY($2::text[])', shop, legacy
        )
        assert migrated == 3

    # Every pooled statement of the service went through the bouncer (its log names the database).
    log = bouncer.log.read_text()
    assert f"login attempt: db={database_name(db_url)}" in log


async def flag_is_on(container: Any, name: str, shop: str) -> bool:
    return bool(container.flags.is_enabled(name, shop))
