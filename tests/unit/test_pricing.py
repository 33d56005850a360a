"""The V2 pricing engine and the legacy percentage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app.rules.pricing import (
    BundlePrice,
    PricedComponent,
    PricingRule,
    is_rule_active,
    legacy_price,
    price_bundle,
    quantize_money,
)

D = Decimal
NOW = datetime(2025, 6, 1, 12, 0, 0)


def rule(
    discount_type: str = "PERCENTAGE",
    value: str = "10",
    *,
    priority: int = 0,
    is_active: bool = True,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    usage_limit: int | None = None,
    usage_count: int = 0,
    rule_type: str = "BUNDLE_DISCOUNT",
) -> PricingRule:
    return PricingRule(
        priority=priority,
        is_active=is_active,
        discount_type=discount_type,
        discount_value=D(value),
        starts_at=starts_at,
        ends_at=ends_at,
        usage_limit=usage_limit,
        usage_count=usage_count,
        rule_type=rule_type,
    )


def comp(
    price: str | None, quantity: int = 1, adj_type: str = "NONE", adj: str | None = None
) -> PricedComponent:
    return PricedComponent(
        price=None if price is None else D(price),
        quantity=quantity,
        price_adjustment_type=adj_type,
        price_adjustment=None if adj is None else D(adj),
    )


TWO = [comp("30.00"), comp("20.00", 2)]  # original 70.00


def price(rules: list[PricingRule], components: list[PricedComponent] | None = None) -> BundlePrice:
    return price_bundle(TWO if components is None else components, rules, now=NOW)


# ------------------------------------------------------------------ original total


def test_no_rules_means_no_discount() -> None:
    result = price([])
    assert result == BundlePrice(D("70.00"), D("70.00"), D("0.00"), D("0.00"), "USD", None)


def test_currency_is_passed_through() -> None:
    assert price_bundle(TWO, [], now=NOW, currency="EUR").currency == "EUR"


def test_missing_prices_count_as_zero() -> None:
    result = price([rule("PERCENTAGE", "10")], [comp(None, 3), comp("10.00")])
    assert result.original_price == D("10.00")
    assert result.discounted_price == D("9.00")


def test_all_prices_missing_or_no_components() -> None:
    for components in ([comp(None), comp(None, 2)], []):
        result = price([rule("PERCENTAGE", "10")], components)
        assert result.original_price == D("0.00")
        assert result.discounted_price == D("0.00")
        assert result.savings == D("0.00")
        assert result.savings_percentage == D("0.00")


def test_component_price_adjustments() -> None:
    components = [
        comp("10.00", 2, "PERCENTAGE", "25"),  # 7.50 x 2
        comp("10.00", 1, "FIXED_AMOUNT", "3"),  # 7.00
        comp("10.00", 1, "FIXED_PRICE", "4.5"),  # 4.50
        comp("10.00", 1, "NONE", "9"),  # NONE ignores the amount
        comp("10.00", 1, "PERCENTAGE", None),  # no amount: unchanged
    ]
    assert price([], components).original_price == D("46.50")  # 15 + 7 + 4.50 + 10 + 10


def test_component_adjustments_never_go_negative_or_beyond_100_percent() -> None:
    components = [comp("5.00", 1, "FIXED_AMOUNT", "8"), comp("5.00", 1, "PERCENTAGE", "150")]
    assert price([], components).original_price == D("0.00")
    assert price([], [comp("5.00", 1, "PERCENTAGE", "-20")]).original_price == D("5.00")


def test_fixed_price_adjustment_applies_to_unknown_price() -> None:
    assert price([], [comp(None, 2, "FIXED_PRICE", "3.00")]).original_price == D("6.00")


def test_unknown_adjustment_type_is_an_error() -> None:
    with pytest.raises(ValueError):
        price([], [comp("1.00", 1, "BOGUS", "1")])


def test_negative_quantity_is_an_error() -> None:
    with pytest.raises(ValueError):
        price([], [comp("1.00", -1)])


def test_non_finite_price_counts_as_zero() -> None:
    assert price([], [comp("NaN"), comp("2.00")]).original_price == D("2.00")


# ------------------------------------------------------------------ discount types


def test_percentage() -> None:
    result = price([rule("PERCENTAGE", "15")])
    assert result.original_price == D("70.00")
    assert result.discounted_price == D("59.50")
    assert result.savings == D("10.50")
    assert result.savings_percentage == D("15.00")
    assert result.applied_rule == rule("PERCENTAGE", "15")


@pytest.mark.parametrize(("value", "expected"), [("150", "0.00"), ("100", "0.00"), ("-10", "70.00")])
def test_percentage_is_clamped(value: str, expected: str) -> None:
    assert price([rule("PERCENTAGE", value)]).discounted_price == D(expected)


def test_fixed_amount() -> None:
    result = price([rule("FIXED_AMOUNT", "12.34")])
    assert result.discounted_price == D("57.66")
    assert result.savings == D("12.34")
    assert result.savings_percentage == D("17.63")  # 12.34 / 70 = 17.628...


def test_fixed_amount_never_below_zero() -> None:
    result = price([rule("FIXED_AMOUNT", "500")])
    assert result.discounted_price == D("0.00")
    assert result.savings == D("70.00")
    assert result.savings_percentage == D("100.00")


def test_fixed_price() -> None:
    result = price([rule("FIXED_PRICE", "49.99")])
    assert result.discounted_price == D("49.99")
    assert result.savings == D("20.01")


def test_fixed_price_never_raises_the_price() -> None:
    result = price([rule("FIXED_PRICE", "99")])
    assert result.discounted_price == D("70.00")
    assert result.savings == D("0.00")


def test_negative_values_count_as_zero() -> None:
    assert price([rule("FIXED_AMOUNT", "-5")]).discounted_price == D("70.00")
    assert price([rule("FIXED_PRICE", "-5")]).discounted_price == D("0.00")


def test_free_item_makes_cheapest_unit_free() -> None:
    result = price([rule("FREE_ITEM", "0")])
    assert result.discounted_price == D("50.00")  # one 20.00 unit free, not the whole line
    assert result.savings == D("20.00")


def test_free_item_ignores_zero_quantity_lines_and_uses_adjusted_price() -> None:
    components = [comp("1.00", 0), comp("10.00", 1, "PERCENTAGE", "50"), comp("8.00", 1)]
    assert price([rule("FREE_ITEM", "1")], components).discounted_price == D("8.00")


def test_free_item_with_no_components() -> None:
    assert price([rule("FREE_ITEM", "1")], []).discounted_price == D("0.00")


def test_unknown_discount_type_is_skipped() -> None:
    result = price([rule("MYSTERY", "50", priority=9), rule("PERCENTAGE", "10")])
    assert result.discounted_price == D("63.00")


# ------------------------------------------------------------------ rule choice


def test_highest_priority_wins_even_if_less_generous() -> None:
    low = rule("PERCENTAGE", "50", priority=1)
    high = rule("PERCENTAGE", "10", priority=5)
    result = price([low, high])
    assert result.discounted_price == D("63.00")
    assert result.applied_rule is high


def test_priority_tie_gives_lowest_price() -> None:
    a = rule("PERCENTAGE", "10", priority=3)
    b = rule("FIXED_AMOUNT", "20", priority=3)
    c = rule("FIXED_PRICE", "60", priority=3)
    for order in ([a, b, c], [c, b, a], [b, a, c]):
        result = price(order)
        assert result.discounted_price == D("50.00")
        assert result.applied_rule is b


def test_complete_tie_keeps_first_rule() -> None:
    a = rule("PERCENTAGE", "10", priority=1)
    b = rule("FIXED_AMOUNT", "7", priority=1)
    assert price([a, b]).applied_rule is a
    assert price([b, a]).applied_rule is b


def test_discounts_do_not_stack() -> None:
    assert price([rule("PERCENTAGE", "10"), rule("PERCENTAGE", "10")]).discounted_price == D("63.00")


def test_inactive_rule_is_skipped() -> None:
    result = price([rule("PERCENTAGE", "50", priority=9, is_active=False), rule("PERCENTAGE", "10")])
    assert result.discounted_price == D("63.00")


def test_higher_priority_but_inapplicable_falls_back() -> None:
    expired = rule("PERCENTAGE", "50", priority=9, ends_at=NOW - timedelta(days=1))
    assert price([expired, rule("PERCENTAGE", "10")]).discounted_price == D("63.00")


@pytest.mark.parametrize("rule_type", ["VOLUME_TIER", "MEMBER_PRICE", "FIRST_PURCHASE"])
def test_context_dependent_rule_types_are_skipped(rule_type: str) -> None:
    result = price([rule("PERCENTAGE", "50", rule_type=rule_type)])
    assert result.discounted_price == D("70.00")
    assert result.applied_rule is None


@pytest.mark.parametrize("rule_type", ["BUNDLE_DISCOUNT", "TIME_LIMITED", "BOGO"])
def test_unconditional_rule_types_apply(rule_type: str) -> None:
    assert price([rule("PERCENTAGE", "50", rule_type=rule_type)]).discounted_price == D("35.00")


def test_applicable_rule_types_can_be_widened() -> None:
    r = rule("PERCENTAGE", "50", rule_type="MEMBER_PRICE")
    result = price_bundle(TWO, [r], now=NOW, applicable_rule_types={"MEMBER_PRICE"})
    assert result.discounted_price == D("35.00")


# ------------------------------------------------------------------ windows and usage


def test_start_is_inclusive() -> None:
    r = rule("PERCENTAGE", "10", starts_at=NOW)
    assert is_rule_active(r, NOW)
    assert not is_rule_active(r, NOW - timedelta(milliseconds=1))
    assert price([r]).discounted_price == D("63.00")


def test_end_is_exclusive() -> None:
    r = rule("PERCENTAGE", "10", ends_at=NOW)
    assert not is_rule_active(r, NOW)
    assert is_rule_active(r, NOW - timedelta(milliseconds=1))
    assert price([r]).discounted_price == D("70.00")


def test_window_open_ends() -> None:
    assert is_rule_active(rule(starts_at=None, ends_at=None), NOW)
    assert is_rule_active(rule(starts_at=NOW - timedelta(days=1), ends_at=None), NOW)
    assert is_rule_active(rule(starts_at=None, ends_at=NOW + timedelta(days=1)), NOW)
    assert not is_rule_active(rule(starts_at=NOW + timedelta(days=1)), NOW)


def test_aware_now_is_compared_as_utc() -> None:
    r = rule(starts_at=datetime(2025, 6, 1, 12, 0), ends_at=datetime(2025, 6, 1, 13, 0))
    assert is_rule_active(r, datetime(2025, 6, 1, 12, 30, tzinfo=UTC))
    # 14:30 in UTC+2 is 12:30 UTC: inside the window.
    assert is_rule_active(r, datetime(2025, 6, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))))
    # 12:30 in UTC+2 is 10:30 UTC: before the window.
    assert not is_rule_active(r, datetime(2025, 6, 1, 12, 30, tzinfo=timezone(timedelta(hours=2))))


def test_aware_window_bounds() -> None:
    r = rule(starts_at=datetime(2025, 6, 1, 12, 0, tzinfo=UTC))
    assert is_rule_active(r, NOW)
    assert not is_rule_active(r, NOW - timedelta(seconds=1))


def test_usage_limit() -> None:
    assert is_rule_active(rule(usage_limit=5, usage_count=4), NOW)
    assert not is_rule_active(rule(usage_limit=5, usage_count=5), NOW)
    assert not is_rule_active(rule(usage_limit=5, usage_count=6), NOW)
    assert not is_rule_active(rule(usage_limit=0, usage_count=0), NOW)
    assert is_rule_active(rule(usage_limit=None, usage_count=10_000), NOW)


def test_exhausted_rule_falls_back_to_next() -> None:
    exhausted = rule("PERCENTAGE", "50", priority=2, usage_limit=3, usage_count=3)
    fallback = rule("PERCENTAGE", "10", priority=1)
    result = price([exhausted, fallback])
    assert result.discounted_price == D("63.00")
    assert result.applied_rule is fallback


# ------------------------------------------------------------------ rounding


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0.125", "0.12"), ("0.135", "0.14"), ("0.145", "0.14"), ("2.675", "2.68"), ("1.005", "1.00")],
)
def test_quantize_money_half_even(raw: str, expected: str) -> None:
    assert quantize_money(D(raw)) == D(expected)


def test_percentage_result_rounds_half_even() -> None:
    assert price([rule("PERCENTAGE", "50")], [comp("0.25")]).discounted_price == D("0.12")
    assert price([rule("PERCENTAGE", "50")], [comp("0.27")]).discounted_price == D("0.14")


def test_component_unit_price_is_rounded_before_quantity() -> None:
    # 0.25 at 50 % = 0.125 → 0.12 per unit, x3 = 0.36 (not 0.375 → 0.38).
    assert price([], [comp("0.25", 3, "PERCENTAGE", "50")]).original_price == D("0.36")


def test_savings_percentage_rounding() -> None:
    result = price([rule("FIXED_AMOUNT", "1")], [comp("3.00")])
    assert result.savings_percentage == D("33.33")
    result = price([rule("FIXED_AMOUNT", "2")], [comp("3.00")])
    assert result.savings_percentage == D("66.67")


def test_amounts_have_two_decimals() -> None:
    result = price([rule("PERCENTAGE", "10")], [comp("10")])
    for amount in (result.original_price, result.discounted_price, result.savings, result.savings_percentage):
        assert amount.as_tuple().exponent == -2


# ------------------------------------------------------------------ legacy


def test_legacy_percentage() -> None:
    result = legacy_price(TWO, D("15"), "USD")
    assert result == BundlePrice(D("70.00"), D("59.50"), D("10.50"), D("15.00"), "USD", None)


def test_legacy_no_discount() -> None:
    result = legacy_price(TWO, None, "CAD")
    assert result.discounted_price == D("70.00")
    assert result.savings_percentage == D("0.00")
    assert result.currency == "CAD"


def test_legacy_clamps_bad_percentages() -> None:
    assert legacy_price(TWO, D("120"), "USD").discounted_price == D("0.00")
    assert legacy_price(TWO, D("-5"), "USD").discounted_price == D("70.00")


def test_legacy_missing_prices_and_rounding() -> None:
    assert legacy_price([comp(None), comp("0.25")], D("50"), "USD").discounted_price == D("0.12")


@pytest.mark.parametrize("percent", ["0", "10", "12.5", "15", "33.33", "100"])
def test_migrated_rule_matches_legacy(percent: str) -> None:
    """A migrated bundle (one BUNDLE_DISCOUNT/PERCENTAGE rule) prices the same on both engines."""
    components = [comp("19.99"), comp("7.49", 3), comp(None)]
    migrated = rule("PERCENTAGE", percent, priority=0)
    v2 = price_bundle(components, [migrated], now=NOW)
    legacy = legacy_price(components, D(percent), "USD")
    assert (v2.original_price, v2.discounted_price, v2.savings, v2.savings_percentage) == (
        legacy.original_price,
        legacy.discounted_price,
        legacy.savings,
        legacy.savings_percentage,
    )
