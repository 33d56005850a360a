"""Phase 1 of the plan: the twelve V2 tables, their enum types, Prisma's indexes, and ours.

The downgrade is the plan's "full rollback": V2 rows are preserved in backup tables first
(`bundle_v2_backup`, `bundle_component_backup`, and `<table>_backup` for every other V2 table that
holds rows), then the tables and enum types are dropped. Upgrading again afterwards works.

Revision ID: 0002_phase1_v2
Revises: 0001_legacy_baseline
Create Date: 2026-11-24 03:03:42.607107
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0002_phase1_v2"
down_revision: str | Sequence[str] | None = "0001_legacy_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Children first, so the drops never trip over a foreign key.
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
BACKUP_NAMES = {
    "Bundle": "bundle_v2_backup",
    "BundleComponent": "bundle_component_backup",
    "BundleEvent": "bundle_event_backup",
    "BundleAnalytics": "bundle_analytics_backup",
    "BundleInventory": "bundle_inventory_backup",
    "BundleDiscount": "bundle_discount_backup",
    "BundlePricingRule": "bundle_pricing_rule_backup",
    "ComponentGroup": "component_group_backup",
    "SubscriptionBundle": "subscription_bundle_backup",
    "GiftBundleSettings": "gift_bundle_settings_backup",
    "InventorySyncLog": "inventory_sync_log_backup",
    "AutoBundleRule": "auto_bundle_rule_backup",
}
ENUM_NAMES = (
    "BundleType",
    "BundleStatus",
    "PriceAdjustmentType",
    "PricingRuleType",
    "DiscountType",
    "InventoryMethod",
    "SelectionType",
    "AutoBundleTrigger",
    "SubscriptionFrequency",
)


def upgrade() -> None:
    op.create_table(
        "AutoBundleRule",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("shop", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "triggerType",
            sa.Enum(
                "COLLECTION_BASED",
                "TAG_BASED",
                "PRICE_RANGE",
                "VENDOR_BASED",
                "AI_RECOMMENDATION",
                "PRODUCT_TYPE",
                name="AutoBundleTrigger",
            ),
            nullable=False,
        ),
        sa.Column("conditions", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("bundleTemplate", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("isActive", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("maxBundlesGenerated", sa.Integer(), nullable=True),
        sa.Column("bundlesCreated", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lastTriggeredAt", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("updatedAt", postgresql.TIMESTAMP(precision=3), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("AutoBundleRule_shop_isActive_idx", "AutoBundleRule", ["shop", "isActive"], unique=False)
    op.create_index(
        "sb_auto_rule_shop_legacy_key",
        "AutoBundleRule",
        ["shop", sa.literal_column("(conditions ->> 'legacyRuleId')")],
        unique=True,
        postgresql_where=sa.text("(conditions ->> 'legacyRuleId') IS NOT NULL"),
    )
    op.create_table(
        "Bundle",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("shop", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column(
            "type",
            sa.Enum(
                "FIXED",
                "MIX_MATCH",
                "TIERED",
                "BOGO",
                "BUILD_YOUR_OWN",
                "SUBSCRIPTION",
                "GIFT",
                name="BundleType",
            ),
            server_default=sa.text("'FIXED'::\"BundleType\""),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum("DRAFT", "ACTIVE", "SCHEDULED", "PAUSED", "ARCHIVED", name="BundleStatus"),
            server_default=sa.text("'DRAFT'::\"BundleStatus\""),
            nullable=False,
        ),
        sa.Column("shopifyProductId", sa.Text(), nullable=True),
        sa.Column("shopifyMetaobjectId", sa.Text(), nullable=True),
        sa.Column("displayOrder", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("featuredImage", sa.Text(), nullable=True),
        sa.Column("images", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("currencyCode", sa.Text(), server_default=sa.text("'USD'"), nullable=False),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("updatedAt", postgresql.TIMESTAMP(precision=3), nullable=False),
        sa.Column("publishedAt", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("Bundle_createdAt_idx", "Bundle", ["createdAt"], unique=False)
    op.create_index("Bundle_shop_slug_key", "Bundle", ["shop", "slug"], unique=True)
    op.create_index("Bundle_shop_status_idx", "Bundle", ["shop", "status"], unique=False)
    op.create_index("Bundle_shop_type_idx", "Bundle", ["shop", "type"], unique=False)
    op.create_index(
        "sb_bundle_shop_ai_bundle_key",
        "Bundle",
        ["shop", sa.literal_column("(metadata ->> 'ai_bundle_id')")],
        unique=True,
        postgresql_where=sa.text("(metadata ->> 'ai_bundle_id') IS NOT NULL"),
    )
    op.create_index("sb_bundle_shop_created_id_idx", "Bundle", ["shop", "createdAt", "id"], unique=False)
    op.create_index(
        "sb_bundle_shop_metaobject_key",
        "Bundle",
        ["shop", "shopifyMetaobjectId"],
        unique=True,
        postgresql_where=sa.text('"shopifyMetaobjectId" IS NOT NULL'),
    )
    op.create_table(
        "InventorySyncLog",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("shop", sa.Text(), nullable=False),
        sa.Column("bundleId", sa.Text(), nullable=False),
        sa.Column("syncType", sa.Text(), nullable=False),
        sa.Column("previousQuantity", sa.Integer(), nullable=False),
        sa.Column("newQuantity", sa.Integer(), nullable=False),
        sa.Column("triggerProductId", sa.Text(), nullable=True),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("errorMessage", sa.Text(), nullable=True),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("InventorySyncLog_createdAt_idx", "InventorySyncLog", ["createdAt"], unique=False)
    op.create_index(
        "InventorySyncLog_shop_bundleId_idx", "InventorySyncLog", ["shop", "bundleId"], unique=False
    )
    op.create_table(
        "BundleAnalytics",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("bundleId", sa.Text(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("impressions", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("clicks", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("addToCarts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("orders", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("unitsSold", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=12, scale=2), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "discountAmount", sa.Numeric(precision=12, scale=2), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "averageOrderValue",
            sa.Numeric(precision=10, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("updatedAt", postgresql.TIMESTAMP(precision=3), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundleId"],
            ["Bundle.id"],
            name="BundleAnalytics_bundleId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("BundleAnalytics_bundleId_date_key", "BundleAnalytics", ["bundleId", "date"], unique=True)
    op.create_index("BundleAnalytics_date_idx", "BundleAnalytics", ["date"], unique=False)
    op.create_table(
        "BundleDiscount",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("bundleId", sa.Text(), nullable=False),
        sa.Column("shopifyDiscountId", sa.Text(), nullable=False),
        sa.Column("discountCode", sa.Text(), nullable=True),
        sa.Column("discountType", sa.Text(), server_default=sa.text("'automatic'"), nullable=False),
        sa.Column("isActive", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("updatedAt", postgresql.TIMESTAMP(precision=3), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundleId"],
            ["Bundle.id"],
            name="BundleDiscount_bundleId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "BundleDiscount_bundleId_shopifyDiscountId_key",
        "BundleDiscount",
        ["bundleId", "shopifyDiscountId"],
        unique=True,
    )
    op.create_index(
        "BundleDiscount_shopifyDiscountId_idx", "BundleDiscount", ["shopifyDiscountId"], unique=False
    )
    op.create_table(
        "BundleEvent",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("shop", sa.Text(), nullable=False),
        sa.Column("bundleId", sa.Text(), nullable=False),
        sa.Column("eventType", sa.Text(), nullable=False),
        sa.Column("sessionId", sa.Text(), nullable=True),
        sa.Column("customerId", sa.Text(), nullable=True),
        sa.Column("orderId", sa.Text(), nullable=True),
        sa.Column("quantity", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("deviceType", sa.Text(), nullable=True),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["bundleId"],
            ["Bundle.id"],
            name="BundleEvent_bundleId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("BundleEvent_createdAt_idx", "BundleEvent", ["createdAt"], unique=False)
    op.create_index("BundleEvent_eventType_idx", "BundleEvent", ["eventType"], unique=False)
    op.create_index("BundleEvent_shop_bundleId_idx", "BundleEvent", ["shop", "bundleId"], unique=False)
    op.create_table(
        "BundleInventory",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("bundleId", sa.Text(), nullable=False),
        sa.Column(
            "trackingMethod",
            sa.Enum("COMPONENT_BASED", "BUNDLE_SPECIFIC", "UNLIMITED", name="InventoryMethod"),
            server_default=sa.text("'COMPONENT_BASED'::\"InventoryMethod\""),
            nullable=False,
        ),
        sa.Column("bundleQuantity", sa.Integer(), nullable=True),
        sa.Column("lowStockThreshold", sa.Integer(), server_default=sa.text("10"), nullable=False),
        sa.Column("availableQuantity", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("reservedQuantity", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("allowOversell", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("autoSyncEnabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "lastCalculatedAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["bundleId"],
            ["Bundle.id"],
            name="BundleInventory_bundleId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("BundleInventory_bundleId_idx", "BundleInventory", ["bundleId"], unique=False)
    op.create_index("BundleInventory_bundleId_key", "BundleInventory", ["bundleId"], unique=True)
    op.create_table(
        "BundlePricingRule",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("bundleId", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("isActive", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "ruleType",
            sa.Enum(
                "BUNDLE_DISCOUNT",
                "VOLUME_TIER",
                "BOGO",
                "MEMBER_PRICE",
                "TIME_LIMITED",
                "FIRST_PURCHASE",
                name="PricingRuleType",
            ),
            server_default=sa.text("'BUNDLE_DISCOUNT'::\"PricingRuleType\""),
            nullable=False,
        ),
        sa.Column(
            "conditions",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "discountType",
            sa.Enum("PERCENTAGE", "FIXED_AMOUNT", "FIXED_PRICE", "FREE_ITEM", name="DiscountType"),
            server_default=sa.text("'PERCENTAGE'::\"DiscountType\""),
            nullable=False,
        ),
        sa.Column("discountValue", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("usageLimit", sa.Integer(), nullable=True),
        sa.Column("usageCount", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("startsAt", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column("endsAt", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("updatedAt", postgresql.TIMESTAMP(precision=3), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundleId"],
            ["Bundle.id"],
            name="BundlePricingRule_bundleId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "BundlePricingRule_bundleId_isActive_idx", "BundlePricingRule", ["bundleId", "isActive"], unique=False
    )
    op.create_index("BundlePricingRule_priority_idx", "BundlePricingRule", ["priority"], unique=False)
    op.create_table(
        "ComponentGroup",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("bundleId", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("displayOrder", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "selectionType",
            sa.Enum("SINGLE", "MULTIPLE", "OPTIONAL", name="SelectionType"),
            server_default=sa.text("'SINGLE'::\"SelectionType\""),
            nullable=False,
        ),
        sa.Column("minSelections", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("maxSelections", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("updatedAt", postgresql.TIMESTAMP(precision=3), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundleId"],
            ["Bundle.id"],
            name="ComponentGroup_bundleId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ComponentGroup_bundleId_idx", "ComponentGroup", ["bundleId"], unique=False)
    op.create_table(
        "GiftBundleSettings",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("bundleId", sa.Text(), nullable=False),
        sa.Column("allowGiftMessage", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("maxMessageLength", sa.Integer(), server_default=sa.text("500"), nullable=False),
        sa.Column("allowScheduledDelivery", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("giftWrapAvailable", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("giftWrapPrice", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("giftWrapProductId", sa.Text(), nullable=True),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("updatedAt", postgresql.TIMESTAMP(precision=3), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundleId"],
            ["Bundle.id"],
            name="GiftBundleSettings_bundleId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("GiftBundleSettings_bundleId_key", "GiftBundleSettings", ["bundleId"], unique=True)
    op.create_table(
        "SubscriptionBundle",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("bundleId", sa.Text(), nullable=False),
        sa.Column(
            "frequency",
            sa.Enum(
                "WEEKLY",
                "BI_WEEKLY",
                "MONTHLY",
                "BI_MONTHLY",
                "QUARTERLY",
                "ANNUALLY",
                name="SubscriptionFrequency",
            ),
            nullable=False,
        ),
        sa.Column("intervalCount", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("subscriptionDiscount", sa.Numeric(precision=5, scale=2), nullable=False),
        sa.Column("sellingPlanGroupId", sa.Text(), nullable=True),
        sa.Column("sellingPlanId", sa.Text(), nullable=True),
        sa.Column("allowSkip", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("allowSwap", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("minCycles", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("maxCycles", sa.Integer(), nullable=True),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("updatedAt", postgresql.TIMESTAMP(precision=3), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundleId"],
            ["Bundle.id"],
            name="SubscriptionBundle_bundleId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("SubscriptionBundle_bundleId_key", "SubscriptionBundle", ["bundleId"], unique=True)
    op.create_table(
        "BundleComponent",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("bundleId", sa.Text(), nullable=False),
        sa.Column("shopifyProductId", sa.Text(), nullable=False),
        sa.Column("shopifyVariantId", sa.Text(), nullable=True),
        sa.Column("quantity", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("isRequired", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("displayOrder", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("groupId", sa.Text(), nullable=True),
        sa.Column("minQuantity", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("maxQuantity", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("priceAdjustment", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column(
            "priceAdjustmentType",
            sa.Enum("NONE", "FIXED_AMOUNT", "PERCENTAGE", "FIXED_PRICE", name="PriceAdjustmentType"),
            server_default=sa.text("'NONE'::\"PriceAdjustmentType\""),
            nullable=False,
        ),
        sa.Column("cachedTitle", sa.Text(), nullable=True),
        sa.Column("cachedPrice", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("cachedCompareAtPrice", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("cachedImageUrl", sa.Text(), nullable=True),
        sa.Column("cachedSku", sa.Text(), nullable=True),
        sa.Column("cachedInventory", sa.Integer(), nullable=True),
        sa.Column("lastSyncedAt", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("updatedAt", postgresql.TIMESTAMP(precision=3), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundleId"],
            ["Bundle.id"],
            name="BundleComponent_bundleId_fkey",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["groupId"],
            ["ComponentGroup.id"],
            name="BundleComponent_groupId_fkey",
            onupdate="CASCADE",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("BundleComponent_bundleId_idx", "BundleComponent", ["bundleId"], unique=False)
    op.create_index("BundleComponent_groupId_idx", "BundleComponent", ["groupId"], unique=False)
    op.create_index(
        "BundleComponent_shopifyProductId_idx", "BundleComponent", ["shopifyProductId"], unique=False
    )
    op.create_index(
        "sb_component_product_bundle_idx", "BundleComponent", ["shopifyProductId", "bundleId"], unique=False
    )


def downgrade() -> None:
    """Full rollback: back up every V2 table that holds rows, then drop tables and enum types."""
    bind = op.get_bind()
    stamp = bind.execute(sa.text("SELECT to_char(clock_timestamp(), 'YYYYMMDDHH24MISS')")).scalar_one()
    for table in V2_TABLES:
        has_rows = bind.execute(sa.text(f'SELECT EXISTS (SELECT 1 FROM "{table}")')).scalar_one()
        if not has_rows:
            continue
        backup = BACKUP_NAMES[table]
        exists = bind.execute(sa.text("SELECT to_regclass(:name) IS NOT NULL"), {"name": backup}).scalar_one()
        if exists:
            # An earlier rollback's copy is kept under a dated name, never overwritten.
            op.execute(f'ALTER TABLE "{backup}" RENAME TO "{backup}_{stamp}"')
        # Enum columns are kept as text: the enum types are dropped below, the backups must survive.
        columns = bind.execute(
            sa.text(
                "SELECT column_name, udt_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = :t ORDER BY ordinal_position"
            ),
            {"t": table},
        ).all()
        select_list = ", ".join(
            f'"{name}"::text AS "{name}"' if udt in ENUM_NAMES else f'"{name}"' for name, udt in columns
        )
        op.execute(f'CREATE TABLE "{backup}" AS SELECT {select_list} FROM "{table}"')
    for table in V2_TABLES:
        op.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')
    for enum_name in ENUM_NAMES:
        op.execute(f'DROP TYPE IF EXISTS "{enum_name}"')
