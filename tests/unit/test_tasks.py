"""`stop_tasks` and `cancel_and_wait`: the one way a component stops the tasks it owns (app/core/tasks.py)."""

from __future__ import annotations

import asyncio

import pytest

from app.core.tasks import cancel_and_wait, stop_tasks, wait_event


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


async def test_stop_tasks_lets_work_finish_within_the_grace_and_cancels_the_rest() -> None:
    """The worker's and the outbox's stop: a batch in flight records; a loop that would run for
    ever is cancelled when the grace is over, and the call returns once both have ended."""
    recorded: list[str] = []

    async def batch_in_flight() -> None:
        await asyncio.sleep(0.02)
        recorded.append("batch")

    async def endless_loop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            recorded.append("loop cleaned up")

    finishing, endless = asyncio.create_task(batch_in_flight()), asyncio.create_task(endless_loop())
    await stop_tasks((finishing, None, endless), grace_s=0.5)
    assert finishing.done() and not finishing.cancelled()
    assert endless.cancelled()
    assert recorded == ["batch", "loop cleaned up"]
    await stop_tasks((), grace_s=1)


async def test_a_caller_cancelled_during_the_grace_cancels_the_tasks_and_is_not_swallowed() -> None:
    """A bounded shutdown that gives up on a component's stop must not leave its tasks running."""
    task = asyncio.create_task(asyncio.sleep(3600))
    stopper = asyncio.create_task(stop_tasks((task,), grace_s=3600))
    await asyncio.sleep(0.01)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    await asyncio.sleep(0)
    assert task.cancelled()


async def test_a_loop_cancelled_as_its_event_is_set_stops() -> None:
    """The race that left background loops running after `stop()` (the flag refresher, the read-model
    listener, the outbox and the worker): cancelled in the same loop iteration as the event it waits
    for is set. `asyncio.wait_for` on Python 3.11 returns the event's result there and the loop goes
    on; `wait_event` lets the cancellation through."""
    event = asyncio.Event()
    rounds = 0

    async def background_loop() -> None:
        nonlocal rounds
        while True:
            await wait_event(event, 3600)
            event.clear()
            rounds += 1

    task = asyncio.create_task(background_loop())
    await asyncio.sleep(0)
    event.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1)
    assert task in done and task.cancelled()
    assert rounds == 0


async def test_wait_event_times_out_and_yields_when_already_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    other_ran = asyncio.Event()
    asyncio.get_running_loop().call_soon(other_ran.set)
    assert await wait_event(event, 0) is True
    assert other_ran.is_set()
