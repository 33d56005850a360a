"""Stopping background work: the one way a component cancels a task it owns and waits for it, and
the one way a CLI process runs a component until it is told to stop."""

from __future__ import annotations

import asyncio
import signal
from typing import Any, Protocol


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


class Stoppable(Protocol):
    """A background component the CLI runs on its own (`shopibundle worker`, `outbox run`)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_until_signalled(component: Stoppable) -> None:
    """Start `component`, run until SIGTERM or SIGINT, then stop it gracefully (a process of its own:
    the deployment's stop signal ends in-flight work cleanly instead of killing it)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await component.start()
    try:
        await stop.wait()
    finally:
        await component.stop()
