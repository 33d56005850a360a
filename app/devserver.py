"""`make run`: embedded PostgreSQL + Shopify simulator + demo data + the service, in one process.

Development only. Production runs `uvicorn app.main:app` (or `shopibundle serve`) with
DATABASE_URL and real Shopify; see README.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from types import FrameType

import uvicorn

from app.core.config import Settings
from app.core.container import resolve_admin_token
from app.core.db import (
    asyncpg_connect_kwargs,
    embedded_pgdata,
    embedded_postmaster_pid,
    resolve_database_url,
    stop_embedded_database,
)
from app.core.migrations import upgrade
from devtools.demo_data import seed_demo
from devtools.shopify_simulator import SimulatorControl, SimulatorServer


async def _seed(url: str, simulator_url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(**asyncpg_connect_kwargs(url))
    try:
        async with SimulatorControl(simulator_url) as sim:
            summary = await seed_demo(conn, sim)
    finally:
        await conn.close()
    print(
        f"demo data: {len(summary.shops)} shops, {summary.manual_rows} bundle_discount_id rows, "
        f"{summary.metaobjects} metaobjects, {summary.ai_bundles} AI bundles, {summary.auto_rules} auto rules"
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Run until Ctrl+C or SIGTERM, then stop what this process started (PostgreSQL included)."""
    # SIGTERM's default action ends the process without running `finally`: make it a Ctrl+C.
    signal.signal(signal.SIGTERM, _interrupt)
    os.environ.setdefault("LOG_FORMAT", "text")
    settings = Settings()
    pgdata = embedded_pgdata(settings)
    started_postgres = settings.embedded and embedded_postmaster_pid(pgdata) is None
    simulator: SimulatorServer | None = None
    try:
        simulator = SimulatorServer(port=int(os.environ.get("SIMULATOR_PORT", "8081"))).start()
        _serve(simulator)
    except KeyboardInterrupt:
        pass
    finally:
        if simulator is not None:
            simulator.stop()
        if started_postgres:
            stop_embedded_database(pgdata)
            print("embedded PostgreSQL stopped", flush=True)


def _serve(simulator: SimulatorServer) -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    os.environ.setdefault("SHOPIFY_ADMIN_URL_TEMPLATE", simulator.url_template)
    settings = Settings()
    url = resolve_database_url(settings)
    upgrade(url)
    asyncio.run(_seed(url, simulator.base_url))
    token = resolve_admin_token(settings)
    base = f"http://{host}:{port}"
    print(
        "\n".join(
            [
                "",
                "ShopiBundle V2 service (embedded development mode)",
                f"  admin token     : {token}",
                f"  OpenAPI docs    : {base}/docs",
                f"  health          : {base}/healthz   readiness: {base}/readyz",
                f"  status page     : {base}/admin/ui",
                f"  Shopify sim     : {simulator.base_url}",
                "  start a job     : curl -s -X POST -H 'Authorization: Bearer "
                f"{token}' -H 'content-type: application/json' -d '{{\"kind\":\"all\"}}' {base}/admin/migrations/jobs",
                f"  job status      : curl -s -H 'Authorization: Bearer {token}' {base}/admin/migrations/jobs",
                f"  validation      : curl -s -H 'Authorization: Bearer {token}' {base}/admin/migrations/validation",
                "",
            ]
        ),
        flush=True,
    )
    from app.main import create_app

    logging.basicConfig(level=logging.INFO)
    uvicorn.run(create_app(Settings()), host=host, port=port, log_level="info")


if __name__ == "__main__":
    main()
