"""Shopify Admin GraphQL simulator: a small Starlette app with in-memory state, served by uvicorn.

Why it exists: the service must be developed, tested and benchmarked against Shopify's Admin API
without the internet. The simulator speaks the subset the service uses (``metaobject``,
``metaobjectByHandle``, ``nodes`` over metaobjects and products, and the metaobject/discount
mutations) over real HTTP, including the behaviour clients must survive: per-shop leaky-bucket
cost throttling, 401/402/404/423, and injected faults (5xx, 429, timeouts, malformed or partial
bodies) either at configurable rates or as a deterministic queue ("fail the next N requests").

Layout: ``state`` holds the data model, buckets and fault settings;
``validation`` checks each request against Shopify's published Admin schema (2025-01,
whatever version the URL names) and answers a refused one as Shopify does;
``executor`` parses and executes queries; this module holds the HTTP layer (GraphQL
endpoint and the ``/_sim/`` control API), ``SimulatorServer`` (uvicorn in a background thread, for
tests and benchmarks), ``SimulatorControl`` (an async client of the control API) and ``main``
(``python -m devtools.shopify_simulator --port 8081``).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import math
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devtools.shopify_simulator.executor import Executor, GraphQLRequestError, GraphQLSyntaxError, parse_operation
from devtools.shopify_simulator.state import (
    METAOBJECT_GID,
    InjectedFault,
    ResolvedFaults,
    ShopState,
    SimulatorInputError,
    SimulatorState,
    UnknownShopError,
)
from devtools.shopify_simulator.validation import check_request

GRAPHQL_PATH = "/{shop}/admin/api/{version}/graphql.json"
THROTTLE_DOCS = "https://shopify.dev/api/usage/rate-limits"
INVALID_TOKEN_MESSAGE = "[API] Invalid API key or access token (unrecognized login or wrong password)"
INTERNAL_ERROR_MESSAGE = "Internal error. Looks like something went wrong on our end."

JsonBody = dict[str, Any]


def _json(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, headers=headers, media_type="application/json")


def _cost(requested: int, actual: int | None, shop: ShopState) -> JsonBody:
    return {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": shop.bucket.throttle_status(),
    }


def _throttled_body(cost: JsonBody) -> JsonBody:
    return {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": THROTTLE_DOCS}}],
        "extensions": {"cost": cost},
    }


def _as_gid(raw: str) -> str:
    """Control-API convenience: a bare number means a metaobject id."""
    return f"{METAOBJECT_GID}{raw}" if raw.isdigit() else raw


class _Answer:
    """An HTTP answer before serialisation, so a ``malformed`` fault can still tamper with it."""

    __slots__ = ("headers", "payload", "status")

    def __init__(self, status: int, payload: JsonBody, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.payload = payload
        self.headers = headers or {}


class SimulatorApp:
    """Request handlers bound to one ``SimulatorState``.

    ``stopping`` is set by ``SimulatorServer.stop`` so that requests stalled by a ``timeout`` fault
    end at once instead of holding uvicorn's graceful shutdown for ``timeoutSleepS`` seconds.
    """

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.stopping = False

    # -- GraphQL -------------------------------------------------------------------------------

    async def graphql(self, request: Request) -> Response:
        state = self.state
        shop_name: str = request.path_params["shop"]
        body = await request.body()
        with state.lock:
            state.stats.requests[shop_name] += 1
            resolved = state.resolve_faults(shop_name)
        if resolved.latency_ms > 0:
            await asyncio.sleep(resolved.latency_ms / 1000.0)
        fault = state.choose_fault(shop_name, resolved)
        if fault is not None:
            with state.lock:
                state.stats.faults_injected[fault.kind] += 1
            if fault.kind == "5xx":
                return self._finish(self._server_error(fault))
            if fault.kind == "throttle":
                return self._finish(
                    _json(
                        {
                            "errors": [
                                {
                                    "message": "Throttled",
                                    "extensions": {"code": "THROTTLED", "documentation": THROTTLE_DOCS},
                                }
                            ]
                        },
                        429,
                        {"Retry-After": "1"},
                    )
                )
            if fault.kind == "timeout":
                sleep_s = fault.sleep_s if fault.sleep_s is not None else resolved.timeout_sleep_s
                await self._stall(request, sleep_s)
        # A timed-out request still runs afterwards: on Shopify a mutation whose answer was lost
        # may well have been applied, and clients must cope with that.
        with state.lock:
            answer = self._answer(shop_name, request.headers.get("x-shopify-access-token"), body, resolved)
        if fault is not None and fault.kind == "malformed":
            content = self._malform(fault, answer)
        else:
            content = orjson.dumps(answer.payload)
        return self._finish(Response(content, answer.status, answer.headers, media_type="application/json"))

    def _finish(self, response: Response) -> Response:
        with self.state.lock:
            self.state.stats.status_codes[str(response.status_code)] += 1
        return response

    async def _stall(self, request: Request, seconds: float) -> None:
        """Sleep like a hung upstream; give up early once the client has gone or the server stops."""
        deadline = time.monotonic() + seconds
        while not self.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(0.05, remaining))
            if await request.is_disconnected():
                return

    def _server_error(self, fault: InjectedFault) -> Response:
        rng = self.state.rng
        with self.state.lock:
            status = fault.status or rng.choice((502, 503))
            kind = fault.body or rng.choice(("html", "json"))
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Server Error"
        if kind == "html":
            html = (
                f"<!DOCTYPE html><html><head><title>{status} {phrase}</title></head>"
                f"<body><h1>{phrase}</h1><p>There was an issue with the upstream server.</p></body></html>"
            )
            return Response(html, status, media_type="text/html")
        return _json({"errors": phrase}, status)

    def _malform(self, fault: InjectedFault, answer: _Answer) -> bytes:
        """Corrupt an answer: cut the body in half, or null one item and add ``errors`` next to ``data``."""
        with self.state.lock:
            variant = fault.variant or self.state.rng.choice(("truncated", "partial"))
            payload = answer.payload
            data = payload.get("data")
            if variant == "partial" and answer.status == 200 and isinstance(data, dict) and data:
                key = next(iter(data))
                value = data[key]
                path: list[str | int] = [key]
                if isinstance(value, list) and value:
                    candidates = [i for i, v in enumerate(value) if v is not None] or list(range(len(value)))
                    index = self.state.rng.choice(candidates)
                    value = list(value)
                    value[index] = None
                    data = {**data, key: value}
                    path.append(index)
                else:
                    data = {**data, key: None}
                error = {
                    "message": INTERNAL_ERROR_MESSAGE,
                    "path": path,
                    "extensions": {"code": "INTERNAL_SERVER_ERROR"},
                }
                return orjson.dumps({**payload, "data": data, "errors": [error]})
        full = orjson.dumps(payload)
        return full[: max(1, len(full) // 2)]

    def _answer(self, shop_name: str, token: str | None, body: bytes, resolved: ResolvedFaults) -> _Answer:
        """Authenticate, parse, validate, cost and run one GraphQL request (caller holds the lock)."""
        state = self.state
        shop = state.shops.get(shop_name)
        if shop is None or shop.status == "gone":
            return _Answer(404, {"errors": "Not Found"})
        if not token or shop.token is None or not hmac.compare_digest(token.encode(), shop.token.encode()):
            return _Answer(401, {"errors": INVALID_TOKEN_MESSAGE})
        if shop.status == "frozen":
            return _Answer(402, {"errors": "Unavailable Shop"})
        if shop.status == "locked":
            return _Answer(423, {"errors": "Locked"})
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            request = None
        query = request.get("query") if isinstance(request, dict) else None
        variables = (request.get("variables") if isinstance(request, dict) else None) or {}
        operation_name = request.get("operationName") if isinstance(request, dict) else None
        if not isinstance(query, str) or not isinstance(variables, dict):
            return _Answer(400, {"errors": {"query": "Required parameter missing or invalid"}})
        # Shopify refuses a document or variables that do not fit its schema before running or charging.
        refused = check_request(query, variables, operation_name if isinstance(operation_name, str) else None)
        if refused:
            return _Answer(200, {"errors": refused})
        try:
            operation = parse_operation(query)
        except GraphQLSyntaxError as exc:  # a valid document the simulator's reader cannot follow
            return _Answer(200, {"errors": [{"message": str(exc), "extensions": {"code": "SIMULATOR_UNSUPPORTED"}}]})
        executor = Executor(state, shop)
        try:
            fields = executor.prepare(operation, variables)
        except GraphQLRequestError as exc:
            return _Answer(200, exc.body)
        stats = state.stats
        for f in fields:
            stats.by_kind[f.name] += 1
            if f.name == "nodes":
                stats.node_ids[shop_name] += len(f.args["ids"])
        requested = sum(f.requested_cost for f in fields)
        bucket = shop.bucket
        bucket.refill()
        if requested > bucket.maximum_available:
            limit = int(bucket.maximum_available)
            return _Answer(
                200,
                {
                    "errors": [
                        {
                            "message": f"Query cost is {requested}, which exceeds the single query max cost "
                            f"limit ({limit}).",
                            "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": limit},
                        }
                    ],
                    "extensions": {"cost": _cost(requested, None, shop)},
                },
            )
        if requested > bucket.available:
            stats.throttled[shop_name] += 1
            headers: dict[str, str] = {}
            if resolved.throttle_status_code == 429:
                wait = (requested - bucket.available) / bucket.restore_rate
                headers["Retry-After"] = str(max(1, math.ceil(wait)))
            throttled = _throttled_body(_cost(requested, None, shop))
            return _Answer(resolved.throttle_status_code, throttled, headers)
        data, actual = executor.run(fields)
        actual = min(requested, max(actual, 1 if requested else 0))
        bucket.available -= actual
        return _Answer(200, {"data": data, "extensions": {"cost": _cost(requested, actual, shop)}})

    # -- control API ---------------------------------------------------------------------------

    @staticmethod
    async def _payload(request: Request) -> JsonBody:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise SimulatorInputError(f"body is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise SimulatorInputError("body must be a JSON object")
        return payload

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        return _json({"ok": True})

    async def health(self, request: Request) -> Response:
        return _json({"ok": True})

    async def list_shops(self, request: Request) -> Response:
        with self.state.lock:
            return _json({"items": [shop.to_json() for shop in self.state.shops.values()]})

    async def shop(self, request: Request) -> Response:
        name = request.path_params["shop"]
        if request.method == "PUT":
            payload = await self._payload(request)
            with self.state.lock:
                return _json(self.state.upsert_shop(name, payload).to_json())
        if request.method == "DELETE":
            return _json({"deleted": self.state.delete_shop(name)})
        with self.state.lock:
            return _json(self.state.require_shop(name).to_json())

    async def revoke_token(self, request: Request) -> Response:
        self.state.revoke_token(request.path_params["shop"])
        return _json({"ok": True})

    async def metaobjects(self, request: Request) -> Response:
        name = request.path_params["shop"]
        if request.method == "POST":
            items = (await self._payload(request)).get("items")
            if not isinstance(items, list):
                raise SimulatorInputError("items must be a list")
            created = self.state.add_metaobjects(name, items)
            return _json({"items": [mo.to_json() for mo in created]}, 201)
        type_filter = request.query_params.get("type")
        with self.state.lock:
            shop = self.state.require_shop(name)
            items = [mo.to_json() for mo in shop.metaobjects.values() if type_filter in (None, mo.type)]
        return _json({"items": items})

    async def metaobject(self, request: Request) -> Response:
        gid = _as_gid(request.path_params["gid"])
        with self.state.lock:
            shop = self.state.require_shop(request.path_params["shop"])
            if request.method == "DELETE":
                removed = self.state.remove_metaobject(shop, gid)
                return _json({"deletedId": gid if removed else None}, 200 if removed else 404)
            mo = shop.metaobjects.get(gid)
            return _json(mo.to_json(), 200) if mo else _json({"error": f"no metaobject {gid}"}, 404)

    async def products(self, request: Request) -> Response:
        name = request.path_params["shop"]
        if request.method == "POST":
            items = (await self._payload(request)).get("items")
            if not isinstance(items, list):
                raise SimulatorInputError("items must be a list")
            return _json({"items": [p.to_json() for p in self.state.add_products(name, items)]}, 201)
        with self.state.lock:
            shop = self.state.require_shop(name)
            return _json({"items": [p.to_json() for p in shop.products.values()]})

    async def discounts(self, request: Request) -> Response:
        with self.state.lock:
            shop = self.state.require_shop(request.path_params["shop"])
            return _json({"items": [d.to_json() for d in shop.discounts.values()]})

    async def faults(self, request: Request) -> Response:
        if request.method == "PUT":
            return _json(self.state.set_faults(await self._payload(request)))
        if request.method == "DELETE":
            self.state.clear_faults()
        return _json(self.state.faults_json())

    async def stats(self, request: Request) -> Response:
        with self.state.lock:
            return _json(self.state.stats.to_json())

    async def reset_stats(self, request: Request) -> Response:
        self.state.reset_stats()
        return _json({"ok": True})


async def _bad_input(request: Request, exc: Exception) -> Response:
    return _json({"error": str(exc)}, 400)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _json({"error": str(exc)}, 404)


def create_simulator_app(state: SimulatorState | None = None) -> Starlette:
    """Build the simulator ASGI app around ``state`` (a fresh one if None).

    The handlers object is reachable as ``app.state.simulator`` and the state as
    ``app.state.simulator.state``.
    """
    handlers = SimulatorApp(state if state is not None else SimulatorState())
    shop = "/_sim/shops/{shop}"
    routes = [
        Route("/_sim/health", handlers.health, methods=["GET"]),
        Route("/_sim/reset", handlers.reset, methods=["POST"]),
        Route("/_sim/shops", handlers.list_shops, methods=["GET"]),
        Route(shop, handlers.shop, methods=["GET", "PUT", "DELETE"]),
        Route(f"{shop}/token", handlers.revoke_token, methods=["DELETE"]),
        Route(f"{shop}/metaobjects", handlers.metaobjects, methods=["GET", "POST"]),
        Route(shop + "/metaobjects/{gid:path}", handlers.metaobject, methods=["GET", "DELETE"]),
        Route(f"{shop}/products", handlers.products, methods=["GET", "POST"]),
        Route(f"{shop}/discounts", handlers.discounts, methods=["GET"]),
        Route("/_sim/faults", handlers.faults, methods=["GET", "PUT", "DELETE"]),
        Route("/_sim/stats", handlers.stats, methods=["GET"]),
        Route("/_sim/stats/reset", handlers.reset_stats, methods=["POST"]),
        Route(GRAPHQL_PATH, handlers.graphql, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={SimulatorInputError: _bad_input, UnknownShopError: _not_found},
    )
    app.state.simulator = handlers
    return app


class SimulatorServer:
    """The simulator served by uvicorn on a background thread with its own event loop.

    The listening socket is bound here (port 0 = any free port) and handed to uvicorn, so the port
    is known before the thread starts and no other process can grab it in between. ``start``
    returns once uvicorn has started and a TCP connect succeeds.
    """

    def __init__(
        self,
        state: SimulatorState | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.state = state if state is not None else SimulatorState()
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.app = create_simulator_app(self.state)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url_template(self) -> str:
        """Admin GraphQL URL template with ``{shop}`` and ``{version}`` placeholders."""
        return self.base_url + GRAPHQL_PATH

    def graphql_url(self, shop: str, version: str = "2026-01") -> str:
        return self.url_template.format(shop=shop, version=version)

    def control(self) -> SimulatorControl:
        return SimulatorControl(self.base_url)

    def start(self) -> SimulatorServer:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            log_config=None,
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
            backlog=2048,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"shopify-simulator-{self.port}", daemon=True
        )
        self._server, self._thread = server, thread
        self.app.state.simulator.stopping = False
        thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Shopify simulator failed to start")
            time.sleep(0.005)
        with socket.create_connection((self.host, self.port), timeout=self.startup_timeout_s):
            pass
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.app.state.simulator.stopping = True
        server.should_exit = True
        thread.join(timeout=10)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class SimulatorControl:
    """Async client of the ``/_sim/`` control API (tests, the demo seeder and benchmarks).

    Every method raises ``httpx.HTTPStatusError`` on an unexpected status, so seeding mistakes
    surface at once instead of as puzzling GraphQL answers later.
    """

    def __init__(self, base_url: str, client: httpx.AsyncClient | None = None, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s)

    @property
    def url_template(self) -> str:
        """Admin GraphQL URL template with ``{shop}`` and ``{version}`` placeholders."""
        return self.base_url + GRAPHQL_PATH

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> SimulatorControl:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, json: Any = None, ok: Sequence[int] = (200, 201)) -> Any:
        content = orjson.dumps(json) if json is not None else None
        headers = {"content-type": "application/json"} if content is not None else None
        response = await self._client.request(method, self.base_url + path, content=content, headers=headers)
        if response.status_code not in ok:
            response.raise_for_status()
            raise httpx.HTTPStatusError(
                f"unexpected status {response.status_code}", request=response.request, response=response
            )
        return orjson.loads(response.content) if response.content else None

    @staticmethod
    def _shop(shop: str) -> str:
        return "/_sim/shops/" + quote(shop, safe="")

    async def reset(self) -> None:
        await self._call("POST", "/_sim/reset")

    async def put_shop(
        self,
        shop: str,
        token: str | None = None,
        *,
        plan: str | None = None,
        restore_rate: float | None = None,
        maximum_available: float | None = None,
        currently_available: float | None = None,
        status: str | None = None,
    ) -> JsonBody:
        """Create or update a shop; arguments left as None are not sent (use ``revoke_token``)."""
        payload: JsonBody = {}
        for key, value in (
            ("token", token),
            ("plan", plan),
            ("restoreRate", restore_rate),
            ("maximumAvailable", maximum_available),
            ("currentlyAvailable", currently_available),
            ("status", status),
        ):
            if value is not None:
                payload[key] = value
        result: JsonBody = await self._call("PUT", self._shop(shop), payload)
        return result

    async def get_shop(self, shop: str) -> JsonBody:
        result: JsonBody = await self._call("GET", self._shop(shop))
        return result

    async def revoke_token(self, shop: str) -> None:
        await self._call("DELETE", self._shop(shop) + "/token")

    async def delete_shop(self, shop: str) -> None:
        await self._call("DELETE", self._shop(shop))

    async def add_metaobjects(self, shop: str, items: Sequence[Mapping[str, Any]]) -> list[JsonBody]:
        result = await self._call("POST", self._shop(shop) + "/metaobjects", {"items": list(items)})
        return list(result["items"])

    async def add_products(self, shop: str, items: Sequence[Mapping[str, Any]]) -> list[JsonBody]:
        result = await self._call("POST", self._shop(shop) + "/products", {"items": list(items)})
        return list(result["items"])

    async def list_metaobjects(self, shop: str, type_: str | None = None) -> list[JsonBody]:
        path = self._shop(shop) + "/metaobjects" + (f"?type={quote(type_, safe='')}" if type_ else "")
        return list((await self._call("GET", path))["items"])

    async def get_metaobject(self, shop: str, gid: str) -> JsonBody | None:
        path = f"{self._shop(shop)}/metaobjects/{quote(gid, safe='')}"
        result = await self._call("GET", path, ok=(200, 404))
        return result if isinstance(result, dict) and "id" in result else None

    async def delete_metaobject(self, shop: str, gid: str) -> bool:
        path = f"{self._shop(shop)}/metaobjects/{quote(gid, safe='')}"
        result = await self._call("DELETE", path, ok=(200, 404))
        return bool(result and result.get("deletedId"))

    async def list_products(self, shop: str) -> list[JsonBody]:
        return list((await self._call("GET", self._shop(shop) + "/products"))["items"])

    async def list_discounts(self, shop: str) -> list[JsonBody]:
        return list((await self._call("GET", self._shop(shop) + "/discounts"))["items"])

    async def set_faults(
        self,
        shop: str | None = None,
        *,
        error5xx: float | None = None,
        throttle429: float | None = None,
        timeout_rate: float | None = None,
        malformed: float | None = None,
        latency_ms: float | None = None,
        timeout_sleep_s: float | None = None,
        throttle_status_code: int | None = None,
        seed: int | None = None,
        next_faults: Sequence[Mapping[str, Any] | str] | None = None,
        clear_next: bool = False,
    ) -> JsonBody:
        """Merge fault settings (global, or for ``shop``); arguments left as None are unchanged.

        ``next_faults`` queues deterministic faults, e.g. ``[{"kind": "5xx"}, {"kind": "throttle"}]``.
        """
        payload: JsonBody = {"shop": shop} if shop is not None else {}
        for key, value in (
            ("error5xx", error5xx),
            ("throttle429", throttle429),
            ("timeout", timeout_rate),
            ("malformed", malformed),
            ("latencyMs", latency_ms),
            ("timeoutSleepS", timeout_sleep_s),
            ("throttleStatusCode", throttle_status_code),
            ("seed", seed),
            ("next", list(next_faults) if next_faults is not None else None),
        ):
            if value is not None:
                payload[key] = value
        if clear_next:
            payload["clearNext"] = True
        result: JsonBody = await self._call("PUT", "/_sim/faults", payload)
        return result

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/_sim/faults")

    async def stats(self) -> JsonBody:
        result: JsonBody = await self._call("GET", "/_sim/stats")
        return result

    async def reset_stats(self) -> None:
        await self._call("POST", "/_sim/stats/reset")


def main(argv: list[str] | None = None) -> None:
    """Run the simulator in the foreground: ``python -m devtools.shopify_simulator --port 8081``.

    ``--shop NAME=TOKEN`` (repeatable) registers shops up front, handy for ``make run``.
    """
    parser = argparse.ArgumentParser(prog="shopify-simulator", description="Shopify Admin GraphQL simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault RNG")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency added to GraphQL requests")
    parser.add_argument("--plan", default="standard", help="plan of shops registered with --shop")
    parser.add_argument("--shop", action="append", default=[], metavar="NAME=TOKEN")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    state = SimulatorState(seed=args.seed)
    if args.latency_ms:
        state.set_faults({"latencyMs": args.latency_ms})
    for spec in args.shop:
        name, sep, token = spec.partition("=")
        if not sep or not name or not token:
            parser.error(f"--shop expects NAME=TOKEN, got {spec!r}")
        state.upsert_shop(name, {"token": token, "plan": args.plan})
    config = uvicorn.Config(
        create_simulator_app(state), host=args.host, port=args.port, log_level=args.log_level, lifespan="off"
    )
    uvicorn.Server(config).run()


__all__ = [
    "GRAPHQL_PATH",
    "SimulatorApp",
    "SimulatorControl",
    "SimulatorServer",
    "SimulatorState",
    "create_simulator_app",
    "main",
]


if __name__ == "__main__":
    main()
