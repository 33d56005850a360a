"""A replica whose database connection is cut while it starts keeps starting: it serves health and
starts its background services once the database answers (the chaos run restarted a SIGKILLed
replica while connections were being terminated, and it exited with "Application startup failed")."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import asyncpg

from app.services.ops import lifecycle


class _CutPool:
    """Every acquired connection dies under its first statement."""

    def __init__(self) -> None:
        self.attempts = 0

    @contextlib.asynccontextmanager
    async def acquire(self) -> Any:
        self.attempts += 1
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        yield  # pragma: no cover


async def test_start_survives_a_connection_cut_during_the_schema_check(monkeypatch: Any) -> None:
    monkeypatch.setattr(lifecycle, "SCHEMA_POLL_S", 0.01)
    pool = _CutPool()
    container = SimpleNamespace(pool=pool, deferred_start=None)
    await lifecycle.start(container)  # type: ignore[arg-type]
    deferred = container.deferred_start
    assert deferred is not None
    try:
        await asyncio.sleep(0.1)
        assert not deferred.done()  # still waiting for the database, not crashed
        assert pool.attempts > 1  # and it keeps asking
    finally:
        deferred.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await deferred
