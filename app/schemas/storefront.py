"""Response shapes of the storefront endpoints (`/proxy/*`), for the OpenAPI document only.

The handlers do not return these models: the storefront is the hottest path of the service, so its
JSON is assembled from database rows and serialised once with orjson (see `app/services/storefront/reads.py`);
validating it through pydantic on every request would cost more than the query. These models are
what `openapi.yaml` publishes, and a test compares real responses with them.

Conventions the theme relies on:
* money and percentages are **strings with exactly two decimals** (`"19.99"`, `"15.00"`), never
  JSON numbers: a float would turn 0.1 + 0.2 into 0.30000000000000004 in the browser, and the
  prices are Decimals end to end;
* the legacy array (`/proxy/bundles-for-product`) keeps the legacy app's shape and spelling:
  `discount` is the percentage as a plain string (`"15"`, `"12.5"`, `""` when the bundle has none).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "AI_BUNDLES_EXAMPLE",
    "LEGACY_BUNDLES_EXAMPLE",
    "STOREFRONT_BUNDLES_EXAMPLE",
    "AiBundle",
    "AiBundlesResponse",
    "LegacyBundle",
    "StorefrontBundle",
    "StorefrontBundlesResponse",
    "StorefrontComponent",
    "StorefrontInventory",
    "StorefrontPricing",
]

_MONEY = r"^-?[0-9]+\.[0-9]{2}$"


class LegacyBundle(BaseModel):
    """One entry of the array the legacy theme script reads (`/proxy/bundles-for-product`)."""

    id: str = Field(
        description="The bundle's legacy metaobject GID (`gid://shopify/Metaobject/<n>`); a V2-only bundle "
        "without a metaobject answers its V2 id.",
        examples=["gid://shopify/Metaobject/123"],
    )
    title: str = Field(description="Title shown on the storefront (the metaobject's `bundle_title`).")
    discount: str = Field(
        description='Percentage off as a plain decimal string without trailing zeros ("15", "12.5"); '
        '"" when the bundle has no percentage discount.',
        examples=["15"],
    )
    description: str = Field(description='Free text; "" when absent.')
    products: list[str] = Field(
        description="Product GIDs of the bundle, in display order.", examples=[["gid://shopify/Product/1"]]
    )


class StorefrontComponent(BaseModel):
    """One product line of a bundle, with the title/price/image cached from Shopify."""

    productId: str = Field(examples=["gid://shopify/Product/1"])
    variantId: str | None = Field(default=None, examples=["gid://shopify/ProductVariant/11"])
    quantity: int = Field(ge=0)
    title: str | None = Field(default=None, description="Cached product title; null until synced.")
    price: str | None = Field(
        default=None,
        pattern=_MONEY,
        description="Cached unit price before any adjustment, two decimals; null until synced.",
        examples=["19.99"],
    )
    imageUrl: str | None = None


class StorefrontPricing(BaseModel):
    """The bundle's price: V2 pricing engine when `V2_PRICING_ENGINE` is on for the shop, else the
    legacy percentage (the bundle's BUNDLE_DISCOUNT percentage off the sum of the component prices)."""

    originalPrice: str = Field(pattern=_MONEY, examples=["39.98"])
    discountedPrice: str = Field(pattern=_MONEY, examples=["33.98"])
    savings: str = Field(pattern=_MONEY, examples=["6.00"])
    savingsPercentage: str = Field(pattern=_MONEY, description="savings / originalPrice * 100.", examples=["15.01"])
    currency: str = Field(description="ISO 4217 code of the bundle (`Bundle.currencyCode`).", examples=["USD"])


class StorefrontInventory(BaseModel):
    """Sellable bundles right now.

    `available`: COMPONENT_BASED (the default, also without an inventory row) = the minimum over
    required components of cached inventory // quantity; BUNDLE_SPECIFIC = availableQuantity -
    reservedQuantity (at least 0); UNLIMITED or no known component inventory = null (unknown: not
    blocked here, Shopify's checkout has the final word). `isInStock` = allowOversell, or
    `available` is null, or `available` > 0.
    """

    available: int | None
    isInStock: bool


class StorefrontBundle(BaseModel):
    """An ACTIVE V2 bundle containing the product asked for."""

    id: str = Field(description="V2 bundle id.")
    name: str
    title: str
    description: str | None = None
    type: str = Field(description="BundleType: FIXED, MIX_MATCH, TIERED, BOGO, BUILD_YOUR_OWN, SUBSCRIPTION, GIFT.")
    featuredImage: str | None = None
    components: list[StorefrontComponent]
    pricing: StorefrontPricing
    inventory: StorefrontInventory


class StorefrontBundlesResponse(BaseModel):
    """`GET /proxy/v2/bundles`."""

    bundles: list[StorefrontBundle]


class AiBundle(BaseModel):
    """An active `ai_fbt_bundles` row, as the legacy app returned it."""

    id: str
    productId: str = Field(
        description="Numeric product id (`123`), whichever form the row holds: the theme builds "
        "`/products/<id>.js` from it."
    )
    bundledProductIds: list[str] = Field(description="Numeric product ids, as `productId`.")
    confidenceScore: float
    support: float
    lift: float
    variantGroupId: str | None = None
    discountId: str | None = None
    bundleMetaobjectId: str | None = None


class AiBundlesResponse(BaseModel):
    """`GET /proxy/ai-bundles-for-product`.

    `enabled` is the shop's `ai_fbt_config.isEnabled` (false without a row, and then `bundles` is
    empty). `bundles`: the product's active AI bundles, highest `confidenceScore` first, at most 3.
    `variantGroupId` is present only when `sessionId` was given and that session has an unexpired
    A/B assignment for this product in this shop; `bundles` then holds only that variant group's
    bundles (all of them when the group has none).
    """

    bundles: list[AiBundle]
    enabled: bool
    variantGroupId: str | None = Field(
        default=None, description="Only present when the session has an unexpired A/B assignment."
    )


# --------------------------------------------------------------------------------------------
# Examples (OpenAPI): the demo shop's Summer Set, as each endpoint answers for product 100001
# --------------------------------------------------------------------------------------------

LEGACY_BUNDLES_EXAMPLE: list[dict[str, Any]] = [
    {
        "id": "gid://shopify/Metaobject/100001",
        "title": "Summer Camping Set",
        "discount": "15",
        "description": "Tent and two lanterns: 15% off together.",
        "products": ["gid://shopify/Product/100001", "gid://shopify/Product/100002"],
    }
]

STOREFRONT_BUNDLES_EXAMPLE: dict[str, Any] = {
    "bundles": [
        {
            "id": "c0a1b2c3d4e5f6g7h8i9j0k1l",
            "name": "Summer Set",
            "title": "Summer Camping Set",
            "description": "Tent and two lanterns: 15% off together.",
            "type": "FIXED",
            "featuredImage": "https://cdn.shopify.com/s/files/1/0000/0001/files/summer-set.jpg",
            "components": [
                {
                    "productId": "gid://shopify/Product/100001",
                    "variantId": "gid://shopify/ProductVariant/200001",
                    "quantity": 1,
                    "title": "Trail Tent 2P",
                    "price": "149.00",
                    "imageUrl": "https://cdn.shopify.com/s/files/1/0000/0001/files/trail-tent.jpg",
                },
                {
                    "productId": "gid://shopify/Product/100002",
                    "variantId": None,
                    "quantity": 2,
                    "title": "Camp Lantern",
                    "price": "24.50",
                    "imageUrl": "https://cdn.shopify.com/s/files/1/0000/0001/files/camp-lantern.jpg",
                },
            ],
            "pricing": {
                "originalPrice": "198.00",
                "discountedPrice": "168.30",
                "savings": "29.70",
                "savingsPercentage": "15.00",
                "currency": "USD",
            },
            "inventory": {"available": 12, "isInStock": True},
        }
    ]
}

AI_BUNDLES_EXAMPLE: dict[str, Any] = {
    "bundles": [
        {
            "id": "c6g7h8i9j0k1l2m3n4o5p6q7r",
            "productId": "100001",
            "bundledProductIds": ["100002", "100003"],
            "confidenceScore": 0.91,
            "support": 0.125,
            "lift": 2.5,
            "variantGroupId": "B",
            "discountId": "gid://shopify/DiscountAutomaticNode/100007",
            "bundleMetaobjectId": "gid://shopify/Metaobject/100012",
        }
    ],
    "enabled": True,
    "variantGroupId": "B",
}
