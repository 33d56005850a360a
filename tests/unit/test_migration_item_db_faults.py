"""A migration item whose database connection died under it fails as transient (retried later by the
job), not as a permanent `internal_error`: the chaos run saw items lost that way while
`pg_terminate_backend` cut the worker's connections."""

from __future__ import annotations

import asyncpg
import pytest

from app.services.migration.items.common import REASON_DATABASE_UNAVAILABLE, ItemOutcome, guarded


@pytest.mark.parametrize(
    "exc",
    [
        # What asyncpg raises when a statement is sent on a connection whose backend was terminated.
        asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        asyncpg.InterfaceError("cannot call Connection.reset(): connection has been released back to the pool"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        ConnectionResetError("reset by peer"),
    ],
)
async def test_connection_fault_under_an_item_is_a_transient_database_failure(exc: Exception) -> None:
    async def work() -> ItemOutcome:
        raise exc

    outcome = await guarded("gid://shopify/Metaobject/1", work)
    assert outcome.status == "failed"
    assert outcome.reason == REASON_DATABASE_UNAVAILABLE
    assert outcome.transient is True
