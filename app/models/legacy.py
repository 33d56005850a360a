"""Tables of the legacy Node/Prisma app. This service reads and dual-writes them; it never alters them.

Names, types and defaults are Prisma's exactly (schema.md), since both apps share the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlmodel import SQLModel

from app.models.base import boolean, double, integer, jsonb, pk, text, text_array, timestamp


class ActiveStore(SQLModel, table=True):
    __tablename__ = "active_stores"
    shop: str = pk()
    isActive: bool | None = boolean(nullable=True, default=False)
    setupError: str | None = text()
    lastError: str | None = text()
    lastErrorAt: datetime | None = timestamp()


class Session(SQLModel, table=True):
    __tablename__ = "session"
    __table_args__: ClassVar[Any] = (sa.Index("session_shop_idx", "shop"),)
    id: str = pk()
    content: str | None = text()
    shop: str | None = text()


class OAuthState(SQLModel, table=True):
    __tablename__ = "oauth_state"
    __table_args__: ClassVar[Any] = (
        sa.Index("oauth_state_shop_idx", "shop"),
        sa.Index("oauth_state_createdAt_idx", "createdAt"),
    )
    state: str = pk()
    shop: str = text(nullable=False)
    isOnline: bool = boolean(default=False)
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)


class AutoBundleData(SQLModel, table=True):
    __tablename__ = "auto_bundle_data"
    shop: str = pk()
    collections: list[str] | None = text_array()
    tags: list[str] | None = text_array()
    minPrice: str = text(nullable=False)
    maxPrice: str = text(nullable=False)
    minProducts: str = text(nullable=False)
    discount: str = text(nullable=False)


class AutoBundleRuleLegacy(SQLModel, table=True):
    __tablename__ = "auto_bundle_rules"
    __table_args__: ClassVar[Any] = (sa.Index("auto_bundle_rules_shop_idx", "shop"),)
    id: str = pk()
    shop: str = text(nullable=False)
    name: str = text(nullable=False)
    collections: list[str] | None = text_array()
    tags: list[str] | None = text_array()
    minPrice: str = text(nullable=False)
    maxPrice: str = text(nullable=False)
    minProducts: str = text(nullable=False)
    discount: str = text(nullable=False)
    isActive: bool = boolean(default=True)
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    updatedAt: datetime | None = timestamp(nullable=False)


class BundleDiscountId(SQLModel, table=True):
    __tablename__ = "bundle_discount_id"
    bundleId: str = pk()
    bundleName: str = text(nullable=False)
    discountId: str = text(nullable=False)
    shop: str = text(nullable=False)


class AiFbtBundle(SQLModel, table=True):
    __tablename__ = "ai_fbt_bundles"
    __table_args__: ClassVar[Any] = (
        sa.Index("ai_fbt_bundles_shop_productId_idx", "shop", "productId"),
        sa.Index("ai_fbt_bundles_shop_isActive_idx", "shop", "isActive"),
    )
    id: str = pk()
    shop: str = text(nullable=False)
    productId: str = text(nullable=False)
    bundledProductIds: list[str] | None = text_array()
    confidenceScore: float = double()
    support: float = double()
    lift: float = double()
    generatedAt: datetime | None = timestamp(nullable=False, now_default=True)
    isActive: bool = boolean(default=True)
    source: str = text(nullable=False, default="AI")
    variantGroupId: str | None = text()
    bundleMetaobjectId: str | None = text()
    discountId: str | None = text()
    isManualOverride: bool = boolean(default=False)
    lastUpdatedAt: datetime | None = timestamp(nullable=False, now_default=True)


class AiBundleEvent(SQLModel, table=True):
    __tablename__ = "ai_bundle_events"
    __table_args__: ClassVar[Any] = (
        sa.Index("ai_bundle_events_shop_bundleId_idx", "shop", "bundleId"),
        sa.Index("ai_bundle_events_shop_eventType_idx", "shop", "eventType"),
        sa.Index("ai_bundle_events_createdAt_idx", "createdAt"),
    )
    id: str = pk()
    shop: str = text(nullable=False)
    bundleId: str = text(nullable=False)
    productId: str = text(nullable=False)
    eventType: str = text(nullable=False)
    variantGroupId: str | None = text()
    sessionId: str | None = text()
    customerId: str | None = text()
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    metadata_: dict[str, Any] | None = jsonb(name="metadata")


class AiBundleAbAssignment(SQLModel, table=True):
    __tablename__ = "ai_bundle_ab_assignments"
    __table_args__: ClassVar[Any] = (
        sa.Index("ai_bundle_ab_assignments_sessionId_productId_idx", "sessionId", "productId"),
        sa.Index("ai_bundle_ab_assignments_expiresAt_idx", "expiresAt"),
    )
    id: str = pk()
    shop: str = text(nullable=False)
    sessionId: str = text(nullable=False)
    productId: str = text(nullable=False)
    variantGroupId: str = text(nullable=False)
    assignedAt: datetime | None = timestamp(nullable=False, now_default=True)
    expiresAt: datetime = timestamp(nullable=False)


class AiFbtConfig(SQLModel, table=True):
    __tablename__ = "ai_fbt_config"
    shop: str = pk()
    isEnabled: bool = boolean(default=False)
    minSupport: float = double(default=0.01)
    minConfidence: float = double(default=0.3)
    minLift: float = double(default=1.0)
    maxBundlesPerProduct: int = integer(default=3)
    lookbackDays: int = integer(default=90)
    lastGeneratedAt: datetime | None = timestamp()
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    updatedAt: datetime | None = timestamp(nullable=False, now_default=True)
