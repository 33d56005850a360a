"""The legacy `product-bundles` metaobject of a V2 bundle: exactly what Shopify's definition allows.

The definition (shared/spec/shopify.md) is narrower than a V2 bundle, and Shopify enforces it:
`bundle_name`, `bundle_title` (single-line text), `description` (multi-line text), `created_at`
(date-time) and `discount` (`number_integer`) and `products` (`list.product_reference`: a JSON array
of Product GIDs) are all required and non-blank, and with the publishable capability a metaobject
created without `capabilities.publishable.status: ACTIVE` is a DRAFT the storefront never shows.

Where a V2 bundle says more than that, this module decides the one faithful approximation (every
writer uses it: create, outbox update, reconciliation re-create, and the shadow-read projection
compares in the same terms) and names each one, so the API response and a metric can say so:

* `variant`: a component names a variant; the metaobject can only name its product.
* `quantity`: a component has a quantity above 1; the metaobject lists the product once.
* `duplicate_product`: two components name the same product; it is listed once (first position).
* `fractional_percentage`: the metaobject's integer is display-only (the automatic discount keeps
  the exact percentage, `DiscountCustomerGetsValueInput.percentage` is a Float): rounded **down**,
  so the storefront never promises more than the shopper gets.
* `pricing_not_representable`: active pricing the definition cannot hold (a fixed amount or price,
  tiers, BOGO, a second rule): only the first active BUNDLE_DISCOUNT percentage is written, `"0"`
  when there is none.
* `description_fallback`: no description (the field is required): the title is written.

Pure: no I/O, no clock (the caller passes `created_at`), so the mapping is unit-testable and the
same everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Literal

from app.core.time import as_utc

#: The legacy app's metaobject definition type, which the storefront's theme script reads.
BUNDLE_METAOBJECT_TYPE = "product-bundles"

__all__ = [
    "APPROXIMATION_REASONS",
    "Approximation",
    "PublishableStatus",
    "iso_datetime",
    "legacy_description",
    "legacy_metaobject_fields",
    "legacy_percent_text",
    "legacy_product_ids",
    "percent_of",
    "publishable_status",
]

Approximation = Literal[
    "variant",
    "quantity",
    "duplicate_product",
    "fractional_percentage",
    "pricing_not_representable",
    "description_fallback",
]
APPROXIMATION_REASONS: tuple[Approximation, ...] = (
    "variant",
    "quantity",
    "duplicate_product",
    "fractional_percentage",
    "pricing_not_representable",
    "description_fallback",
)
PublishableStatus = Literal["ACTIVE", "DRAFT"]


def _percentage_rule(rule: Mapping[str, Any]) -> bool:
    return bool(
        rule.get("isActive", True)
        and rule.get("ruleType", "BUNDLE_DISCOUNT") == "BUNDLE_DISCOUNT"
        and rule.get("discountType", "PERCENTAGE") == "PERCENTAGE"
    )


def percent_of(rules: Sequence[Mapping[str, Any]] | None) -> Decimal | None:
    """The bundle's percentage the legacy store holds: its first active BUNDLE_DISCOUNT PERCENTAGE rule
    (exact; the automatic discount carries it as is)."""
    for rule in rules or []:
        if _percentage_rule(rule):
            return Decimal(str(rule["discountValue"]))
    return None


def legacy_percent_text(value: Decimal | None) -> str:
    """`number_integer` as a string: the percentage rounded down (`"12"` for 12.5), `"0"` when none."""
    if value is None:
        return "0"
    return str(int(value.to_integral_value(rounding=ROUND_FLOOR)))


def legacy_product_ids(components: Sequence[Mapping[str, Any]]) -> list[str]:
    """`list.product_reference`: the distinct Product GIDs in display (list) order."""
    return list(dict.fromkeys(str(c["shopifyProductId"]) for c in components))


def legacy_description(description: str | None, title: str) -> str:
    """The required description: the bundle's own, else its title (what the storefront shows anyway)."""
    return description if description and description.strip() else title


def legacy_title(bundle: Mapping[str, Any]) -> str:
    title = str(bundle.get("title") or "")
    return title if title.strip() else str(bundle["name"])


def publishable_status(status: Any) -> PublishableStatus:
    """`MetaobjectStatus` following the V2 status: only an ACTIVE bundle is visible on the storefront."""
    return "ACTIVE" if status == "ACTIVE" else "DRAFT"


def iso_datetime(value: datetime) -> str:
    """`date_time`: ISO-8601 in UTC with milliseconds (`2026-01-15T10:30:00.123Z`); naive means UTC."""
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def legacy_metaobject_fields(
    bundle: Mapping[str, Any], *, created_at: datetime | None = None
) -> tuple[dict[str, str], list[Approximation]]:
    """The metaobject fields of a V2 bundle (a `repos.bundles.fetch_full` row or a create body's dump)
    and the approximations they make, in `APPROXIMATION_REASONS` order.

    `created_at` is written only when given: it is the metaobject's creation time, set at create
    (and at a reconciliation re-create) and never moved by an update.
    """
    found: set[Approximation] = set()
    components = list(bundle.get("components") or [])
    products = legacy_product_ids(components)
    if any(c.get("shopifyVariantId") for c in components):
        found.add("variant")
    if any(int(c.get("quantity") or 1) > 1 for c in components):
        found.add("quantity")
    if len(products) < len(components):
        found.add("duplicate_product")
    rules = list(bundle.get("pricingRules") or [])
    percent = percent_of(rules)
    if percent is not None and percent != percent.to_integral_value():
        found.add("fractional_percentage")
    active = [r for r in rules if r.get("isActive", True)]
    if len(active) > (1 if percent is not None else 0):
        found.add("pricing_not_representable")
    title = legacy_title(bundle)
    if not str(bundle.get("description") or "").strip():
        found.add("description_fallback")
    fields = {
        "bundle_name": str(bundle["name"]),
        "bundle_title": title,
        "description": legacy_description(bundle.get("description"), title),
        "discount": legacy_percent_text(percent),
        "products": json.dumps(products),
    }
    if created_at is not None:
        fields["created_at"] = iso_datetime(created_at)
    return fields, [reason for reason in APPROXIMATION_REASONS if reason in found]
