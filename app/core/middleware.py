"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot storefront path)."""

from __future__ import annotations

import contextvars
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.auth import ADMIN_PREFIX, authenticate, query_items, requires_credentials
from app.core.errors import (
    DomainError,
    NotReady,
    PayloadTooLarge,
    TooManyRequests,
    ValidationFailed,
    domain_error_response,
    problem_response,
)
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
    if b"shop=" in scope.get("query_string", b""):
        for key, value in query_items(scope):
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


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NUL_MESSAGE = "must not contain the NUL character (U+0000)"


def _nul_field(value: Any, path: str) -> str | None:
    """The dotted path of the first string (key or value) in a parsed JSON document holding NUL."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}"
            if "\x00" in key:
                return child
            found = _nul_field(item, child)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_field(item, f"{path}.{index}")
            if found:
                return found
    return None


def nul_in_query(query_string: bytes) -> str | None:
    """`query.<name>` of the first query parameter (name or value) holding NUL, else None."""
    if b"%00" not in query_string and b"\x00" not in query_string:
        return None
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if "\x00" in key or "\x00" in value:
            return f"query.{key.replace(chr(0), '?')}"
    return None


def nul_in_body(body: bytes, content_type: str) -> str | None:
    """`body.<path>` of the first text in a JSON or form body that holds NUL, else None.

    The byte scan keeps the common case (no escape, no NUL byte) free of a second parse; a body
    that is not valid JSON is left to the route, which answers it as malformed.
    """
    if b"\\u0000" not in body and b"\x00" not in body and b"%00" not in body:
        return None
    if "x-www-form-urlencoded" in content_type:
        found = nul_in_query(body)
        return found.replace("query.", "body.", 1) if found else None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return _nul_field(parsed, "body")


class RequestGuardMiddleware:
    """Authenticate first, then refuse NUL characters in any text input, before a route runs.

    Order matters: an anonymous request gets 401 whatever its body or query holds, so the body is
    read only after the credentials hold. PostgreSQL cannot store U+0000 in text, so it is refused
    here, once, for the path, the query and the body (JSON or form), instead of field by field.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        query_string: bytes = scope.get("query_string", b"")
        try:
            if requires_credentials(path):
                container = getattr(scope["app"].state, "container", None)
                if container is None:
                    raise NotReady("The service is starting.")
                authorization = None
                for name, value in scope.get("headers", ()):
                    if name == b"authorization":
                        authorization = value.decode("latin-1")
                        break
                identity = authenticate(container.authenticator, scope, authorization, query_items(scope))
                if identity.kind == "admin" and path.startswith(ADMIN_PREFIX):
                    wait = container.admin_rate_limiter.take(identity.actor)
                    if wait is not None:
                        raise TooManyRequests(
                            "Too many requests with this admin token; slow down.", retry_after_s=wait
                        )
            field = "path" if "\x00" in path else nul_in_query(query_string)
            if field:
                raise ValidationFailed(_NUL_MESSAGE, errors=[{"field": field, "message": _NUL_MESSAGE}])
        except DomainError as exc:
            await domain_error_response(exc)(scope, receive, send)
            return
        if scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        await self._guard_body(scope, receive, send)

    async def _guard_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away before the body was complete: nothing to answer.
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = ""
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                content_type = value.decode("latin-1").lower()
                break
        field = nul_in_body(body, content_type)
        if field:
            error = ValidationFailed(_NUL_MESSAGE, errors=[{"field": field, "message": _NUL_MESSAGE}])
            await domain_error_response(error)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
