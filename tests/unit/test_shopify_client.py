"""Unit tests of the Shopify Admin GraphQL client against respx-mocked HTTP.

Time is faked: the client gets a clock and a sleep that records the requested duration and
advances the clock instantly, so throttle and backoff waits are asserted exactly and fast.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.shopify import transport as transport_module
from app.shopify.client import ShopifyClient
from app.shopify.documents import METAOBJECT_BY_HANDLE_QUERY, METAOBJECT_NODES_QUERY, PRODUCT_NODES_QUERY
from app.shopify.errors import (
    ShopifyBadResponse,
    ShopifyError,
    ShopifyGraphQLError,
    ShopifyInvalidId,
    ShopifyLocked,
    ShopifyPaymentRequired,
    ShopifyShopError,
    ShopifyShopNotFound,
    ShopifyUnauthorized,
    ShopifyUnavailable,
    ShopifyUserErrors,
)
from app.shopify.objects import Metaobject, is_gid
from app.shopify.throttle import ShopThrottle, ThrottleStatus

SHOP = "alpha.myshopify.com"
TEMPLATE = "https://{shop}/admin/api/{version}/graphql.json"
VERSION = "2026-01"


def url(shop: str = SHOP) -> str:
    return TEMPLATE.format(shop=shop, version=VERSION)


def mo_gid(n: int | str) -> str:
    return f"gid://shopify/Metaobject/{n}"


class FakeTime:
    """Monotonic clock + sleep that records durations and jumps the clock forward."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Tokens:
    def __init__(self, tokens: dict[str, str | None] | None = None) -> None:
        self.tokens = tokens if tokens is not None else {SHOP: "shpat_alpha"}
        self.calls: list[str] = []

    async def __call__(self, shop: str) -> str | None:
        self.calls.append(shop)
        return self.tokens.get(shop, f"shpat_{shop}")


def cost_ext(
    requested: float = 10, actual: float = 10, current: float = 990, maximum: float = 1000, rate: float = 100
) -> dict[str, Any]:
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": maximum,
                "currentlyAvailable": current,
                "restoreRate": rate,
            },
        }
    }


def ok(data: dict[str, Any], status: int = 200, **cost: float) -> httpx.Response:
    return httpx.Response(status, json={"data": data, "extensions": cost_ext(**cost)})


def throttled(status: int = 200, **cost: float) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": cost_ext(**cost),
        },
    )


def metaobject_node(gid: str) -> dict[str, Any]:
    n = gid.rsplit("/", 1)[1]
    return {
        "id": gid,
        "handle": f"bundle-{n}",
        "type": "product-bundles",
        "fields": [
            {"key": "bundle_name", "value": f"Bündel {n}"},
            {"key": "products", "value": '["gid://shopify/Product/1"]'},
            {"key": "description", "value": None},
        ],
    }


def body_of(request: httpx.Request) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(request.content)
    return result


def nodes_side_effect(
    exists: Callable[[str], bool] = lambda gid: int(gid.rsplit("/", 1)[1]) % 7 != 0,
) -> Callable[[httpx.Request], httpx.Response]:
    """Fake `nodes(ids:)`: ids whose number is a multiple of 7 do not exist (null)."""

    def effect(request: httpx.Request) -> httpx.Response:
        ids = body_of(request)["variables"]["ids"]
        nodes = [metaobject_node(i) if exists(i) else None for i in ids]
        return ok({"nodes": nodes}, requested=2 * len(ids), actual=len(ids))

    return effect


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def make_client(http: httpx.AsyncClient, fake_time: FakeTime) -> Callable[..., ShopifyClient]:
    def factory(tokens: Tokens | None = None, **kwargs: Any) -> ShopifyClient:
        kwargs.setdefault("sleep", fake_time.sleep)
        kwargs.setdefault("clock", fake_time.clock)
        kwargs.setdefault("rng", random.Random(7))
        return ShopifyClient(http, TEMPLATE, VERSION, tokens or Tokens(), **kwargs)

    return factory


# --------------------------------------------------------------------------- batching


async def test_fetch_metaobjects_batches_600_ids_into_3_aligned_calls(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    route = respx_mock.post(url()).mock(side_effect=nodes_side_effect())
    client = make_client()
    ids = [mo_gid(n) for n in range(1, 601)]

    result = await client.fetch_metaobjects(SHOP, [*ids, ids[0]])  # a duplicate is sent once

    assert route.call_count == 3
    sent = [body_of(call.request)["variables"]["ids"] for call in route.calls]
    assert [len(batch) for batch in sent] == [250, 250, 100]
    assert [i for batch in sent for i in batch] == ids
    assert all(body_of(call.request)["query"] == METAOBJECT_NODES_QUERY for call in route.calls)
    assert route.calls[0].request.headers["X-Shopify-Access-Token"] == "shpat_alpha"
    assert list(result) == ids
    assert result[mo_gid(7)] is None and result[mo_gid(595)] is None
    assert result[mo_gid(598)] == Metaobject(
        id=mo_gid(598),
        handle="bundle-598",
        type="product-bundles",
        fields={"bundle_name": "Bündel 598", "products": '["gid://shopify/Product/1"]'},
    )
    assert sum(1 for v in result.values() if v is None) == 600 // 7
    assert client.stats.requests == 3 and client.stats.retries == 0


async def test_fetch_metaobjects_empty_input_makes_no_call(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    route = respx_mock.post(url()).mock(side_effect=nodes_side_effect())
    assert await make_client().fetch_metaobjects(SHOP, []) == {}
    assert route.call_count == 0


async def test_node_of_another_type_maps_to_none(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    respx_mock.post(url()).mock(return_value=ok({"nodes": [{}, metaobject_node(mo_gid(2))]}))
    result = await make_client().fetch_metaobjects(SHOP, [mo_gid(1), mo_gid(2)])
    assert result[mo_gid(1)] is None
    second = result[mo_gid(2)]
    assert second is not None and second.handle == "bundle-2"


async def test_misaligned_nodes_is_a_bad_response(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    respx_mock.post(url()).mock(return_value=ok({"nodes": [None]}))
    with pytest.raises(ShopifyBadResponse) as info:
        await make_client().fetch_metaobjects(SHOP, [mo_gid(1), mo_gid(2)])
    assert info.value.reason == "shopify_bad_response"


# --------------------------------------------------------------------------- throttling


async def test_low_bucket_makes_next_call_wait_before_sending(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient], fake_time: FakeTime
) -> None:
    route = respx_mock.post(url()).mock(
        side_effect=[ok({"a": 1}, current=50, rate=100), ok({"a": 2}, current=0, rate=100)]
    )
    other = respx_mock.post(url("beta.myshopify.com")).mock(return_value=ok({"b": 1}))
    client = make_client()

    assert await client.graphql(SHOP, "{a}", estimated_cost=10) == {"a": 1}
    assert fake_time.sleeps == []  # unknown bucket: no wait
    assert await client.graphql(SHOP, "{a}", estimated_cost=250) == {"a": 2}

    assert fake_time.sleeps == [pytest.approx(2.0)]  # (250 - 50) / 100
    assert client.stats.throttle_wait_s == pytest.approx(2.0)
    assert client.stats.throttled == 0  # never refused: we waited instead
    assert route.call_count == 2

    # Buckets are per shop: another shop does not wait for alpha's bucket.
    assert await client.graphql("beta.myshopify.com", "{b}", estimated_cost=250) == {"b": 1}
    assert fake_time.sleeps == [pytest.approx(2.0)]
    assert other.call_count == 1


async def test_refill_is_extrapolated_by_the_clock(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient], fake_time: FakeTime
) -> None:
    respx_mock.post(url()).mock(return_value=ok({"a": 1}, current=0, rate=50))
    client = make_client()
    await client.graphql(SHOP, "{a}", estimated_cost=10)
    fake_time.now += 1.0  # 50 points restored meanwhile
    await client.graphql(SHOP, "{a}", estimated_cost=100)
    assert fake_time.sleeps == [pytest.approx(1.0)]  # (100 - 50) / 50


async def test_concurrent_calls_to_one_shop_do_not_overspend(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient], fake_time: FakeTime
) -> None:
    responses = iter([ok({"a": 0}, current=100, rate=10)] + [ok({"a": 1}, current=0, rate=10)] * 3)

    async def effect(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)  # keep requests in flight together
        return next(responses)

    respx_mock.post(url()).mock(side_effect=effect)
    client = make_client()
    await client.graphql(SHOP, "{a}", estimated_cost=1)  # learn: 100 available, 10/s
    fake_time.sleeps.clear()

    await asyncio.gather(*(client.graphql(SHOP, "{a}", estimated_cost=50) for _ in range(3)))

    # 100 points cover two calls; the third waits for 50 more points at 10/s.
    assert fake_time.sleeps == [pytest.approx(5.0)]


async def test_throttled_200_waits_computed_time_then_succeeds(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient], fake_time: FakeTime
) -> None:
    route = respx_mock.post(url()).mock(
        side_effect=[throttled(requested=300, current=100, rate=50), ok({"x": 1}, current=700)]
    )
    client = make_client()

    assert await client.graphql(SHOP, "{x}", estimated_cost=10) == {"x": 1}

    assert route.call_count == 2
    assert fake_time.sleeps == [pytest.approx(4.0)]  # (300 - 100) / 50
    assert client.stats.throttled == 1
    assert client.stats.retries == 1
    assert client.stats.throttle_wait_s == pytest.approx(4.0)


async def test_throttled_429_with_body_honours_retry_after(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient], fake_time: FakeTime
) -> None:
    response = throttled(status=429, requested=20, current=10, rate=100)  # computed wait 0.1 s
    response.headers["Retry-After"] = "2"
    respx_mock.post(url()).mock(side_effect=[response, ok({"x": 1})])
    client = make_client()

    assert await client.graphql(SHOP, "{x}", estimated_cost=10) == {"x": 1}
    assert fake_time.sleeps == [pytest.approx(2.0)]
    assert client.stats.throttled == 1


async def test_throttle_retries_have_their_own_budget(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    route = respx_mock.post(url()).mock(side_effect=[throttled(current=0)] * 10 + [ok({"x": 1})])
    client = make_client(max_attempts=3, max_throttle_retries=20)
    assert await client.graphql(SHOP, "{x}", estimated_cost=10) == {"x": 1}
    assert route.call_count == 11


async def test_endless_throttling_ends_as_unavailable(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    route = respx_mock.post(url()).mock(return_value=throttled(current=0))
    with pytest.raises(ShopifyUnavailable):
        await make_client(max_throttle_retries=4).graphql(SHOP, "{x}", estimated_cost=10)
    assert route.call_count == 5


# --------------------------------------------------------------------------- transient failures


async def test_5xx_twice_then_success(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient], fake_time: FakeTime
) -> None:
    route = respx_mock.post(url()).mock(
        side_effect=[httpx.Response(503), httpx.Response(502, text="Bad Gateway"), ok({"x": 1})]
    )
    client = make_client()

    assert await client.graphql(SHOP, "{x}", estimated_cost=10) == {"x": 1}

    assert route.call_count == 3
    assert client.stats.retries == 2
    assert client.stats.by_status == {"503": 1, "502": 1, "200": 1}
    assert len(fake_time.sleeps) == 2
    assert 0 <= fake_time.sleeps[0] <= 0.2 and 0 <= fake_time.sleeps[1] <= 0.4  # full jitter caps
    assert client.stats.backoff_wait_s == pytest.approx(sum(fake_time.sleeps))


async def test_timeout_then_success(respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]) -> None:
    route = respx_mock.post(url()).mock(side_effect=[httpx.ReadTimeout("slow"), ok({"x": 1})])
    client = make_client()
    assert await client.graphql(SHOP, "{x}", estimated_cost=10) == {"x": 1}
    assert route.call_count == 2
    assert client.stats.by_status == {"timeout": 1, "200": 1}


async def test_connection_error_then_success(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    route = respx_mock.post(url()).mock(side_effect=[httpx.ConnectError("refused"), ok({"x": 1})])
    client = make_client()
    assert await client.graphql(SHOP, "{x}", estimated_cost=10) == {"x": 1}
    assert route.call_count == 2
    assert client.stats.by_status["connect_error"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        httpx.Response(200, content=b"<html>oops</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"extensions": {}}),  # neither data nor errors
        httpx.Response(429),  # rate limited without a body
        httpx.Response(
            200,
            json={"errors": [{"message": "Internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]},
        ),
    ],
)
async def test_malformed_or_transient_body_then_success(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient], bad: httpx.Response
) -> None:
    route = respx_mock.post(url()).mock(side_effect=[bad, ok({"x": 1})])
    client = make_client()
    assert await client.graphql(SHOP, "{x}", estimated_cost=10) == {"x": 1}
    assert route.call_count == 2
    assert client.stats.retries == 1


async def test_retries_exhausted_raise_unavailable(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient], fake_time: FakeTime
) -> None:
    route = respx_mock.post(url()).mock(return_value=httpx.Response(500))
    client = make_client(max_attempts=6, base_backoff_s=1.0, max_backoff_s=3.0)

    with pytest.raises(ShopifyUnavailable) as info:
        await client.graphql(SHOP, "{x}", estimated_cost=10)

    assert route.call_count == 6
    assert info.value.reason == "shopify_unavailable"
    assert info.value.shop == SHOP and info.value.transient
    assert not isinstance(info.value, ShopifyShopError)
    assert "HTTP 500" in info.value.detail
    assert len(fake_time.sleeps) == 5 and max(fake_time.sleeps) <= 3.0  # capped backoff


async def test_malformed_bodies_exhausted_raise_bad_response(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    route = respx_mock.post(url()).mock(return_value=httpx.Response(200, content=b"not json"))
    with pytest.raises(ShopifyBadResponse) as info:
        await make_client(max_attempts=3).graphql(SHOP, "{x}", estimated_cost=10)
    assert route.call_count == 3
    assert info.value.reason == "shopify_bad_response"
    assert isinstance(info.value, ShopifyUnavailable)


# --------------------------------------------------------------------------- shop-level failures


@pytest.mark.parametrize(
    ("status", "error_type", "reason"),
    [
        (401, ShopifyUnauthorized, "shop_unauthorized"),
        (402, ShopifyPaymentRequired, "shop_frozen"),
        (423, ShopifyLocked, "shop_locked"),
        (404, ShopifyShopNotFound, "shop_not_found"),
    ],
)
async def test_shop_level_statuses_raise_without_retry(
    respx_mock: respx.MockRouter,
    make_client: Callable[..., ShopifyClient],
    fake_time: FakeTime,
    status: int,
    error_type: type[ShopifyShopError],
    reason: str,
) -> None:
    route = respx_mock.post(url()).mock(return_value=httpx.Response(status, json={"errors": "nope"}))
    client = make_client()

    with pytest.raises(error_type) as info:
        await client.fetch_metaobjects(SHOP, [mo_gid(1)])

    assert route.call_count == 1
    assert info.value.reason == reason
    assert isinstance(info.value, ShopifyShopError) and isinstance(info.value, ShopifyError)
    assert fake_time.sleeps == []


async def test_401_invalidates_cached_token(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    respx_mock.post(url()).mock(side_effect=[ok({"x": 1}), ok({"x": 2}), httpx.Response(401), ok({"x": 3})])
    tokens = Tokens()
    client = make_client(tokens)

    await client.graphql(SHOP, "{x}", estimated_cost=1)
    await client.graphql(SHOP, "{x}", estimated_cost=1)
    assert tokens.calls == [SHOP]  # cached
    with pytest.raises(ShopifyUnauthorized):
        await client.graphql(SHOP, "{x}", estimated_cost=1)
    await client.graphql(SHOP, "{x}", estimated_cost=1)
    assert tokens.calls == [SHOP, SHOP]  # looked up again after the 401


async def test_missing_token_raises_unauthorized_without_http(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    route = respx_mock.post(url()).mock(return_value=ok({"x": 1}))
    client = make_client(Tokens({SHOP: None}))

    with pytest.raises(ShopifyUnauthorized) as info:
        await client.fetch_metaobjects(SHOP, [mo_gid(1)])

    assert info.value.detail == "no offline session/token"
    assert info.value.reason == "shop_unauthorized"
    assert route.call_count == 0


# --------------------------------------------------------------------------- invalid ids


async def test_malformed_ids_are_reported_without_sending(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    route = respx_mock.post(url()).mock(side_effect=nodes_side_effect())
    handle_id = "gid://shopify/Metaobject/summer-bundle"
    ids = [mo_gid(1), handle_id, "gid://shopify/Product/5", "[object Object]", mo_gid(2)]

    result = await make_client().fetch_metaobjects_detailed(SHOP, ids)

    assert route.call_count == 1
    assert body_of(route.calls[0].request)["variables"]["ids"] == [mo_gid(1), mo_gid(2)]
    assert result.invalid == [handle_id, "gid://shopify/Product/5", "[object Object]"]
    assert list(result.nodes) == ids
    assert result.nodes[handle_id] is None
    assert result.nodes[mo_gid(1)] is not None and result.nodes[mo_gid(2)] is not None


def _rejecting(bad: set[str], quote: bool) -> Callable[[httpx.Request], httpx.Response]:
    """Fake Shopify that refuses the whole request when any id in it is in `bad`."""
    inner = nodes_side_effect()

    def effect(request: httpx.Request) -> httpx.Response:
        ids = body_of(request)["variables"]["ids"]
        offending = [i for i in ids if i in bad]
        if offending:
            message = f"Invalid global id '{offending[0]}'" if quote else "Invalid global id"
            return httpx.Response(
                200,
                json={"errors": [{"message": message, "extensions": {"code": "argumentLiteralsIncompatible"}}]},
            )
        return inner(request)

    return effect


async def test_rejected_id_is_bisected_out(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    bad = mo_gid(5)
    route = respx_mock.post(url()).mock(side_effect=_rejecting({bad}, quote=False))
    ids = [mo_gid(n) for n in range(1, 9)]

    result = await make_client().fetch_metaobjects_detailed(SHOP, ids)

    assert result.invalid == [bad]
    assert result.nodes[bad] is None
    assert result.nodes[mo_gid(7)] is None  # genuinely missing
    assert all(result.nodes[i] is not None for i in ids if i not in (bad, mo_gid(7)))
    # 8 → 4+4 → 2+2 → 1+1: one full, then the clean half, then down to the bad id.
    assert route.call_count == 7


async def test_rejected_id_named_in_message_is_dropped_directly(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    bad = mo_gid(3)
    route = respx_mock.post(url()).mock(side_effect=_rejecting({bad}, quote=True))
    ids = [mo_gid(n) for n in range(1, 9)]

    result = await make_client().fetch_metaobjects_detailed(SHOP, ids)

    assert route.call_count == 2
    assert result.invalid == [bad]
    assert result.nodes[mo_gid(1)] is not None


async def test_rejected_id_named_in_an_invalid_variable_error_is_dropped_directly(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    """Shopify coerces `$ids` and names the bad one in `extensions.problems` (code INVALID_VARIABLE)."""
    bad = mo_gid(3)
    inner = nodes_side_effect()

    def effect(request: httpx.Request) -> httpx.Response:
        ids = body_of(request)["variables"]["ids"]
        if bad not in ids:
            return inner(request)
        explanation = f"Invalid global id `{bad}`"
        error = {
            "message": f"Variable $ids of type [ID!]! was provided invalid value for {ids.index(bad)} ({explanation})",
            "locations": [{"line": 1, "column": 19}],
            "extensions": {
                "code": "INVALID_VARIABLE",
                "value": ids,
                "problems": [{"path": [ids.index(bad)], "explanation": explanation}],
            },
        }
        return httpx.Response(200, json={"errors": [error]})

    route = respx_mock.post(url()).mock(side_effect=effect)
    ids = [mo_gid(n) for n in range(1, 9)]

    result = await make_client().fetch_metaobjects_detailed(SHOP, ids)

    assert route.call_count == 2
    assert result.invalid == [bad]
    assert result.nodes[mo_gid(1)] is not None


async def test_max_cost_exceeded_splits_the_batch(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    inner = nodes_side_effect()

    def effect(request: httpx.Request) -> httpx.Response:
        if len(body_of(request)["variables"]["ids"]) > 2:
            return httpx.Response(
                200, json={"errors": [{"message": "too dear", "extensions": {"code": "MAX_COST_EXCEEDED"}}]}
            )
        return inner(request)

    route = respx_mock.post(url()).mock(side_effect=effect)
    result = await make_client().fetch_metaobjects(SHOP, [mo_gid(n) for n in range(1, 5)])
    assert route.call_count == 3
    assert result[mo_gid(4)] is not None


async def test_fetch_metaobject_rejects_malformed_id_without_http(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    route = respx_mock.post(url()).mock(return_value=ok({"metaobject": None}))
    with pytest.raises(ShopifyInvalidId) as info:
        await make_client().fetch_metaobject(SHOP, "gid://shopify/Metaobject/[object Object]")
    assert info.value.reason == "shopify_invalid_id"
    assert route.call_count == 0


async def test_graphql_error_without_data_is_not_retried(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    route = respx_mock.post(url()).mock(
        return_value=httpx.Response(
            200,
            json={"errors": [{"message": "Field 'x' doesn't exist", "extensions": {"code": "undefinedField"}}]},
        )
    )
    with pytest.raises(ShopifyGraphQLError) as info:
        await make_client().graphql(SHOP, "{x}", estimated_cost=1)
    assert route.call_count == 1
    assert info.value.code == "undefinedField"
    assert info.value.reason == "shopify_bad_response"


# --------------------------------------------------------------------------- partial responses


async def test_partial_data_with_errors_returns_data_and_records_errors(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    payload = {
        "data": {"shop": {"name": "Alpha"}, "secret": None},
        "errors": [{"message": "Access denied for secret field.", "path": ["secret"]}],
        "extensions": cost_ext(requested=3, actual=2),
    }
    respx_mock.post(url()).mock(return_value=httpx.Response(200, json=payload))
    client = make_client()

    result = await client.graphql_result(SHOP, "{shop{name} secret}", estimated_cost=3)

    assert result.data == {"shop": {"name": "Alpha"}, "secret": None}
    assert [e["message"] for e in result.errors] == ["Access denied for secret field."]
    assert result.cost is not None and result.cost.actual == 2
    assert client.stats.partial_responses == 1
    assert await client.graphql(SHOP, "{shop{name} secret}", estimated_cost=3) == payload["data"]


async def test_partial_nodes_errors_are_distinguished_from_missing(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    payload = {
        "data": {"nodes": [metaobject_node(mo_gid(1)), None, None]},
        "errors": [{"message": "Access denied", "path": ["nodes", 1]}],
    }
    respx_mock.post(url()).mock(return_value=httpx.Response(200, json=payload))
    result = await make_client().fetch_metaobjects_detailed(SHOP, [mo_gid(1), mo_gid(2), mo_gid(3)])
    assert result.nodes[mo_gid(2)] is None and result.nodes[mo_gid(3)] is None
    assert result.failed == {mo_gid(2): "Access denied"}


# --------------------------------------------------------------------------- single reads, products


async def test_fetch_metaobject_and_by_handle(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    route = respx_mock.post(url()).mock(
        side_effect=[
            ok({"metaobject": metaobject_node(mo_gid(9))}),
            ok({"metaobject": None}),
            ok({"metaobjectByHandle": metaobject_node(mo_gid(10))}),
            ok({"metaobjectByHandle": None}),
        ]
    )
    client = make_client()

    found = await client.fetch_metaobject(SHOP, mo_gid(9))
    assert found is not None and found.fields["bundle_name"] == "Bündel 9"
    assert await client.fetch_metaobject(SHOP, mo_gid(11)) is None
    by_handle = await client.fetch_metaobject_by_handle(SHOP, "product-bundles", "summer")
    assert by_handle is not None and by_handle.id == mo_gid(10)
    assert await client.fetch_metaobject_by_handle(SHOP, "product-bundles", "gone") is None

    assert body_of(route.calls[0].request)["variables"] == {"id": mo_gid(9)}
    handle_body = body_of(route.calls[2].request)
    assert handle_body["query"] == METAOBJECT_BY_HANDLE_QUERY
    assert handle_body["variables"] == {"handle": {"type": "product-bundles", "handle": "summer"}}


async def test_fetch_products_parses_first_variant(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    product = {
        "id": "gid://shopify/Product/1",
        "title": "Tee",
        "featuredImage": {"url": "https://cdn.example/tee.png"},
        "variants": {
            "nodes": [
                {
                    "id": "gid://shopify/ProductVariant/11",
                    "price": "19.90",
                    "sku": "T-1",
                    "inventoryQuantity": 4,
                }
            ]
        },
    }
    bare: dict[str, Any] = {
        "id": "gid://shopify/Product/2",
        "title": "Bare",
        "featuredImage": None,
        "variants": {"nodes": []},
    }
    route = respx_mock.post(url()).mock(return_value=ok({"nodes": [product, bare, None]}))
    ids = ["gid://shopify/Product/1", "gid://shopify/Product/2", "gid://shopify/Product/3"]

    result = await make_client().fetch_products(SHOP, ids)

    assert body_of(route.calls[0].request)["query"] == PRODUCT_NODES_QUERY
    tee = result["gid://shopify/Product/1"]
    assert tee is not None
    assert (tee.title, tee.image_url, tee.variant_id, tee.price, tee.sku, tee.inventory_quantity) == (
        "Tee",
        "https://cdn.example/tee.png",
        "gid://shopify/ProductVariant/11",
        Decimal("19.90"),
        "T-1",
        4,
    )
    bare_product = result["gid://shopify/Product/2"]
    assert bare_product is not None and bare_product.price is None and bare_product.image_url is None
    assert result["gid://shopify/Product/3"] is None


# --------------------------------------------------------------------------- mutations


async def test_mutation_user_errors_raise(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    user_errors = [{"field": ["metaobject", "handle"], "message": "Handle taken", "code": "TAKEN"}]
    respx_mock.post(url()).mock(
        side_effect=[
            ok({"metaobjectCreate": {"metaobject": None, "userErrors": user_errors}}),
            ok({"metaobjectCreate": {"metaobject": {"id": mo_gid(1)}, "userErrors": []}}),
        ]
    )
    client = make_client()

    with pytest.raises(ShopifyUserErrors) as info:
        await client.mutate(SHOP, "mutation {...}", {"m": 1}, "metaobjectCreate")
    assert info.value.user_errors == user_errors
    assert info.value.reason == "shopify_user_errors"
    assert "metaobject.handle: Handle taken (TAKEN)" in info.value.detail

    payload = await client.mutate(SHOP, "mutation {...}", {"m": 1}, "metaobjectCreate")
    assert payload == {"metaobject": {"id": mo_gid(1)}, "userErrors": []}


async def test_non_idempotent_mutation_is_not_retried_after_ambiguous_timeout(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    route = respx_mock.post(url()).mock(side_effect=[httpx.ReadTimeout("slow"), ok({"m": {"userErrors": []}})])
    with pytest.raises(ShopifyUnavailable):
        await make_client().mutate(SHOP, "mutation {...}", None, "m", idempotent=False)
    assert route.call_count == 1


# --------------------------------------------------------------------------- concurrency, hooks, spans


async def test_global_concurrency_bound_is_respected(
    respx_mock: respx.MockRouter, make_client: Callable[..., ShopifyClient]
) -> None:
    in_flight = 0
    peak = 0

    async def effect(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return ok({"x": 1})

    respx_mock.post(url__regex=r"https://.*/admin/api/2026-01/graphql\.json").mock(side_effect=effect)
    client = make_client(max_concurrency=3)
    shops = [f"shop{i}.myshopify.com" for i in range(12)]

    results = await asyncio.gather(*(client.graphql(s, "{x}", estimated_cost=1) for s in shops))

    assert results == [{"x": 1}] * 12
    assert peak == 3
    assert client.stats.max_in_flight == 3


async def test_on_call_hook_and_span_attributes(
    respx_mock: respx.MockRouter,
    make_client: Callable[..., ShopifyClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(transport_module, "tracer", provider.get_tracer("test"))
    calls: list[tuple[str, str, float]] = []
    respx_mock.post(url()).mock(side_effect=[httpx.Response(503), ok({"x": 1}, requested=12, actual=7)])

    def broken_hook(shop: str, outcome: str, seconds: float) -> None:
        calls.append((shop, outcome, seconds))
        raise RuntimeError("metrics backend down")  # must not break the call

    client = make_client(on_call=broken_hook)
    assert await client.graphql(SHOP, "{x}", estimated_cost=12) == {"x": 1}

    assert [(shop, outcome) for shop, outcome, _ in calls] == [(SHOP, "http_5xx"), (SHOP, "ok")]
    assert all(seconds >= 0 for _, _, seconds in calls)
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["shopify.graphql", "shopify.graphql"]
    last = spans[1].attributes or {}
    assert last["shopify.shop"] == SHOP
    assert last["shopify.attempt"] == 2
    assert last["shopify.cost.requested"] == 12
    assert last["shopify.cost.actual"] == 7
    assert last["http.status_code"] == 200
    assert "shopify.throttle.wait_s" in last
    assert (spans[0].attributes or {})["http.status_code"] == 503


# --------------------------------------------------------------------------- pure helpers


def test_throttle_model_refills_and_caps() -> None:
    now = [0.0]
    throttle = ShopThrottle(lambda: now[0])
    assert throttle.delay_for(10_000) == 0  # unknown bucket: do not guess
    throttle.reserve(10)
    throttle.settle(10, ThrottleStatus(maximum_available=1000, currently_available=0, restore_rate=100))
    assert throttle.delay_for(300) == pytest.approx(3.0)
    now[0] = 2.0
    assert throttle.available() == pytest.approx(200)
    assert throttle.delay_for(300) == pytest.approx(1.0)
    now[0] = 60.0
    assert throttle.available() == pytest.approx(1000)  # capped at the maximum
    assert throttle.delay_for(5000) == 0  # larger than the bucket: wait for full, then let Shopify answer
    throttle.block_for(1.5)
    assert throttle.delay_for(1) == pytest.approx(1.5)


def test_is_gid() -> None:
    assert is_gid("gid://shopify/Metaobject/123", "Metaobject")
    assert not is_gid("gid://shopify/Metaobject/abc", "Metaobject")
    assert not is_gid("gid://shopify/Product/123", "Metaobject")
    assert not is_gid("gid://shopify/Metaobject/123 ", "Metaobject")
    assert not is_gid("gid://shopify/Metaobject/123\n", "Metaobject")
    assert not is_gid("auto-rule-5", "Metaobject")
