"""`cancel_and_wait`: the one way a component stops a task it owns (app/core/tasks.py)."""

from __future__ import annotations

import asyncio

import pytest

from app.core.tasks import cancel_and_wait


async def test_it_waits_until_the_task_has_ended_and_keeps_its_error_quiet() -> None:
    cleaned = asyncio.Event()

    async def worker() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.01)  # cleanup that takes a moment
            cleaned.set()
            raise ValueError("failed while stopping")

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.done() and cleaned.is_set()
    assert isinstance(task.exception(), ValueError)
    await cancel_and_wait(None)
    await cancel_and_wait(task)  # already ended: nothing to do


async def test_a_cancelled_caller_stops_waiting_for_a_task_that_ignores_cancellation() -> None:
    release = asyncio.Event()

    async def stubborn() -> str:
        while True:
            try:
                await release.wait()
                return "released"
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.01)
    assert not stopper.done()
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper  # the caller's own cancellation is not swallowed
    release.set()
    assert await task == "released"
