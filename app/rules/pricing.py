"""The V2 bundle pricing engine (pure) and the legacy percentage it replaces.

The storefront (`/proxy/v2/bundles`) shows `pricing: {originalPrice, discountedPrice, savings,
savingsPercentage, currency}`. With `V2_PRICING_ENGINE` on it comes from `price_bundle`, else
from `legacy_price`; a migrated bundle carries one `BUNDLE_DISCOUNT`/`PERCENTAGE` rule holding
the legacy discount, so both functions give the same answer for it (a test holds them together).
That is what lets the flag be flipped per shop without merchants seeing prices move.

Rules of the engine (all money is `Decimal`, never float):

* **Component unit price** = cached price (missing → 0) after the component's own adjustment:
  `NONE` keeps it, `PERCENTAGE` takes p% off (p clamped to 0-100), `FIXED_AMOUNT` subtracts the
  amount, `FIXED_PRICE` replaces the unit price (even when the cached price is unknown: the
  merchant stated it). Never below 0, then quantized to cents.
* **Original price** = sum of unit price * quantity.
* **Applicable rules**: `is_active`; `starts_at <= now < ends_at` (start inclusive, end
  exclusive, `None` = open); `usage_limit is None or usage_count < usage_limit`; a `rule_type`
  the engine can decide without buyer/cart context (`APPLICABLE_RULE_TYPES`: a member price or a
  first-purchase discount must not be advertised to every anonymous visitor); a known
  `discount_type`.
* **Choice**: exactly one rule applies (discounts do not stack). The highest `priority` number
  wins; among rules of equal priority the one giving the lowest price wins (the merchant made
  them equally important, the shopper gets the better deal, and the result does not depend on
  row order); a remaining tie keeps the first in input order.
* **Discount types**: `PERCENTAGE` p% off the total (p clamped to 0-100); `FIXED_AMOUNT` subtracts
  the value; `FIXED_PRICE` sets the total to the value but never above the original (a discount
  rule never raises a price); `FREE_ITEM` makes the cheapest unit free (`discount_value` is
  ignored). Negative values count as 0. The result is never below 0.
* **Rounding**: every amount is quantized to 0.01 with ROUND_HALF_EVEN (banker's rounding, as
  Python's `round` and most ledgers do); `savings_percentage` = savings / original * 100 rounded
  to 2 decimals the same way, 0 when the original is 0.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from app.core.time import naive_utc

__all__ = [
    "APPLICABLE_RULE_TYPES",
    "DISCOUNT_TYPES",
    "BundlePrice",
    "PricedComponent",
    "PricingRule",
    "is_rule_active",
    "legacy_price",
    "price_bundle",
    "quantize_money",
]

CENT = Decimal("0.01")
ZERO = Decimal("0")
HUNDRED = Decimal("100")

#: Discount types the engine knows ("DiscountType" enum). A rule with another type is skipped.
DISCOUNT_TYPES: frozenset[str] = frozenset({"PERCENTAGE", "FIXED_AMOUNT", "FIXED_PRICE", "FREE_ITEM"})

#: Rule types that apply to every shopper looking at the bundle. VOLUME_TIER, MEMBER_PRICE and
#: FIRST_PURCHASE depend on the cart or the customer, which a storefront price display lacks.
APPLICABLE_RULE_TYPES: frozenset[str] = frozenset({"BUNDLE_DISCOUNT", "TIME_LIMITED", "BOGO"})


@dataclass(frozen=True, slots=True)
class PricedComponent:
    """One component line: its unit price (as cached from Shopify) and how many are in the bundle."""

    price: Decimal | None
    quantity: int
    price_adjustment_type: str = "NONE"
    price_adjustment: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PricingRule:
    """The pricing-relevant columns of a `BundlePricingRule` row."""

    priority: int
    is_active: bool
    discount_type: str  # PERCENTAGE | FIXED_AMOUNT | FIXED_PRICE | FREE_ITEM
    discount_value: Decimal
    starts_at: datetime | None
    ends_at: datetime | None
    usage_limit: int | None
    usage_count: int
    rule_type: str = "BUNDLE_DISCOUNT"


@dataclass(frozen=True, slots=True)
class BundlePrice:
    """What the storefront shows. `applied_rule` says which rule produced the price (None: none)."""

    original_price: Decimal
    discounted_price: Decimal
    savings: Decimal
    savings_percentage: Decimal
    currency: str
    applied_rule: PricingRule | None = None


def quantize_money(value: Decimal) -> Decimal:
    """Round to cents, half to even (0.125 → 0.12, 0.135 → 0.14)."""
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def _clamp(value: Decimal, low: Decimal, high: Decimal | None = None) -> Decimal:
    """Bound `value`; NaN/Infinity (possible in a Postgres NUMERIC) count as `low`, never as a price."""
    if not value.is_finite() or value < low:
        return low
    if high is not None and value > high:
        return high
    return value


def _unit_price(component: PricedComponent) -> Decimal:
    base = component.price if component.price is not None else ZERO
    adjustment = component.price_adjustment
    kind = component.price_adjustment_type
    if adjustment is None or kind == "NONE":
        if base.is_finite() and base >= ZERO:
            return quantize_money(base)  # the common case: a cached price, no adjustment
        unit = base
    elif kind == "PERCENTAGE":
        unit = base * (HUNDRED - _clamp(adjustment, ZERO, HUNDRED)) / HUNDRED
    elif kind == "FIXED_AMOUNT":
        unit = base - adjustment
    elif kind == "FIXED_PRICE":
        unit = adjustment
    else:
        raise ValueError(f"unknown price adjustment type {kind!r}")
    return quantize_money(_clamp(unit, ZERO))


def _unit_prices(components: Sequence[PricedComponent]) -> list[tuple[Decimal, int]]:
    lines = []
    for component in components:
        if component.quantity < 0:
            raise ValueError("component quantity must be >= 0")
        lines.append((_unit_price(component), component.quantity))
    return lines


def is_rule_active(
    rule: PricingRule,
    now: datetime,
    applicable_rule_types: Collection[str] = APPLICABLE_RULE_TYPES,
) -> bool:
    """True when `rule` may price the bundle at `now` (see the module docstring)."""
    return _applies(rule, naive_utc(now), applicable_rule_types)


def _applies(rule: PricingRule, current: datetime, applicable_rule_types: Collection[str]) -> bool:
    """`is_rule_active` with `now` already naive UTC (converted once per bundle, not per rule)."""
    if not rule.is_active:
        return False
    if rule.rule_type not in applicable_rule_types or rule.discount_type not in DISCOUNT_TYPES:
        return False
    if rule.starts_at is not None and current < naive_utc(rule.starts_at):
        return False
    if rule.ends_at is not None and current >= naive_utc(rule.ends_at):
        return False
    return rule.usage_limit is None or rule.usage_count < rule.usage_limit


def _apply_rule(rule: PricingRule, original: Decimal, lines: Sequence[tuple[Decimal, int]]) -> Decimal:
    value = _clamp(rule.discount_value, ZERO)
    if rule.discount_type == "PERCENTAGE":
        price = original * (HUNDRED - _clamp(value, ZERO, HUNDRED)) / HUNDRED
    elif rule.discount_type == "FIXED_AMOUNT":
        price = original - value
    elif rule.discount_type == "FIXED_PRICE":
        price = min(value, original)
    elif rule.discount_type == "FREE_ITEM":
        units = [unit for unit, quantity in lines if quantity > 0]
        price = original - (min(units) if units else ZERO)
    else:  # pragma: no cover - filtered out by is_rule_active
        raise ValueError(f"unknown discount type {rule.discount_type!r}")
    return quantize_money(_clamp(price, ZERO))


def _result(original: Decimal, discounted: Decimal, currency: str, rule: PricingRule | None) -> BundlePrice:
    savings = original - discounted
    if original > 0:
        percentage = (savings * HUNDRED / original).quantize(CENT, rounding=ROUND_HALF_EVEN)
    else:
        percentage = ZERO.quantize(CENT)
    return BundlePrice(
        original_price=original,
        discounted_price=discounted,
        savings=savings,
        savings_percentage=percentage,
        currency=currency,
        applied_rule=rule,
    )


def price_bundle(
    components: Sequence[PricedComponent],
    rules: Sequence[PricingRule],
    *,
    now: datetime,
    currency: str = "USD",
    applicable_rule_types: Collection[str] = APPLICABLE_RULE_TYPES,
) -> BundlePrice:
    """Price a bundle with the V2 engine: at most one applicable rule, chosen by priority."""
    lines = _unit_prices(components)
    original = quantize_money(sum((unit * quantity for unit, quantity in lines), ZERO))

    best: tuple[int, Decimal, PricingRule] | None = None
    current = naive_utc(now)
    for rule in rules:
        if not _applies(rule, current, applicable_rule_types):
            continue
        price = _apply_rule(rule, original, lines)
        # Strictly better only: on a complete tie the earlier rule stays (stable).
        if best is None or rule.priority > best[0] or (rule.priority == best[0] and price < best[1]):
            best = (rule.priority, price, rule)

    if best is None:
        return _result(original, original, currency, None)
    return _result(original, best[1], currency, best[2])


def legacy_price(
    components: Sequence[PricedComponent],
    discount_percent: Decimal | None,
    currency: str = "USD",
) -> BundlePrice:
    """The legacy app's price: the metaobject's `discount` percent off the sum of the prices.

    No rules, no windows, no usage limits; a missing discount is 0 %, and the percentage is
    clamped to 0-100 so bad legacy data cannot produce a negative or inflated price.
    """
    lines = _unit_prices(components)
    original = quantize_money(sum((unit * quantity for unit, quantity in lines), ZERO))
    percent = _clamp(discount_percent if discount_percent is not None else ZERO, ZERO, HUNDRED)
    discounted = quantize_money(original * (HUNDRED - percent) / HUNDRED)
    return _result(original, discounted, currency, None)
