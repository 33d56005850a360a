"""The one transaction runner and the one read runner: pooled connections, retries, and database
faults mapped to problems (never a 500). Services pass their work as a function of the connection
and, for writes, how their unique constraints read to a client (`conflicts`)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import asyncpg

from app.core.db import is_db_unavailable, transaction
from app.core.errors import Conflict, DomainError, NotReady, ValidationFailed
from app.repos.base import Executor

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Waiting longer than this for a pooled connection means the database is saturated: 503.
DB_ACQUIRE_TIMEOUT_S = 10.0
TX_ATTEMPTS = 3
READ_ATTEMPTS = 2

#: Unique constraint (index) name → the domain error a violation of it is, built per violation.
ConflictMap = Mapping[str, Callable[[], DomainError]]


def db_unavailable() -> NotReady:
    return NotReady("The database is unavailable; nothing was changed. Retry the request.", retryable=True)


async def run_read(pool: asyncpg.Pool, fn: Callable[[Executor], Awaitable[T]]) -> T:
    """Run read queries on a pooled connection, mapping a lost database to 503.

    Reads change nothing, so one that failed on a dead pooled connection is tried once more on a
    fresh connection before the client is told to retry.
    """
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            async with pool.acquire(timeout=DB_ACQUIRE_TIMEOUT_S) as conn:
                return await fn(conn)
        except DomainError:
            raise
        except Exception as exc:
            if not is_db_unavailable(exc):
                raise
            if attempt == READ_ATTEMPTS:
                raise db_unavailable() from exc
    raise AssertionError("unreachable")  # pragma: no cover


async def run_transaction(
    pool: asyncpg.Pool,
    fn: Callable[[Executor], Awaitable[T]],
    *,
    conflicts: ConflictMap | None = None,
    passthrough: tuple[type[BaseException], ...] = (),
) -> T:
    """Run `fn` in one transaction; retry deadlocks and serialization failures; map database
    failures to problems: a unique violation to the caller's `conflicts` entry (else a 409
    "conflicting write"), bad data to 422, a lost database to 503. Exceptions in `passthrough`
    (the caller's own control flow) propagate untouched."""
    for attempt in range(1, TX_ATTEMPTS + 1):
        try:
            async with transaction(pool, timeout=DB_ACQUIRE_TIMEOUT_S) as conn:
                return await fn(conn)
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
            if attempt == TX_ATTEMPTS:
                raise NotReady("Too much write contention on this bundle; retry the request.") from exc
            await asyncio.sleep(random.uniform(0.005, 0.05) * attempt)
        except asyncpg.UniqueViolationError as exc:
            make = (conflicts or {}).get(exc.constraint_name or "")
            raise (make() if make is not None else Conflict("conflicting write")) from exc
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            # Validation should have caught it; still the client's data, so a 422 and not a 500.
            log.warning("database rejected data: %s", exc)
            raise ValidationFailed(
                "The database rejected a value.", errors=[{"field": "body", "message": str(exc)}]
            ) from exc
        except DomainError:
            raise
        except Exception as exc:
            if isinstance(exc, passthrough):
                raise
            if is_db_unavailable(exc):
                raise db_unavailable() from exc
            raise
    raise AssertionError("unreachable")  # pragma: no cover
