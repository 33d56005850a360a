"""Alembic, driven from code: the service's start-up, `/readyz`, the CLI and the tests use it."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path

import asyncpg
from alembic.config import Config
from alembic.script import ScriptDirectory

from alembic import command
from app.core.db import asyncpg_connect_kwargs, to_plain_url

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    if url:
        cfg.set_main_option("sqlalchemy.url", to_plain_url(url).replace("%", "%%"))
    return cfg


@lru_cache(maxsize=1)
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade(url: str, revision: str = "head") -> None:
    """Blocking (Alembic's env runs its own event loop): call it from a thread inside async code."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)


async def current_revision(conn: asyncpg.Connection) -> str | None:
    exists = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
    if not exists:
        return None
    value: str | None = await conn.fetchval("SELECT version_num FROM alembic_version LIMIT 1")
    return value


async def schema_is_current(url: str) -> bool:
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(url))
    try:
        return await current_revision(conn) == head_revision()
    finally:
        await conn.close()
