"""Request rate and latency by route, plus one access-log line per request (pure ASGI middleware).

Why the route *template*: `/api/v2/shops/{shop}/bundles/{bundle_id}` is one series, whereas raw
paths would create a series per shop and bundle and take Prometheus down. Starlette's router
writes the matched route into the scope (`scope["route"]`) while the request runs, so the
middleware reads it after the app returns; requests that matched no route share the label
`unmatched`. Pure ASGI rather than BaseHTTPMiddleware: it sits on the storefront hot path.

Labels: `sb_http_requests{route, method, status}` and `sb_http_request_duration_seconds{route,
method}`. The access log line (`app.access`) carries the same facts, and the request id, trace id
and shop via the log formatter; run uvicorn with `--no-access-log` so it is not doubled.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

__all__ = ["UNMATCHED_ROUTE", "HttpMetricsMiddleware", "route_template"]

UNMATCHED_ROUTE = "unmatched"

access_log = logging.getLogger("app.access")

#: Paths polled by machines (probes, scrapers): counted in metrics, but not worth an INFO line each.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def route_template(scope: Scope) -> str:
    """The matched route's path template, or `unmatched` (404s, requests rejected before routing)."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Records every HTTP request once, even when it fails before or after routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception escaping before http.response.start is a 500 to the client

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = str(scope.get("method", "GET"))
            try:
                HTTP_REQUESTS.add(1, {"route": route, "method": method, "status": str(status)})
                HTTP_LATENCY.record(elapsed, {"route": route, "method": method})
            except Exception:  # metrics must never break a request
                access_log.exception("recording HTTP metrics failed")
            if (scope.get("path") not in _QUIET_PATHS or status >= 500) and access_log.isEnabledFor(logging.INFO):
                _log_access(method, str(scope.get("path", "")), route, status, elapsed)


def _log_access(method: str, path: str, route: str, status: int, elapsed: float) -> None:
    """One INFO line per request, built without `Logger.info`'s caller lookup.

    `Logger._log` walks the stack to find the caller's file and line for every record; for the
    access log that is always this function, so the record is made and handled directly (the
    same handlers, filters and formatters run). It is a measurable share of a storefront request.
    """
    duration_ms = elapsed * 1000
    record = access_log.makeRecord(
        access_log.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %s %.1fms",
        (method, path, status, duration_ms),
        None,
        extra={
            "http_method": method,
            "http_route": route,
            "http_status": status,
            "duration_ms": round(duration_ms, 2),
            "_text_plain": True,
        },
    )
    access_log.handle(record)
