"""Authentication primitives for the two ways Shopify calls the service.

* **App proxy** (storefront → Shopify → `/proxy/*`): Shopify appends `shop`, `timestamp`, ...
  and an HMAC-SHA256 `signature` of the other parameters. Only after that signature holds may
  the `shop` parameter be trusted; until then it is attacker-controlled text.
* **Session tokens** (embedded admin → `/api/v2/shops/{shop}/*`): an HS256 JWT signed with the
  app's API secret whose `dest` claim names the shop.

Everything here is pure (no I/O, no settings lookup) so it can be unit-tested exhaustively and
reused by the API layer, the demo and the test suites. Failures raise `InvalidSignature` /
`InvalidSessionToken` carrying a short `detail`, which the API maps to a 401 problem response:
the detail is safe to log but says nothing a forger could use beyond "this was rejected".
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt

__all__ = [
    "SESSION_TOKEN_ALGORITHM",
    "SHOP_DOMAIN_RE",
    "InvalidSessionToken",
    "InvalidSignature",
    "SessionTokenClaims",
    "app_proxy_message",
    "constant_time_equals",
    "is_valid_shop",
    "make_session_token",
    "sign_app_proxy_params",
    "verify_app_proxy_signature",
    "verify_session_token",
]

#: A shop is its permanent `*.myshopify.com` domain (api.md: anything else is a 422).
SHOP_DOMAIN_RE: re.Pattern[str] = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")

#: The only algorithm Shopify signs session tokens with. Pinned explicitly: accepting the
#: algorithm named by the token header is the classic `alg: none` / algorithm-confusion hole.
SESSION_TOKEN_ALGORITHM = "HS256"

_REQUIRED_SESSION_CLAIMS: tuple[str, ...] = ("iss", "dest", "aud", "exp", "nbf")


class InvalidSignature(Exception):
    """The app proxy request is not provably from Shopify (bad, missing or stale signature)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidSessionToken(Exception):
    """The bearer token is not a valid Shopify session token for this app."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def constant_time_equals(a: str, b: str) -> bool:
    """Compare two secrets without leaking the length of the common prefix through timing.

    Works on UTF-8 bytes because `hmac.compare_digest` only accepts ASCII `str`; a non-ASCII
    header must be a clean `False`, not a `TypeError` (and so a 500).
    """
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def is_valid_shop(shop: str | None) -> bool:
    """True when `shop` is a `*.myshopify.com` domain as the API contract defines it."""
    return isinstance(shop, str) and SHOP_DOMAIN_RE.fullmatch(shop) is not None


def require_shop_domains(shops: Iterable[str]) -> None:
    """`ValueError` naming the first few entries that are not shop domains (a request body's shop
    list: pydantic turns it into a 422 on that field)."""
    bad = [shop for shop in shops if not is_valid_shop(shop)]
    if bad:
        raise ValueError(f"not a shop domain (^[a-z0-9][a-z0-9-]*\\.myshopify\\.com$): {bad[:5]}")


# --------------------------------------------------------------------------------------------
# App proxy signature
# --------------------------------------------------------------------------------------------


def app_proxy_message(query_items: Iterable[tuple[str, str]]) -> str:
    """Build the exact string Shopify signs for an app proxy request.

    Every parameter except `signature`; the values of a repeated key joined with "," in the
    order they appear; `key=value` pairs *unencoded* (the values as decoded from the query
    string); the pairs sorted; concatenated with no separator.
    """
    grouped: dict[str, list[str]] = {}
    for key, value in query_items:
        if key == "signature":
            continue
        grouped.setdefault(key, []).append(value)
    return "".join(sorted(f"{key}={','.join(values)}" for key, values in grouped.items()))


def sign_app_proxy_params(params: Mapping[str, str] | Iterable[tuple[str, str]], secret: str) -> str:
    """Return the lowercase hex signature Shopify would append to these parameters.

    Used by tests, the simulator and the demo to forge *legitimate* proxy requests; a
    `signature` entry in `params` is ignored, as Shopify ignores it.
    """
    items: Iterable[tuple[str, str]] = params.items() if isinstance(params, Mapping) else params
    message = app_proxy_message(items)
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def _single(grouped: Mapping[str, list[str]], key: str) -> str:
    values = grouped.get(key)
    if not values or values == [""]:
        raise InvalidSignature(f"missing {key}")
    if len(values) > 1:
        # Shopify sends each of its own parameters once; a repeat is a tampering attempt
        # (e.g. a second `shop` hoping the handler reads a different one than we verified).
        raise InvalidSignature(f"repeated {key}")
    return values[0]


def verify_app_proxy_signature(
    query_items: Sequence[tuple[str, str]],
    secret: str,
    max_age_s: int,
    now: float | None = None,
) -> str:
    """Verify an app proxy request and return the shop it is for.

    `query_items` are the decoded query parameters in order, repeats kept (e.g. Starlette's
    `request.query_params.multi_items()` or `urllib.parse.parse_qsl(qs, keep_blank_values=True)`;
    blank values must be kept, Shopify signs `logged_in_customer_id=` too).

    `max_age_s` bounds |now - timestamp| (both directions: a timestamp from the future is as
    suspicious as a replayed old one); 0 turns the freshness check off (PROXY_SIGNATURE_MAX_AGE_S).

    Raises `InvalidSignature` when the signature, `shop` or `timestamp` is missing, malformed,
    wrong or stale. The signature is checked before the shop's format so that an unsigned
    request learns nothing about which shops are plausible.
    """
    if not secret:
        # An empty key would make every signature forgeable by anyone who knows that fact.
        raise InvalidSignature("app proxy secret not configured")
    if max_age_s < 0:
        raise ValueError("max_age_s must be >= 0")

    grouped: dict[str, list[str]] = {}
    for key, value in query_items:
        grouped.setdefault(key, []).append(value)

    signature = _single(grouped, "signature")
    shop = _proxied_shop(grouped)
    timestamp_raw = _single(grouped, "timestamp")

    expected = sign_app_proxy_params(query_items, secret)
    # Compare against the lowercase hex we produce; an uppercase or otherwise altered
    # signature simply fails (Shopify always sends lowercase).
    if not constant_time_equals(signature, expected):
        raise InvalidSignature("signature mismatch")

    if not (timestamp_raw.isascii() and timestamp_raw.isdigit()):
        raise InvalidSignature("malformed timestamp")
    if max_age_s:
        current = time.time() if now is None else now
        if abs(current - int(timestamp_raw)) > max_age_s:
            raise InvalidSignature("stale timestamp")

    if not is_valid_shop(shop):
        raise InvalidSignature("invalid shop domain")
    return shop


def _proxied_shop(grouped: Mapping[str, list[str]]) -> str:
    """The `shop` of a proxied request. The legacy theme sends its own `shop=` (its
    `window.Shopify.shop`, blank when unknown) and Shopify appends the real one, so a genuine
    request may carry `shop` twice, both signed. Accepted only when every non-blank value names the
    same shop: two different shops is a tampering attempt, never "first" or "last one wins"."""
    values = {value for value in grouped.get("shop", ()) if value != ""}
    if not values:
        raise InvalidSignature("missing shop")
    if len(values) > 1:
        raise InvalidSignature("repeated shop with different values")
    return values.pop()


# --------------------------------------------------------------------------------------------
# Session tokens
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionTokenClaims:
    """The verified claims of a Shopify session token; `shop` is the host of `dest`."""

    shop: str
    iss: str
    dest: str
    aud: str
    exp: float
    nbf: float
    sub: str | None = None
    sid: str | None = None
    jti: str | None = None
    iat: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _numeric_claim(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    # bool is an int subclass; `"exp": true` must not read as 1970-01-01T00:00:01.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSessionToken(f"claim {name} is not a number")
    try:
        number = float(value)
    except OverflowError:  # JSON integers have no size limit; one past float's range is no time
        raise InvalidSessionToken(f"claim {name} is not a number") from None
    if not math.isfinite(number):
        raise InvalidSessionToken(f"claim {name} is not a number")
    return number


def _optional_str_claim(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidSessionToken(f"claim {name} is not a string")
    return value


def _https_host(url: Any, claim: str) -> str:
    """Host of an `https://host[/path]` claim; anything else (other scheme, port, userinfo) fails."""
    if not isinstance(url, str):
        raise InvalidSessionToken(f"claim {claim} is not a string")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise InvalidSessionToken(f"claim {claim} is not an https URL")
    host = parts.netloc.lower()
    if not is_valid_shop(host):  # also rejects `:port` and `user@` because the regex is anchored
        raise InvalidSessionToken(f"claim {claim} is not a shop domain")
    return host


def verify_session_token(
    token: str,
    api_key: str,
    api_secret: str,
    leeway_s: int = 5,
    now: float | None = None,
) -> SessionTokenClaims:
    """Verify a Shopify session token and return its claims.

    Checks, in order: HS256 signature with `api_secret` (the algorithm is pinned, so `none`,
    HS512, RS256, ... are rejected whatever the header says); required claims `iss`, `dest`,
    `aud`, `exp`, `nbf`; `aud == api_key` (a token minted for another app of the same partner
    must not work here); `nbf - leeway <= now < exp + leeway`; `dest` is `https://<shop>` and
    `iss` has the same host (`https://<shop>/admin`).

    Time is checked here rather than by PyJWT so `now` can be injected in tests.
    """
    if not api_secret or not api_key:
        raise InvalidSessionToken("session token verification not configured")
    if not isinstance(token, str) or not token:
        raise InvalidSessionToken("missing token")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            api_secret,
            algorithms=[SESSION_TOKEN_ALGORITHM],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "require": list(_REQUIRED_SESSION_CLAIMS),
            },
        )
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidSessionToken(f"missing claim {exc.claim}") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise InvalidSessionToken("algorithm not allowed") from exc
    except jwt.InvalidSignatureError as exc:
        raise InvalidSessionToken("bad signature") from exc
    except jwt.PyJWTError as exc:
        raise InvalidSessionToken("malformed token") from exc

    aud = claims.get("aud")
    # Shopify sends a single string; a list (allowed by RFC 7519) is not what it issues.
    if not isinstance(aud, str) or not constant_time_equals(aud, api_key):
        raise InvalidSessionToken("wrong audience")

    exp = _numeric_claim(claims, "exp")
    nbf = _numeric_claim(claims, "nbf")
    iat = _numeric_claim(claims, "iat") if claims.get("iat") is not None else None
    current = time.time() if now is None else now
    if current >= exp + leeway_s:
        raise InvalidSessionToken("token expired")
    if current < nbf - leeway_s:
        raise InvalidSessionToken("token not yet valid")

    dest_host = _https_host(claims.get("dest"), "dest")
    iss_host = _https_host(claims.get("iss"), "iss")
    if iss_host != dest_host:
        raise InvalidSessionToken("iss and dest name different shops")

    return SessionTokenClaims(
        shop=dest_host,
        iss=str(claims["iss"]),
        dest=str(claims["dest"]),
        aud=aud,
        exp=exp,
        nbf=nbf,
        sub=_optional_str_claim(claims, "sub"),
        sid=_optional_str_claim(claims, "sid"),
        jti=_optional_str_claim(claims, "jti"),
        iat=iat,
        raw=claims,
    )


def make_session_token(
    shop: str,
    api_key: str,
    api_secret: str,
    *,
    now: float | None = None,
    ttl_s: int = 60,
    sub: str = "1",
    sid: str | None = None,
    jti: str | None = None,
    algorithm: str = SESSION_TOKEN_ALGORITHM,
    overrides: Mapping[str, Any] | None = None,
) -> str:
    """Mint a session token the way Shopify does (tests, the simulator and the demo).

    `overrides` replaces claims after the defaults are built; a value of `None` removes the
    claim, so tests can produce tokens with missing or inconsistent claims.
    """
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": api_key,
        "sub": sub,
        "exp": issued + ttl_s,
        "nbf": issued,
        "iat": issued,
        "jti": jti or str(uuid.uuid4()),
        "sid": sid or uuid.uuid4().hex,
    }
    for key, value in (overrides or {}).items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return jwt.encode(claims, api_secret, algorithm=algorithm)
