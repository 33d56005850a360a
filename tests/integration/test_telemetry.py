"""Tracing end to end: one request → server, database and Shopify spans in one trace.

The spans are caught by the in-memory exporter (`telemetry.install_in_memory_exporter`), which
sees everything the process traces; each test picks its own trace out by trace id.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi import Request
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from sqlalchemy import text

from app.core import telemetry
from app.core.security import sign_app_proxy_params
from tests.conftest import API_SECRET

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Any:
    exporter = telemetry.install_in_memory_exporter()
    exporter.clear()
    return exporter


def _trace_of(spans: Sequence[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def _server_span(spans: Sequence[ReadableSpan], route_fragment: str) -> ReadableSpan:
    servers = [s for s in spans if s.kind == SpanKind.SERVER and route_fragment in s.name]
    assert servers, f"no server span for {route_fragment}: {[s.name for s in spans]}"
    return servers[-1]


async def _wait_for(exporter: Any, predicate: Any, within_s: float = 5.0) -> list[ReadableSpan]:
    """Server spans end after the response is sent: give the ASGI task a moment to finish."""
    deadline = time.monotonic() + within_s
    while True:
        found = list(exporter.get_finished_spans())
        if predicate(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.02)


def _is_descendant(span: ReadableSpan, ancestor: ReadableSpan, by_id: dict[int, ReadableSpan]) -> bool:
    current: ReadableSpan | None = span
    while current is not None and current.parent is not None:
        if ancestor.context is not None and current.parent.span_id == ancestor.context.span_id:
            return True
        current = by_id.get(current.parent.span_id)
    return False


async def _seed_shop(db: Any, sim: Any, shop: str, token: str) -> str:
    """A shop with an offline token (legacy `session` row), one bundle metaobject and its legacy row."""
    await sim.put_shop(shop, token=token)
    await db.execute(
        'INSERT INTO "session" (id, content, shop) VALUES ($1, $2, $3)',
        f"offline_{shop}",
        json.dumps({"accessToken": token, "shop": shop}),
        shop,
    )
    product = f"gid://shopify/Product/{abs(hash(shop)) % 10_000_000 + 1}"
    await sim.add_products(shop, [{"id": product, "title": "Tent", "price": "100.00"}])
    metaobject = f"gid://shopify/Metaobject/{abs(hash(shop)) % 10_000_000 + 1}"
    await sim.add_metaobjects(
        shop,
        [
            {
                "id": metaobject,
                "handle": "traced-bundle",
                "type": "product-bundles",
                "fields": {
                    "bundle_name": "Traced",
                    "bundle_title": "Traced bundle",
                    "discount": "10",
                    "products": json.dumps([product]),
                },
            }
        ],
    )
    await db.execute(
        "INSERT INTO bundle_discount_id VALUES ($1, $2, $3, $4)",
        metaobject,
        "Traced",
        "gid://shopify/DiscountAutomaticNode/1",
        shop,
    )
    return product


def _assert_one_trace(found: Sequence[ReadableSpan], server: ReadableSpan) -> list[ReadableSpan]:
    assert server.context is not None
    trace = _trace_of(found, server.context.trace_id)
    by_id = {s.context.span_id: s for s in trace if s.context is not None}
    names = sorted(s.name for s in trace)
    db_spans = [
        s
        for s in trace
        if s.kind == SpanKind.CLIENT
        and s.attributes
        and s.attributes.get("db.system", s.attributes.get("db.system.name"))
    ]
    shopify_spans = [s for s in trace if s.name == "shopify.graphql"]
    http_client_spans = [
        s for s in trace if s.kind == SpanKind.CLIENT and s.attributes and not s.attributes.get("db.system")
        and s.name != "shopify.graphql" and s.name.startswith("POST")
    ]
    assert db_spans, f"no database span in the trace: {names}"
    assert shopify_spans, f"no Shopify span in the trace: {names}"
    assert http_client_spans, f"no httpx client span in the trace: {names}"
    for span in [*db_spans, *shopify_spans, *http_client_spans]:
        assert _is_descendant(span, server, by_id), f"{span.name} is not under the server span"
    shopify = shopify_spans[0]
    assert shopify.attributes is not None
    for attribute in ("shopify.shop", "shopify.cost.requested", "shopify.throttle.wait_s"):
        assert attribute in shopify.attributes, f"{attribute} missing on the Shopify span"
    # The httpx span sits below the Shopify span: the outgoing request is attributed to the call.
    assert any(_is_descendant(h, shopify, by_id) for h in http_client_spans)
    return trace


async def test_storefront_read_traces_server_db_and_shopify(
    app_factory: Any, db: Any, sim: Any, shop: str, spans: Any
) -> None:
    """A real endpoint: the legacy storefront read (database rows, then Shopify metaobjects)."""
    product = await _seed_shop(db, sim, shop, "shpat_traced")
    async with app_factory() as client:
        params = {"shop": shop, "timestamp": str(int(time.time())), "product_id": product}
        params["signature"] = sign_app_proxy_params(params, API_SECRET)
        response = await client.get(
            "/proxy/bundles-for-product",
            params=params,
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"},
        )
        assert response.status_code == 200, response.text
        found = await _wait_for(
            spans,
            lambda s: any(x.kind == SpanKind.SERVER and "bundles-for-product" in x.name for x in s),
        )
    server = _server_span(found, "/proxy/bundles-for-product")
    assert server.context is not None
    # W3C traceparent honoured: the server span continues the caller's trace.
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_SPAN_ID
    _assert_one_trace(found, server)


async def test_route_calling_shopify_is_one_trace(app_factory: Any, db: Any, sim: Any, shop: str, spans: Any) -> None:
    """Independent of any feature module: a route that reads the database and calls Shopify."""
    await _seed_shop(db, sim, shop, "shpat_traced2")
    async with app_factory() as client:
        app = client.app

        async def probe(request: Request) -> dict[str, Any]:
            container = request.app.state.container
            gid = await container.pool.fetchval('SELECT "bundleId" FROM bundle_discount_id WHERE shop = $1', shop)
            async with container.sessionmaker() as session:
                await session.execute(text("SELECT 1"))
            metaobject = await container.shopify.fetch_metaobject(shop, gid)
            return {"found": metaobject is not None}

        # Routes added after start-up still run inside the instrumented middleware stack.
        app.add_api_route("/_test/trace-probe", probe, methods=["GET"])
        response = await client.get("/_test/trace-probe")
        assert response.status_code == 200, response.text
        assert response.json() == {"found": True}
        found = await _wait_for(spans, lambda s: any(x.kind == SpanKind.SERVER and "trace-probe" in x.name for x in s))
    server = _server_span(found, "/_test/trace-probe")
    trace = _assert_one_trace(found, server)
    # Both database layers show: the ORM (SQLAlchemy) and the raw asyncpg pool.
    systems = {s.instrumentation_scope.name for s in trace if s.instrumentation_scope is not None}
    assert "opentelemetry.instrumentation.sqlalchemy" in systems, systems
    assert "opentelemetry.instrumentation.asyncpg" in systems, systems


async def test_log_lines_carry_request_and_trace_ids(app_factory: Any, spans: Any, shop: str) -> None:
    """The access log line of a request names its request id, its trace and span, and the shop."""
    from app.core.logging import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())  # formats at emit time, inside the request's context
    access = logging.getLogger("app.access")
    access.addHandler(handler)
    previous_level = access.level
    access.setLevel(logging.INFO)
    try:
        async with app_factory() as client:
            response = await client.get(
                "/admin/flags/DUAL_WRITE/evaluate",
                params={"shop": shop},
                headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01", "X-Request-ID": "req-telemetry-1"},
            )
    finally:
        access.removeHandler(handler)
        access.setLevel(previous_level)
    assert response.status_code == 200, response.text
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    line = next(entry for entry in lines if entry.get("http_route") == "/admin/flags/{name}/evaluate")
    assert line["request_id"] == "req-telemetry-1"
    assert line["trace_id"] == TRACE_ID
    assert len(line["span_id"]) == 16 and line["span_id"] != PARENT_SPAN_ID
    assert line["shop"] == shop
    assert line["level"] == "INFO" and line["logger"] == "app.access"
    assert line["http_status"] == 200
    assert "test-admin-token" not in stream.getvalue()


async def test_no_exporter_by_default() -> None:
    """Unless OTEL_TRACES_EXPORTER asks, nothing is exported (only in-process processors exist)."""
    provider = telemetry.tracer_provider()
    assert provider is not None
    processors = provider._active_span_processor._span_processors
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    assert not any(isinstance(p, BatchSpanProcessor) for p in processors)


def test_exporters_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    exporters = telemetry._exporters_from_env()
    assert [type(e) for e in exporters] == [OTLPSpanExporter, ConsoleSpanExporter]
    for exporter in exporters:
        exporter.shutdown()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert telemetry._exporters_from_env() == []
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    assert telemetry._exporters_from_env() == []


async def test_background_queries_start_no_traces(client: Any, spans: Any) -> None:
    """The flag refresh (every 0.5 s) and any query outside a request leave no one-span traces."""
    await client.app.state.container.pool.fetchval("SELECT 42")
    await asyncio.sleep(1.2)  # two flag refresh ticks
    orphans = [
        s
        for s in spans.get_finished_spans()
        if s.parent is None and s.instrumentation_scope is not None and "asyncpg" in s.instrumentation_scope.name
    ]
    assert orphans == []


def test_orphan_database_spans_are_dropped() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision

    sampler = telemetry.DropOrphanDatabaseSpans(ALWAYS_ON)
    dropped = sampler.should_sample(None, 1, "SELECT", SpanKind.CLIENT, {"db.system": "postgresql"})
    assert dropped.decision == Decision.DROP
    kept = sampler.should_sample(None, 1, "GET /x", SpanKind.SERVER, {"http.method": "GET"})
    assert kept.decision == Decision.RECORD_AND_SAMPLE


async def test_each_migration_batch_is_a_span(app_factory: Any, db: Any, sim: Any, shop: str, spans: Any) -> None:
    """Contract for the job worker: one `migration.batch` span per batch, naming the job, the item
    kind and the shop, with the batch's database and Shopify work below it."""
    await _seed_shop(db, sim, shop, "shpat_batch")
    async with app_factory() as client:
        created = await client.post("/admin/migrations/jobs", json={"kind": "bundles", "shops": [shop]})
        assert created.status_code == 202, created.text
        url = created.json()["statusUrl"]
        deadline = time.monotonic() + 30
        while (await client.get(url)).json()["status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, "job did not finish"
            await asyncio.sleep(0.1)
        job_id = created.json()["id"]

        def batch_spans(found: Sequence[ReadableSpan]) -> list[ReadableSpan]:
            return [
                s for s in found if s.name == "migration.batch" and (s.attributes or {}).get("shopify.shop") == shop
            ]

        found = await _wait_for(spans, batch_spans)
    batches = batch_spans(found)
    assert batches, "the job worker creates no `migration.batch` span (see app/core/telemetry.py docstring)"
    batch = batches[0]
    assert batch.attributes is not None
    assert batch.attributes.get("migration.job_id") == job_id
    assert batch.attributes.get("migration.item_kind") == "bundle"
    assert batch.context is not None
    trace = _trace_of(found, batch.context.trace_id)
    by_id = {s.context.span_id: s for s in trace if s.context is not None}
    assert any(s.name == "shopify.graphql" and _is_descendant(s, batch, by_id) for s in trace)
