"""The twelve V2 tables of the plan's Phase 1, named exactly as Prisma names them (schema.md).

Beyond Prisma's indexes, a few are the service's own (prefixed `sb_`): the uniqueness that makes
the backfill idempotent under concurrency, and the storefront's product lookup.
"""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.models.base import (
    boolean,
    bundle_fk,
    decimal,
    enum,
    integer,
    jsonb,
    pk,
    text,
    text_array,
    timestamp,
)

BUNDLE_TYPES = ("FIXED", "MIX_MATCH", "TIERED", "BOGO", "BUILD_YOUR_OWN", "SUBSCRIPTION", "GIFT")
BUNDLE_STATUSES = ("DRAFT", "ACTIVE", "SCHEDULED", "PAUSED", "ARCHIVED")
PRICE_ADJUSTMENT_TYPES = ("NONE", "FIXED_AMOUNT", "PERCENTAGE", "FIXED_PRICE")
PRICING_RULE_TYPES = (
    "BUNDLE_DISCOUNT",
    "VOLUME_TIER",
    "BOGO",
    "MEMBER_PRICE",
    "TIME_LIMITED",
    "FIRST_PURCHASE",
)
DISCOUNT_TYPES = ("PERCENTAGE", "FIXED_AMOUNT", "FIXED_PRICE", "FREE_ITEM")
INVENTORY_METHODS = ("COMPONENT_BASED", "BUNDLE_SPECIFIC", "UNLIMITED")
SELECTION_TYPES = ("SINGLE", "MULTIPLE", "OPTIONAL")
AUTO_BUNDLE_TRIGGERS = (
    "COLLECTION_BASED",
    "TAG_BASED",
    "PRICE_RANGE",
    "VENDOR_BASED",
    "AI_RECOMMENDATION",
    "PRODUCT_TYPE",
)
SUBSCRIPTION_FREQUENCIES = ("WEEKLY", "BI_WEEKLY", "MONTHLY", "BI_MONTHLY", "QUARTERLY", "ANNUALLY")

BundleTypeEnum = sa.Enum(*BUNDLE_TYPES, name="BundleType")
BundleStatusEnum = sa.Enum(*BUNDLE_STATUSES, name="BundleStatus")
PriceAdjustmentTypeEnum = sa.Enum(*PRICE_ADJUSTMENT_TYPES, name="PriceAdjustmentType")
PricingRuleTypeEnum = sa.Enum(*PRICING_RULE_TYPES, name="PricingRuleType")
DiscountTypeEnum = sa.Enum(*DISCOUNT_TYPES, name="DiscountType")
InventoryMethodEnum = sa.Enum(*INVENTORY_METHODS, name="InventoryMethod")
SelectionTypeEnum = sa.Enum(*SELECTION_TYPES, name="SelectionType")
AutoBundleTriggerEnum = sa.Enum(*AUTO_BUNDLE_TRIGGERS, name="AutoBundleTrigger")
SubscriptionFrequencyEnum = sa.Enum(*SUBSCRIPTION_FREQUENCIES, name="SubscriptionFrequency")

ALL_ENUMS = (
    BundleTypeEnum,
    BundleStatusEnum,
    PriceAdjustmentTypeEnum,
    PricingRuleTypeEnum,
    DiscountTypeEnum,
    InventoryMethodEnum,
    SelectionTypeEnum,
    AutoBundleTriggerEnum,
    SubscriptionFrequencyEnum,
)

# Children first: the order the full rollback drops them in.
V2_TABLES = (
    "BundleEvent",
    "BundleAnalytics",
    "BundleInventory",
    "BundleDiscount",
    "BundlePricingRule",
    "BundleComponent",
    "ComponentGroup",
    "SubscriptionBundle",
    "GiftBundleSettings",
    "InventorySyncLog",
    "AutoBundleRule",
    "Bundle",
)


class Bundle(SQLModel, table=True):
    __tablename__ = "Bundle"
    __table_args__: ClassVar[Any] = (
        sa.Index("Bundle_shop_slug_key", "shop", "slug", unique=True),
        sa.Index("Bundle_shop_status_idx", "shop", "status"),
        sa.Index("Bundle_shop_type_idx", "shop", "type"),
        sa.Index("Bundle_createdAt_idx", "createdAt"),
        # One V2 bundle per legacy metaobject: what makes the backfill and dual write idempotent.
        sa.Index(
            "sb_bundle_shop_metaobject_key",
            "shop",
            "shopifyMetaobjectId",
            unique=True,
            postgresql_where=sa.text('"shopifyMetaobjectId" IS NOT NULL'),
        ),
        # One V2 bundle per legacy AI bundle.
        sa.Index(
            "sb_bundle_shop_ai_bundle_key",
            "shop",
            sa.text("(metadata ->> 'ai_bundle_id')"),
            unique=True,
            postgresql_where=sa.text("(metadata ->> 'ai_bundle_id') IS NOT NULL"),
        ),
        # Newest-first listing with a keyset cursor.
        sa.Index("sb_bundle_shop_created_id_idx", "shop", "createdAt", "id"),
    )
    id: str = pk()
    shop: str = text(nullable=False)
    name: str = text(nullable=False)
    title: str = text(nullable=False)
    description: str | None = text()
    slug: str = text(nullable=False)
    type: str = enum(BundleTypeEnum, default="FIXED")
    status: str = enum(BundleStatusEnum, default="DRAFT")
    shopifyProductId: str | None = text()
    shopifyMetaobjectId: str | None = text()
    displayOrder: int = integer(default=0)
    featuredImage: str | None = text()
    images: list[str] | None = text_array()
    currencyCode: str = text(nullable=False, default="USD")
    tags: list[str] | None = text_array()
    metadata_: dict[str, Any] | None = jsonb(name="metadata")
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    updatedAt: datetime | None = timestamp(nullable=False)
    publishedAt: datetime | None = timestamp()


class ComponentGroup(SQLModel, table=True):
    __tablename__ = "ComponentGroup"
    __table_args__: ClassVar[Any] = (sa.Index("ComponentGroup_bundleId_idx", "bundleId"),)
    id: str = pk()
    bundleId: str = bundle_fk("ComponentGroup")
    name: str = text(nullable=False)
    description: str | None = text()
    displayOrder: int = integer(default=0)
    selectionType: str = enum(SelectionTypeEnum, default="SINGLE")
    minSelections: int = integer(default=1)
    maxSelections: int = integer(default=1)
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    updatedAt: datetime | None = timestamp(nullable=False)


class BundleComponent(SQLModel, table=True):
    __tablename__ = "BundleComponent"
    __table_args__: ClassVar[Any] = (
        sa.Index("BundleComponent_bundleId_idx", "bundleId"),
        sa.Index("BundleComponent_shopifyProductId_idx", "shopifyProductId"),
        sa.Index("BundleComponent_groupId_idx", "groupId"),
        # Storefront: "bundles containing product P" is an index-only probe on this pair.
        sa.Index("sb_component_product_bundle_idx", "shopifyProductId", "bundleId"),
    )
    id: str = pk()
    bundleId: str = bundle_fk("BundleComponent")
    shopifyProductId: str = text(nullable=False)
    shopifyVariantId: str | None = text()
    quantity: int = integer(default=1)
    isRequired: bool = boolean(default=True)
    displayOrder: int = integer(default=0)
    groupId: str | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Text(),
            sa.ForeignKey(
                "ComponentGroup.id",
                name="BundleComponent_groupId_fkey",
                ondelete="SET NULL",
                onupdate="CASCADE",
            ),
            nullable=True,
        ),
    )
    minQuantity: int = integer(default=0)
    maxQuantity: int = integer(default=1)
    priceAdjustment: Decimal | None = decimal(10, 2)
    priceAdjustmentType: str = enum(PriceAdjustmentTypeEnum, default="NONE")
    cachedTitle: str | None = text()
    cachedPrice: Decimal | None = decimal(10, 2)
    cachedCompareAtPrice: Decimal | None = decimal(10, 2)
    cachedImageUrl: str | None = text()
    cachedSku: str | None = text()
    cachedInventory: int | None = integer(nullable=True)
    lastSyncedAt: datetime | None = timestamp()
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    updatedAt: datetime | None = timestamp(nullable=False)


class BundlePricingRule(SQLModel, table=True):
    __tablename__ = "BundlePricingRule"
    __table_args__: ClassVar[Any] = (
        sa.Index("BundlePricingRule_bundleId_isActive_idx", "bundleId", "isActive"),
        sa.Index("BundlePricingRule_priority_idx", "priority"),
    )
    id: str = pk()
    bundleId: str = bundle_fk("BundlePricingRule")
    name: str = text(nullable=False)
    priority: int = integer(default=0)
    isActive: bool = boolean(default=True)
    ruleType: str = enum(PricingRuleTypeEnum, default="BUNDLE_DISCOUNT")
    conditions: dict[str, Any] = jsonb(nullable=False, default_sql="'{}'")
    discountType: str = enum(DiscountTypeEnum, default="PERCENTAGE")
    discountValue: Decimal = decimal(10, 2, nullable=False)
    usageLimit: int | None = integer(nullable=True)
    usageCount: int = integer(default=0)
    startsAt: datetime | None = timestamp()
    endsAt: datetime | None = timestamp()
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    updatedAt: datetime | None = timestamp(nullable=False)


class BundleDiscount(SQLModel, table=True):
    __tablename__ = "BundleDiscount"
    __table_args__: ClassVar[Any] = (
        sa.Index("BundleDiscount_bundleId_shopifyDiscountId_key", "bundleId", "shopifyDiscountId", unique=True),
        sa.Index("BundleDiscount_shopifyDiscountId_idx", "shopifyDiscountId"),
    )
    id: str = pk()
    bundleId: str = bundle_fk("BundleDiscount")
    shopifyDiscountId: str = text(nullable=False)
    discountCode: str | None = text()
    discountType: str = text(nullable=False, default="automatic")
    isActive: bool = boolean(default=True)
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    updatedAt: datetime | None = timestamp(nullable=False)


class BundleInventory(SQLModel, table=True):
    __tablename__ = "BundleInventory"
    __table_args__: ClassVar[Any] = (
        sa.Index("BundleInventory_bundleId_key", "bundleId", unique=True),
        sa.Index("BundleInventory_bundleId_idx", "bundleId"),
    )
    id: str = pk()
    bundleId: str = bundle_fk("BundleInventory")
    trackingMethod: str = enum(InventoryMethodEnum, default="COMPONENT_BASED")
    bundleQuantity: int | None = integer(nullable=True)
    lowStockThreshold: int = integer(default=10)
    availableQuantity: int = integer(default=0)
    reservedQuantity: int = integer(default=0)
    allowOversell: bool = boolean(default=False)
    autoSyncEnabled: bool = boolean(default=True)
    lastCalculatedAt: datetime | None = timestamp(nullable=False, now_default=True)


class BundleAnalytics(SQLModel, table=True):
    __tablename__ = "BundleAnalytics"
    __table_args__: ClassVar[Any] = (
        sa.Index("BundleAnalytics_bundleId_date_key", "bundleId", "date", unique=True),
        sa.Index("BundleAnalytics_date_idx", "date"),
    )
    id: str = pk()
    bundleId: str = bundle_fk("BundleAnalytics")
    date: dt.date = Field(sa_column=sa.Column(sa.Date(), nullable=False))
    impressions: int = integer(default=0)
    clicks: int = integer(default=0)
    addToCarts: int = integer(default=0)
    orders: int = integer(default=0)
    unitsSold: int = integer(default=0)
    revenue: Decimal = decimal(12, 2, nullable=False, default=0)
    discountAmount: Decimal = decimal(12, 2, nullable=False, default=0)
    averageOrderValue: Decimal = decimal(10, 2, nullable=False, default=0)
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    updatedAt: datetime | None = timestamp(nullable=False)


class BundleEvent(SQLModel, table=True):
    __tablename__ = "BundleEvent"
    __table_args__: ClassVar[Any] = (
        sa.Index("BundleEvent_shop_bundleId_idx", "shop", "bundleId"),
        sa.Index("BundleEvent_eventType_idx", "eventType"),
        sa.Index("BundleEvent_createdAt_idx", "createdAt"),
    )
    id: str = pk()
    shop: str = text(nullable=False)
    bundleId: str = bundle_fk("BundleEvent")
    eventType: str = text(nullable=False)
    sessionId: str | None = text()
    customerId: str | None = text()
    orderId: str | None = text()
    quantity: int = integer(default=1)
    revenue: Decimal | None = decimal(10, 2)
    metadata_: dict[str, Any] | None = jsonb(name="metadata")
    source: str | None = text()
    deviceType: str | None = text()
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)


class InventorySyncLog(SQLModel, table=True):
    __tablename__ = "InventorySyncLog"
    __table_args__: ClassVar[Any] = (
        sa.Index("InventorySyncLog_shop_bundleId_idx", "shop", "bundleId"),
        sa.Index("InventorySyncLog_createdAt_idx", "createdAt"),
    )
    id: str = pk()
    shop: str = text(nullable=False)
    bundleId: str = text(nullable=False)
    syncType: str = text(nullable=False)
    previousQuantity: int = integer()
    newQuantity: int = integer()
    triggerProductId: str | None = text()
    success: bool = boolean()
    errorMessage: str | None = text()
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)


class AutoBundleRule(SQLModel, table=True):
    __tablename__ = "AutoBundleRule"
    __table_args__: ClassVar[Any] = (
        sa.Index("AutoBundleRule_shop_isActive_idx", "shop", "isActive"),
        # One V2 rule per legacy rule: the legacy key lives in conditions.legacyRuleId.
        sa.Index(
            "sb_auto_rule_shop_legacy_key",
            "shop",
            sa.text("(conditions ->> 'legacyRuleId')"),
            unique=True,
            postgresql_where=sa.text("(conditions ->> 'legacyRuleId') IS NOT NULL"),
        ),
    )
    id: str = pk()
    shop: str = text(nullable=False)
    name: str = text(nullable=False)
    description: str | None = text()
    triggerType: str = enum(AutoBundleTriggerEnum)
    conditions: dict[str, Any] = jsonb(nullable=False)
    bundleTemplate: dict[str, Any] = jsonb(nullable=False)
    isActive: bool = boolean(default=True)
    priority: int = integer(default=0)
    maxBundlesGenerated: int | None = integer(nullable=True)
    bundlesCreated: int = integer(default=0)
    lastTriggeredAt: datetime | None = timestamp()
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    updatedAt: datetime | None = timestamp(nullable=False)


class SubscriptionBundle(SQLModel, table=True):
    __tablename__ = "SubscriptionBundle"
    __table_args__: ClassVar[Any] = (sa.Index("SubscriptionBundle_bundleId_key", "bundleId", unique=True),)
    id: str = pk()
    bundleId: str = bundle_fk("SubscriptionBundle")
    frequency: str = enum(SubscriptionFrequencyEnum)
    intervalCount: int = integer(default=1)
    subscriptionDiscount: Decimal = decimal(5, 2, nullable=False)
    sellingPlanGroupId: str | None = text()
    sellingPlanId: str | None = text()
    allowSkip: bool = boolean(default=True)
    allowSwap: bool = boolean(default=True)
    minCycles: int = integer(default=1)
    maxCycles: int | None = integer(nullable=True)
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    updatedAt: datetime | None = timestamp(nullable=False)


class GiftBundleSettings(SQLModel, table=True):
    __tablename__ = "GiftBundleSettings"
    __table_args__: ClassVar[Any] = (sa.Index("GiftBundleSettings_bundleId_key", "bundleId", unique=True),)
    id: str = pk()
    bundleId: str = bundle_fk("GiftBundleSettings")
    allowGiftMessage: bool = boolean(default=True)
    maxMessageLength: int = integer(default=500)
    allowScheduledDelivery: bool = boolean(default=False)
    giftWrapAvailable: bool = boolean(default=False)
    giftWrapPrice: Decimal | None = decimal(10, 2)
    giftWrapProductId: str | None = text()
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    updatedAt: datetime | None = timestamp(nullable=False)
