"""Request and response bodies of the bundle API (`/api/v2/shops/{shop}/bundles`, api.md).

Field names are camelCase, exactly the column names of the V2 tables, so a body reads like the
row it becomes. Validation is deliberately strict because every value ends in PostgreSQL, which
rejects things JSON allows (NUL characters, lone surrogates, NaN, integers beyond INT4): each of
those must be a 422 naming the field, never a driver exception turning into a 500.

* Single-field rules (types, lengths, ranges, enum values, GID shapes) live here, so pydantic
  reports them with their full path (`body.components.3.quantity`).
* Rules across fields or rows (unique discount ids, min <= max, an AI bundle id that must exist)
  live in `app.services.bundles.checks` (the last one in `legacy_sync`, under the AI row's lock),
  which report them in the same `{field, message}` shape.

Unknown fields are refused (`extra="forbid"`): a misspelt `quantitiy` silently ignored would be a
merchant's bundle with the wrong quantity.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
)

from app.core.time import naive_utc
from app.rules.legacy_metaobject import Approximation
from app.rules.legacy_parsing import InvalidLegacyData, normalize_product_gid, normalize_variant_gid

INT32_MAX = 2**31 - 1
MAX_COMPONENTS = 100
MAX_QUANTITY = 10_000
MAX_JSON_DEPTH = 16
METAOBJECT_GID_PREFIX = "gid://shopify/Metaobject/"

BundleType = Literal["FIXED", "MIX_MATCH", "TIERED", "BOGO", "BUILD_YOUR_OWN", "SUBSCRIPTION", "GIFT"]
BundleStatus = Literal["DRAFT", "ACTIVE", "SCHEDULED", "PAUSED", "ARCHIVED"]
PriceAdjustmentType = Literal["NONE", "FIXED_AMOUNT", "PERCENTAGE", "FIXED_PRICE"]
PricingRuleType = Literal["BUNDLE_DISCOUNT", "VOLUME_TIER", "BOGO", "MEMBER_PRICE", "TIME_LIMITED", "FIRST_PURCHASE"]
DiscountType = Literal["PERCENTAGE", "FIXED_AMOUNT", "FIXED_PRICE", "FREE_ITEM"]
InventoryMethod = Literal["COMPONENT_BASED", "BUNDLE_SPECIFIC", "UNLIMITED"]
ShopifyDiscountType = Literal["automatic", "code"]
LegacySync = Literal["synced", "not_representable", "disabled"]
#: What a bundle's legacy metaobject cannot say (app.rules.legacy_metaobject, docs/write-through.md).
LegacyApproximation = Approximation
ReadSource = Literal["legacy", "v2"]


# --------------------------------------------------------------------------------------------
# Value checks shared by the annotated types below
# --------------------------------------------------------------------------------------------


def check_text(value: str) -> str:
    """PostgreSQL TEXT cannot hold NUL, and UTF-8 cannot encode a lone surrogate (`"\\ud800"`)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def check_json_value(value: Any, depth: int = 0) -> Any:
    """Free-form JSON (metadata, conditions) that JSONB will accept: no NaN/Infinity, sane text, bounded depth."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key))
            check_json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, depth + 1)
    return value


def _product_gid(value: str) -> str:
    try:
        return normalize_product_gid(value)
    except InvalidLegacyData:
        raise ValueError("must be a product GID (gid://shopify/Product/<id>) or a numeric id") from None


def _variant_gid(value: str) -> str:
    try:
        return normalize_variant_gid(value)
    except InvalidLegacyData:
        raise ValueError("must be a variant GID (gid://shopify/ProductVariant/<id>) or a numeric id") from None


def _metaobject_gid(value: str) -> str:
    number = value[len(METAOBJECT_GID_PREFIX) :] if value.startswith(METAOBJECT_GID_PREFIX) else value
    if not (number.isascii() and number.isdigit()) or int(number) == 0:
        raise ValueError("must be a metaobject GID (gid://shopify/Metaobject/<id>) or a numeric id")
    return f"{METAOBJECT_GID_PREFIX}{int(number)}"


def _naive_utc(value: datetime) -> datetime:
    """TIMESTAMP(3) without zone, UTC by convention (schema.md); a zone-less input is taken as UTC."""
    value = naive_utc(value)
    return value.replace(microsecond=(value.microsecond // 1000) * 1000)


def _json_object(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None:
        check_json_value(value)
    return value


Text = Annotated[str, AfterValidator(check_text)]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), AfterValidator(check_text)
]
LongText = Annotated[str, StringConstraints(max_length=20_000), AfterValidator(check_text)]
Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), AfterValidator(check_text)
]
Url = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048), AfterValidator(check_text)
]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=80)]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
ProductGid = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100), AfterValidator(_product_gid)]
VariantGid = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100), AfterValidator(_variant_gid)]
MetaobjectGid = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=100), AfterValidator(_metaobject_gid)
]
Money = Annotated[Decimal, Field(ge=0, max_digits=10, decimal_places=2, allow_inf_nan=False)]
Timestamp = Annotated[datetime, AfterValidator(_naive_utc)]
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json_value)]


# --------------------------------------------------------------------------------------------
# Examples (OpenAPI): one bundle of the demo shop, consistent across request and responses
# --------------------------------------------------------------------------------------------

EXAMPLE_SHOP = "demo-outdoor.myshopify.com"
EXAMPLE_BUNDLE_ID = "c0a1b2c3d4e5f6g7h8i9j0k1l"
EXAMPLE_METAOBJECT_GID = "gid://shopify/Metaobject/100001"

BUNDLE_CREATE_EXAMPLE: dict[str, Any] = {
    "name": "Summer Set",
    "title": "Summer Camping Set",
    "description": "Tent and two lanterns: 15% off together.",
    "type": "FIXED",
    "status": "ACTIVE",
    "shopifyMetaobjectId": EXAMPLE_METAOBJECT_GID,
    "featuredImage": "https://cdn.shopify.com/s/files/1/0000/0001/files/summer-set.jpg",
    "components": [
        {
            "shopifyProductId": "gid://shopify/Product/100001",
            "shopifyVariantId": "gid://shopify/ProductVariant/200001",
            "quantity": 1,
        },
        {"shopifyProductId": "gid://shopify/Product/100002", "quantity": 2, "maxQuantity": 2},
    ],
    "pricingRules": [
        {
            "name": "Bundle Discount",
            "ruleType": "BUNDLE_DISCOUNT",
            "discountType": "PERCENTAGE",
            "discountValue": "15.00",
        }
    ],
    "discounts": [{"shopifyDiscountId": "gid://shopify/DiscountAutomaticNode/100001", "discountType": "automatic"}],
    "tags": ["summer", "camping"],
    "metadata": {"campaign": "summer-2026"},
}

BUNDLE_UPDATE_EXAMPLE: dict[str, Any] = {
    "title": "Summer Camping Set (2026)",
    "pricingRules": [
        {
            "name": "Bundle Discount",
            "ruleType": "BUNDLE_DISCOUNT",
            "discountType": "PERCENTAGE",
            "discountValue": "20.00",
        }
    ],
}

#: `GET` answer (V2 store). Write answers add `legacySync`: see BUNDLE_WRITTEN_EXAMPLE.
BUNDLE_EXAMPLE: dict[str, Any] = {
    "id": EXAMPLE_BUNDLE_ID,
    "shop": EXAMPLE_SHOP,
    "name": "Summer Set",
    "title": "Summer Camping Set",
    "description": "Tent and two lanterns: 15% off together.",
    "slug": "summer-set",
    "type": "FIXED",
    "status": "ACTIVE",
    "shopifyProductId": None,
    "shopifyMetaobjectId": EXAMPLE_METAOBJECT_GID,
    "displayOrder": 0,
    "featuredImage": "https://cdn.shopify.com/s/files/1/0000/0001/files/summer-set.jpg",
    "images": [],
    "currencyCode": "USD",
    "tags": ["summer", "camping"],
    "metadata": {"campaign": "summer-2026"},
    "components": [
        {
            "id": "c1b2c3d4e5f6g7h8i9j0k1l2m",
            "shopifyProductId": "gid://shopify/Product/100001",
            "shopifyVariantId": "gid://shopify/ProductVariant/200001",
            "quantity": 1,
            "isRequired": True,
            "displayOrder": 0,
            "minQuantity": 0,
            "maxQuantity": 1,
            "priceAdjustmentType": "NONE",
            "priceAdjustment": None,
        },
        {
            "id": "c2c3d4e5f6g7h8i9j0k1l2m3n",
            "shopifyProductId": "gid://shopify/Product/100002",
            "shopifyVariantId": None,
            "quantity": 2,
            "isRequired": True,
            "displayOrder": 1,
            "minQuantity": 0,
            "maxQuantity": 2,
            "priceAdjustmentType": "NONE",
            "priceAdjustment": None,
        },
    ],
    "pricingRules": [
        {
            "id": "c3d4e5f6g7h8i9j0k1l2m3n4o",
            "name": "Bundle Discount",
            "priority": 0,
            "isActive": True,
            "ruleType": "BUNDLE_DISCOUNT",
            "conditions": {},
            "discountType": "PERCENTAGE",
            "discountValue": "15.00",
            "usageLimit": None,
            "usageCount": 0,
            "startsAt": None,
            "endsAt": None,
        }
    ],
    "discounts": [
        {
            "id": "c4e5f6g7h8i9j0k1l2m3n4o5p",
            "shopifyDiscountId": "gid://shopify/DiscountAutomaticNode/100001",
            "discountCode": None,
            "discountType": "automatic",
            "isActive": True,
        }
    ],
    "inventory": None,
    "createdAt": "2026-01-15T10:30:00.123000Z",
    "updatedAt": "2026-01-15T10:30:00.123000Z",
    "publishedAt": None,
    "legacySync": None,
    "legacyApproximations": None,
}

#: A create/update answer: legacy rows written in the same transaction.
BUNDLE_WRITTEN_EXAMPLE: dict[str, Any] = {
    **BUNDLE_EXAMPLE,
    "legacySync": "synced",
    # With Shopify write-through on: the example's variant and quantity 2 do not fit the metaobject.
    "legacyApproximations": ["variant", "quantity"],
}

#: After BUNDLE_UPDATE_EXAMPLE: the rule list replaced (a new row), `updatedAt` moved on.
BUNDLE_UPDATED_EXAMPLE: dict[str, Any] = {
    **BUNDLE_WRITTEN_EXAMPLE,
    "title": "Summer Camping Set (2026)",
    "pricingRules": [
        {
            **BUNDLE_EXAMPLE["pricingRules"][0],
            "id": "c5f6g7h8i9j0k1l2m3n4o5p6q",
            "discountValue": "20.00",
        }
    ],
    "updatedAt": "2026-02-01T08:00:00.456000Z",
}

BUNDLE_PAGE_EXAMPLE: dict[str, Any] = {
    "items": [BUNDLE_EXAMPLE],
    "nextCursor": (
        "eyJrIjoidjIiLCJ0IjoiMjAyNi0wMS0xNVQxMDozMDowMC4xMjMwMDArMDA6MDAiLCJpIjoiYzBhMWIyYzNkNGU1ZjZnN2g4aTlqMGsxbCJ9"
    ),
}

SHADOW_MISMATCH_PAGE_EXAMPLE: dict[str, Any] = {
    "items": [
        {
            "id": 42,
            "shop": EXAMPLE_SHOP,
            "endpoint": "GET /api/v2/shops/{shop}/bundles/{bundleId}",
            "bundleKey": EXAMPLE_METAOBJECT_GID,
            "fields": ["discountPercent"],
            "legacy": {
                "name": "Summer Set",
                "title": "Summer Camping Set",
                "description": "Tent and two lanterns: 15% off together.",
                "products": [["gid://shopify/Product/100001", 1], ["gid://shopify/Product/100002", 2]],
                "discountPercent": "10",
                "discountId": "gid://shopify/DiscountAutomaticNode/100001",
                "status": "ACTIVE",
            },
            "v2": {
                "name": "Summer Set",
                "title": "Summer Camping Set",
                "description": "Tent and two lanterns: 15% off together.",
                "products": [["gid://shopify/Product/100001", 1], ["gid://shopify/Product/100002", 2]],
                "discountPercent": "15",
                "discountId": "gid://shopify/DiscountAutomaticNode/100001",
                "status": "ACTIVE",
            },
            "createdAt": "2026-01-20T14:05:12.345000Z",
        }
    ],
    "nextCursor": None,
}


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


class ComponentIn(_Input):
    """One product of the bundle. `displayOrder` defaults to the position in the list."""

    shopifyProductId: ProductGid
    shopifyVariantId: VariantGid | None = None
    quantity: StrictInt = Field(1, ge=1, le=MAX_QUANTITY)
    isRequired: StrictBool = True
    displayOrder: StrictInt | None = Field(None, ge=0, le=INT32_MAX)
    minQuantity: StrictInt = Field(0, ge=0, le=MAX_QUANTITY)
    maxQuantity: StrictInt = Field(1, ge=0, le=MAX_QUANTITY)
    priceAdjustmentType: PriceAdjustmentType = "NONE"
    priceAdjustment: Money | None = None


class PricingRuleIn(_Input):
    """A V2 pricing rule; a PERCENTAGE value is a percentage (0-100), other types are money."""

    name: Name = "Bundle Discount"
    priority: StrictInt = Field(0, ge=0, le=1_000_000)
    isActive: StrictBool = True
    ruleType: PricingRuleType = "BUNDLE_DISCOUNT"
    conditions: JsonObject = Field(default_factory=dict)
    discountType: DiscountType = "PERCENTAGE"
    discountValue: Money
    usageLimit: StrictInt | None = Field(None, ge=0, le=INT32_MAX)
    startsAt: Timestamp | None = None
    endsAt: Timestamp | None = None


class DiscountIn(_Input):
    """A Shopify discount attached to the bundle; the first active one is what the legacy table records."""

    shopifyDiscountId: Identifier
    discountCode: Identifier | None = None
    discountType: ShopifyDiscountType = "automatic"
    isActive: StrictBool = True


class InventoryIn(_Input):
    """The bundle's one `BundleInventory` row; omitted fields take the schema defaults (or stay, on PATCH)."""

    trackingMethod: InventoryMethod = "COMPONENT_BASED"
    bundleQuantity: StrictInt | None = Field(None, ge=0, le=INT32_MAX)
    lowStockThreshold: StrictInt = Field(10, ge=0, le=INT32_MAX)
    availableQuantity: StrictInt = Field(0, ge=0, le=INT32_MAX)
    reservedQuantity: StrictInt = Field(0, ge=0, le=INT32_MAX)
    allowOversell: StrictBool = False
    autoSyncEnabled: StrictBool = True


class BundleCreate(_Input):
    """`POST /bundles`. `slug` is derived from `name` when absent (unique within the shop).

    `metadata.source == "AI"` makes the bundle write through to `ai_fbt_bundles` (its row is named
    by `metadata.ai_bundle_id`, or created when absent).
    """

    model_config = ConfigDict(json_schema_extra={"examples": [BUNDLE_CREATE_EXAMPLE]})

    name: Name
    title: Name
    description: LongText | None = None
    slug: Slug | None = None
    type: BundleType = "FIXED"
    status: BundleStatus = "DRAFT"
    shopifyMetaobjectId: MetaobjectGid | None = None
    shopifyProductId: ProductGid | None = None
    displayOrder: StrictInt = Field(0, ge=0, le=INT32_MAX)
    featuredImage: Url | None = None
    currencyCode: CurrencyCode = "USD"
    components: list[ComponentIn] = Field(min_length=1, max_length=MAX_COMPONENTS)
    pricingRules: list[PricingRuleIn] = Field(default_factory=list, max_length=20)
    discounts: list[DiscountIn] = Field(default_factory=list, max_length=20)
    inventory: InventoryIn | None = None
    tags: list[Name] = Field(default_factory=list, max_length=100)
    images: list[Url] = Field(default_factory=list, max_length=50)
    metadata: JsonObject | None = None


class InventoryPatch(_Input):
    """Partial inventory update: only the given fields change."""

    trackingMethod: InventoryMethod | None = None
    bundleQuantity: StrictInt | None = Field(None, ge=0, le=INT32_MAX)
    lowStockThreshold: StrictInt | None = Field(None, ge=0, le=INT32_MAX)
    availableQuantity: StrictInt | None = Field(None, ge=0, le=INT32_MAX)
    reservedQuantity: StrictInt | None = Field(None, ge=0, le=INT32_MAX)
    allowOversell: StrictBool | None = None
    autoSyncEnabled: StrictBool | None = None

    @field_validator(
        "trackingMethod",
        "lowStockThreshold",
        "availableQuantity",
        "reservedQuantity",
        "allowOversell",
        "autoSyncEnabled",
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null")
        return value


#: Fields of `BundleUpdate` whose column is NOT NULL: an explicit `null` is a 422, not "clear".
NON_NULLABLE_PATCH_FIELDS = (
    "name",
    "title",
    "slug",
    "type",
    "status",
    "displayOrder",
    "currencyCode",
    "components",
    "pricingRules",
    "discounts",
    "inventory",
    "tags",
    "images",
)


class BundleUpdate(_Input):
    """`PATCH /bundles/{id}`: only the fields present change; lists (components, pricingRules,
    discounts, tags, images) replace the stored list; `metadata` replaces the stored object;
    `null` clears a nullable field (description, shopifyMetaobjectId, ...).
    """

    model_config = ConfigDict(json_schema_extra={"examples": [BUNDLE_UPDATE_EXAMPLE]})

    name: Name | None = None
    title: Name | None = None
    description: LongText | None = None
    slug: Slug | None = None
    type: BundleType | None = None
    status: BundleStatus | None = None
    shopifyMetaobjectId: MetaobjectGid | None = None
    shopifyProductId: ProductGid | None = None
    displayOrder: StrictInt | None = Field(None, ge=0, le=INT32_MAX)
    featuredImage: Url | None = None
    currencyCode: CurrencyCode | None = None
    components: list[ComponentIn] | None = Field(None, min_length=1, max_length=MAX_COMPONENTS)
    pricingRules: list[PricingRuleIn] | None = Field(None, max_length=20)
    discounts: list[DiscountIn] | None = Field(None, max_length=20)
    inventory: InventoryPatch | None = None
    tags: list[Name] | None = Field(None, max_length=100)
    images: list[Url] | None = Field(None, max_length=50)
    metadata: JsonObject | None = None

    @field_validator(*NON_NULLABLE_PATCH_FIELDS)
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only for fields the client sent; a missing field keeps its default without validation.
        if value is None:
            raise ValueError("may not be null")
        return value


# --------------------------------------------------------------------------------------------
# Responses (both read paths produce exactly these)
# --------------------------------------------------------------------------------------------


class ComponentOut(BaseModel):
    id: str | None = Field(None, description="Row id; null when the legacy store answered.")
    shopifyProductId: str
    shopifyVariantId: str | None = None
    quantity: int
    isRequired: bool = True
    displayOrder: int = 0
    minQuantity: int = 0
    maxQuantity: int = 1
    priceAdjustmentType: str = "NONE"
    priceAdjustment: Decimal | None = None


class PricingRuleOut(BaseModel):
    id: str | None = None
    name: str
    priority: int = 0
    isActive: bool = True
    ruleType: str = "BUNDLE_DISCOUNT"
    conditions: dict[str, Any] = Field(default_factory=dict)
    discountType: str = "PERCENTAGE"
    discountValue: Decimal
    usageLimit: int | None = None
    usageCount: int = 0
    startsAt: datetime | None = None
    endsAt: datetime | None = None


class DiscountOut(BaseModel):
    id: str | None = None
    shopifyDiscountId: str
    discountCode: str | None = None
    discountType: str = "automatic"
    isActive: bool = True


class InventoryOut(BaseModel):
    trackingMethod: str = "COMPONENT_BASED"
    bundleQuantity: int | None = None
    lowStockThreshold: int = 10
    availableQuantity: int = 0
    reservedQuantity: int = 0
    allowOversell: bool = False
    autoSyncEnabled: bool = True


class BundleOut(BaseModel):
    """A bundle as both read paths return it (api.md: "Both paths return the same response schema").

    Money and percentages are decimal strings ("15.00"); times are ISO-8601 UTC. When the legacy
    store answered, `id` is the legacy key (the metaobject GID, or the `ai_fbt_bundles` id of an AI
    bundle), row ids of children are null and `updatedAt` is null for manual bundles.
    `legacySync` is set on write responses only (null on reads).
    """

    id: str
    shop: str
    name: str
    title: str
    description: str | None = None
    slug: str
    type: str = "FIXED"
    status: str = "DRAFT"
    shopifyProductId: str | None = None
    shopifyMetaobjectId: str | None = None
    displayOrder: int = 0
    featuredImage: str | None = None
    images: list[str] = Field(default_factory=list)
    currencyCode: str = "USD"
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    components: list[ComponentOut] = Field(default_factory=list)
    pricingRules: list[PricingRuleOut] = Field(default_factory=list)
    discounts: list[DiscountOut] = Field(default_factory=list)
    inventory: InventoryOut | None = None
    createdAt: datetime | None = None
    updatedAt: datetime | None = None
    publishedAt: datetime | None = None
    legacySync: LegacySync | None = Field(
        None,
        description=(
            "Write responses only: `synced` (legacy rows written in the same transaction), "
            "`not_representable` (no metaobject or no active discount: the legacy table cannot hold it), "
            "`disabled` (DUAL_WRITE is off for this shop). What the Shopify metaobject could not hold "
            "is in `legacyApproximations`."
        ),
    )
    legacyApproximations: list[LegacyApproximation] | None = Field(
        None,
        description=(
            "Write responses with Shopify write-through only (null otherwise, and on reads): what the bundle's "
            "legacy `product-bundles` metaobject approximates, empty when it says everything. `variant`, "
            "`quantity`, `duplicate_product`: the metaobject lists each product once, without variant or "
            "quantity; `fractional_percentage`: its integer discount is rounded down (the automatic discount "
            "keeps the exact percentage); `pricing_not_representable`: only the first active percentage rule "
            "is written (`0` without one); `description_fallback`: no description, the title is written."
        ),
    )


class BundlePage(BaseModel):
    items: list[BundleOut]
    nextCursor: str | None = None


class ShadowMismatchOut(BaseModel):
    id: int
    shop: str
    endpoint: str
    bundleKey: str | None = None
    fields: list[str] = Field(default_factory=list)
    legacy: dict[str, Any] | None = None
    v2: dict[str, Any] | None = None
    createdAt: datetime | None = None


class ShadowMismatchPage(BaseModel):
    items: list[ShadowMismatchOut]
    nextCursor: str | None = None
