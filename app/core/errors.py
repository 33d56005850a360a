"""Domain errors and their one mapping to RFC 9457 problem+json.

Services raise these; nothing else in the code decides HTTP status codes for failures.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.core.db import DB_FAULT_CLASSES, is_db_unavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
#: `type` of every problem this service defines: this base + the error's `type_slug`.
PROBLEM_TYPE_BASE = "https://shopibundle.dev/problems/"


class DomainError(Exception):
    status: int = 400
    title: str = "Bad request"
    type_slug: str = "bad-request"
    #: Seconds a client should wait before retrying; every 503 carries one (RFC 9110 Retry-After).
    retry_after_s: int | None = None

    def __init__(self, detail: str = "", *, errors: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.extra = extra


class BadRequest(DomainError):
    status, title, type_slug = 400, "Bad request", "bad-request"


class Unauthorized(DomainError):
    status, title, type_slug = 401, "Unauthorized", "unauthorized"


class Forbidden(DomainError):
    status, title, type_slug = 403, "Forbidden", "forbidden"


class NotFound(DomainError):
    status, title, type_slug = 404, "Not found", "not-found"


class Conflict(DomainError):
    status, title, type_slug = 409, "Conflict", "conflict"


class PreconditionFailed(DomainError):
    status, title, type_slug = 412, "Precondition failed", "precondition-failed"


class PayloadTooLarge(DomainError):
    status, title, type_slug = 413, "Payload too large", "payload-too-large"


class TooManyRequests(DomainError):
    status, title, type_slug = 429, "Too many requests", "too-many-requests"

    def __init__(self, detail: str = "", *, retry_after_s: float = 1.0, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


class ValidationFailed(DomainError):
    status, title, type_slug = 422, "Validation failed", "validation-failed"


class NotReady(DomainError):
    status, title, type_slug = 503, "Service not ready", "not-ready"


class ShopifyUnavailableProblem(DomainError):
    """503: Shopify did not answer (the client's retries exhausted); what needed it was not done."""

    status, title, type_slug = 503, "Shopify unavailable", "shopify-unavailable"


#: Shopify refusals that describe the shop's installation rather than a failing upstream: no offline
#: token or a revoked one (the app is not installed), a frozen, locked or deleted shop. They hold until
#: someone acts on the shop, so they are the request's condition (409), not a gateway failure (5xx).
SHOP_STATE_REASONS = frozenset({"shop_unauthorized", "shop_frozen", "shop_locked", "shop_not_found"})


class ShopifyErrorProblem(DomainError):
    """502: Shopify refused (userErrors, an invalid answer): an upstream failure."""

    status, title, type_slug = 502, "Shopify error", "shopify-error"


class ShopNotConnected(DomainError):
    """409: Shopify refused because of the shop's state (the app uninstalled, the shop frozen, locked
    or gone). Retrying cannot help and nothing upstream is broken, so it is not a 5xx."""

    status, title, type_slug = 409, "Shop not connected", "shop-not-connected"


def shopify_refusal(detail: str, *, reason: str, **extra: Any) -> DomainError:
    """The problem for a refusal the Shopify client reported with `reason`: the shop's state
    (`SHOP_STATE_REASONS`) is `ShopNotConnected`, anything else `ShopifyErrorProblem`."""
    cls = ShopNotConnected if reason in SHOP_STATE_REASONS else ShopifyErrorProblem
    return cls(detail, reason=reason, **extra)


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    type_slug: str = "about:blank",
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"{PROBLEM_TYPE_BASE}{type_slug}" if type_slug != "about:blank" else type_slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


def domain_error_response(exc: DomainError) -> Response:
    """The one mapping of a domain error to its problem+json answer (handlers and middleware)."""
    retry_after = exc.retry_after_s if exc.retry_after_s is not None else (1 if exc.status == 503 else None)
    return problem_response(
        exc.status,
        exc.title,
        exc.detail,
        type_slug=exc.type_slug,
        errors=exc.errors,
        extra=exc.extra,
        headers={"Retry-After": str(retry_after)} if retry_after is not None else None,
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"field": ".".join(loc), "message": err.get("msg", "invalid"), "type": err.get("type", "")})
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> Response:
        return domain_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(400, "Malformed JSON", "The request body is not valid JSON.", type_slug="bad-json")
        return problem_response(
            422, "Validation failed", "The request has invalid fields.", type_slug="validation-failed", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return problem_response(
            exc.status_code, str(exc.detail), str(exc.detail), headers=getattr(exc, "headers", None)
        )

    async def _database_fault(request: Request, exc: Exception) -> Response:
        if not is_db_unavailable(exc):
            return await _unexpected(request, exc)
        # A connection fault that no service mapped: still the database's, never the client's.
        log.warning("database unavailable on %s %s: %r", request.method, request.url.path, exc)
        return domain_error_response(NotReady("The database is unavailable; retry the request.", retryable=True))

    # Registered per class (not only under `Exception`) so that they are answered by the exception
    # middleware like any domain error, rather than by the server-error layer, which re-raises.
    for error_class in DB_FAULT_CLASSES:
        app.add_exception_handler(error_class, _database_fault)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "Internal error", "An unexpected error occurred; it has been logged.")
