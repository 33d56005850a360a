"""Parsing the messy legacy data: metaobjects, bundle_discount_id keys, auto bundle rules."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from app.rules.legacy_parsing import (
    INVALID_LEGACY_DATA_REASON,
    AutoRuleMapping,
    InvalidLegacyData,
    LegacyProductRef,
    LegacyRowClassification,
    LegacyRowKind,
    ParsedLegacyBundle,
    classify_bundle_discount_row,
    decimal_to_json,
    map_auto_bundle_rule,
    metaobject_fields,
    normalize_product_gid,
    normalize_variant_gid,
    parse_bundle_metaobject,
    parse_int_string,
    parse_iso_datetime,
    parse_money_string,
    parse_percent_string,
    parse_products,
)

D = Decimal
P1 = "gid://shopify/Product/1"
P2 = "gid://shopify/Product/2"
V9 = "gid://shopify/ProductVariant/9"


def fields(**overrides: str | None) -> dict[str, str | None]:
    base: dict[str, str | None] = {
        "bundle_name": "Summer Set",
        "bundle_title": "Summer Set - 15% off",
        "description": "Two things",
        "created_at": "2024-03-01T10:00:00Z",
        "discount": "15",
        "products": json.dumps([P1, P2]),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def invalid(field: str, match: str) -> Any:
    """pytest.raises for InvalidLegacyData on `field` whose detail matches `match`."""
    return pytest.raises(InvalidLegacyData, match=rf"^{field}: .*{match}")


# ------------------------------------------------------------------ the exception


def test_invalid_legacy_data_carries_field_detail_and_reason() -> None:
    exc = InvalidLegacyData("discount", "negative percentage: '-5'")
    assert exc.field == "discount"
    assert exc.detail == "negative percentage: '-5'"
    assert str(exc) == "discount: negative percentage: '-5'"
    assert exc.reason == INVALID_LEGACY_DATA_REASON == "invalid_legacy_data"
    assert isinstance(exc, ValueError)


# ------------------------------------------------------------------ metaobject


def test_parse_clean_metaobject() -> None:
    parsed = parse_bundle_metaobject(fields())
    assert parsed == ParsedLegacyBundle(
        name="Summer Set",
        title="Summer Set - 15% off",
        description="Two things",
        created_at=datetime(2024, 3, 1, 10, 0, 0),
        discount_percent=D("15"),
        products=[LegacyProductRef(P1, None, 1), LegacyProductRef(P2, None, 1)],
    )


def test_strings_are_trimmed_and_blank_is_none() -> None:
    parsed = parse_bundle_metaobject(
        fields(bundle_name="  Café Crème  ", bundle_title="   ", description="", created_at=" ")
    )
    assert parsed.name == "Café Crème"
    assert parsed.title is None
    assert parsed.description is None
    assert parsed.created_at is None


def test_missing_optional_fields() -> None:
    parsed = parse_bundle_metaobject({"products": json.dumps([P1])})
    assert parsed == ParsedLegacyBundle(None, None, None, None, None, [LegacyProductRef(P1)])


def test_none_values_count_as_missing() -> None:
    parsed = parse_bundle_metaobject({"products": json.dumps([P1]), "description": None, "discount": None})
    assert parsed.description is None
    assert parsed.discount_percent is None


def test_unknown_keys_are_ignored() -> None:
    assert parse_bundle_metaobject(fields(extra="whatever")).name == "Summer Set"


def test_non_ascii_name_is_kept() -> None:
    assert parse_bundle_metaobject(fields(bundle_name="夏のセット 🎁")).name == "夏のセット 🎁"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("15", D("15")),
        ("15%", D("15")),
        (" 12.5 % ", D("12.5")),
        ("0", D("0")),
        ("100", D("100")),
        ("", None),
        ("   ", None),
    ],
)
def test_metaobject_discount(raw: str, expected: Decimal | None) -> None:
    assert parse_bundle_metaobject(fields(discount=raw)).discount_percent == expected


def test_metaobject_discount_missing() -> None:
    assert parse_bundle_metaobject(fields(discount=None)).discount_percent is None


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("-5", "negative"),
        ("100.5", "above 100"),
        ("abc", "not a percentage"),
        ("NaN", "not a percentage"),
        ("Infinity", "not a percentage"),
        ("%", "not a percentage"),
    ],
)
def test_metaobject_bad_discount(raw: str, match: str) -> None:
    with invalid("discount", match):
        parse_bundle_metaobject(fields(discount=raw))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-03-01T10:00:00Z", datetime(2024, 3, 1, 10, 0, 0)),
        ("2024-03-01T10:00:00z", datetime(2024, 3, 1, 10, 0, 0)),
        ("2024-03-01T10:00:00.123Z", datetime(2024, 3, 1, 10, 0, 0, 123000)),
        ("2024-03-01T10:00:00.123456789Z", datetime(2024, 3, 1, 10, 0, 0, 123456)),
        ("2024-03-01T12:00:00+02:00", datetime(2024, 3, 1, 10, 0, 0)),
        ("2024-03-01T05:00:00-05:00", datetime(2024, 3, 1, 10, 0, 0)),
        ("2024-03-01 10:00:00", datetime(2024, 3, 1, 10, 0, 0)),
        ("2024-03-01", datetime(2024, 3, 1)),
        (" 2024-03-01T10:00:00Z ", datetime(2024, 3, 1, 10, 0, 0)),
    ],
)
def test_created_at_tolerant_iso(raw: str, expected: datetime) -> None:
    parsed = parse_bundle_metaobject(fields(created_at=raw)).created_at
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is None  # naive UTC, like TIMESTAMP(3)


@pytest.mark.parametrize(
    "raw", ["yesterday", "2024-13-01", "01/03/2024", "Fri Mar 01 2024 10:00:00 GMT+0000", "1709287200", ""]
)
def test_created_at_invalid_is_none(raw: str) -> None:
    assert parse_bundle_metaobject(fields(created_at=raw)).created_at is None
    assert parse_iso_datetime(raw) is None


def test_parse_iso_datetime_none() -> None:
    assert parse_iso_datetime(None) is None


# ------------------------------------------------------------------ products


def test_products_as_gids() -> None:
    assert parse_products(json.dumps([P1, P2])) == [LegacyProductRef(P1), LegacyProductRef(P2)]


def test_products_as_objects() -> None:
    raw = json.dumps([{"productId": P1, "variantId": V9, "quantity": 2}, {"productId": P2}])
    assert parse_products(raw) == [LegacyProductRef(P1, V9, 2), LegacyProductRef(P2, None, 1)]


def test_products_mixed_and_numeric_ids() -> None:
    raw = json.dumps(
        [
            P1,
            2,
            "3",
            {"productId": 4, "variantId": 9},
            {"productId": "5", "variantId": "10", "quantity": "3"},
            {"productId": "gid://shopify/Product/6", "variantId": None, "quantity": None},
            {"productId": " gid://shopify/Product/7 ", "variantId": ""},
        ]
    )
    assert parse_products(raw) == [
        LegacyProductRef("gid://shopify/Product/1", None, 1),
        LegacyProductRef("gid://shopify/Product/2", None, 1),
        LegacyProductRef("gid://shopify/Product/3", None, 1),
        LegacyProductRef("gid://shopify/Product/4", "gid://shopify/ProductVariant/9", 1),
        LegacyProductRef("gid://shopify/Product/5", "gid://shopify/ProductVariant/10", 3),
        LegacyProductRef("gid://shopify/Product/6", None, 1),
        LegacyProductRef("gid://shopify/Product/7", None, 1),
    ]


def test_products_keep_order_and_duplicates() -> None:
    assert [p.product_id for p in parse_products(json.dumps([P2, P1, P2]))] == [P2, P1, P2]


def test_products_integral_float_quantity_is_accepted() -> None:
    assert parse_products(json.dumps([{"productId": P1, "quantity": 2.0}]))[0].quantity == 2


def test_products_double_encoded_json_is_unwrapped_once() -> None:
    raw = json.dumps(json.dumps([P1]))
    assert parse_products(raw) == [LegacyProductRef(P1)]


def test_products_surrounding_whitespace() -> None:
    assert parse_products(f"  {json.dumps([P1])}\n") == [LegacyProductRef(P1)]


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_products_missing(raw: str | None) -> None:
    with invalid("products", "missing"):
        parse_products(raw)
    with invalid("products", "missing"):
        parse_bundle_metaobject(fields(products=raw))


@pytest.mark.parametrize(
    "raw", ["[gid://shopify/Product/1]", "['gid://shopify/Product/1']", "[", "gid://shopify/Product/1", "{"]
)
def test_products_unparsable_json(raw: str) -> None:
    with invalid("products", "unparsable JSON"):
        parse_bundle_metaobject(fields(products=raw))


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ('{"productId": "1"}', "dict"),
        ('"gid://shopify/Product/1"', "str"),
        ("42", "int"),
        ("null", "NoneType"),
    ],
)
def test_products_not_a_list(raw: str, kind: str) -> None:
    with invalid("products", f"not a JSON list but {kind}"):
        parse_products(raw)


def test_products_empty_list() -> None:
    with invalid("products", "empty list"):
        parse_bundle_metaobject(fields(products="[]"))


@pytest.mark.parametrize(
    "item", [{"variantId": V9}, {"productId": None}, {"productId": ""}, {"productId": "  "}, {}]
)
def test_products_object_without_product_id(item: dict[str, Any]) -> None:
    with invalid("products", r"products\[1\] has no productId"):
        parse_products(json.dumps([P1, item]))


@pytest.mark.parametrize("quantity", [0, -1, "0", "-2"])
def test_products_quantity_below_one(quantity: Any) -> None:
    with invalid("products", "(must be >= 1|not an integer)"):
        parse_products(json.dumps([{"productId": P1, "quantity": quantity}]))


def test_products_quantity_below_one_detail() -> None:
    with invalid("products", r"products\[0\]\.quantity must be >= 1, got 0"):
        parse_products(json.dumps([{"productId": P1, "quantity": 0}]))


@pytest.mark.parametrize("quantity", [1.5, "two", "1.5", True, [1], {"n": 1}, ""])
def test_products_quantity_not_integer(quantity: Any) -> None:
    with invalid("products", r"products\[0\]\.quantity is not an integer"):
        parse_products(json.dumps([{"productId": P1, "quantity": quantity}]))


def test_products_quantity_too_large() -> None:
    with invalid("products", "too large"):
        parse_products(json.dumps([{"productId": P1, "quantity": 2**31}]))


@pytest.mark.parametrize(
    "item",
    [
        "gid://shopify/ProductVariant/1",
        "gid://shopify/Collection/1",
        "gid://shopify/Product/abc",
        "gid://shopify/Product/",
        "0",
        "",
        "https://shop.myshopify.com/products/x",
        1.5,
        True,
        None,
        [P1],
    ],
)
def test_products_bad_item(item: Any) -> None:
    with pytest.raises(InvalidLegacyData) as info:
        parse_products(json.dumps([item]))
    assert info.value.field == "products"


def test_products_bad_variant() -> None:
    with invalid("products", "not a variant id"):
        parse_products(json.dumps([{"productId": P1, "variantId": "gid://shopify/Product/9"}]))


def test_normalize_gids() -> None:
    assert normalize_product_gid(12) == "gid://shopify/Product/12"
    assert normalize_product_gid("0012") == "gid://shopify/Product/12"
    assert normalize_product_gid(" gid://shopify/Product/12 ") == "gid://shopify/Product/12"
    assert normalize_variant_gid("34") == "gid://shopify/ProductVariant/34"
    assert normalize_variant_gid("gid://shopify/ProductVariant/34") == "gid://shopify/ProductVariant/34"
    with pytest.raises(InvalidLegacyData):
        normalize_product_gid("gid://shopify/ProductVariant/34")
    with pytest.raises(InvalidLegacyData):
        normalize_variant_gid(-3)


def test_metaobject_fields_from_graphql() -> None:
    raw: list[dict[str, str | None]] = [
        {"key": "bundle_name", "value": "A"},
        {"key": "discount", "value": None},
        {"value": "x"},
    ]
    assert metaobject_fields(raw) == {"bundle_name": "A", "discount": None}


# ------------------------------------------------------------------ bundle_discount_id rows


@pytest.mark.parametrize(
    ("bundle_id", "expected"),
    [
        ("auto-rule-clx1abc000001", LegacyRowClassification(LegacyRowKind.AUTO_RULE, "clx1abc000001")),
        ("auto-rule-42", LegacyRowClassification(LegacyRowKind.AUTO_RULE, "42")),
        ("Auto Generated Bundle", LegacyRowClassification(LegacyRowKind.AUTO_GENERATED, None)),
        (
            "gid://shopify/Metaobject/123456",
            LegacyRowClassification(LegacyRowKind.METAOBJECT_ID, "gid://shopify/Metaobject/123456"),
        ),
        (
            "gid://shopify/Metaobject/summer-set-2",
            LegacyRowClassification(LegacyRowKind.METAOBJECT_HANDLE, "summer-set-2"),
        ),
        (
            "gid://shopify/Metaobject/product-bundles-abc123",
            LegacyRowClassification(LegacyRowKind.METAOBJECT_HANDLE, "product-bundles-abc123"),
        ),
        ("gid://shopify/Metaobject/[object Object]", LegacyRowClassification(LegacyRowKind.INVALID, None)),
        ("[object Object]", LegacyRowClassification(LegacyRowKind.INVALID, None)),
        ("gid://shopify/Metaobject/", LegacyRowClassification(LegacyRowKind.INVALID, None)),
        ("gid://shopify/Metaobject/a/b", LegacyRowClassification(LegacyRowKind.INVALID, None)),
        ("gid://shopify/Metaobject/ x", LegacyRowClassification(LegacyRowKind.INVALID, None)),
        ("gid://shopify/Product/123", LegacyRowClassification(LegacyRowKind.INVALID, None)),
        ("auto-rule-", LegacyRowClassification(LegacyRowKind.INVALID, None)),
        ("auto-rule-a b", LegacyRowClassification(LegacyRowKind.INVALID, None)),
        ("auto generated bundle", LegacyRowClassification(LegacyRowKind.INVALID, None)),
        (" Auto Generated Bundle", LegacyRowClassification(LegacyRowKind.INVALID, None)),
        ("123456", LegacyRowClassification(LegacyRowKind.INVALID, None)),
        ("", LegacyRowClassification(LegacyRowKind.INVALID, None)),
        (None, LegacyRowClassification(LegacyRowKind.INVALID, None)),
    ],
)
def test_classify_bundle_discount_row(bundle_id: str | None, expected: LegacyRowClassification) -> None:
    assert classify_bundle_discount_row(bundle_id) == expected


def test_row_kind_is_a_string_enum() -> None:
    assert LegacyRowKind.METAOBJECT_HANDLE == "METAOBJECT_HANDLE"
    assert {k.value for k in LegacyRowKind} == {
        "AUTO_RULE",
        "AUTO_GENERATED",
        "METAOBJECT_ID",
        "METAOBJECT_HANDLE",
        "INVALID",
    }


# ------------------------------------------------------------------ scalar strings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10", D("10.00")),
        ("10.50", D("10.50")),
        ("10.5", D("10.50")),
        ("$10", D("10.00")),
        (" $ 10.99 ", D("10.99")),
        ("10€", D("10.00")),
        ("1,250.00", D("1250.00")),
        ("0", D("0.00")),
        (".5", D("0.50")),
        ("10.125", D("10.12")),  # half-even
        ("", None),
        ("  ", None),
        (None, None),
    ],
)
def test_parse_money_string(raw: str | None, expected: Decimal | None) -> None:
    assert parse_money_string(raw) == expected


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("abc", "not an amount"),
        ("10,50", "not an amount"),
        ("NaN", "not an amount"),
        ("Infinity", "not an amount"),
        ("1e3", "not an amount"),
        ("$", "not an amount"),
        ("10 USD", "not an amount"),
        ("-5", "negative"),
        ("$-5", "negative"),
        ("9" * 40, "too large"),
    ],
)
def test_parse_money_string_invalid(raw: str, match: str) -> None:
    with invalid("minPrice", match):
        parse_money_string(raw, "minPrice")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("2", 2), (" 3 ", 3), ("2.0", 2), ("0", 0), ("", None), (None, None)],
)
def test_parse_int_string(raw: str | None, expected: int | None) -> None:
    assert parse_int_string(raw) == expected


@pytest.mark.parametrize(
    ("raw", "match"),
    [("abc", "not an integer"), ("2.5", "not an integer"), ("-1", "must be >= 0"), ("1e2", "not an integer")],
)
def test_parse_int_string_invalid(raw: str, match: str) -> None:
    with invalid("minProducts", match):
        parse_int_string(raw)


def test_parse_int_string_min_value_and_overflow() -> None:
    with invalid("qty", "must be >= 1"):
        parse_int_string("0", "qty", min_value=1)
    with invalid("minProducts", "too large"):
        parse_int_string(str(2**31))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("15", D("15")),
        ("15%", D("15")),
        (" 12.5 % ", D("12.5")),
        ("12,5", D("12.5")),
        ("+5", D("5")),
        ("-0", D("0")),
        ("0.0", D("0")),
        ("100", D("100")),
        ("", None),
        (None, None),
    ],
)
def test_parse_percent_string(raw: str | None, expected: Decimal | None) -> None:
    assert parse_percent_string(raw) == expected


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("abc", "not a percentage"),
        ("NaN", "not a percentage"),
        ("nan", "not a percentage"),
        ("Infinity", "not a percentage"),
        ("-Infinity", "not a percentage"),
        ("1e1", "not a percentage"),
        ("15%%", "not a percentage"),
        ("1,000", "not a percentage"),
        ("-5", "negative"),
        ("-0.01", "negative"),
        ("100.01", "above 100"),
        ("150%", "above 100"),
    ],
)
def test_parse_percent_string_invalid(raw: str, match: str) -> None:
    with invalid("discount", match):
        parse_percent_string(raw)


def test_decimal_to_json() -> None:
    assert decimal_to_json(D("15")) == "15"
    assert decimal_to_json(D("15.0")) == "15"
    assert decimal_to_json(D("12.50")) == "12.5"
    assert decimal_to_json(D("100")) == "100"
    assert decimal_to_json(D("0")) == "0"


# ------------------------------------------------------------------ auto bundle rules


def test_map_collection_rule() -> None:
    mapping = map_auto_bundle_rule(
        name=" Summer rule ",
        collections=[
            "gid://shopify/Collection/1",
            " gid://shopify/Collection/2 ",
            "",
            "gid://shopify/Collection/1",
        ],
        tags=["sale"],
        min_price="10",
        max_price="$100.5",
        min_products="2",
        discount="15%",
        is_active=True,
    )
    assert mapping == AutoRuleMapping(
        trigger_type="COLLECTION_BASED",
        conditions={
            "collections": ["gid://shopify/Collection/1", "gid://shopify/Collection/2"],
            "tags": ["sale"],
            "price": {"min": "10.00", "max": "100.50"},
            "minProducts": 2,
        },
        bundle_template={
            "type": "FIXED",
            "discount": {"type": "PERCENTAGE", "value": "15"},
            "minProducts": 2,
        },
        is_active=True,
        name="Summer rule",
    )
    json.dumps(mapping.conditions)
    json.dumps(mapping.bundle_template)


def test_map_tag_rule() -> None:
    mapping = map_auto_bundle_rule("Tags", [], [" sale ", "summer", "sale", " "], "", "", "", "12.5", False)
    assert mapping.trigger_type == "TAG_BASED"
    assert mapping.conditions == {
        "collections": [],
        "tags": ["sale", "summer"],
        "price": {"min": None, "max": None},
        "minProducts": None,
    }
    assert mapping.bundle_template == {
        "type": "FIXED",
        "discount": {"type": "PERCENTAGE", "value": "12.5"},
        "minProducts": None,
    }
    assert mapping.is_active is False


def test_map_price_range_rule_with_null_arrays() -> None:
    mapping = map_auto_bundle_rule("Cheap", None, None, "5", "20", "3", "10", True)
    assert mapping.trigger_type == "PRICE_RANGE"
    assert mapping.conditions["collections"] == []
    assert mapping.conditions["tags"] == []
    assert mapping.conditions["price"] == {"min": "5.00", "max": "20.00"}
    assert mapping.bundle_template["minProducts"] == 3


def test_map_rule_with_only_blank_collections_falls_to_next_trigger() -> None:
    assert map_auto_bundle_rule("x", ["", "  "], ["t"], "", "", "", "", True).trigger_type == "TAG_BASED"
    assert map_auto_bundle_rule("x", [""], [""], "", "", "", "", True).trigger_type == "PRICE_RANGE"


def test_map_rule_empty_discount_is_zero() -> None:
    mapping = map_auto_bundle_rule("x", None, None, "", "", "", "", True)
    assert mapping.bundle_template["discount"] == {"type": "PERCENTAGE", "value": "0"}


def test_map_rule_blank_name_gets_default() -> None:
    assert map_auto_bundle_rule("  ", None, None, "", "", "", "", True).name == "Auto bundle rule"


def test_map_rule_equal_bounds_are_fine() -> None:
    assert map_auto_bundle_rule("x", None, None, "10", "10.00", "", "", True).conditions["price"] == {
        "min": "10.00",
        "max": "10.00",
    }


@pytest.mark.parametrize(
    ("kwargs", "field", "match"),
    [
        ({"min_price": "abc"}, "minPrice", "not an amount"),
        ({"max_price": "-1"}, "maxPrice", "negative"),
        ({"min_price": "50", "max_price": "10"}, "maxPrice", "below minPrice"),
        ({"min_products": "two"}, "minProducts", "not an integer"),
        ({"discount": "120"}, "discount", "above 100"),
        ({"discount": "abc"}, "discount", "not a percentage"),
    ],
)
def test_map_rule_invalid_values(kwargs: dict[str, str], field: str, match: str) -> None:
    args: dict[str, Any] = {
        "name": "x",
        "collections": None,
        "tags": None,
        "min_price": "",
        "max_price": "",
        "min_products": "",
        "discount": "",
        "is_active": True,
    }
    args.update(kwargs)
    with invalid(field, match):
        map_auto_bundle_rule(**args)
