"""App proxy signatures and session tokens: the two doors Shopify knocks on."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qsl

import jwt
import pytest
from starlette.requests import Request

from app.core.auth import query_items
from app.core.security import (
    SHOP_DOMAIN_RE,
    InvalidSessionToken,
    InvalidSignature,
    SessionTokenClaims,
    app_proxy_message,
    constant_time_equals,
    is_valid_shop,
    make_session_token,
    sign_app_proxy_params,
    verify_app_proxy_signature,
    verify_session_token,
)

# Shopify's documented app proxy example (secret "hush").
DOC_QUERY = (
    "extra=1&extra=2&shop=shop-name.myshopify.com&logged_in_customer_id=1"
    "&path_prefix=%2Fapps%2Fawesome_reviews&timestamp=1317327555"
    "&signature=4c68c8624d737112c91818c11017d24d334b524cb5c2b8ba08daa056f7395ddb"
)
DOC_SECRET = "hush"
DOC_TIMESTAMP = 1317327555
DOC_MESSAGE = (
    "extra=1,2logged_in_customer_id=1path_prefix=/apps/awesome_reviews"
    "shop=shop-name.myshopify.comtimestamp=1317327555"
)

API_KEY = "test-api-key"
API_SECRET = "test-api-secret-" + "x" * 64  # long enough that HS512 tokens raise no key warning
SHOP = "demo-shop.myshopify.com"
NOW = 1_700_000_000.0


def doc_items() -> list[tuple[str, str]]:
    return parse_qsl(DOC_QUERY, keep_blank_values=True)


def signed(params: list[tuple[str, str]], secret: str = "s3cret") -> list[tuple[str, str]]:
    return [*params, ("signature", sign_app_proxy_params(params, secret))]


def proxy_params(timestamp: int = int(NOW), customer: str = "") -> list[tuple[str, str]]:
    return [
        ("product_id", "123"),
        ("shop", SHOP),
        ("logged_in_customer_id", customer),
        ("path_prefix", "/apps/proxy"),
        ("timestamp", str(timestamp)),
    ]


# ------------------------------------------------------------------------------ helpers


def test_constant_time_equals() -> None:
    assert constant_time_equals("abc", "abc")
    assert not constant_time_equals("abc", "abd")
    assert not constant_time_equals("abc", "ab")
    assert not constant_time_equals("", "x")
    assert constant_time_equals("", "")
    # Non-ASCII input must compare, not raise (hmac.compare_digest rejects non-ASCII str).
    assert constant_time_equals("café", "café")
    assert not constant_time_equals("café", "cafe")


@pytest.mark.parametrize(
    "shop",
    ["shop-name.myshopify.com", "a.myshopify.com", "0shop.myshopify.com", "my-shop-1.myshopify.com"],
)
def test_valid_shops(shop: str) -> None:
    assert is_valid_shop(shop)
    assert SHOP_DOMAIN_RE.match(shop)


@pytest.mark.parametrize(
    "shop",
    [
        "",
        "-shop.myshopify.com",
        "Shop.myshopify.com",
        "shop.myshopify.com.evil.com",
        "shop.example.com",
        "shop_name.myshopify.com",
        "shop.myshopify.com\n",
        "shop.myshopify.com:443",
        "a.b.myshopify.com",
        ".myshopify.com",
        None,
    ],
)
def test_invalid_shops(shop: str | None) -> None:
    assert not is_valid_shop(shop)


# ------------------------------------------------------------------------------ app proxy


def test_documented_example_message() -> None:
    assert app_proxy_message(doc_items()) == DOC_MESSAGE


def test_documented_example_verifies() -> None:
    assert verify_app_proxy_signature(doc_items(), DOC_SECRET, max_age_s=0) == "shop-name.myshopify.com"


def test_documented_example_verifies_within_freshness_window() -> None:
    shop = verify_app_proxy_signature(doc_items(), DOC_SECRET, max_age_s=300, now=DOC_TIMESTAMP + 299)
    assert shop == "shop-name.myshopify.com"


def test_sign_reproduces_documented_signature() -> None:
    expected = dict(doc_items())["signature"]
    assert sign_app_proxy_params(doc_items(), DOC_SECRET) == expected


def test_parameter_order_does_not_matter() -> None:
    # Keys may come in any order; only the order of a repeated key's values is significant.
    items = sorted(doc_items(), key=lambda kv: kv[0], reverse=True)
    assert items[0][0] == "timestamp"
    assert verify_app_proxy_signature(items, DOC_SECRET, max_age_s=0) == "shop-name.myshopify.com"


def test_order_of_repeated_values_matters() -> None:
    items = [(k, {"1": "2", "2": "1"}[v] if k == "extra" else v) for k, v in doc_items()]
    with pytest.raises(InvalidSignature):
        verify_app_proxy_signature(items, DOC_SECRET, max_age_s=0)


@pytest.mark.parametrize("index", range(6))
def test_each_parameter_changed_is_invalid(index: int) -> None:
    items = doc_items()
    key, value = items[index]
    assert key != "signature"
    items[index] = (key, value + "x")
    with pytest.raises(InvalidSignature):
        verify_app_proxy_signature(items, DOC_SECRET, max_age_s=0)


def test_changed_signature_is_invalid() -> None:
    items = [(k, v if k != "signature" else v[:-1] + "e") for k, v in doc_items()]
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify_app_proxy_signature(items, DOC_SECRET, max_age_s=0)


def test_uppercase_signature_is_invalid() -> None:
    items = [(k, v.upper() if k == "signature" else v) for k, v in doc_items()]
    with pytest.raises(InvalidSignature):
        verify_app_proxy_signature(items, DOC_SECRET, max_age_s=0)


def test_added_parameter_is_invalid() -> None:
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify_app_proxy_signature([*doc_items(), ("admin", "1")], DOC_SECRET, max_age_s=0)


def test_removed_parameter_is_invalid() -> None:
    items = [(k, v) for k, v in doc_items() if k != "path_prefix"]
    with pytest.raises(InvalidSignature):
        verify_app_proxy_signature(items, DOC_SECRET, max_age_s=0)


def test_wrong_secret_is_invalid() -> None:
    with pytest.raises(InvalidSignature, match="signature mismatch"):
        verify_app_proxy_signature(doc_items(), "hush2", max_age_s=0)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="not configured"):
        verify_app_proxy_signature(doc_items(), "", max_age_s=0)


def test_stale_timestamp_is_invalid() -> None:
    with pytest.raises(InvalidSignature, match="stale"):
        verify_app_proxy_signature(doc_items(), DOC_SECRET, max_age_s=300, now=DOC_TIMESTAMP + 301)


def test_future_timestamp_is_invalid() -> None:
    with pytest.raises(InvalidSignature, match="stale"):
        verify_app_proxy_signature(doc_items(), DOC_SECRET, max_age_s=300, now=DOC_TIMESTAMP - 301)


def test_freshness_boundary_is_inclusive() -> None:
    items = signed(proxy_params())
    assert verify_app_proxy_signature(items, "s3cret", max_age_s=300, now=NOW + 300) == SHOP
    assert verify_app_proxy_signature(items, "s3cret", max_age_s=300, now=NOW - 300) == SHOP


def test_default_now_is_wall_clock() -> None:
    # The documented example is from 2011: with a freshness bound and the real clock it is stale.
    with pytest.raises(InvalidSignature, match="stale"):
        verify_app_proxy_signature(doc_items(), DOC_SECRET, max_age_s=300)


def test_negative_max_age_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        verify_app_proxy_signature(doc_items(), DOC_SECRET, max_age_s=-1)


@pytest.mark.parametrize("missing", ["signature", "shop", "timestamp"])
def test_missing_required_parameter_is_invalid(missing: str) -> None:
    params = [(k, v) for k, v in proxy_params() if k != missing]
    items = params if missing == "signature" else signed(params)
    with pytest.raises(InvalidSignature, match=f"missing {missing}"):
        verify_app_proxy_signature(items, "s3cret", max_age_s=0)


def test_empty_signature_is_invalid() -> None:
    with pytest.raises(InvalidSignature, match="missing signature"):
        verify_app_proxy_signature([*proxy_params(), ("signature", "")], "s3cret", max_age_s=0)


def test_empty_logged_in_customer_id_is_signed_and_verified() -> None:
    params = proxy_params(customer="")
    assert "logged_in_customer_id=" in app_proxy_message(params)
    items = signed(params)
    assert verify_app_proxy_signature(items, "s3cret", max_age_s=300, now=NOW) == SHOP
    # The same request parsed without blank values loses the parameter and must fail.
    without_blank = [(k, v) for k, v in items if v != ""]
    with pytest.raises(InvalidSignature):
        verify_app_proxy_signature(without_blank, "s3cret", max_age_s=300, now=NOW)


def test_empty_customer_id_parsed_from_query_string() -> None:
    params = proxy_params(customer="")
    sig = sign_app_proxy_params(params, "s3cret")
    qs = "&".join(f"{k}={v}" for k, v in params) + f"&signature={sig}"
    items = parse_qsl(qs, keep_blank_values=True)
    assert verify_app_proxy_signature(items, "s3cret", max_age_s=300, now=NOW) == SHOP


def test_repeated_shop_is_invalid_even_if_signed() -> None:
    params = [*proxy_params(), ("shop", "evil.myshopify.com")]
    with pytest.raises(InvalidSignature, match="repeated shop"):
        verify_app_proxy_signature(signed(params), "s3cret", max_age_s=0)


def test_signed_but_malformed_shop_is_invalid() -> None:
    params = [(k, "Evil.example.com" if k == "shop" else v) for k, v in proxy_params()]
    with pytest.raises(InvalidSignature, match="invalid shop"):
        verify_app_proxy_signature(signed(params), "s3cret", max_age_s=0)


@pytest.mark.parametrize("ts", ["", "abc", "-5", "1.5", " 1700000000", "١٢٣"])
def test_signed_but_malformed_timestamp_is_invalid(ts: str) -> None:
    params = [(k, ts if k == "timestamp" else v) for k, v in proxy_params()]
    with pytest.raises(InvalidSignature):
        verify_app_proxy_signature(signed(params), "s3cret", max_age_s=300, now=NOW)


def test_sign_accepts_mapping_and_ignores_signature() -> None:
    params = dict(proxy_params())
    sig = sign_app_proxy_params(params, "s3cret")
    assert sig == sign_app_proxy_params({**params, "signature": "whatever"}, "s3cret")
    assert sig == hmac.new(b"s3cret", app_proxy_message(params.items()).encode(), hashlib.sha256).hexdigest()
    assert len(sig) == 64 and sig == sig.lower()


def test_unicode_values_are_signed_as_utf8() -> None:
    params = [*proxy_params(), ("q", "café 🎁")]
    assert verify_app_proxy_signature(signed(params), "s3cret", max_age_s=300, now=NOW) == SHOP


# ------------------------------------------------------------------------------ session tokens


def token(**kwargs: object) -> str:
    kwargs.setdefault("now", NOW)
    return make_session_token(SHOP, API_KEY, API_SECRET, **kwargs)  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_dict(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": f"https://{SHOP}/admin",
        "dest": f"https://{SHOP}",
        "aud": API_KEY,
        "sub": "42",
        "exp": int(NOW) + 60,
        "nbf": int(NOW),
        "iat": int(NOW),
        "jti": "jti-1",
        "sid": "sid-1",
    }
    base.update(overrides)
    return base


def test_valid_token() -> None:
    claims = verify_session_token(token(sub="42", sid="sid-9", jti="j-1"), API_KEY, API_SECRET, now=NOW + 10)
    assert isinstance(claims, SessionTokenClaims)
    assert claims.shop == SHOP
    assert claims.sub == "42"
    assert claims.sid == "sid-9"
    assert claims.jti == "j-1"
    assert claims.aud == API_KEY
    assert claims.dest == f"https://{SHOP}"
    assert claims.iss == f"https://{SHOP}/admin"
    assert claims.exp == NOW + 60
    assert claims.nbf == NOW
    assert claims.iat == NOW
    assert claims.raw["sub"] == "42"


def test_valid_token_with_default_clock() -> None:
    fresh = make_session_token(SHOP, API_KEY, API_SECRET)
    assert verify_session_token(fresh, API_KEY, API_SECRET).shop == SHOP


@pytest.mark.parametrize("claim", ["sub", "sid", "jti"])
def test_non_string_identity_claims_are_rejected(claim: str) -> None:
    t = jwt.encode(claims_dict(**{claim: 42}), API_SECRET, algorithm="HS256")
    with pytest.raises(InvalidSessionToken):
        verify_session_token(t, API_KEY, API_SECRET, now=NOW)


def test_expired_token() -> None:
    t = token(ttl_s=60)
    assert verify_session_token(t, API_KEY, API_SECRET, leeway_s=5, now=NOW + 64).shop == SHOP
    with pytest.raises(InvalidSessionToken, match="expired"):
        verify_session_token(t, API_KEY, API_SECRET, leeway_s=5, now=NOW + 65)
    with pytest.raises(InvalidSessionToken, match="expired"):
        verify_session_token(t, API_KEY, API_SECRET, leeway_s=0, now=NOW + 60)


def test_nbf_in_future() -> None:
    t = token(now=NOW + 30)
    with pytest.raises(InvalidSessionToken, match="not yet valid"):
        verify_session_token(t, API_KEY, API_SECRET, leeway_s=5, now=NOW)
    # Within the leeway a little clock skew is tolerated.
    assert verify_session_token(t, API_KEY, API_SECRET, leeway_s=5, now=NOW + 25).shop == SHOP


def test_wrong_audience() -> None:
    t = make_session_token(SHOP, "other-app", API_SECRET, now=NOW)
    with pytest.raises(InvalidSessionToken, match="audience"):
        verify_session_token(t, API_KEY, API_SECRET, now=NOW)


def test_audience_list_is_rejected() -> None:
    t = jwt.encode(claims_dict(aud=[API_KEY]), API_SECRET, algorithm="HS256")
    with pytest.raises(InvalidSessionToken, match="audience"):
        verify_session_token(t, API_KEY, API_SECRET, now=NOW)


def test_wrong_secret() -> None:
    t = make_session_token(SHOP, API_KEY, "another-secret-that-is-long-enough-too", now=NOW)
    with pytest.raises(InvalidSessionToken, match="bad signature"):
        verify_session_token(t, API_KEY, API_SECRET, now=NOW)


def test_alg_none_is_rejected() -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims_dict()).encode())
    for crafted in (f"{header}.{payload}.", f"{header}.{payload}"):
        with pytest.raises(InvalidSessionToken):
            verify_session_token(crafted, API_KEY, API_SECRET, now=NOW)


def test_alg_none_with_valid_hs256_signature_is_rejected() -> None:
    # Header says "none" but the token carries a correct HMAC: still refused, the alg is pinned.
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims_dict()).encode())
    sig = b64(hmac.new(API_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    with pytest.raises(InvalidSessionToken, match="algorithm"):
        verify_session_token(f"{header}.{payload}.{sig}", API_KEY, API_SECRET, now=NOW)


@pytest.mark.parametrize("alg", ["HS512", "HS384"])
def test_other_hmac_algorithms_are_rejected(alg: str) -> None:
    t = token(algorithm=alg)
    with pytest.raises(InvalidSessionToken, match="algorithm"):
        verify_session_token(t, API_KEY, API_SECRET, now=NOW)


def test_dest_iss_mismatch() -> None:
    t = token(overrides={"iss": "https://other-shop.myshopify.com/admin"})
    with pytest.raises(InvalidSessionToken, match="different shops"):
        verify_session_token(t, API_KEY, API_SECRET, now=NOW)


@pytest.mark.parametrize(
    "dest",
    [
        "http://demo-shop.myshopify.com",
        "https://demo-shop.example.com",
        "https://demo-shop.myshopify.com:8443",
        "https://user@demo-shop.myshopify.com",
        "demo-shop.myshopify.com",
        "",
    ],
)
def test_bad_dest(dest: str) -> None:
    t = token(overrides={"dest": dest, "iss": dest + "/admin"})
    with pytest.raises(InvalidSessionToken):
        verify_session_token(t, API_KEY, API_SECRET, now=NOW)


def test_dest_host_is_lowercased() -> None:
    t = token(overrides={"dest": "https://Demo-Shop.myshopify.com"})
    assert verify_session_token(t, API_KEY, API_SECRET, now=NOW).shop == SHOP


@pytest.mark.parametrize("claim", ["iss", "dest", "aud", "exp", "nbf"])
def test_missing_required_claim(claim: str) -> None:
    t = token(overrides={claim: None})
    with pytest.raises(InvalidSessionToken, match=f"missing claim {claim}"):
        verify_session_token(t, API_KEY, API_SECRET, now=NOW)


@pytest.mark.parametrize("claim", ["exp", "nbf"])
@pytest.mark.parametrize("value", ["soon", True])
def test_non_numeric_time_claims(claim: str, value: object) -> None:
    t = jwt.encode(claims_dict(**{claim: value}), API_SECRET, algorithm="HS256")
    with pytest.raises(InvalidSessionToken):
        verify_session_token(t, API_KEY, API_SECRET, now=NOW)


@pytest.mark.parametrize(
    "garbage",
    ["", "garbage", "a.b.c", "a.b", "Bearer x", "ééé.ééé.ééé", "eyJhbGciOiJIUzI1NiJ9..", "....."],
)
def test_garbage_token(garbage: str) -> None:
    with pytest.raises(InvalidSessionToken):
        verify_session_token(garbage, API_KEY, API_SECRET, now=NOW)


def test_unconfigured_secret_or_key_is_refused() -> None:
    t = token()
    with pytest.raises(InvalidSessionToken, match="not configured"):
        verify_session_token(t, API_KEY, "", now=NOW)
    with pytest.raises(InvalidSessionToken, match="not configured"):
        verify_session_token(t, "", API_SECRET, now=NOW)


def test_make_session_token_shape() -> None:
    t = token(sub="7", ttl_s=120)
    header = jwt.get_unverified_header(t)
    assert header["alg"] == "HS256"
    payload = jwt.decode(t, options={"verify_signature": False})
    assert payload["iss"] == f"https://{SHOP}/admin"
    assert payload["dest"] == f"https://{SHOP}"
    assert payload["aud"] == API_KEY
    assert payload["exp"] - payload["nbf"] == 120
    assert {"iat", "jti", "sid", "sub"} <= payload.keys()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"shop=a.myshopify.com&logged_in_customer_id=&product_id=1&product_id=2",
        b"name=caf%C3%A9+cr%C3%A8me&x=%E2%82%AC&flag&empty=",
        b"a=%ZZ&b=%&c=+",
    ],
)
def test_query_items_reads_what_starlette_reads_and_parses_once(raw: bytes) -> None:
    """One parse per request serves the log context, the signature and the storefront handler; it
    must decode exactly as `request.query_params` would, or the handler reads what was not signed."""
    scope: dict[str, Any] = {"type": "http", "query_string": raw}
    items = query_items(scope)
    assert items == Request(scope).query_params.multi_items()
    assert query_items(scope) is items
