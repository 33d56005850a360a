"""How one answer from Shopify's Admin GraphQL API is classified, and how its errors are read.

Every failure ends up as a per-item reason in a migration job, so each HTTP attempt is sorted into
ok / throttled / retry / fatal (`classify`): retries for what is transient (5xx, timeouts, malformed
bodies, THROTTLED) and none for what is not (401/402/423/404), which is surfaced at once as an error
with a stable `reason` code (`errors.py`). An attempt also says whether Shopify may have executed
the request (`Outcome.ambiguous`), which decides whether a non-idempotent mutation may be retried.

Shopify's bodies are read defensively: `errors` may be a list, a bare string or one object, and a
body may be no JSON object at all. The batched reads use `quoted_ids` and `failed_node_positions`
to narrow a refused or partial `nodes(ids:)` answer down to the ids at fault.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson

from app.shopify.errors import (
    ShopifyError,
    ShopifyGraphQLError,
    ShopifyInvalidId,
    ShopifyLocked,
    ShopifyPaymentRequired,
    ShopifyShopNotFound,
    ShopifyUnauthorized,
    graphql_error_for,
    problem_explanations,
)
from app.shopify.throttle import QueryCost, parse_cost

__all__ = [
    "RETRYABLE_GRAPHQL_CODES",
    "THROTTLED_CODE",
    "Outcome",
    "classify",
    "classify_transport_error",
    "error_code",
    "failed_node_positions",
    "json_object",
    "messages",
    "normalize_errors",
    "quoted_ids",
    "retry_after",
]

#: GraphQL error codes that mean "Shopify had a problem", retried like a 5xx.
RETRYABLE_GRAPHQL_CODES = frozenset({"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"})
THROTTLED_CODE = "THROTTLED"

_QUOTED_RE = re.compile(r"'([^']*)'|\"([^\"]*)\"|`([^`]*)`")


@dataclass(slots=True)
class Outcome:
    """Classification of one HTTP attempt."""

    kind: Literal["ok", "throttled", "retry", "fatal"]
    label: str  # outcome reported to on_call
    data: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    cost: QueryCost | None = None
    retry_after: float | None = None
    detail: str = ""
    malformed: bool = False
    ambiguous: bool = True  # the request may have been executed by Shopify
    error: ShopifyError | None = None


def classify(shop: str, response: httpx.Response) -> Outcome:
    """Map one HTTP response onto ok / throttled / retry / fatal (see module docstring).

    A 401/403 is fatal with `ShopifyUnauthorized`; the caller drops its cached token for the shop.
    """
    status = response.status_code
    retry_after_s = retry_after(response.headers.get("Retry-After"))
    fatal_by_status: dict[int, tuple[str, ShopifyError]] = {
        401: ("unauthorized", ShopifyUnauthorized(shop, "HTTP 401: access token rejected")),
        403: ("unauthorized", ShopifyUnauthorized(shop, "HTTP 403: access denied (missing scope?)")),
        402: ("frozen", ShopifyPaymentRequired(shop, "HTTP 402: shop frozen (payment required)")),
        423: ("locked", ShopifyLocked(shop, "HTTP 423: shop locked")),
        404: ("not_found", ShopifyShopNotFound(shop, "HTTP 404: shop not found")),
    }
    if status in fatal_by_status:
        label, error = fatal_by_status[status]
        return Outcome("fatal", label, error=error, detail=error.detail)

    body = json_object(response.content)
    cost = parse_cost(body) if body is not None else None
    errors = normalize_errors(body.get("errors")) if body is not None else []
    if any(error_code(e) == THROTTLED_CODE for e in errors):
        return Outcome("throttled", "throttled", cost=cost, retry_after=retry_after_s, detail="throttled")
    if status == 429:
        return Outcome("retry", "rate_limited", retry_after=retry_after_s, detail="HTTP 429", ambiguous=False)
    if status >= 500:
        return Outcome("retry", "http_5xx", cost=cost, retry_after=retry_after_s, detail=f"HTTP {status}")
    if not 200 <= status < 300:
        error = ShopifyGraphQLError(shop, errors, detail=f"unexpected HTTP {status}")
        return Outcome("fatal", "http_4xx", error=error, detail=error.detail)
    if body is None:
        return Outcome("retry", "bad_response", detail="malformed body (not a JSON object)", malformed=True)

    data = body.get("data")
    if isinstance(data, dict):
        return Outcome("ok", "partial" if errors else "ok", data=data, errors=errors, cost=cost)
    if errors:
        if any(error_code(e) in RETRYABLE_GRAPHQL_CODES for e in errors):
            return Outcome("retry", "graphql_error", cost=cost, detail=f"GraphQL: {messages(errors)}")
        error = graphql_error_for(shop, errors)
        return Outcome("fatal", "graphql_error", cost=cost, error=error, detail=error.detail)
    return Outcome("retry", "bad_response", cost=cost, detail="malformed body (no data, no errors)", malformed=True)


def classify_transport_error(exc: httpx.TransportError) -> Outcome:
    """A request that got no HTTP answer (timeout, connection failure): always retried.

    Its label ("timeout", "connect_error") is also the attempt's `by_status` key. Only a failure
    before the request reached Shopify (connect or pool timeout, connection refused) is known not to
    have run; any other may have, so it is ambiguous.
    """
    if isinstance(exc, httpx.TimeoutException):
        unsent = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
        return Outcome("retry", "timeout", detail=f"timeout: {exc!r}", ambiguous=not unsent)
    unsent = isinstance(exc, httpx.ConnectError)
    return Outcome("retry", "connect_error", detail=f"connection error: {exc!r}", ambiguous=not unsent)


def json_object(content: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def normalize_errors(raw: Any) -> list[dict[str, Any]]:
    """Shopify's `errors` is usually a list of objects, but a bare string or object also occurs."""
    if raw is None or raw == [] or raw == "":
        return []
    if isinstance(raw, str):
        return [{"message": raw}]
    if isinstance(raw, dict):
        return [raw]
    if isinstance(raw, list):
        return [e if isinstance(e, dict) else {"message": str(e)} for e in raw]
    return [{"message": str(raw)}]


def error_code(error: Mapping[str, Any]) -> str | None:
    extensions = error.get("extensions")
    code = extensions.get("code") if isinstance(extensions, Mapping) else None
    return code if isinstance(code, str) else None


def messages(errors: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(str(e.get("message", "")) for e in errors)[:500]


def retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: Shopify sends seconds; ignore rather than guess
    return seconds if seconds >= 0 and math.isfinite(seconds) else None


def quoted_ids(error: ShopifyGraphQLError) -> set[str]:
    """Ids quoted in messages such as `Invalid global id 'gid://shopify/Metaobject/x'`.

    A variable error names them in ``extensions.problems[].explanation`` (``Invalid global id `x```).
    """
    quoted: set[str] = set(error.ids) if isinstance(error, ShopifyInvalidId) else set()
    for err in error.errors:
        for text in [str(err.get("message", "")), *problem_explanations(err)]:
            for single, double, backtick in _QUOTED_RE.findall(text):
                quoted.add(single or double or backtick)
    return quoted


def failed_node_positions(errors: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """Positions in `nodes` that a partial response's errors point at (path ["nodes", i, ...])."""
    positions: dict[int, str] = {}
    for error in errors:
        path = error.get("path")
        if isinstance(path, list) and len(path) >= 2 and path[0] == "nodes" and isinstance(path[1], int):
            positions.setdefault(path[1], str(error.get("message", "error")))
    return positions
