"""`storefront_product_id`: the one conversion to the product id form `ai_fbt_bundles` and the theme use."""

from __future__ import annotations

from typing import Any

import pytest

from app.rules.legacy_parsing import InvalidLegacyData, normalize_product_gid, storefront_product_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("123", "123"),
        (123, "123"),
        ("gid://shopify/Product/123", "123"),
        (" gid://shopify/Product/0042 ", "42"),
        ("18446744073709551615", "18446744073709551615"),
    ],
)
def test_both_forms_give_the_numeric_id(value: Any, expected: str) -> None:
    assert storefront_product_id(value) == expected
    # The inverse of normalize_product_gid: a round trip through either form is stable.
    assert storefront_product_id(normalize_product_gid(value)) == expected
    assert normalize_product_gid(storefront_product_id(value)) == f"gid://shopify/Product/{expected}"


@pytest.mark.parametrize(
    "value", ["", "abc", "0", "gid://shopify/ProductVariant/1", "gid://shopify/Product/x", "1.5", None, True]
)
def test_anything_else_is_invalid_legacy_data(value: Any) -> None:
    with pytest.raises(InvalidLegacyData) as caught:
        storefront_product_id(value, "bundledProductIds")
    assert caught.value.field == "bundledProductIds"
