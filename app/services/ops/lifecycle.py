"""Background parts of the service, started and stopped with it: the flag store, the storefront
read model's listener, the migration job worker and the Shopify outbox dispatcher.

They all need the schema at Alembic head. A replica deployed before `shopibundle db upgrade` ran
still starts and answers `/healthz` (and 503 on `/readyz`); its background services wait for the
schema and start on their own once it is current, so no restart is needed after the upgrade.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from app.core.container import Container
from app.core.db import is_db_unavailable
from app.core.migrations import current_revision, head_revision
from app.core.tasks import cancel_and_wait
from app.services.bundles.reads import get_shadow_runner
from app.services.bundles.shadow import get_runner
from app.services.consistency import verify_bundle
from app.services.flags.snapshot import start_flags, stop_flags
from app.services.migration.worker import JobWorker
from app.services.rollouts.driver import start_driver, stop_driver
from app.services.shopify_sync.outbox import start_dispatcher, stop_dispatcher
from app.services.storefront.reads import start_read_model, stop_read_model

log = logging.getLogger(__name__)

SCHEMA_POLL_S = 2.0


async def _schema_is_current(container: Container) -> bool:
    async with container.pool.acquire() as conn:
        return await current_revision(conn) == head_revision()  # type: ignore[arg-type]


async def _start_services(container: Container) -> None:

    container.flags = await start_flags(container)  # first: other services read flags
    get_runner(container).verifier = verify_bundle  # dual-write verification after commit
    await start_read_model(container)  # needs revision 0006's triggers: only once the schema is current
    if container.settings.run_worker:  # migration job worker: every replica is one by default
        worker = await JobWorker.for_container(container)
        container.worker = worker
        await worker.start()
    await start_dispatcher(container)  # Shopify write-through outbox: only when its settings enable it
    await start_driver(container)  # guarded rollouts: every replica drives (row locks keep it single)


async def _start_when_schema_current(container: Container) -> None:
    while True:
        try:
            if await _schema_is_current(container):
                break
        except Exception as exc:  # the database may come and go meanwhile: keep waiting
            log.warning("schema check failed: %s", exc)
        await asyncio.sleep(SCHEMA_POLL_S)
    log.info("schema reached head %s: starting background services", head_revision())
    await _start_services(container)


async def start(container: Container) -> None:
    try:
        current = await _schema_is_current(container)
    except Exception as exc:
        # A connection cut during start-up (a restart, a terminated backend) must not stop the
        # replica: it serves health and starts its background services once the database answers.
        if not is_db_unavailable(exc):
            raise
        log.warning("schema check failed at start-up (%s): background services start once the database answers", exc)
        current = None
    if current:
        await _start_services(container)
        return
    if current is False:
        log.warning(
            "schema is behind head %s: serving health only until `shopibundle db upgrade` runs", head_revision()
        )
    container.deferred_start = asyncio.create_task(_start_when_schema_current(container))


#: How long one background service may take to stop; past it, it is left behind (logged), so a
#: stuck component can never hang the replica's shutdown (or a deploy waiting on it).
STOP_TIMEOUT_S = 15.0


async def _bounded_stop(name: str, step: Awaitable[Any]) -> None:
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
    if not done:
        task.cancel()
        log.warning("%s did not stop within %.0f s; shutting down without it", name, STOP_TIMEOUT_S)
    elif task.exception() is not None:
        log.warning("%s failed to stop cleanly: %r", name, task.exception())


async def stop(container: Container) -> None:
    """Stop background services before the pools close (each waits for its in-flight work, within
    STOP_TIMEOUT_S)."""

    deferred, container.deferred_start = container.deferred_start, None
    await cancel_and_wait(deferred)
    await _bounded_stop("rollout driver", stop_driver(container))  # before the flag store: a transition writes flags
    await _bounded_stop("outbox dispatcher", stop_dispatcher(container))
    worker, container.worker = container.worker, None
    if worker is not None:  # lets in-flight migration batches record before the pools close
        await _bounded_stop("job worker", worker.stop())
    await _bounded_stop("shadow runner", get_shadow_runner(container).close())  # comparisons finish first
    await _bounded_stop("flag store", stop_flags(container))
    await _bounded_stop("storefront read model", stop_read_model(container))
