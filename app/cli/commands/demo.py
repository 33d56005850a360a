"""`shopibundle demo seed`: the demo legacy data set, in the database and the Shopify simulator.

Development and staging only: the data and the simulator's client are in `devtools`, which the
image does not ship, so this is the one command that imports it (and only when it runs).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg
import httpx

from app.cli.commands.common import Subparsers, db_url
from app.core.db import connect


def add_demo(sub: Subparsers) -> None:
    p = sub.add_parser("demo", help="demo data (development and staging only)")
    dsub = p.add_subparsers(dest="demo_command", required=True)
    seed = dsub.add_parser("seed", help="load the demo legacy data set into the database and the Shopify simulator")
    seed.add_argument(
        "--simulator", default="http://127.0.0.1:8081", help="simulator base URL (default http://127.0.0.1:8081)"
    )
    seed.set_defaults(func=_demo_seed)


async def _demo_seed(args: argparse.Namespace) -> int:
    # Development tools, absent from the image: imported only when the demo command runs.
    from devtools.demo_data import seed_demo
    from devtools.shopify_simulator import SimulatorControl

    url = await asyncio.to_thread(db_url)
    conn = await connect(url)
    try:
        async with SimulatorControl(args.simulator) as sim:
            summary = await seed_demo(conn, sim)
    except (httpx.HTTPError, asyncpg.PostgresError) as exc:
        print(f"error: demo seed failed: {exc!r}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    print(
        f"demo data: {len(summary.shops)} shops, {summary.manual_rows} bundle_discount_id rows, "
        f"{summary.metaobjects} metaobjects, {summary.ai_bundles} AI bundles, {summary.auto_rules} auto rules"
    )
    return 0
