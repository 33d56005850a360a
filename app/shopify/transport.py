"""The request loop to Shopify's Admin GraphQL API: one query, paced per shop, bounded, retried.

Why a hand-written loop: the migration reads many thousands of metaobjects across many shops,
and the legacy read path calls Shopify inside a storefront request. Both need

* cost-aware pacing per shop (`ShopThrottle`), so steady state never sees THROTTLED;
* a global bound on in-flight requests, so one big migration cannot starve the read path;
* retries for what is transient and none for what is not, as `responses.classify` sorts each
  answer, surfaced as errors with stable `reason` codes (`errors.py`).

`GraphQLTransport.graphql_result` is the one way a request reaches Shopify; `ShopifyClient`
(client.py) owns one transport and builds its typed reads and mutations on it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import httpx
import orjson
from opentelemetry import trace

from app.shopify.errors import ShopifyBadResponse, ShopifyUnauthorized, ShopifyUnavailable
from app.shopify.responses import Outcome, classify, classify_transport_error
from app.shopify.throttle import QueryCost, ShopThrottle, ThrottleStatus

__all__ = [
    "ClientStats",
    "GraphQLResult",
    "GraphQLTransport",
    "OnCall",
    "OnThrottleWait",
    "Sleep",
    "TokenProvider",
    "TransportOptions",
]

# The logger and tracer keep the name they had while this loop lived in client.py: log queries,
# dashboards and trace searches select on it.
_INSTRUMENTATION_NAME = "app.shopify.client"
log = logging.getLogger(_INSTRUMENTATION_NAME)
tracer = trace.get_tracer(_INSTRUMENTATION_NAME)

Sleep = Callable[[float], Awaitable[None]]
TokenProvider = Callable[[str], Awaitable[str | None]]
OnCall = Callable[[str, str, float], None]
OnThrottleWait = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class GraphQLResult:
    """`data` plus the non-fatal `errors` of a partial response and the reported cost."""

    data: dict[str, Any]
    errors: list[dict[str, Any]]
    cost: QueryCost | None


@dataclass(slots=True)
class ClientStats:
    """Counters for metrics and tests; cumulative over the client's life."""

    requests: int = 0  # HTTP requests sent (including retries)
    retries: int = 0  # requests that were a retry of an earlier attempt
    throttled: int = 0  # THROTTLED answers
    throttle_wait_s: float = 0.0  # seconds spent waiting for bucket capacity (before sending)
    backoff_wait_s: float = 0.0  # seconds spent in backoff after transient failures
    partial_responses: int = 0  # answers with both `data` and `errors`
    max_in_flight: int = 0  # highest number of concurrent HTTP requests observed
    by_status: dict[str, int] = field(default_factory=dict)  # "200", "503", "timeout", "connect_error"


class TransportOptions(TypedDict, total=False):
    """The optional arguments of `GraphQLTransport`, which `ShopifyClient` passes through as given."""

    max_attempts: int
    max_throttle_retries: int
    base_backoff_s: float
    max_backoff_s: float
    timeout_s: float
    max_concurrency: int
    token_ttl_s: float
    sleep: Sleep | None
    clock: Callable[[], float] | None
    rng: random.Random | None
    on_call: OnCall | None
    on_throttle_wait: OnThrottleWait | None


class GraphQLTransport:
    """Sends one GraphQL request at a time per caller, for every shop of the process.

    `token_provider(shop)` returns the shop's offline access token or None; results are cached
    for `token_ttl_s` so a migration does not hit the database per batch, and dropped on 401.
    `sleep` and `clock` are injectable so tests run instantly with a fake clock; `rng` makes
    backoff jitter reproducible. `on_call(shop, outcome, seconds)` is invoked per HTTP attempt
    (outcome: ok, partial, throttled, http_5xx, timeout, connect_error, bad_response,
    graphql_error, unauthorized, frozen, locked, not_found, rate_limited, http_4xx).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        url_template: str,
        api_version: str,
        token_provider: TokenProvider,
        *,
        max_attempts: int = 6,
        max_throttle_retries: int = 20,
        base_backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        timeout_s: float = 10.0,
        max_concurrency: int = 8,
        token_ttl_s: float = 60.0,
        sleep: Sleep | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        on_call: OnCall | None = None,
        on_throttle_wait: OnThrottleWait | None = None,
    ) -> None:
        self._http = http
        self._url_template = url_template
        self._api_version = api_version
        self._token_provider = token_provider
        self._max_attempts = max(1, max_attempts)
        self._max_throttle_retries = max(0, max_throttle_retries)
        self._base_backoff_s = base_backoff_s
        self._max_backoff_s = max_backoff_s
        self._timeout_s = timeout_s
        self._semaphore = asyncio.Semaphore(max(1, max_concurrency))
        self._token_ttl_s = token_ttl_s
        self._sleep: Sleep = sleep or asyncio.sleep
        self._clock: Callable[[], float] = clock or time.monotonic
        self._rng = rng or random.Random()
        self._on_call = on_call
        self._on_throttle_wait = on_throttle_wait
        self._throttles: dict[str, ShopThrottle] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._in_flight = 0
        self.stats = ClientStats()

    # ------------------------------------------------------------------ plumbing

    def url_for(self, shop: str) -> str:
        return self._url_template.format(shop=shop, version=self._api_version)

    def throttle_for(self, shop: str) -> ShopThrottle:
        """The shop's bucket model (created on first use; buckets of shops are independent)."""
        throttle = self._throttles.get(shop)
        if throttle is None:
            throttle = self._throttles[shop] = ShopThrottle(self._clock)
        return throttle

    def invalidate_token(self, shop: str) -> None:
        self._tokens.pop(shop, None)

    async def _token(self, shop: str) -> str:
        cached = self._tokens.get(shop)
        now = self._clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        token = await self._token_provider(shop)
        if not token:
            # Not cached: the merchant may reinstall at any moment, and failing is cheap.
            raise ShopifyUnauthorized(shop, "no offline session/token")
        self._tokens[shop] = (token, now + self._token_ttl_s)
        return token

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with full jitter, so retrying workers do not stampede in step."""
        cap = min(self._max_backoff_s, self._base_backoff_s * (2 ** max(0, failures - 1)))
        return self._rng.uniform(0.0, cap)

    # ------------------------------------------------------------------ the loop

    async def graphql_result(
        self,
        shop: str,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        estimated_cost: int,
        retry_ambiguous: bool = True,
    ) -> GraphQLResult:
        """Run a query with pacing and retries; return data, partial errors and cost.

        `estimated_cost` is what the shop's bucket must hold before sending (the real cost is
        read from each response). With `retry_ambiguous=False` (non-idempotent mutations),
        failures after which Shopify may have executed the request (timeouts after sending,
        5xx, unreadable bodies) are raised at once instead of retried; THROTTLED, 429 and
        connection failures are still retried since Shopify provably did not run the request.
        """
        token = await self._token(shop)
        throttle = self.throttle_for(shop)
        url = self.url_for(shop)
        body = orjson.dumps({"query": query, "variables": dict(variables or {})})
        headers = {
            "X-Shopify-Access-Token": token,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        cost = float(max(1, estimated_cost))
        failures = 0
        throttled = 0
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                self.stats.retries += 1
            waited = await throttle.acquire(cost, self._sleep)
            self.stats.throttle_wait_s += waited
            if self._on_throttle_wait is not None:
                self._on_throttle_wait(shop, waited)
            status: ThrottleStatus | None = None
            try:
                outcome = await self._attempt(shop, url, body, headers, cost, waited, attempt)
                status = outcome.cost.throttle_status if outcome.cost else None
            finally:
                throttle.settle(cost, status)

            if outcome.kind == "ok":
                return self._ok_result(shop, outcome)
            if outcome.kind == "fatal":
                assert outcome.error is not None
                raise outcome.error
            if outcome.kind == "throttled":
                throttled += 1
                cost = self._after_throttled(shop, throttle, outcome, status, throttled, cost)
                continue
            failures += 1
            await self._back_off_or_raise(shop, outcome, failures, attempt, retry_ambiguous)

    def _ok_result(self, shop: str, outcome: Outcome) -> GraphQLResult:
        """The answer's data; a partial response (data *and* errors) is logged and counted."""
        assert outcome.data is not None
        if outcome.errors:
            self.stats.partial_responses += 1
            log.warning(
                "shopify partial response",
                extra={"shop": shop, "errors": [e.get("message") for e in outcome.errors][:5]},
            )
        return GraphQLResult(outcome.data, outcome.errors, outcome.cost)

    def _after_throttled(
        self,
        shop: str,
        throttle: ShopThrottle,
        outcome: Outcome,
        status: ThrottleStatus | None,
        throttled: int,
        cost: float,
    ) -> float:
        """Count a THROTTLED answer and hold the shop's bucket back; return the cost to wait for next.

        Raises `ShopifyUnavailable` once the shop stayed throttled `max_throttle_retries` times.
        """
        self.stats.throttled += 1
        if throttled > self._max_throttle_retries:
            raise ShopifyUnavailable(shop, f"still throttled after {throttled} attempts")
        if outcome.cost is not None and outcome.cost.requested:
            cost = outcome.cost.requested
        # With throttleStatus the next acquire waits (requested - available) / restoreRate;
        # Retry-After (if longer) or, lacking both, a backoff keeps us from spinning.
        if outcome.retry_after is not None:
            throttle.block_for(outcome.retry_after)
        elif status is None:
            throttle.block_for(self._backoff(throttled))
        return cost

    async def _back_off_or_raise(
        self, shop: str, outcome: Outcome, failures: int, attempt: int, retry_ambiguous: bool
    ) -> None:
        """Sleep before retrying a transient failure, or raise when retrying is over or not allowed."""
        if failures >= self._max_attempts or (outcome.ambiguous and not retry_ambiguous):
            error_type = ShopifyBadResponse if outcome.malformed else ShopifyUnavailable
            raise error_type(shop, f"{outcome.detail} (after {failures} attempt(s))")
        delay = self._backoff(failures)
        if outcome.retry_after is not None:
            delay = max(delay, outcome.retry_after)
        self.stats.backoff_wait_s += delay
        log.info(
            "shopify retry",
            extra={"shop": shop, "outcome": outcome.label, "attempt": attempt, "delay_s": delay},
        )
        await self._sleep(delay)

    async def _attempt(
        self,
        shop: str,
        url: str,
        body: bytes,
        headers: dict[str, str],
        cost: float,
        waited: float,
        attempt: int,
    ) -> Outcome:
        """Send one HTTP request (inside the global semaphore) and classify the answer."""
        with tracer.start_as_current_span("shopify.graphql") as span:
            span.set_attribute("shopify.shop", shop)
            span.set_attribute("shopify.cost.requested", cost)
            span.set_attribute("shopify.throttle.wait_s", waited)
            span.set_attribute("shopify.attempt", attempt)
            started = time.perf_counter()
            status_key: str
            async with self._semaphore:
                self._in_flight += 1
                self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
                self.stats.requests += 1
                try:
                    response = await self._http.post(url, content=body, headers=headers, timeout=self._timeout_s)
                except httpx.TransportError as exc:
                    outcome = classify_transport_error(exc)
                    status_key = outcome.label
                else:
                    status_key = str(response.status_code)
                    span.set_attribute("http.status_code", response.status_code)
                    outcome = classify(shop, response)
                    if isinstance(outcome.error, ShopifyUnauthorized):
                        self.invalidate_token(shop)  # 401/403: the next call reads the token again
                finally:
                    self._in_flight -= 1
            seconds = time.perf_counter() - started
            self.stats.by_status[status_key] = self.stats.by_status.get(status_key, 0) + 1
            if outcome.cost is not None and outcome.cost.actual is not None:
                span.set_attribute("shopify.cost.actual", outcome.cost.actual)
            span.set_attribute("shopify.outcome", outcome.label)
            if outcome.kind in ("retry", "fatal"):
                span.set_status(trace.Status(trace.StatusCode.ERROR, outcome.detail[:200]))
            if self._on_call is not None:
                try:
                    self._on_call(shop, outcome.label, seconds)
                except Exception:  # metrics must never break a call
                    log.exception("shopify on_call hook failed")
            return outcome
