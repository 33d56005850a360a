"""`GET /metrics`: every OpenTelemetry metric of this process in Prometheus text format.

Unauthenticated on purpose: Prometheus scrapers rarely carry credentials, and the metrics hold
no secrets and no per-merchant data beyond label values such as flag names and outcome codes.
In production the path is meant to be reachable from the cluster network only (keep it off the
public ingress, as with any scrape endpoint).

`sb_outbox_lag_seconds` is sampled here, at scrape time: the age of the oldest undelivered row of
the Shopify write-through outbox, whichever replica scrapes. 0 means nothing is waiting; a
growing value means Shopify is down or the dispatchers are. A database that does not answer within
`OUTBOX_QUERY_TIMEOUT_S` leaves the last value in place: a scrape never fails because of it.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.openapi_docs import UNEXPECTED_ERROR, example_response, problem
from app.core.metrics import prometheus_text
from app.services.shopify_sync.outbox import update_outbox_lag

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"], responses=UNEXPECTED_ERROR)

OUTBOX_QUERY_TIMEOUT_S = 1.0

METRICS_EXAMPLE = """\
# HELP sb_dual_writes_total Dual-write outcomes: ok, conflict, not_representable, rolled_back
# TYPE sb_dual_writes_total counter
sb_dual_writes_total{op="create",otel_scope_name="shopibundle",outcome="ok"} 1520.0
sb_dual_writes_total{op="create",otel_scope_name="shopibundle",outcome="not_representable"} 3.0
# HELP sb_outbox_lag_seconds Age of the oldest undelivered outbox row
# TYPE sb_outbox_lag_seconds gauge
sb_outbox_lag_seconds{otel_scope_name="shopibundle",outbox="shopify_write_through"} 0.0
"""


async def sample_outbox_lag(request: Request) -> None:
    container = getattr(request.app.state, "container", None)
    if container is None:
        return
    try:
        async with asyncio.timeout(OUTBOX_QUERY_TIMEOUT_S):
            await update_outbox_lag(container.pool)
    except Exception as exc:  # an unreachable database must not fail the scrape
        log.debug("outbox lag not sampled: %s", exc)


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={
        **example_response(METRICS_EXAMPLE, description="Prometheus text format 0.0.4", media_type="text/plain"),
        **problem(500, "Collecting the metrics failed (logged)"),
    },
)
async def metrics(request: Request) -> Response:
    await sample_outbox_lag(request)
    # Collection walks every instrument and series: off the event loop, it can take milliseconds.
    body = await asyncio.to_thread(prometheus_text)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
