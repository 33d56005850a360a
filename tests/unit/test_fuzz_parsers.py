"""Generated hostile input for the parsers that read text nobody vetted.

The App Proxy signature check and the session-token check read attacker-controlled text before
anything is trusted; the legacy parsers read what merchants and old app versions wrote. For each:
* total: any input ends in a value or in the documented error (`InvalidSignature`,
  `InvalidSessionToken`, `InvalidLegacyData`), never another exception (a 500, a failed job);
* round trip: what the legitimate writer produces parses back to what it wrote;
* signatures: a signed request verifies, and any single change to it is refused.

Profiles: `fast` (default, derandomized, few examples: part of `make test`) and `chaos` (many
examples, random seeds: `HYPOTHESIS_PROFILE=chaos`, run by `make chaos`).
"""

from __future__ import annotations

import base64
import json
import os
import string
from decimal import Decimal
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from app.core.security import (
    SHOP_DOMAIN_RE,
    InvalidSessionToken,
    InvalidSignature,
    app_proxy_message,
    make_session_token,
    sign_app_proxy_params,
    verify_app_proxy_signature,
    verify_session_token,
)
from app.rules.legacy_parsing import (
    AUTO_GENERATED_BUNDLE_ID,
    AUTO_RULE_PREFIX,
    METAOBJECT_GID_PREFIX,
    InvalidLegacyData,
    LegacyProductRef,
    LegacyRowKind,
    classify_bundle_discount_row,
    decimal_to_json,
    map_auto_bundle_rule,
    normalize_product_gid,
    normalize_variant_gid,
    parse_bundle_metaobject,
    parse_int_string,
    parse_iso_datetime,
    parse_money_string,
    parse_percent_string,
    parse_products,
    storefront_product_id,
)
from app.services.storefront.reads import ai_bundle_item

settings.register_profile(
    "fast",
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "chaos",
    max_examples=3000,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

SECRET = "hush-this-is-the-app-secret-0123456789"
API_KEY = "app-api-key"
NOW = 1_700_000_000

# ---------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------

shops = st.from_regex(SHOP_DOMAIN_RE, fullmatch=True).filter(lambda s: len(s) < 120)
# Anything a query string can decode to, surrogates excepted (they cannot arrive through a URL).
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
param_keys = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12).filter(
    lambda k: k not in {"signature", "shop", "timestamp"}
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
product_numbers = st.integers(min_value=1, max_value=2**63 - 1)
# Integer strings far longer than Python's int-from-text limit (4,300 digits) are legacy text too.
HUGE_DIGITS = "9" * 5000


# ---------------------------------------------------------------------------------------------
# App Proxy signature
# ---------------------------------------------------------------------------------------------


@given(
    items=st.lists(st.tuples(st.sampled_from(["signature", "shop", "timestamp"]) | any_text, any_text), max_size=8),
    secret=any_text,
    max_age=st.integers(min_value=0, max_value=10**6),
    now=st.floats(allow_nan=False, allow_infinity=False) | st.none(),
)
def test_proxy_signature_check_is_total(
    items: list[tuple[str, str]], secret: str, max_age: int, now: float | None
) -> None:
    try:
        shop = verify_app_proxy_signature(items, secret, max_age, now=now)
    except InvalidSignature:
        return
    assert SHOP_DOMAIN_RE.fullmatch(shop)


@st.composite
def signed_requests(draw: st.DrawFn) -> tuple[list[tuple[str, str]], str]:
    """A request exactly as Shopify builds it: its parameters, then `signature`."""
    shop = draw(shops)
    extras = draw(st.lists(st.tuples(param_keys, any_text), max_size=5))
    items = [("shop", shop), ("timestamp", str(draw(st.integers(NOW - 30, NOW + 30)))), *extras]
    items = draw(st.permutations(items))
    return [*items, ("signature", sign_app_proxy_params(items, SECRET))], shop


@given(request=signed_requests())
@example(request=([("shop", "a.myshopify.com"), ("timestamp", str(NOW)), ("logged_in_customer_id", "")], ""))
def test_signed_proxy_request_verifies(request: tuple[list[tuple[str, str]], str]) -> None:
    items, shop = request
    if not shop:  # the explicit example: sign it here
        items = [*items, ("signature", sign_app_proxy_params(items, SECRET))]
        shop = "a.myshopify.com"
    assert verify_app_proxy_signature(items, SECRET, 300, now=NOW) == shop


@given(request=signed_requests(), data=st.data())
def test_any_single_change_to_a_signed_proxy_request_is_refused(
    request: tuple[list[tuple[str, str]], str], data: st.DataObject
) -> None:
    items, _ = request
    unsigned = [item for item in items if item[0] != "signature"]
    signature = dict(items)["signature"]
    change = data.draw(st.sampled_from(["value", "key", "drop", "add", "signature", "secret"]))
    index = data.draw(st.integers(0, len(unsigned) - 1))
    key, value = unsigned[index]
    tampered = list(unsigned)
    secret = SECRET
    if change == "value":
        new_value = data.draw(any_text.filter(lambda v: v != value))
        if key == "shop":
            assume(new_value != "")  # a blank second `shop` is the theme's, and Shopify's own stays
        tampered[index] = (key, new_value)
    elif change == "key":
        taken = {k for k, _ in unsigned}
        tampered[index] = (data.draw(param_keys.filter(lambda k: k not in taken)), value)
    elif change == "drop":
        del tampered[index]
    elif change == "add":
        tampered.insert(index, (data.draw(param_keys), data.draw(any_text)))
    elif change == "signature":
        position = data.draw(st.integers(0, len(signature) - 1))
        replacement = data.draw(st.sampled_from("0123456789abcdefABCDEF").filter(lambda c: c != signature[position]))
        signature = signature[:position] + replacement + signature[position + 1 :]
    else:
        secret = data.draw(any_text.filter(lambda s: s != SECRET))
    assume(change in {"signature", "secret"} or app_proxy_message(tampered) != app_proxy_message(unsigned))
    with pytest.raises(InvalidSignature):
        verify_app_proxy_signature([*tampered, ("signature", signature)], secret, 300, now=NOW)


# ---------------------------------------------------------------------------------------------
# Session tokens
# ---------------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@given(token=any_text | st.from_regex(r"[A-Za-z0-9_\-]{0,30}\.[A-Za-z0-9_\-]{0,60}\.[A-Za-z0-9_\-]{0,50}"))
@example(token="..")
@example(token="eyJhbGciOiJub25lIn0.eyJhIjoxfQ.")
def test_session_token_check_is_total_on_text(token: str) -> None:
    try:
        verify_session_token(token, API_KEY, SECRET, now=NOW)
    except InvalidSessionToken:
        pass


def signed_token(header: Any, payload: Any, secret: str = SECRET) -> str:
    """A token with exactly these JSON segments and the right HS256 signature for them (no library
    in between that would refuse to mint odd claims)."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    signature = jwt.api_jws.get_algorithm_by_name("HS256").sign(signing_input.encode(), secret.encode())
    return f"{signing_input}.{b64(signature)}"


@given(header=st.dictionaries(any_text, json_values, max_size=3), payload=json_values)
def test_session_token_check_is_total_on_any_json_segments(header: dict[str, Any], payload: Any) -> None:
    """Tokens whose segments are any JSON, with a signature that is right for them."""
    header = {"alg": "HS256", **header} if "alg" not in header else header
    try:
        verify_session_token(signed_token(header, payload), API_KEY, SECRET, now=NOW)
    except InvalidSessionToken:
        pass


@given(claim=st.sampled_from(["iss", "dest", "aud", "exp", "nbf", "iat", "sub", "sid", "jti"]), value=json_values)
@example(claim="exp", value=10**400)
@example(claim="nbf", value=-(10**400))
@example(claim="iat", value=10**400)
@example(claim="exp", value=float("inf"))
def test_session_token_with_any_claim_value_is_total(claim: str, value: Any) -> None:
    """A correctly signed token whose one claim holds any JSON value: claims or a refusal."""
    valid = jwt.decode(
        make_session_token("a.myshopify.com", API_KEY, SECRET, now=NOW), options={"verify_signature": False}
    )
    token = signed_token({"alg": "HS256", "typ": "JWT"}, {**valid, claim: value})
    try:
        claims = verify_session_token(token, API_KEY, SECRET, now=NOW)
    except InvalidSessionToken:
        return
    assert claims.shop == "a.myshopify.com"


@given(shop=shops, key=any_text.filter(bool), offset=st.integers(-4, 55))
def test_session_token_round_trip(shop: str, key: str, offset: int) -> None:
    token = make_session_token(shop, key, SECRET, now=NOW, ttl_s=60)
    claims = verify_session_token(token, key, SECRET, now=NOW + offset)
    assert (claims.shop, claims.aud, claims.exp) == (shop, key, NOW + 60)


@given(shop=shops, data=st.data())
def test_any_single_change_to_a_session_token_is_refused(shop: str, data: st.DataObject) -> None:
    token = make_session_token(shop, API_KEY, SECRET, now=NOW)
    header, payload, signature = token.split(".")
    change = data.draw(st.sampled_from(["claim", "signature", "secret", "audience", "header"]))
    secret, key = SECRET, API_KEY
    if change == "claim":
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        name = data.draw(st.sampled_from(sorted(claims)))
        claims[name] = data.draw(json_values.filter(lambda v, old=claims[name]: v != old))
        payload = b64(json.dumps(claims).encode())
    elif change == "signature":
        raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] ^= data.draw(st.integers(1, 255))
        signature = b64(bytes(raw))
    elif change == "secret":  # as long as a real one (PyJWT warns about short HMAC keys)
        secret = data.draw(st.text(min_size=32, max_size=48).filter(lambda s: s != SECRET))
    elif change == "audience":
        key = data.draw(any_text.filter(lambda s: s != API_KEY))
    else:
        alg = data.draw(st.sampled_from(["none", "HS512", "RS256", "hs256", ""]))
        header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    with pytest.raises(InvalidSessionToken):
        verify_session_token(f"{header}.{payload}.{signature}", key, secret, now=NOW)


# ---------------------------------------------------------------------------------------------
# Legacy data
# ---------------------------------------------------------------------------------------------


def total(parse: Any, *args: Any) -> Any:
    """The parser's value, or None when it refused with the documented error."""
    try:
        return parse(*args)
    except InvalidLegacyData as exc:
        assert exc.reason == "invalid_legacy_data" and exc.field
        return None


numeric_text = st.from_regex(r"\s*[+-]?[0-9,.%$€]{0,12}\s*", fullmatch=True)


@given(value=any_text | numeric_text | st.none())
@example(value=HUGE_DIGITS)
@example(value="1" + "0" * 30 + "%")
def test_scalar_parsers_are_total(value: str | None) -> None:
    percent = total(parse_percent_string, value)
    assert percent is None or Decimal(0) <= percent <= 100
    money = total(parse_money_string, value)
    assert money is None or (money >= 0 and money == money.quantize(Decimal("0.01")))
    count = total(parse_int_string, value)
    assert count is None or 0 <= count <= 2**31 - 1
    moment = parse_iso_datetime(value)  # informational: unreadable is None, never an error
    assert moment is None or moment.tzinfo is None


@example(value="0001-01-01T00:00:00+01:00")
@example(value="9999-12-31T23:59:59-01:00")
@given(value=st.datetimes().map(lambda d: d.isoformat()) | any_text)
def test_iso_datetime_never_raises(value: str) -> None:
    moment = parse_iso_datetime(value)
    assert moment is None or moment.tzinfo is None


@given(
    percent=st.decimals(min_value=0, max_value=100, places=2, allow_nan=False),
    pad=st.sampled_from(["", " ", "  "]),
    sign=st.sampled_from(["", "%", " %"]),
)
def test_percent_round_trip(percent: Decimal, pad: str, sign: str) -> None:
    assert parse_percent_string(f"{pad}{decimal_to_json(percent)}{sign}{pad}") == percent


@given(amount=st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False), style=st.integers(0, 2))
def test_money_round_trip(amount: Decimal, style: int) -> None:
    text = [f"{amount:.2f}", f"${amount:,.2f}", f"{amount:.2f} €"][style]
    assert parse_money_string(text) == amount


@given(number=st.integers(0, 2**31 - 1), zeros=st.sampled_from(["", ".0", ".00"]))
def test_int_round_trip(number: int, zeros: str) -> None:
    assert parse_int_string(f" {number}{zeros} ") == number


@given(raw=any_text | json_values.map(json.dumps) | st.none())
@example(raw=json.dumps([HUGE_DIGITS]))
@example(raw=json.dumps([{"productId": "1", "variantId": HUGE_DIGITS}]))
@example(raw=json.dumps([{"productId": "gid://shopify/Product/" + HUGE_DIGITS}]))
@example(raw=json.dumps([{"productId": 1, "quantity": HUGE_DIGITS}]))
@example(raw="[" * 100_000)
@example(raw=json.dumps(json.dumps([1, 2])))
def test_products_parser_is_total(raw: str | None) -> None:
    refs = total(parse_products, raw)
    assert refs is None or (refs and all(r.product_id.startswith("gid://shopify/Product/") for r in refs))


@st.composite
def product_refs(draw: st.DrawFn) -> LegacyProductRef:
    variant = draw(st.none() | product_numbers)
    return LegacyProductRef(
        product_id=f"gid://shopify/Product/{draw(product_numbers)}",
        variant_id=None if variant is None else f"gid://shopify/ProductVariant/{variant}",
        quantity=draw(st.integers(1, 2**31 - 1)),
    )


@given(refs=st.lists(product_refs(), min_size=1, max_size=6), data=st.data())
def test_products_round_trip(refs: list[LegacyProductRef], data: st.DataObject) -> None:
    """Each writer generation's spelling (GID string, number, object) parses to the same refs."""
    items: list[Any] = []
    for ref in refs:
        number = int(ref.product_id.rsplit("/", 1)[1])
        if ref.variant_id is None and ref.quantity == 1 and data.draw(st.booleans()):
            items.append(data.draw(st.sampled_from([ref.product_id, number, str(number)])))
            continue
        item: dict[str, Any] = {"productId": data.draw(st.sampled_from([ref.product_id, number]))}
        if ref.variant_id is not None:
            item["variantId"] = ref.variant_id
        if ref.quantity != 1 or data.draw(st.booleans()):
            item["quantity"] = data.draw(st.sampled_from([ref.quantity, str(ref.quantity)]))
        items.append(item)
    text = json.dumps(items)
    if data.draw(st.booleans()):
        text = json.dumps(text)  # double-encoded, as one writer generation stored it
    assert parse_products(text) == refs


@given(fields=st.dictionaries(st.sampled_from(["bundle_name", "discount", "products", "created_at"]), any_text))
def test_metaobject_parser_is_total(fields: dict[str, str]) -> None:
    total(parse_bundle_metaobject, fields)


@given(value=json_values | st.text(string.digits, min_size=1, max_size=30))
@example(value=HUGE_DIGITS)
@example(value="gid://shopify/Product/" + HUGE_DIGITS)
@example(value=True)
def test_product_id_normalisers_are_total(value: Any) -> None:
    for parse in (normalize_product_gid, normalize_variant_gid, storefront_product_id):
        total(parse, value)


@given(number=product_numbers, spelling=st.integers(0, 2))
def test_product_id_round_trip(number: int, spelling: int) -> None:
    value: Any = [number, str(number), f"gid://shopify/Product/{number}"][spelling]
    assert normalize_product_gid(value) == f"gid://shopify/Product/{number}"
    assert storefront_product_id(value) == str(number)
    assert normalize_product_gid(storefront_product_id(value)) == f"gid://shopify/Product/{number}"


@given(product=json_values, bundled=st.lists(json_values, max_size=4) | st.none())
@example(product=HUGE_DIGITS, bundled=["gid://shopify/Product/" + HUGE_DIGITS])
def test_ai_bundle_item_never_fails_the_page(product: Any, bundled: list[Any] | None) -> None:
    """Odd AI rows pass through untouched; ids in either spelling come out numeric."""
    item = ai_bundle_item({"id": "x", "productId": product, "bundledProductIds": bundled})
    assert item["id"] == "x" and len(item["bundledProductIds"]) == len(bundled or ())


@given(bundle_id=any_text | st.none())
@example(bundle_id=METAOBJECT_GID_PREFIX + "[object Object]")
def test_bundle_discount_key_classifier_is_total(bundle_id: str | None) -> None:
    result = classify_bundle_discount_row(bundle_id)
    assert result.kind in set(LegacyRowKind)
    if result.kind is LegacyRowKind.METAOBJECT_ID:
        assert result.value == bundle_id
    if result.kind is LegacyRowKind.METAOBJECT_HANDLE:
        assert bundle_id == METAOBJECT_GID_PREFIX + str(result.value)


handles = st.from_regex(r"[a-z0-9][a-z0-9-]{0,40}", fullmatch=True).filter(lambda h: not h.isdigit())


@given(rule=st.text(string.ascii_letters + string.digits + "-_", min_size=1), number=product_numbers, handle=handles)
def test_bundle_discount_key_round_trip(rule: str, number: int, handle: str) -> None:
    assert classify_bundle_discount_row(AUTO_RULE_PREFIX + rule).value == rule
    assert classify_bundle_discount_row(AUTO_GENERATED_BUNDLE_ID).kind is LegacyRowKind.AUTO_GENERATED
    gid = f"{METAOBJECT_GID_PREFIX}{number}"
    assert classify_bundle_discount_row(gid).kind is LegacyRowKind.METAOBJECT_ID
    by_handle = classify_bundle_discount_row(METAOBJECT_GID_PREFIX + handle)
    assert (by_handle.kind, by_handle.value) == (LegacyRowKind.METAOBJECT_HANDLE, handle)


@given(
    name=any_text | st.none(),
    collections=st.lists(any_text | st.none(), max_size=3) | st.none(),
    tags=st.lists(any_text | st.none(), max_size=3) | st.none(),
    min_price=numeric_text | any_text | st.none(),
    max_price=numeric_text | any_text | st.none(),
    min_products=numeric_text | any_text | st.none(),
    discount=numeric_text | any_text | st.none(),
)
def test_auto_bundle_mapping_is_total(
    name: str | None,
    collections: list[str | None] | None,
    tags: list[str | None] | None,
    min_price: str | None,
    max_price: str | None,
    min_products: str | None,
    discount: str | None,
) -> None:
    mapped = total(map_auto_bundle_rule, name, collections, tags, min_price, max_price, min_products, discount)
    if mapped is not None:
        assert mapped.trigger_type in {"COLLECTION_BASED", "TAG_BASED", "PRICE_RANGE"}
        assert mapped.name.strip() == mapped.name and mapped.name
        json.dumps([mapped.conditions, mapped.bundle_template])  # stored as JSONB: must serialise


@given(
    low=st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False),
    spread=st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False),
    count=st.integers(0, 50),
    percent=st.decimals(min_value=0, max_value=100, places=1, allow_nan=False),
)
def test_auto_bundle_mapping_round_trip(low: Decimal, spread: Decimal, count: int, percent: Decimal) -> None:
    mapped = map_auto_bundle_rule(
        " Rule ", ["c1", " c1 ", ""], ["t"], f"{low:.2f}", f"{low + spread:.2f}", str(count), f"{percent}%"
    )
    assert mapped.trigger_type == "COLLECTION_BASED" and mapped.conditions["collections"] == ["c1"]
    assert mapped.conditions["price"] == {"min": f"{low:.2f}", "max": f"{low + spread:.2f}"}
    assert mapped.conditions["minProducts"] == count == mapped.bundle_template["minProducts"]
    assert Decimal(mapped.bundle_template["discount"]["value"]) == percent
    assert mapped.name == "Rule"
