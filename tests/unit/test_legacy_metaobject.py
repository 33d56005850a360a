"""The pure legacy mapping: what a V2 bundle's `product-bundles` metaobject says, and what it approximates."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest

from app.rules.legacy_metaobject import legacy_metaobject_fields, legacy_percent_text, publishable_status

P1, P2 = "gid://shopify/Product/1", "gid://shopify/Product/2"


def bundle(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "Set",
        "title": "Summer set",
        "description": "Two things",
        "components": [{"shopifyProductId": P1, "quantity": 1}],
        "pricingRules": [{"discountType": "PERCENTAGE", "discountValue": Decimal("15")}],
    }
    base.update(extra)
    return base


def test_a_plain_bundle_is_written_as_is() -> None:
    fields, approximations = legacy_metaobject_fields(bundle(), created_at=datetime(2026, 1, 15, 10, 30))
    assert fields == {
        "bundle_name": "Set",
        "bundle_title": "Summer set",
        "description": "Two things",
        "discount": "15",
        "products": json.dumps([P1]),
        "created_at": "2026-01-15T10:30:00.000Z",
    }
    assert approximations == []


def test_everything_the_definition_cannot_hold_is_approximated_and_named() -> None:
    components = [
        {"shopifyProductId": P2, "shopifyVariantId": "gid://shopify/ProductVariant/9", "quantity": 1},
        {"shopifyProductId": P1, "quantity": 3},
        {"shopifyProductId": P2, "quantity": 1},
    ]
    rules = [
        {"discountType": "PERCENTAGE", "discountValue": Decimal("12.99")},
        {"discountType": "FIXED_AMOUNT", "discountValue": Decimal("5")},
    ]
    fields, approximations = legacy_metaobject_fields(
        bundle(components=components, pricingRules=rules, description="  ", title=" ")
    )
    assert fields["products"] == json.dumps([P2, P1])  # distinct, display order
    assert fields["discount"] == "12"  # rounded down: never promises more than the discount gives
    assert fields["bundle_title"] == fields["description"] == "Set"
    assert "created_at" not in fields  # only written at create
    assert approximations == [
        "variant",
        "quantity",
        "duplicate_product",
        "fractional_percentage",
        "pricing_not_representable",
        "description_fallback",
    ]


def test_no_percentage_rule_writes_zero() -> None:
    fields, approximations = legacy_metaobject_fields(bundle(pricingRules=[]))
    assert fields["discount"] == "0" and approximations == []
    fixed = [{"discountType": "FIXED_PRICE", "discountValue": Decimal("20")}]
    fields, approximations = legacy_metaobject_fields(bundle(pricingRules=fixed))
    assert fields["discount"] == "0" and approximations == ["pricing_not_representable"]
    inactive = [{"discountType": "PERCENTAGE", "discountValue": Decimal("10"), "isActive": False}]
    assert legacy_metaobject_fields(bundle(pricingRules=inactive)) == ({**fields}, [])


@pytest.mark.parametrize(
    ("value", "text"), [(None, "0"), (Decimal("0.5"), "0"), (Decimal("99.99"), "99"), (Decimal("20.00"), "20")]
)
def test_percent_text_is_an_integer_rounded_down(value: Decimal | None, text: str) -> None:
    assert legacy_percent_text(value) == text


@pytest.mark.parametrize(
    ("status", "published"),
    [("ACTIVE", "ACTIVE"), ("DRAFT", "DRAFT"), ("SCHEDULED", "DRAFT"), ("PAUSED", "DRAFT"), ("ARCHIVED", "DRAFT")],
)
def test_only_an_active_bundle_is_published(status: str, published: str) -> None:
    assert publishable_status(status) == published
