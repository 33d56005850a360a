"""Background parts of the service started and stopped with it (flag listener, job worker, ...)."""

from __future__ import annotations

from app.core.container import Container


async def start(container: Container) -> None:
    """Start background services; each later feature registers itself here."""
    from app.services.flags import start_flags

    container.flags = await start_flags(container)  # first: other services read flags
    if container.settings.run_worker:  # migration job worker: every replica is one by default
        from app.services.job_worker import JobWorker

        container.extras["worker"] = await JobWorker.for_container(container)
        await container.extras["worker"].start()
    from app.services.outbox import start_dispatcher  # Shopify write-through outbox (issue 5)

    await start_dispatcher(container)  # only when OUTBOX_DISPATCHER / SHOPIFY_WRITE_THROUGH enable it


async def stop(container: Container) -> None:
    """Stop background services before the pools close."""
    from app.services.flags import stop_flags
    from app.services.outbox import stop_dispatcher  # issue 5

    await stop_dispatcher(container)  # issue 5: stop delivering to Shopify before the pools close
    worker = container.extras.pop("worker", None)
    if worker is not None:  # first: lets in-flight migration batches record before pools close
        await worker.stop()
    from app.services.bundle_reads import get_shadow_runner

    await get_shadow_runner(container).close()  # let sampled comparisons finish before pools close
    await stop_flags(container)
