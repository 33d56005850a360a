"""Parsing the legacy app's data: bundle metaobjects, `bundle_discount_id` keys, auto bundle rules.

The legacy data was typed by merchants and written by several generations of a Node app, so it is
messy (see docs in `shared/spec/shopify.md`): percentages with `%` or decimals, prices with `$`,
`products` as GIDs or as objects, numeric ids, double-encoded JSON, keys that are handles or the
text `[object Object]`. Every function here is pure and either returns a normalised value or
raises `InvalidLegacyData(field, detail)`; the migration turns that exception into a per-item
failure with reason code `invalid_legacy_data` instead of aborting the job.

Leniency rule of thumb: accept a value when its meaning is unambiguous (`" 12.5 % "` is 12.5 %),
refuse it when we would have to guess (`"abc"`, `"NaN"`, a quantity of 2.5, a discount of 120 %).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from app.core.time import naive_utc

__all__ = [
    "AUTO_GENERATED_BUNDLE_ID",
    "AUTO_RULE_PREFIX",
    "INVALID_LEGACY_DATA_REASON",
    "AutoRuleMapping",
    "InvalidLegacyData",
    "LegacyProductRef",
    "LegacyRowClassification",
    "LegacyRowKind",
    "ParsedLegacyBundle",
    "classify_bundle_discount_row",
    "decimal_to_json",
    "map_auto_bundle_rule",
    "metaobject_fields",
    "normalize_product_gid",
    "normalize_variant_gid",
    "parse_bundle_metaobject",
    "parse_int_string",
    "parse_iso_datetime",
    "parse_money_string",
    "parse_percent_string",
    "parse_products",
    "storefront_product_id",
]

#: Reason code the migration records for these failures (api.md).
INVALID_LEGACY_DATA_REASON = "invalid_legacy_data"

AUTO_RULE_PREFIX = "auto-rule-"
AUTO_GENERATED_BUNDLE_ID = "Auto Generated Bundle"
METAOBJECT_GID_PREFIX = "gid://shopify/Metaobject/"
PRODUCT_GID_PREFIX = "gid://shopify/Product/"
VARIANT_GID_PREFIX = "gid://shopify/ProductVariant/"

_INT32_MAX = 2**31 - 1  # BundleComponent.quantity is an INTEGER column
_DIGITS = re.compile(r"^[0-9]+$")
_UNSIGNED_DECIMAL = re.compile(r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")
_THOUSANDS = re.compile(r"^[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?$")
_CURRENCY_SYMBOLS = "$€£¥"
_CENT = Decimal("0.01")


class InvalidLegacyData(ValueError):
    """A legacy value that cannot be migrated as is. `field` names the legacy field or column."""

    reason = INVALID_LEGACY_DATA_REASON

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


# --------------------------------------------------------------------------------------------
# Scalars
# --------------------------------------------------------------------------------------------


def _clean(value: str | None) -> str | None:
    """Trimmed text, or None when missing or blank (legacy writes "" for "not set")."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _bounded_int(digits: str, limit: int = _INT32_MAX) -> int | None:
    """`digits` (ASCII 0-9) as an int, or None above `limit`. Checked on the text first: legacy
    values can hold thousands of digits, and `int()` refuses text past 4,300 of them."""
    significant = digits.lstrip("0")
    if len(significant) > len(str(limit)):
        return None
    number = int(significant or "0")
    return number if number <= limit else None


def _signed_decimal(text: str, field: str, what: str) -> Decimal:
    """Parse `[+-]digits[.digits]` (no exponent, no NaN/Infinity) into a Decimal."""
    sign = ""
    if text[:1] in "+-":
        sign, text = text[:1], text[1:].lstrip()
    if not _UNSIGNED_DECIMAL.fullmatch(text):
        raise InvalidLegacyData(field, f"not a {what}")
    try:
        value = Decimal(sign + text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid literals
        raise InvalidLegacyData(field, f"not a {what}") from exc
    return value.copy_abs() if value.is_zero() else value  # "-0" is plain 0


def parse_percent_string(value: str | None, field: str = "discount") -> Decimal | None:
    """Parse a legacy percentage: `"15"`, `"15%"`, `" 12.5 % "`, `"12,5"` → Decimal; blank → None.

    Negative, above 100, or not a plain decimal number (`"abc"`, `"NaN"`, `"Infinity"`, `"1e2"`)
    raise `InvalidLegacyData`. A decimal comma with one or two decimals (`"12,5"`) is accepted;
    `"1,000"` is not (a thousands separator or a European 1.000? we do not guess).
    """
    text = _clean(value)
    if text is None:
        return None
    if text.endswith("%"):
        text = text[:-1].rstrip()
    if re.fullmatch(r"[+-]?[0-9]+,[0-9]{1,2}", text):
        text = text.replace(",", ".")
    if not text:
        raise InvalidLegacyData(field, f"not a percentage: {value!r}")
    try:
        percent = _signed_decimal(text, field, "percentage")
    except InvalidLegacyData:
        raise InvalidLegacyData(field, f"not a percentage: {value!r}") from None
    if percent < 0:
        raise InvalidLegacyData(field, f"negative percentage: {value!r}")
    if percent > 100:
        raise InvalidLegacyData(field, f"percentage above 100: {value!r}")
    return percent


def parse_money_string(value: str | None, field: str = "price") -> Decimal | None:
    """Parse a merchant-typed price: `"10"`, `"10.50"`, `"$10"`, `"1,250.00"` → Decimal (cents).

    Blank → None (no bound). A currency symbol before or after is ignored; a comma is accepted
    only as a thousands separator (`"1,250"`), because `"10,50"` could mean 10.50 or 1050.
    Negative or unparsable → `InvalidLegacyData`. The result is rounded to cents, half-even.
    """
    text = _clean(value)
    if text is None:
        return None
    text = text.strip(_CURRENCY_SYMBOLS + " ")
    if text.startswith("-"):
        raise InvalidLegacyData(field, f"negative amount: {value!r}")
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    if not text or not _UNSIGNED_DECIMAL.fullmatch(text):
        raise InvalidLegacyData(field, f"not an amount: {value!r}")
    try:
        return Decimal(text).quantize(_CENT, rounding=ROUND_HALF_EVEN)
    except InvalidOperation as exc:  # more digits than the decimal context holds
        raise InvalidLegacyData(field, f"amount too large: {value!r}") from exc


def parse_int_string(value: str | None, field: str = "minProducts", min_value: int = 0) -> int | None:
    """Parse a merchant-typed count: `"2"`, `" 3 "`, `"2.0"` → int; blank → None.

    Anything else (`"abc"`, `"2.5"`, `"-1"`, below `min_value`) raises `InvalidLegacyData`.
    """
    text = _clean(value)
    if text is None:
        return None
    if text.startswith("-") and _DIGITS.fullmatch(text[1:]):
        raise InvalidLegacyData(field, f"must be >= {min_value}: {value!r}")
    match = re.fullmatch(r"([0-9]+)(?:\.0*)?", text)
    if match is None:
        raise InvalidLegacyData(field, f"not an integer: {value!r}")
    number = _bounded_int(match.group(1))
    if number is None:
        raise InvalidLegacyData(field, f"too large: {value!r}")
    if number < min_value:
        raise InvalidLegacyData(field, f"must be >= {min_value}: {value!r}")
    return number


def parse_iso_datetime(value: str | None) -> datetime | None:
    """Tolerant ISO-8601 → naive UTC datetime (the TIMESTAMP(3) convention); invalid → None.

    Accepts `Z`/`z`, offsets, fractions of any length, a space instead of `T`, a bare date
    (midnight UTC). A time without offset is taken as UTC. `created_at` is informational, so an
    unreadable one must not fail the bundle: the caller falls back to "now".
    """
    text = _clean(value)
    if text is None:
        return None
    if text.endswith("z"):
        text = text[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    try:
        return naive_utc(parsed)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable instant
        return None


def decimal_to_json(value: Decimal) -> str:
    """A Decimal as the shortest plain string (`15`, `12.5`, `100`), never exponent notation."""
    return format(value.normalize(), "f")


# --------------------------------------------------------------------------------------------
# Product references
# --------------------------------------------------------------------------------------------


def _normalize_gid(value: Any, prefix: str, field: str, what: str) -> str:
    if isinstance(value, bool):
        raise InvalidLegacyData(field, f"{what} id must be a GID or a number, got {value!r}")
    if isinstance(value, int):
        number = str(value)
    elif isinstance(value, str):
        text = value.strip()
        number = text[len(prefix) :] if text.startswith(prefix) else text
    else:
        raise InvalidLegacyData(field, f"{what} id must be a GID or a number, got {value!r}")
    # Canonical digits without int(): an id is opaque text to us, and int() refuses very long text.
    canonical = number.lstrip("0") if _DIGITS.fullmatch(number) else ""
    if not canonical:
        raise InvalidLegacyData(field, f"not a {what} id: {value!r}")
    return f"{prefix}{canonical}"


def normalize_product_gid(value: Any, field: str = "products") -> str:
    """`123`, `"123"`, `"gid://shopify/Product/123"` → `"gid://shopify/Product/123"`."""
    return _normalize_gid(value, PRODUCT_GID_PREFIX, field, "product")


def normalize_variant_gid(value: Any, field: str = "products") -> str:
    """`456`, `"456"`, `"gid://shopify/ProductVariant/456"` → `"gid://shopify/ProductVariant/456"`."""
    return _normalize_gid(value, VARIANT_GID_PREFIX, field, "variant")


def storefront_product_id(value: Any, field: str = "productId") -> str:
    """`123`, `"123"`, `"gid://shopify/Product/123"` → `"123"`: a product id as the storefront knows it.

    `ai_fbt_bundles."productId"`/`"bundledProductIds"` hold this form (the legacy generator stores the
    numeric ids, the theme reads `ShopifyAnalytics.meta.product.id` and builds `/products/<id>.js`
    from what it gets back). The inverse of `normalize_product_gid`, with the same leniency.
    """
    return normalize_product_gid(value, field).removeprefix(PRODUCT_GID_PREFIX)


@dataclass(frozen=True, slots=True)
class LegacyProductRef:
    """One entry of a metaobject's `products` list, normalised to GIDs."""

    product_id: str
    variant_id: str | None = None
    quantity: int = 1


def _parse_quantity(raw: Any, index: int) -> int:
    where = f"products[{index}].quantity"
    if raw is None:
        return 1
    if isinstance(raw, bool):
        raise InvalidLegacyData("products", f"{where} is not an integer: {raw!r}")
    if isinstance(raw, float):
        if not raw.is_integer():
            raise InvalidLegacyData("products", f"{where} is not an integer: {raw!r}")
        quantity = int(raw)
    elif isinstance(raw, int):
        quantity = raw
    elif isinstance(raw, str) and _DIGITS.fullmatch(raw.strip()):
        bounded = _bounded_int(raw.strip())
        if bounded is None:
            raise InvalidLegacyData("products", f"{where} is too large: {raw[:40]!r}")
        quantity = bounded
    else:
        raise InvalidLegacyData("products", f"{where} is not an integer: {raw!r}")
    if quantity < 1:
        raise InvalidLegacyData("products", f"{where} must be >= 1, got {raw!r}")
    if quantity > _INT32_MAX:
        raise InvalidLegacyData("products", f"{where} is too large: {raw!r}")
    return quantity


def _parse_product_item(item: Any, index: int) -> LegacyProductRef:
    if isinstance(item, str | int) and not isinstance(item, bool):
        return LegacyProductRef(normalize_product_gid(item), None, 1)
    if isinstance(item, Mapping):
        product = item.get("productId")
        if product is None or (isinstance(product, str) and not product.strip()):
            raise InvalidLegacyData("products", f"products[{index}] has no productId")
        variant = item.get("variantId")
        variant_gid = None
        if variant is not None and not (isinstance(variant, str) and not variant.strip()):
            variant_gid = normalize_variant_gid(variant)
        return LegacyProductRef(
            product_id=normalize_product_gid(product),
            variant_id=variant_gid,
            quantity=_parse_quantity(item.get("quantity"), index),
        )
    raise InvalidLegacyData("products", f"products[{index}] is neither a product id nor an object: {item!r}")


def parse_products(raw: str | None) -> list[LegacyProductRef]:
    """Parse the `products` field: a JSON list of product GIDs and/or `{productId, variantId?, quantity?}`.

    Both forms may be mixed in one list; numeric ids become GIDs; a missing quantity is 1. A
    list that was JSON-encoded twice (a JSON string holding the list) is unwrapped once. Missing,
    unparsable, not a list, empty, an object without `productId`, a bad id or a quantity that is
    not an integer >= 1 raise `InvalidLegacyData("products", ...)`. Order is kept (it becomes
    `displayOrder`) and duplicates are kept (the caller decides whether they are meaningful).
    """
    text = _clean(raw)
    if text is None:
        raise InvalidLegacyData("products", "missing")
    try:
        decoded: Any = json.loads(text)
        if isinstance(decoded, str) and decoded.strip().startswith("["):
            decoded = json.loads(decoded)
    except (ValueError, RecursionError) as exc:
        raise InvalidLegacyData("products", f"unparsable JSON: {text[:80]!r}") from exc
    if not isinstance(decoded, list):
        raise InvalidLegacyData("products", f"not a JSON list but {type(decoded).__name__}")
    if not decoded:
        raise InvalidLegacyData("products", "empty list")
    return [_parse_product_item(item, index) for index, item in enumerate(decoded)]


# --------------------------------------------------------------------------------------------
# Bundle metaobject
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedLegacyBundle:
    """The fields of a `product-bundles` metaobject, trimmed and typed."""

    name: str | None
    title: str | None
    description: str | None
    created_at: datetime | None
    discount_percent: Decimal | None
    products: list[LegacyProductRef] = field(default_factory=list)


def parse_bundle_metaobject(fields: Mapping[str, str | None]) -> ParsedLegacyBundle:
    """Parse a legacy bundle metaobject's `fields` (`{key: value}`, all strings).

    Text fields are trimmed, blank → None (the caller falls back, e.g. title → name →
    `bundle_discount_id.bundleName`). `created_at` that does not parse → None. `discount` blank
    or missing → None (no discount); `products` must hold at least one valid product. Unknown
    keys are ignored.
    """
    return ParsedLegacyBundle(
        name=_clean(fields.get("bundle_name")),
        title=_clean(fields.get("bundle_title")),
        description=_clean(fields.get("description")),
        created_at=parse_iso_datetime(fields.get("created_at")),
        discount_percent=parse_percent_string(fields.get("discount"), "discount"),
        products=parse_products(fields.get("products")),
    )


def metaobject_fields(field_list: Iterable[Mapping[str, Any]]) -> dict[str, str | None]:
    """GraphQL `fields { key value }` → `{key: value}` (the last one wins on a repeated key)."""
    result: dict[str, str | None] = {}
    for entry in field_list:
        key = entry.get("key")
        if isinstance(key, str):
            value = entry.get("value")
            result[key] = value if value is None or isinstance(value, str) else str(value)
    return result


# --------------------------------------------------------------------------------------------
# bundle_discount_id."bundleId"
# --------------------------------------------------------------------------------------------


class LegacyRowKind(StrEnum):
    """What a `bundle_discount_id` row stands for, judged by its `bundleId` alone.

    Whether a METAOBJECT_ID row is really an AI bundle is decided by the caller against
    `ai_fbt_bundles."bundleMetaobjectId"`, not here.
    """

    AUTO_RULE = "AUTO_RULE"
    AUTO_GENERATED = "AUTO_GENERATED"
    METAOBJECT_ID = "METAOBJECT_ID"
    METAOBJECT_HANDLE = "METAOBJECT_HANDLE"
    INVALID = "INVALID"


@dataclass(frozen=True, slots=True)
class LegacyRowClassification:
    """`kind` plus its payload: the rule id, the metaobject GID, the handle, or None."""

    kind: LegacyRowKind
    value: str | None = None


def classify_bundle_discount_row(bundle_id: str | None) -> LegacyRowClassification:
    """Classify a `bundle_discount_id."bundleId"`.

    | bundleId                                  | kind              | value           |
    |-------------------------------------------|-------------------|-----------------|
    | `auto-rule-<id>`                          | AUTO_RULE         | `<id>`          |
    | `Auto Generated Bundle` (exactly)         | AUTO_GENERATED    | None            |
    | `gid://shopify/Metaobject/<digits>`       | METAOBJECT_ID     | the GID         |
    | `gid://shopify/Metaobject/<handle>`       | METAOBJECT_HANDLE | `<handle>`      |
    | `.../[object Object]`, empty, anything else | INVALID         | None            |

    The key is the table's primary key, so it is matched exactly (no trimming, no case folding):
    what we report must be findable again with `WHERE "bundleId" = ...`.
    """
    if not bundle_id:
        return LegacyRowClassification(LegacyRowKind.INVALID)
    if bundle_id == AUTO_GENERATED_BUNDLE_ID:
        return LegacyRowClassification(LegacyRowKind.AUTO_GENERATED)
    if bundle_id.startswith(AUTO_RULE_PREFIX):
        rule_id = bundle_id[len(AUTO_RULE_PREFIX) :]
        if rule_id and not any(c.isspace() for c in rule_id):
            return LegacyRowClassification(LegacyRowKind.AUTO_RULE, rule_id)
        return LegacyRowClassification(LegacyRowKind.INVALID)
    if bundle_id.startswith(METAOBJECT_GID_PREFIX):
        tail = bundle_id[len(METAOBJECT_GID_PREFIX) :]
        if _DIGITS.fullmatch(tail):
            return LegacyRowClassification(LegacyRowKind.METAOBJECT_ID, bundle_id)
        if tail and tail != "[object Object]" and "/" not in tail and tail.strip() == tail:
            return LegacyRowClassification(LegacyRowKind.METAOBJECT_HANDLE, tail)
    return LegacyRowClassification(LegacyRowKind.INVALID)


# --------------------------------------------------------------------------------------------
# Auto bundle rules
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AutoRuleMapping:
    """The V2 `AutoBundleRule` columns derived from one legacy rule (JSON-ready dicts)."""

    trigger_type: str
    conditions: dict[str, Any]
    bundle_template: dict[str, Any]
    is_active: bool
    name: str = ""


DEFAULT_AUTO_RULE_NAME = "Auto bundle rule"


def _clean_list(values: Iterable[str | None] | None) -> list[str]:
    """Trim, drop blanks and exact duplicates, keep the merchant's order."""
    seen: dict[str, None] = {}
    for value in values or ():
        text = _clean(value)
        if text is not None:
            seen.setdefault(text, None)
    return list(seen)


def map_auto_bundle_rule(
    name: str | None,
    collections: Iterable[str | None] | None,
    tags: Iterable[str | None] | None,
    min_price: str | None,
    max_price: str | None,
    min_products: str | None,
    discount: str | None,
    is_active: bool = True,
) -> AutoRuleMapping:
    """Map a legacy auto bundle rule (`auto_bundle_rules` row or `auto_bundle_data`) to V2.

    | legacy column | V2 `AutoBundleRule`                                                        |
    |---------------|----------------------------------------------------------------------------|
    | `name`        | `name`, trimmed; blank → "Auto bundle rule"                                |
    | `collections` | `conditions.collections` (trimmed, blanks and duplicates dropped)          |
    | `tags`        | `conditions.tags` (same cleaning)                                          |
    | `minPrice`    | `conditions.price.min`: "10.00" string (cents), "" → null                  |
    | `maxPrice`    | `conditions.price.max`: same; min > max is invalid                         |
    | `minProducts` | `conditions.minProducts` and `bundleTemplate.minProducts`: int, "" → null  |
    | `discount`    | `bundleTemplate.discount = {"type": "PERCENTAGE", "value": "15"}`, "" → "0" |
    | `isActive`    | `isActive`                                                                 |
    | (derived)     | `triggerType`: COLLECTION_BASED if any collection, else TAG_BASED if any   |
    |               | tag, else PRICE_RANGE                                                      |
    | (constant)    | `bundleTemplate.type = "FIXED"` (the legacy app only made fixed bundles)   |

    Money and percentages are strings in the JSON so no precision is lost to floats. Bad values
    raise `InvalidLegacyData` naming the legacy column (`minPrice`, `maxPrice`, `minProducts`,
    `discount`).
    """
    clean_collections = _clean_list(collections)
    clean_tags = _clean_list(tags)
    low = parse_money_string(min_price, "minPrice")
    high = parse_money_string(max_price, "maxPrice")
    if low is not None and high is not None and low > high:
        raise InvalidLegacyData("maxPrice", f"maxPrice {high} is below minPrice {low}")
    products = parse_int_string(min_products, "minProducts")
    percent = parse_percent_string(discount, "discount")

    if clean_collections:
        trigger = "COLLECTION_BASED"
    elif clean_tags:
        trigger = "TAG_BASED"
    else:
        trigger = "PRICE_RANGE"

    conditions: dict[str, Any] = {
        "collections": clean_collections,
        "tags": clean_tags,
        "price": {
            "min": None if low is None else str(low),
            "max": None if high is None else str(high),
        },
        "minProducts": products,
    }
    template: dict[str, Any] = {
        "type": "FIXED",
        "discount": {"type": "PERCENTAGE", "value": decimal_to_json(percent or Decimal(0))},
        "minProducts": products,
    }
    return AutoRuleMapping(
        trigger_type=trigger,
        conditions=conditions,
        bundle_template=template,
        is_active=bool(is_active),
        name=_clean(name) or DEFAULT_AUTO_RULE_NAME,
    )
