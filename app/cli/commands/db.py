"""`shopibundle db`: schema migrations (Alembic) on the primary's direct URL."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg

from app.cli.commands.common import Subparsers, db_url
from app.core.db import asyncpg_connect_kwargs
from app.core.migrations import current_revision, downgrade, head_revision, upgrade


def add_db(sub: Subparsers) -> None:
    p = sub.add_parser("db", help="schema migrations (Alembic)")
    dbsub = p.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="upgrade to a revision (default head)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_db_upgrade)
    down = dbsub.add_parser("downgrade", help="downgrade to a revision (e.g. -1 or 0003_service_tables)")
    down.add_argument("revision")
    down.set_defaults(func=_db_downgrade)
    cur = dbsub.add_parser("current", help="print the database's revision and the code's head")
    cur.set_defaults(func=_db_current)


def _db_upgrade(args: argparse.Namespace) -> int:
    upgrade(db_url(), args.revision)
    return 0


def _db_downgrade(args: argparse.Namespace) -> int:
    downgrade(db_url(), args.revision)
    return 0


async def _db_current(args: argparse.Namespace) -> int:
    """Exit 1 when the database is not at the code's head (a deploy check can rely on it)."""
    url = await asyncio.to_thread(db_url)
    kwargs: dict[str, Any] = asyncpg_connect_kwargs(url)
    conn = await asyncpg.connect(**kwargs)
    try:
        current = await current_revision(conn)
    finally:
        await conn.close()
    head = head_revision()
    print(f"current: {current or '(none)'}\nhead:    {head}")
    return 0 if current == head else 1
