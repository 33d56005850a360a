"""Structured logs: the JSON line's fields, the context it picks up, and that secrets never show."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from app.core.config import Settings
from app.core.logging import (
    REDACTED,
    JsonFormatter,
    TextFormatter,
    bind_shop,
    configure_logging,
    redact,
    shop_var,
)
from app.core.middleware import RequestContextMiddleware, request_id_var, shop_from_scope

SHOP = "alpha-gear.myshopify.com"


def _record(message: str, *args: Any, level: int = logging.INFO, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("app.test", level, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def _json(record: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(record)
    assert "\n" not in line, "one JSON object per line"
    parsed: dict[str, Any] = json.loads(line)
    return parsed


@pytest.fixture
def context() -> Iterator[None]:
    rid = request_id_var.set("rid-123")
    shop = shop_var.set(SHOP)
    try:
        yield
    finally:
        request_id_var.reset(rid)
        shop_var.reset(shop)


def test_json_line_has_the_standard_fields(context: None) -> None:
    line = _json(_record("hello %s", "world"))
    assert line["message"] == "hello world"
    assert line["level"] == "INFO"
    assert line["logger"] == "app.test"
    assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]
    assert line["request_id"] == "rid-123"
    assert line["shop"] == SHOP
    assert "trace_id" not in line  # no span: no ids rather than zeros


def test_json_line_carries_the_current_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        line = _json(_record("inside"))
        context = span.get_span_context()
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


def test_extra_fields_are_kept_and_a_record_shop_wins() -> None:
    line = _json(_record("call", shop="other.myshopify.com", attempt=2, outcome="ok"))
    assert line["shop"] == "other.myshopify.com"
    assert line["attempt"] == 2 and line["outcome"] == "ok"


def test_exceptions_are_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("app.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = _json(record)
    assert "ValueError: boom" in line["exception"]


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("calling with Authorization: Bearer abcdefghijklmnop1234", "abcdefghijklmnop1234"),
        ("token shpat_0123456789abcdef leaked", "shpat_0123456789abcdef"),
        ("header X-Shopify-Access-Token: shpca_zzzzzzzzzz", "shpca_zzzzzzzzzz"),
        ('body {"accessToken": "tok-9876543210"}', "tok-9876543210"),
        ("connecting to postgresql://app:s3cr3t-pw@db:5432/shop", "s3cr3t-pw"),
        ("client_secret=abc123def456 sent", "abc123def456"),
    ],
)
def test_secrets_in_messages_are_redacted(message: str, secret: str) -> None:
    line = _json(_record(message))
    assert secret not in json.dumps(line)
    assert REDACTED in line["message"]
    text = TextFormatter().format(_record(message))
    assert secret not in text


def test_secret_keys_are_redacted_in_extras() -> None:
    line = _json(
        _record(
            "request",
            headers={"Authorization": "Bearer abc.def.ghi", "Accept": "application/json", "Cookie": "sb=1"},
            access_token="shpat_x",
            api_secret="s",
            password="p",
        )
    )
    assert line["headers"] == {"Authorization": REDACTED, "Accept": "application/json", "Cookie": REDACTED}
    assert line["access_token"] == REDACTED and line["api_secret"] == REDACTED and line["password"] == REDACTED


def test_redact_keeps_ordinary_values() -> None:
    assert redact({"shop": SHOP, "count": 3, "items": ["a", "b"]}) == {"shop": SHOP, "count": 3, "items": ["a", "b"]}
    assert redact("a perfectly normal sentence") == "a perfectly normal sentence"


def test_text_format_is_readable(context: None) -> None:
    text = TextFormatter().format(_record("job %s started", "j1", attempt=1))
    assert "INFO" in text and "app.test" in text and "job j1 started" in text
    assert "rid=rid-123" in text and f"shop={SHOP}" in text and "attempt=1" in text


def test_configure_logging_is_idempotent_and_keeps_foreign_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buffer)
    try:
        for _ in range(3):
            configure_logging(Settings(LOG_FORMAT="json", LOG_LEVEL="INFO"))
        ours = [h for h in root.handlers if type(h).__name__ == "_OurHandler"]
        assert len(ours) == 1, "one handler however often it is configured"
        assert foreign in root.handlers
        logging.getLogger("app.probe").info("written", extra={"k": "v"})
        lines = [json.loads(x) for x in buffer.getvalue().splitlines() if x.strip()]
        assert any(line["message"] == "written" and line["k"] == "v" for line in lines)
        # uvicorn's records flow through the same handler (its own handlers are removed).
        assert logging.getLogger("uvicorn.error").propagate
    finally:
        root.removeHandler(foreign)
        configure_logging(Settings(LOG_FORMAT="text", LOG_LEVEL="INFO"))


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        (f"/api/v2/shops/{SHOP}/bundles", b"", SHOP),
        ("/admin/migrations/validation", f"shop={SHOP}".encode(), SHOP),
        ("/proxy/bundles-for-product", f"shop={SHOP}&signature=x".encode(), SHOP),
        ("/api/v2/shops/<script>/bundles", b"", None),
        ("/proxy/bundles-for-product", b"shop=evil%0Ainjected", None),
        ("/healthz", b"", None),
    ],
)
def test_shop_from_scope(path: str, query: bytes, expected: str | None) -> None:
    assert shop_from_scope({"type": "http", "path": path, "query_string": query}) == expected


async def test_shop_context_middleware_sets_and_resets() -> None:
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(shop_var.get())

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        return None

    middleware = RequestContextMiddleware(app)
    await middleware({"type": "http", "path": f"/api/v2/shops/{SHOP}/bundles", "query_string": b""}, receive, send)
    assert seen == [SHOP]
    assert shop_var.get() is None


def test_bind_shop_for_background_work() -> None:
    with bind_shop(SHOP):
        assert _json(_record("item migrated"))["shop"] == SHOP
    assert shop_var.get() is None
