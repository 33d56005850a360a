"""Stopping background work: the one way a component stops the tasks it owns (a grace period, then
cancellation, then waiting), the one way a background loop waits for an event with a timeout, and
the one way a CLI process runs a component until it is told to stop.

`asyncio.wait_for` is not used in `app` (a test holds that): on Python 3.11, a task cancelled just
as the awaitable inside `wait_for` completes gets its result instead of the cancellation (CPython
gh-86296, fixed in 3.12). A background loop that waits that way carries on after `stop()` cancelled
it, and `stop()` then waits for ever. `asyncio.timeout` does not have the flaw.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterable
from typing import Any, Protocol


async def stop_tasks(tasks: Iterable[asyncio.Task[Any] | asyncio.Future[Any] | None], *, grace_s: float) -> None:
    """Give `tasks` up to `grace_s` seconds to end on their own (work in flight records its result),
    then cancel those still running and wait until every one has ended, whatever it raised.

    `asyncio.wait` rather than `await task` inside `suppress(CancelledError)`: that form would also
    swallow the cancellation of the caller itself (a bounded shutdown that gave up on it), which
    then carries on as if nothing happened. Here a cancelled caller stops waiting at once, after
    cancelling the tasks it was stopping, and the tasks' own exceptions are retrieved so asyncio
    does not log them as never retrieved.
    """
    live = {task for task in tasks if task is not None}
    if not live:
        return
    try:
        if grace_s > 0:
            await asyncio.wait(live, timeout=grace_s)
    finally:
        for task in live:
            task.cancel()  # a no-op on a task that has ended
    await asyncio.wait(live)
    for task in live:
        if not task.cancelled():
            task.exception()


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set, at most `timeout_s` seconds; whether it is set. A cancellation of
    the waiting task always propagates (see the module docstring for why not `asyncio.wait_for`)."""
    if event.is_set():
        await asyncio.sleep(0)  # yield as a wait does: a loop around a set event must not starve the others
        return True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, timeout_s)):
            await event.wait()
    return event.is_set()


async def cancel_and_wait(task: asyncio.Task[Any] | asyncio.Future[Any] | None) -> None:
    """Cancel `task` and wait until it has ended (`stop_tasks` with no grace)."""
    await stop_tasks((task,), grace_s=0)


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
