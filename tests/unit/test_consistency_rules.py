"""The pure evidence rules: the Wilson bound, rates, p99 and the projection diff."""

import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.rules.consistency import (
    ConsistencyFigures,
    diff_fields,
    field_label,
    p99,
    reads_v2_since,
    v2_only_reasons,
    wilson_upper,
)
from app.rules.flags import FlagState


def test_wilson_upper_known_values() -> None:
    # Reference values (statsmodels proportion_confint(method="wilson"), alpha=0.05).
    assert wilson_upper(0, 20) == pytest.approx(0.16113, abs=1e-4)
    assert wilson_upper(0, 400) == pytest.approx(0.009513, abs=1e-5)
    assert wilson_upper(5, 100) == pytest.approx(0.11175, abs=1e-4)
    assert wilson_upper(50, 100) == pytest.approx(0.59613, abs=1e-4)
    assert wilson_upper(100, 100) == pytest.approx(1.0)


def test_wilson_upper_zero_successes_closed_form() -> None:
    z = 1.959964
    for n in (1, 7, 50, 1000):
        assert wilson_upper(0, n) == pytest.approx(z * z / (n + z * z))


def test_wilson_upper_without_trials_is_worst_case() -> None:
    assert wilson_upper(0, 0) == 1.0
    assert wilson_upper(3, -1) == 1.0


def test_wilson_upper_is_monotone_and_above_the_rate() -> None:
    for n in (10, 100, 1000):
        last = -1.0
        for s in range(0, n + 1, max(1, n // 10)):
            upper = wilson_upper(s, n)
            assert upper >= s / n - 1e-12
            assert upper >= last
            last = upper
    # More evidence at the same rate narrows the bound.
    assert wilson_upper(10, 1000) < wilson_upper(1, 100) < wilson_upper(0, 10) + 1


def test_wilson_upper_clamps_impossible_counts() -> None:
    assert wilson_upper(12, 10) == pytest.approx(1.0)
    assert wilson_upper(-2, 10) == wilson_upper(0, 10)


def test_figures_rates_and_bound() -> None:
    f = ConsistencyFigures(
        comparisons=380,
        confirmed=1,
        transient=4,
        verified=20,
        divergent=0,
        noise_comparisons=40,
        noise_mismatches=2,
        v2_reads=500,
        v2_errors=5,
        v2_p99_ms=12.0,
        legacy_p99_ms=40.0,
    )
    assert f.mismatch_rate == pytest.approx(1 / 400)
    assert f.mismatch_upper == pytest.approx(wilson_upper(1, 400))
    assert f.noise_rate == pytest.approx(0.05)
    assert f.error_rate == pytest.approx(0.01)
    assert f.p99_ratio == pytest.approx(0.3)
    empty = ConsistencyFigures()
    assert empty.mismatch_rate is None and empty.mismatch_upper == 1.0
    assert empty.error_rate is None and empty.p99_ratio is None
    with pytest.raises(AttributeError):
        f.confirmed = 3  # type: ignore[misc]


def test_p99_nearest_rank() -> None:
    assert p99([]) is None
    assert p99([5.0]) == 5.0
    values = [float(i) for i in range(1, 101)]
    assert p99(values) == 99.0
    assert p99(list(reversed(values))) == 99.0
    assert p99([float(i) for i in range(1, 1001)]) == 990.0
    assert not math.isnan(p99([0.0, 0.0]) or 0.0)


def test_diff_fields_names_what_differs() -> None:
    left = {"gid://a": {"name": "A", "discount": "10", "products": ["p1", "p2"]}, "gid://b": {"name": "B"}}
    right = {"gid://a": {"name": "A2", "discount": "10", "products": ["p1", "p3"]}, "gid://c": {"name": "C"}}
    assert diff_fields(left, right) == ["gid://a.name", "gid://a.products[1]", "gid://b", "gid://c"]
    assert diff_fields({"x": [1, 2]}, {"x": [1]}) == ["x"]
    assert diff_fields(left, left) == []
    assert diff_fields(1, 2) == ["$"]
    assert diff_fields(None, {"a": 1}) == ["presence"]


def test_field_label_drops_ids_and_indexes() -> None:
    assert field_label("name") == "name"
    assert field_label("bundles.gid://shopify/Metaobject/1.title") == "title"
    assert field_label("bundles.gid://shopify/Metaobject/1.products[0]") == "products"
    assert field_label("bundles.gid://shopify/Metaobject/1") == "presence"
    assert field_label("presence") == "presence"


def _bundle(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "B",
        "title": "T",
        "description": "D",
        "status": "ACTIVE",
        "shopifyMetaobjectId": "gid://shopify/Metaobject/1",
        "metadata": {},
        "components": [{"shopifyProductId": "gid://shopify/Product/1", "quantity": 1}],
        "pricingRules": [
            {
                "ruleType": "BUNDLE_DISCOUNT",
                "discountType": "PERCENTAGE",
                "discountValue": Decimal("15"),
                "isActive": True,
            }
        ],
        "discounts": [{"shopifyDiscountId": "gid://shopify/DiscountAutomaticNode/1", "isActive": True}],
        "tags": [],
        "images": [],
    }
    base.update(kw)
    return base


def test_v2_only_reasons() -> None:
    assert v2_only_reasons(_bundle()) == []
    assert v2_only_reasons(_bundle(description=None)) == []  # the fallback loses nothing
    assert v2_only_reasons(_bundle(shopifyMetaobjectId=None)) == ["not_representable"]
    assert v2_only_reasons(_bundle(discounts=[])) == ["not_representable"]
    assert v2_only_reasons(_bundle(status="DRAFT", tags=["x"])) == ["draft", "tags_or_images"]
    assert v2_only_reasons(
        _bundle(components=[{"shopifyProductId": "gid://shopify/Product/1", "shopifyVariantId": "v", "quantity": 3}])
    ) == ["variant", "quantity"]
    assert v2_only_reasons(_bundle(metadata={"source": "AI", "ai_bundle_id": "a1"})) == ["ai_fields"]
    assert v2_only_reasons(_bundle(metadata={"source": "AI"})) == ["ai_only"]


def test_reads_v2_since_follows_the_latest_switch() -> None:
    shop = "a.myshopify.com"
    t1, t2, t3 = (datetime(2026, 12, 6, h, tzinfo=UTC) for h in (1, 2, 3))
    off = {"enabled": False, "rolloutPercent": 0, "shopOverrides": {}, "sampleRate": 0}
    on_for_shop = {**off, "shopOverrides": {shop: True}}
    global_on = {**off, "enabled": True}
    audit = [  # newest first
        {"changedAt": t3, "oldValue": on_for_shop, "newValue": global_on},  # stays on: not a switch
        {"changedAt": t2, "oldValue": off, "newValue": on_for_shop},  # the switch
        {"changedAt": t1, "oldValue": None, "newValue": off},
    ]
    current = FlagState("V2_BUNDLE_ENGINE", enabled=True)
    assert reads_v2_since(shop, current, audit) == (True, t2)
    assert reads_v2_since("b.myshopify.com", current, audit) == (True, t3)
    assert reads_v2_since(shop, current, []) == (True, None)  # before the audit: everything counts
    assert reads_v2_since(shop, FlagState("V2_BUNDLE_ENGINE"), audit) == (False, None)
