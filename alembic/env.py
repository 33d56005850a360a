"""Alembic environment: async engine, SQLModel metadata as the target.

The URL is `sqlalchemy.url` when a caller set it (tests, the service's start-up), else
DATABASE_URL, else the embedded development database.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import app.models
from alembic import context
from app.core.config import get_settings
from app.core.db import resolve_database_url, to_sqlalchemy_url

config = context.config
target_metadata = app.models.metadata


# Objects that are not ours to compare: pgqueuer's tables and the rollback's backup copies.
def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    if type_ == "table" and name and (name.startswith("pgqueuer") or "_backup" in name):
        return False
    return True


def _url() -> str:
    configured = config.get_main_option("sqlalchemy.url")
    return to_sqlalchemy_url(configured or resolve_database_url(get_settings()))


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
        transaction_per_migration=True,
    )


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
