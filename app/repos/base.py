"""What every repository shares: the connection types and the JSON encoding of JSONB parameters."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

#: A connection, or a pooled one (what `pool.acquire()` yields), for work inside one transaction.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


class Executor(Protocol):
    """What both a pooled connection and the pool itself offer (asyncpg's query methods)."""

    async def execute(self, query: str, *args: Any, timeout: float | None = ...) -> str: ...  # noqa: ASYNC109

    async def executemany(
        self,
        command: str,
        args: Iterable[Sequence[Any]],
        *,
        timeout: float | None = ...,  # noqa: ASYNC109
    ) -> None: ...

    async def fetch(self, query: str, *args: Any, timeout: float | None = ...) -> list[asyncpg.Record]: ...  # noqa: ASYNC109

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = ...) -> asyncpg.Record | None: ...  # noqa: ASYNC109

    async def fetchval(self, query: str, *args: Any, column: int = ..., timeout: float | None = ...) -> Any: ...  # noqa: ASYNC109


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
