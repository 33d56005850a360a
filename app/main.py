"""ASGI entry point: `app.main:app`, built by `create_app()`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import (
    bundles,
    consistency,
    cutover,
    flags,
    health,
    metrics,
    migrations,
    openapi_docs,
    rollouts,
    shadow,
    shopify_sync,
    stage,
    storefront,
    ui,
    validation,
)
from app.core import telemetry
from app.core.config import Settings, get_settings
from app.core.container import build_container
from app.core.errors import install_error_handlers
from app.core.http_metrics import HttpMetricsMiddleware
from app.core.logging import configure_logging
from app.core.middleware import BodySizeLimitMiddleware, RequestContextMiddleware, RequestGuardMiddleware
from app.services.ops import lifecycle

_heap_frozen = False


def _freeze_startup_heap() -> None:
    """`gc.freeze()` once per process (tests build many apps; freezing each one's garbage would leak)."""
    global _heap_frozen
    if _heap_frozen:
        return
    _heap_frozen = True
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = await build_container(settings)
        telemetry.instrument_container(container)
        app.state.container = container
        await lifecycle.start(container)
        # Everything allocated so far (modules, routes, pydantic models, pools) lives as long as the
        # process: moved out of the collector's generations, a full collection under load no longer
        # walks it, which is what long GC pauses in the p99 tail were made of.
        _freeze_startup_heap()
        try:
            yield
        finally:
            await lifecycle.stop(container)
            await container.close()

    app = FastAPI(
        title="ShopiBundle V2 bundle service",
        version="0.1.0",
        description=(
            "Moves ShopiBundle from the legacy schema to V2 with zero downtime: dual-written bundle API, "
            "feature-flagged reads, signed storefront endpoints, migration jobs. Errors are "
            "application/problem+json (RFC 9457)."
        ),
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry hooks switch themselves on as soon as any global meter
        # provider exists (ours serves /metrics) and then cost CPU on every request. Server spans
        # come from `telemetry.instrument_app` when something exports them; HTTP metrics are the
        # curated `sb_http_*` of app/core/http_metrics.py.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.add_middleware(RequestGuardMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(RequestContextMiddleware)
    for module in (
        health,
        bundles,
        storefront,
        flags,
        stage,
        migrations,
        validation,
        cutover,
        rollouts,
        shadow,
        consistency,
        shopify_sync,
        metrics,
        ui,
    ):
        app.include_router(module.router)
    # The hot storefront reads match first; their documented FastAPI operations stay in the schema.
    app.router.routes[0:0] = storefront.fast_routes()
    openapi_docs.install(app)  # the problem+json schemas every error response refers to
    telemetry.instrument_app(app)
    return app


app = create_app()
