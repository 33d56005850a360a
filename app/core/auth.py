"""Who is calling: one authentication step per request, taken before anything reads the body.

A request without valid credentials must get 401 whatever its body holds (a malformed body from an
anonymous client is not the client's business to learn about), so authentication cannot wait for
FastAPI's dependencies, which run only after the body is parsed. The request guard middleware calls
`authenticate` first; the route dependencies read the same cached identity and only authorise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

from starlette.types import Scope

from app.core.errors import Unauthorized
from app.core.security import (
    InvalidSessionToken,
    InvalidSignature,
    constant_time_equals,
    verify_app_proxy_signature,
    verify_session_token,
)

#: The storefront's documented prefix, and the legacy App Proxy path (shopify.md) served as its alias.
PROXY_PREFIX = "/proxy"
LEGACY_PROXY_PREFIX = "/api/proxy_route"
#: Path families and the credential each one takes. `/admin/ui` logs in with a cookie of its own.
PROXY_PREFIXES = (PROXY_PREFIX + "/", LEGACY_PROXY_PREFIX + "/")
ADMIN_PREFIX = "/admin/"
_UI_PREFIX = "/admin/ui"
_MERCHANT_PREFIX = "/api/v2/"

IdentityKind = Literal["admin", "session", "proxy"]
_SCOPE_KEY = "sb.identity"
_QUERY_SCOPE_KEY = "sb.query"


def query_items(scope: Scope) -> list[tuple[str, str]]:
    """The request's decoded query parameters in order, repeats and blank values kept, parsed once
    per request and cached in the scope: the log context, the App Proxy signature and the
    storefront handler all read them, on the hottest path of the service.

    Decoded as Starlette's `request.query_params` decodes them (latin-1, then percent-decoding as
    UTF-8), so what is verified is what the handler reads.
    """
    cached: list[tuple[str, str]] | None = scope.get(_QUERY_SCOPE_KEY)
    if cached is None:
        raw: bytes = scope.get("query_string", b"")
        cached = scope[_QUERY_SCOPE_KEY] = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    return cached


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller. `shop` is the shop the credential is bound to (None: any shop)."""

    kind: IdentityKind
    actor: str
    shop: str | None = None


class Authenticator:
    """Verifies the three kinds of credentials of api.md; built once per replica from settings."""

    def __init__(
        self,
        admin_tokens: Mapping[str, str],
        *,
        api_key: str,
        api_secret: str,
        proxy_max_age_s: int,
    ) -> None:
        if not admin_tokens:
            raise ValueError("at least one admin token is required")
        # name -> token; every token is compared on every attempt so timing says nothing of which.
        self._admin_tokens = tuple(admin_tokens.items())
        self._api_key = api_key
        self._api_secret = api_secret
        self._proxy_max_age_s = proxy_max_age_s

    def admin_name(self, token: str) -> str | None:
        """The name of the admin token `token` is, or None; constant time over all tokens."""
        found: str | None = None
        for name, expected in self._admin_tokens:
            if constant_time_equals(token, expected):
                found = name
        return found

    def bearer(self, authorization: str | None, *, admin_only: bool) -> Identity:
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized("Missing bearer token.")
        name = self.admin_name(token)
        if name is not None:
            return Identity("admin", name)
        if admin_only:
            raise Unauthorized("Invalid token.")
        try:
            claims = verify_session_token(token, self._api_key, self._api_secret)
        except InvalidSessionToken as exc:
            raise Unauthorized(f"Invalid session token: {exc.detail}") from exc
        return Identity("session", f"session:{claims.sub or claims.shop}", claims.shop)

    def proxy(self, query_items: Sequence[tuple[str, str]]) -> Identity:
        try:
            shop = verify_app_proxy_signature(query_items, self._api_secret, self._proxy_max_age_s)
        except InvalidSignature as exc:
            raise Unauthorized(f"Invalid app proxy signature: {exc.detail}") from exc
        return Identity("proxy", "storefront", shop)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def requires_credentials(path: str) -> bool:
    """True for every path whose routes authenticate (everything but health, metrics, docs, ui)."""
    if path.startswith(ADMIN_PREFIX):
        return not path.startswith(_UI_PREFIX)
    return path.startswith(_MERCHANT_PREFIX) or path.startswith(PROXY_PREFIXES)


def authenticate(
    authenticator: Authenticator,
    scope: Scope,
    authorization: str | None,
    query_items: Sequence[tuple[str, str]],
) -> Identity:
    """The caller of this request, verified once and cached in the scope for the dependencies."""
    cached = scope.get(_SCOPE_KEY)
    if isinstance(cached, Identity):
        return cached
    path: str = scope.get("path", "")
    if path.startswith(PROXY_PREFIXES):
        identity = authenticator.proxy(query_items)
    else:
        identity = authenticator.bearer(authorization, admin_only=path.startswith(ADMIN_PREFIX))
    scope[_SCOPE_KEY] = identity
    return identity


def parse_admin_tokens(single: str | None, named: str | None) -> dict[str, str]:
    """`ADMIN_API_TOKEN` (named "admin") plus `ADMIN_API_TOKENS=name:token,...`.

    A name is what the audit log records as the actor, so a name maps to exactly one token.
    """
    tokens: dict[str, str] = {}
    if single:
        tokens["admin"] = single
    for part in (named or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, token = part.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not name or not token:
            raise ValueError("ADMIN_API_TOKENS entries must be name:token")
        if name in tokens:
            raise ValueError(f"ADMIN_API_TOKENS names a token twice: {name!r}")
        tokens[name] = token
    return tokens
