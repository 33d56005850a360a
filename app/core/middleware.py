"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot storefront path)."""

from __future__ import annotations

import contextvars
import re
import uuid
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PayloadTooLarge, problem_response
from app.core.security import is_valid_shop

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
shop_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("shop", default=None)

_SHOP_IN_PATH_RE = re.compile(r"/shops/([^/]+)")


def shop_from_scope(scope: Scope) -> str | None:
    """The shop a request names in its path (`/shops/{shop}/`) or query (`shop=`), if well-formed.

    For log lines only (identification, not authorisation: auth dependencies decide the real shop).
    """
    match = _SHOP_IN_PATH_RE.search(scope.get("path", ""))
    if match and is_valid_shop(match.group(1)):
        return match.group(1)
    query = scope.get("query_string", b"")
    if b"shop=" in query:
        for key, value in parse_qsl(query.decode("latin-1")):
            if key == "shop" and is_valid_shop(value):
                return value
    return None


class RequestContextMiddleware:
    """Per-request context for logs and clients: the request id and the shop it names.

    Every response carries `X-Request-ID`, echoing the client's when it sent a sane one. One layer
    sets both context variables, since every request on the hot storefront path pays for each layer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if incoming and len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
        token = request_id_var.set(rid)
        shop_token = shop_var.set(shop_from_scope(scope))
        raw = rid.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", raw)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            shop_var.reset(shop_token)
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """413 for bodies over the limit, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    response = problem_response(
                        413,
                        "Payload too large",
                        f"The body exceeds {self.max_bytes} bytes.",
                        type_slug="payload-too-large",
                    )
                    await response(scope, receive, send)
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(f"The body exceeds {self.max_bytes} bytes.")
            return message

        await self.app(scope, limited_receive, send)
