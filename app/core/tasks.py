"""Stopping background tasks: the one way a component cancels a task it owns and waits for it."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | asyncio.Future[Any] | None) -> None:
    """Cancel `task` and wait until it has ended, whatever it raised on the way out.

    `asyncio.wait` rather than `await task` inside `suppress(CancelledError)`: that form would also
    swallow the cancellation of the caller itself (a bounded shutdown that gave up on it), which
    then carries on as if nothing happened. Here a cancelled caller stops waiting at once, and the
    task's own exception is retrieved so asyncio does not log it as never retrieved.
    """
    if task is None:
        return
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()
