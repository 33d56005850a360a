"""Async client for Shopify's Admin GraphQL API (generic: it knows nothing about bundles).

Why a hand-written client: the migration reads many thousands of metaobjects across many
shops, and the legacy read path calls Shopify inside a storefront request. Both need

* cost-aware pacing per shop (`ShopThrottle`), so steady state never sees THROTTLED;
* a global bound on in-flight requests, so one big migration cannot starve the read path;
* retries for what is transient (5xx, timeouts, malformed bodies, THROTTLED) and none for
  what is not (401/402/423/404), surfaced as errors with stable `reason` codes (`errors.py`)
  because every failure ends up as a per-item reason in a migration job;
* batching of `nodes(ids:)` with graceful handling of invalid ids, which Shopify answers by
  rejecting the *whole* request.

Entry points: `ShopifyClient.graphql` / `graphql_result` (one query, with retries),
`fetch_metaobjects` / `fetch_metaobject` / `fetch_metaobject_by_handle` / `fetch_products`
(batched reads), `mutate` (writes, `userErrors` raised as `ShopifyUserErrors`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, Literal, TypeVar

import httpx
import orjson
from opentelemetry import trace

from app.shopify.documents import (
    METAOBJECT_BY_HANDLE_QUERY,
    METAOBJECT_NODES_QUERY,
    METAOBJECT_QUERY,
    PRODUCT_NODES_QUERY,
)
from app.shopify.errors import (
    ShopifyBadResponse,
    ShopifyError,
    ShopifyGraphQLError,
    ShopifyInvalidId,
    ShopifyLocked,
    ShopifyPaymentRequired,
    ShopifyShopNotFound,
    ShopifyUnauthorized,
    ShopifyUnavailable,
    ShopifyUserErrors,
    graphql_error_for,
    problem_explanations,
)
from app.shopify.throttle import QueryCost, ShopThrottle, ThrottleStatus, parse_cost

__all__ = [
    "MAX_NODES_PER_QUERY",
    "METAOBJECT_BY_HANDLE_QUERY",
    "METAOBJECT_NODES_QUERY",
    "METAOBJECT_QUERY",
    "PRODUCT_NODES_QUERY",
    "ClientStats",
    "GraphQLResult",
    "Metaobject",
    "NodesResult",
    "Product",
    "ShopifyClient",
    "is_gid",
]

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

#: Shopify's limit on `nodes(ids:)`.
MAX_NODES_PER_QUERY = 250



#: GraphQL error codes that mean "Shopify had a problem", retried like a 5xx.
RETRYABLE_GRAPHQL_CODES = frozenset({"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"})
THROTTLED_CODE = "THROTTLED"
MAX_COST_EXCEEDED_CODE = "MAX_COST_EXCEEDED"

# Initial per-id cost guesses for batched reads; replaced by what Shopify reports (see _learn_cost).
_INITIAL_COST_PER_ID = {"metaobject": 2.0, "product": 4.0}
# Cost guess for one-object queries and for mutations (Shopify charges 10 per mutation).
_SINGLE_OBJECT_COST = 2
_MUTATION_COST = 10

_GID_RE = re.compile(r"gid://shopify/(?P<type>[A-Za-z]+)/(?P<id>[0-9]+)")
_QUOTED_RE = re.compile(r"'([^']*)'|\"([^\"]*)\"|`([^`]*)`")

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]
TokenProvider = Callable[[str], Awaitable[str | None]]
OnCall = Callable[[str, str, float], None]


def is_gid(value: str, type_: str) -> bool:
    """True for `gid://shopify/<type_>/<digits>`: the only id shape Shopify accepts for `type_`.

    Checked before sending because one malformed id (the legacy import stored *handles* as
    `gid://shopify/Metaobject/<handle>`) makes Shopify reject the whole 250-id batch.
    """
    match = _GID_RE.fullmatch(value) if isinstance(value, str) else None
    return bool(match and match.group("type") == type_)


@dataclass(frozen=True, slots=True)
class Metaobject:
    """A metaobject as read from Shopify. `fields` maps key → value; null values are omitted."""

    id: str
    handle: str
    type: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Product:
    """The few product facts cached on bundle components (first variant only)."""

    id: str
    title: str
    image_url: str | None
    variant_id: str | None
    price: Decimal | None
    sku: str | None
    inventory_quantity: int | None


@dataclass(frozen=True, slots=True)
class GraphQLResult:
    """`data` plus the non-fatal `errors` of a partial response and the reported cost."""

    data: dict[str, Any]
    errors: list[dict[str, Any]]
    cost: QueryCost | None


@dataclass(slots=True)
class NodesResult(Generic[T]):
    """Outcome of a batched `nodes(ids:)` read.

    `nodes` maps every input id to its object or None; `invalid` lists ids that are not valid
    GIDs of the expected type (never sent, or rejected by Shopify); `failed` maps ids whose
    node came back null *with* a GraphQL error at its position (e.g. access denied) to the
    error message, so a caller can tell them apart from "does not exist".
    """

    nodes: dict[str, T | None]
    invalid: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


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


@dataclass(slots=True)
class _Outcome:
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


class ShopifyClient:
    """Shopify Admin GraphQL client shared by the whole process (one per `httpx.AsyncClient`).

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
        on_throttle_wait: Callable[[str, float], None] | None = None,
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
        self._cost_per_id: dict[str, float] = dict(_INITIAL_COST_PER_ID)
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

    def batched_read_delay(self, shop: str, kind: str, count: int) -> float:
        """Seconds until a batched read of `count` ids of `kind` ("metaobject", "product") would be
        sent without waiting for the shop's bucket (0 when it fits now or the bucket is unknown), so
        a scheduler can let the shop wait without holding a slot other shops could use."""
        return self.throttle_for(shop).delay_for(self._estimate_cost(kind, count))

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

    # ------------------------------------------------------------------ core call

    async def graphql(
        self, shop: str, query: str, variables: Mapping[str, Any] | None = None, *, estimated_cost: int
    ) -> dict[str, Any]:
        """Run a query and return its `data` (partial-response errors are logged and counted)."""
        return (await self.graphql_result(shop, query, variables, estimated_cost=estimated_cost)).data

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
                assert outcome.data is not None
                if outcome.errors:
                    self.stats.partial_responses += 1
                    log.warning(
                        "shopify partial response",
                        extra={"shop": shop, "errors": [e.get("message") for e in outcome.errors][:5]},
                    )
                return GraphQLResult(outcome.data, outcome.errors, outcome.cost)
            if outcome.kind == "fatal":
                assert outcome.error is not None
                raise outcome.error
            if outcome.kind == "throttled":
                throttled += 1
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
                continue

            failures += 1
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
    ) -> _Outcome:
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
                except httpx.TimeoutException as exc:
                    status_key = "timeout"
                    # Connect/pool timeouts happen before the request reached Shopify.
                    unsent = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
                    outcome = _Outcome("retry", "timeout", detail=f"timeout: {exc!r}", ambiguous=not unsent)
                except httpx.TransportError as exc:
                    status_key = "connect_error"
                    unsent = isinstance(exc, httpx.ConnectError)
                    outcome = _Outcome(
                        "retry", "connect_error", detail=f"connection error: {exc!r}", ambiguous=not unsent
                    )
                else:
                    status_key = str(response.status_code)
                    span.set_attribute("http.status_code", response.status_code)
                    outcome = self._classify(shop, response)
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

    def _classify(self, shop: str, response: httpx.Response) -> _Outcome:
        """Map one HTTP response onto ok / throttled / retry / fatal (see module docstring)."""
        status = response.status_code
        retry_after = _retry_after(response.headers.get("Retry-After"))
        fatal_by_status: dict[int, tuple[str, ShopifyError]] = {
            401: ("unauthorized", ShopifyUnauthorized(shop, "HTTP 401: access token rejected")),
            403: ("unauthorized", ShopifyUnauthorized(shop, "HTTP 403: access denied (missing scope?)")),
            402: ("frozen", ShopifyPaymentRequired(shop, "HTTP 402: shop frozen (payment required)")),
            423: ("locked", ShopifyLocked(shop, "HTTP 423: shop locked")),
            404: ("not_found", ShopifyShopNotFound(shop, "HTTP 404: shop not found")),
        }
        if status in fatal_by_status:
            if status in (401, 403):
                self.invalidate_token(shop)
            label, error = fatal_by_status[status]
            return _Outcome("fatal", label, error=error, detail=error.detail)

        body = _json_object(response.content)
        cost = parse_cost(body) if body is not None else None
        errors = _normalize_errors(body.get("errors")) if body is not None else []
        if any(_error_code(e) == THROTTLED_CODE for e in errors):
            return _Outcome("throttled", "throttled", cost=cost, retry_after=retry_after, detail="throttled")
        if status == 429:
            return _Outcome("retry", "rate_limited", retry_after=retry_after, detail="HTTP 429", ambiguous=False)
        if status >= 500:
            return _Outcome("retry", "http_5xx", cost=cost, retry_after=retry_after, detail=f"HTTP {status}")
        if not 200 <= status < 300:
            error = ShopifyGraphQLError(shop, errors, detail=f"unexpected HTTP {status}")
            return _Outcome("fatal", "http_4xx", error=error, detail=error.detail)
        if body is None:
            return _Outcome("retry", "bad_response", detail="malformed body (not a JSON object)", malformed=True)

        data = body.get("data")
        if isinstance(data, dict):
            return _Outcome("ok", "partial" if errors else "ok", data=data, errors=errors, cost=cost)
        if errors:
            if any(_error_code(e) in RETRYABLE_GRAPHQL_CODES for e in errors):
                return _Outcome("retry", "graphql_error", cost=cost, detail=f"GraphQL: {_messages(errors)}")
            error = graphql_error_for(shop, errors)
            return _Outcome("fatal", "graphql_error", cost=cost, error=error, detail=error.detail)
        return _Outcome(
            "retry", "bad_response", cost=cost, detail="malformed body (no data, no errors)", malformed=True
        )

    # ------------------------------------------------------------------ reads

    async def fetch_metaobject(self, shop: str, id: str) -> Metaobject | None:
        """One metaobject by GID; None when it does not exist.

        Raises `ShopifyInvalidId` without calling Shopify when `id` is not a metaobject GID
        (e.g. a handle stored where the id belongs: use `fetch_metaobject_by_handle`).
        """
        if not is_gid(id, "Metaobject"):
            raise ShopifyInvalidId(shop, ids=[id])
        data = await self.graphql(shop, METAOBJECT_QUERY, {"id": id}, estimated_cost=_SINGLE_OBJECT_COST)
        return _parse_metaobject(data.get("metaobject"))

    async def fetch_metaobject_by_handle(self, shop: str, type_: str, handle: str) -> Metaobject | None:
        """One metaobject by `(type, handle)`; None when no such handle exists.

        A null answer that comes *with* an error is Shopify failing, not an absent handle: it raises
        `ShopifyUnavailable` (transient), so no caller mistakes it for "not found".
        """
        answer = await self.graphql_result(
            shop,
            METAOBJECT_BY_HANDLE_QUERY,
            {"handle": {"type": type_, "handle": handle}},
            estimated_cost=_SINGLE_OBJECT_COST,
        )
        found = _parse_metaobject(answer.data.get("metaobjectByHandle"))
        if found is None and answer.errors:
            raise ShopifyUnavailable(shop, "; ".join(str(e.get("message", "")) for e in answer.errors)[:500])
        return found

    async def fetch_metaobjects(self, shop: str, ids: Sequence[str]) -> dict[str, Metaobject | None]:
        """Metaobjects by GID, batched 250 per request; every input id maps to an object or None.

        Invalid ids map to None too; use `fetch_metaobjects_detailed` to tell them apart.
        """
        return (await self.fetch_metaobjects_detailed(shop, ids)).nodes

    async def fetch_metaobjects_detailed(self, shop: str, ids: Sequence[str]) -> NodesResult[Metaobject]:
        return await self._fetch_nodes(
            shop,
            ids,
            query=METAOBJECT_NODES_QUERY,
            gid_type="Metaobject",
            parse=_parse_metaobject,
            kind="metaobject",
        )

    async def fetch_products(self, shop: str, ids: Sequence[str]) -> dict[str, Product | None]:
        """Products by GID (title, image, first variant), batched like `fetch_metaobjects`."""
        return (await self.fetch_products_detailed(shop, ids)).nodes

    async def fetch_products_detailed(self, shop: str, ids: Sequence[str]) -> NodesResult[Product]:
        return await self._fetch_nodes(
            shop, ids, query=PRODUCT_NODES_QUERY, gid_type="Product", parse=_parse_product, kind="product"
        )

    async def _fetch_nodes(
        self,
        shop: str,
        ids: Sequence[str],
        *,
        query: str,
        gid_type: str,
        parse: Callable[[Any], T | None],
        kind: str,
    ) -> NodesResult[T]:
        """Batched `nodes(ids:)`: dedupe, drop malformed ids up front, one request per 250.

        Batches of one shop run sequentially: the shop's bucket is the bottleneck anyway, and
        shops run in parallel at the caller's level.
        """
        unique = list(dict.fromkeys(ids))
        result: NodesResult[T] = NodesResult(nodes={})
        valid: list[str] = []
        for id_ in unique:
            (valid if is_gid(id_, gid_type) else result.invalid).append(id_)
        found: dict[str, T | None] = {}
        for start in range(0, len(valid), MAX_NODES_PER_QUERY):
            await self._fetch_node_batch(
                shop, valid[start : start + MAX_NODES_PER_QUERY], query, parse, kind, found, result
            )
        result.nodes = {id_: found.get(id_) for id_ in ids}
        return result

    async def _fetch_node_batch(
        self,
        shop: str,
        batch: list[str],
        query: str,
        parse: Callable[[Any], T | None],
        kind: str,
        found: dict[str, T | None],
        result: NodesResult[T],
    ) -> None:
        """Fetch one batch; on "invalid id" drop the ids Shopify names, else bisect.

        Bisecting costs about log2(250) ≈ 8 extra requests per bad id, which only happens when
        an id passed the shape check yet Shopify still refuses it. MAX_COST_EXCEEDED (a batch
        dearer than the bucket) is also answered by splitting.
        """
        pending = [batch]
        while pending:
            chunk = pending.pop()
            try:
                answer = await self.graphql_result(
                    shop, query, {"ids": chunk}, estimated_cost=self._estimate_cost(kind, len(chunk))
                )
            except ShopifyInvalidId as exc:
                if len(chunk) == 1:
                    result.invalid.append(chunk[0])
                    continue
                named = _quoted_ids(exc) & set(chunk)
                if named:
                    result.invalid.extend(id_ for id_ in chunk if id_ in named)
                    rest = [id_ for id_ in chunk if id_ not in named]
                    if rest:
                        pending.append(rest)
                    continue
                middle = len(chunk) // 2
                pending.extend([chunk[middle:], chunk[:middle]])
                continue
            except ShopifyGraphQLError as exc:
                if exc.code == MAX_COST_EXCEEDED_CODE and len(chunk) > 1:
                    middle = len(chunk) // 2
                    pending.extend([chunk[middle:], chunk[:middle]])
                    continue
                raise
            self._learn_cost(kind, len(chunk), answer.cost)
            nodes = answer.data.get("nodes")
            if not isinstance(nodes, list) or len(nodes) != len(chunk):
                got = len(nodes) if isinstance(nodes, list) else type(nodes).__name__
                raise ShopifyBadResponse(shop, f"nodes: expected {len(chunk)} entries, got {got}")
            failed_positions = _failed_node_positions(answer.errors)
            for position, (id_, node) in enumerate(zip(chunk, nodes, strict=True)):
                parsed = parse(node)
                found[id_] = parsed
                if parsed is None and position in failed_positions:
                    result.failed[id_] = failed_positions[position]

    def _estimate_cost(self, kind: str, count: int) -> int:
        return max(1, math.ceil(self._cost_per_id.get(kind, 2.0) * count))

    def _learn_cost(self, kind: str, count: int, cost: QueryCost | None) -> None:
        """Adopt the per-id cost Shopify reported, so estimates track the real schema costs."""
        if cost is not None and cost.requested and count > 0:
            self._cost_per_id[kind] = cost.requested / count

    # ------------------------------------------------------------------ writes

    async def mutate(
        self,
        shop: str,
        mutation: str,
        variables: Mapping[str, Any] | None,
        payload_key: str,
        *,
        estimated_cost: int = _MUTATION_COST,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """Run a mutation and return its payload (`data[payload_key]`).

        Raises `ShopifyUserErrors` when `userErrors` is non-empty (HTTP 200 yet nothing
        written). Pass `idempotent=False` for creates, so an ambiguous failure (timeout after
        sending) is not retried into a duplicate.
        """
        answer = await self.graphql_result(
            shop, mutation, variables, estimated_cost=estimated_cost, retry_ambiguous=idempotent
        )
        payload = answer.data.get(payload_key)
        if not isinstance(payload, dict):
            if any(_error_code(e) in RETRYABLE_GRAPHQL_CODES for e in answer.errors):
                # Shopify failed on its side at this mutation (INTERNAL_SERVER_ERROR at its path):
                # transient like a 5xx, so the outbox retries it later instead of dead-lettering it.
                raise ShopifyBadResponse(shop, f"mutation {payload_key!r} failed: {_messages(answer.errors)}")
            if answer.errors:
                raise graphql_error_for(shop, answer.errors)
            raise ShopifyBadResponse(shop, f"mutation payload {payload_key!r} missing")
        user_errors = payload.get("userErrors") or []
        if user_errors:
            raise ShopifyUserErrors(user_errors, shop=shop, payload_key=payload_key)
        return payload


# ---------------------------------------------------------------------- parsing helpers


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _normalize_errors(raw: Any) -> list[dict[str, Any]]:
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


def _error_code(error: Mapping[str, Any]) -> str | None:
    extensions = error.get("extensions")
    code = extensions.get("code") if isinstance(extensions, Mapping) else None
    return code if isinstance(code, str) else None


def _messages(errors: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(str(e.get("message", "")) for e in errors)[:500]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: Shopify sends seconds; ignore rather than guess
    return seconds if seconds >= 0 and math.isfinite(seconds) else None


def _quoted_ids(error: ShopifyGraphQLError) -> set[str]:
    """Ids quoted in messages such as `Invalid global id 'gid://shopify/Metaobject/x'`.

    A variable error names them in ``extensions.problems[].explanation`` (``Invalid global id `x```).
    """
    quoted: set[str] = set(error.ids) if isinstance(error, ShopifyInvalidId) else set()
    for err in error.errors:
        for text in [str(err.get("message", "")), *problem_explanations(err)]:
            for single, double, backtick in _QUOTED_RE.findall(text):
                quoted.add(single or double or backtick)
    return quoted


def _failed_node_positions(errors: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """Positions in `nodes` that a partial response's errors point at (path ["nodes", i, ...])."""
    positions: dict[int, str] = {}
    for error in errors:
        path = error.get("path")
        if isinstance(path, list) and len(path) >= 2 and path[0] == "nodes" and isinstance(path[1], int):
            positions.setdefault(path[1], str(error.get("message", "error")))
    return positions


def _parse_metaobject(node: Any) -> Metaobject | None:
    """A `Metaobject` from a node; None for null or `{}` (an id of another type matches no fragment)."""
    if not isinstance(node, Mapping) or not isinstance(node.get("id"), str):
        return None
    fields: dict[str, str] = {}
    raw_fields = node.get("fields")
    for entry in raw_fields if isinstance(raw_fields, list) else []:
        if isinstance(entry, Mapping) and isinstance(entry.get("key"), str) and entry.get("value") is not None:
            fields[entry["key"]] = str(entry["value"])
    return Metaobject(
        id=node["id"], handle=str(node.get("handle") or ""), type=str(node.get("type") or ""), fields=fields
    )


def _parse_product(node: Any) -> Product | None:
    if not isinstance(node, Mapping) or not isinstance(node.get("id"), str):
        return None
    image = node.get("featuredImage")
    image_url = image.get("url") if isinstance(image, Mapping) else None
    variants = node.get("variants")
    variant_nodes = variants.get("nodes") if isinstance(variants, Mapping) else None
    variant = variant_nodes[0] if isinstance(variant_nodes, list) and variant_nodes else None
    variant = variant if isinstance(variant, Mapping) else {}
    quantity = variant.get("inventoryQuantity")
    return Product(
        id=node["id"],
        title=str(node.get("title") or ""),
        image_url=image_url if isinstance(image_url, str) else None,
        variant_id=variant.get("id") if isinstance(variant.get("id"), str) else None,
        price=_decimal(variant.get("price")),
        sku=variant.get("sku") if isinstance(variant.get("sku"), str) else None,
        inventory_quantity=quantity if isinstance(quantity, int) and not isinstance(quantity, bool) else None,
    )


def _decimal(value: Any) -> Decimal | None:
    """Money is a decimal string in current API versions; older ones nest it as MoneyV2."""
    if isinstance(value, Mapping):
        value = value.get("amount")
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None
