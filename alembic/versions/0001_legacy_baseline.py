"""Legacy baseline: the tables the legacy Prisma app owns.

In production they already exist with rows, created by Prisma; this revision must then change
nothing. On an empty database (development, tests) it creates them exactly as Prisma's migration
did. The downgrade never drops them: they belong to the legacy app.

Revision ID: 0001_legacy_baseline
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001_legacy_baseline"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Prisma's own DDL for these models, made idempotent with IF NOT EXISTS.
LEGACY_DDL = [
    """CREATE TABLE IF NOT EXISTS "session" (
        "id" TEXT NOT NULL, "content" TEXT, "shop" TEXT,
        CONSTRAINT "session_pkey" PRIMARY KEY ("id"))""",
    'CREATE INDEX IF NOT EXISTS "session_shop_idx" ON "session"("shop")',
    """CREATE TABLE IF NOT EXISTS "active_stores" (
        "shop" TEXT NOT NULL, "isActive" BOOLEAN DEFAULT false, "setupError" TEXT, "lastError" TEXT,
        "lastErrorAt" TIMESTAMP(3),
        CONSTRAINT "active_stores_pkey" PRIMARY KEY ("shop"))""",
    """CREATE TABLE IF NOT EXISTS "oauth_state" (
        "state" TEXT NOT NULL, "shop" TEXT NOT NULL, "isOnline" BOOLEAN NOT NULL DEFAULT false,
        "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        CONSTRAINT "oauth_state_pkey" PRIMARY KEY ("state"))""",
    'CREATE INDEX IF NOT EXISTS "oauth_state_shop_idx" ON "oauth_state"("shop")',
    'CREATE INDEX IF NOT EXISTS "oauth_state_createdAt_idx" ON "oauth_state"("createdAt")',
    """CREATE TABLE IF NOT EXISTS "auto_bundle_data" (
        "shop" TEXT NOT NULL, "collections" TEXT[], "tags" TEXT[], "minPrice" TEXT NOT NULL,
        "maxPrice" TEXT NOT NULL, "minProducts" TEXT NOT NULL, "discount" TEXT NOT NULL,
        CONSTRAINT "auto_bundle_data_pkey" PRIMARY KEY ("shop"))""",
    """CREATE TABLE IF NOT EXISTS "auto_bundle_rules" (
        "id" TEXT NOT NULL, "shop" TEXT NOT NULL, "name" TEXT NOT NULL, "collections" TEXT[],
        "tags" TEXT[], "minPrice" TEXT NOT NULL, "maxPrice" TEXT NOT NULL, "minProducts" TEXT NOT NULL,
        "discount" TEXT NOT NULL, "isActive" BOOLEAN NOT NULL DEFAULT true,
        "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "updatedAt" TIMESTAMP(3) NOT NULL,
        CONSTRAINT "auto_bundle_rules_pkey" PRIMARY KEY ("id"))""",
    'CREATE INDEX IF NOT EXISTS "auto_bundle_rules_shop_idx" ON "auto_bundle_rules"("shop")',
    """CREATE TABLE IF NOT EXISTS "bundle_discount_id" (
        "bundleId" TEXT NOT NULL, "bundleName" TEXT NOT NULL, "discountId" TEXT NOT NULL,
        "shop" TEXT NOT NULL,
        CONSTRAINT "bundle_discount_id_pkey" PRIMARY KEY ("bundleId"))""",
    """CREATE TABLE IF NOT EXISTS "ai_fbt_bundles" (
        "id" TEXT NOT NULL, "shop" TEXT NOT NULL, "productId" TEXT NOT NULL, "bundledProductIds" TEXT[],
        "confidenceScore" DOUBLE PRECISION NOT NULL, "support" DOUBLE PRECISION NOT NULL,
        "lift" DOUBLE PRECISION NOT NULL, "generatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "isActive" BOOLEAN NOT NULL DEFAULT true, "source" TEXT NOT NULL DEFAULT 'AI',
        "variantGroupId" TEXT, "bundleMetaobjectId" TEXT, "discountId" TEXT,
        "isManualOverride" BOOLEAN NOT NULL DEFAULT false,
        "lastUpdatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        CONSTRAINT "ai_fbt_bundles_pkey" PRIMARY KEY ("id"))""",
    'CREATE INDEX IF NOT EXISTS "ai_fbt_bundles_shop_productId_idx" ON "ai_fbt_bundles"("shop", "productId")',
    'CREATE INDEX IF NOT EXISTS "ai_fbt_bundles_shop_isActive_idx" ON "ai_fbt_bundles"("shop", "isActive")',
    """CREATE TABLE IF NOT EXISTS "ai_bundle_events" (
        "id" TEXT NOT NULL, "shop" TEXT NOT NULL, "bundleId" TEXT NOT NULL, "productId" TEXT NOT NULL,
        "eventType" TEXT NOT NULL, "variantGroupId" TEXT, "sessionId" TEXT, "customerId" TEXT,
        "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "metadata" JSONB,
        CONSTRAINT "ai_bundle_events_pkey" PRIMARY KEY ("id"))""",
    'CREATE INDEX IF NOT EXISTS "ai_bundle_events_shop_bundleId_idx" ON "ai_bundle_events"("shop", "bundleId")',
    'CREATE INDEX IF NOT EXISTS "ai_bundle_events_shop_eventType_idx" ON "ai_bundle_events"("shop", "eventType")',
    'CREATE INDEX IF NOT EXISTS "ai_bundle_events_createdAt_idx" ON "ai_bundle_events"("createdAt")',
    """CREATE TABLE IF NOT EXISTS "ai_bundle_ab_assignments" (
        "id" TEXT NOT NULL, "shop" TEXT NOT NULL, "sessionId" TEXT NOT NULL, "productId" TEXT NOT NULL,
        "variantGroupId" TEXT NOT NULL, "assignedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "expiresAt" TIMESTAMP(3) NOT NULL,
        CONSTRAINT "ai_bundle_ab_assignments_pkey" PRIMARY KEY ("id"))""",
    'CREATE INDEX IF NOT EXISTS "ai_bundle_ab_assignments_sessionId_productId_idx" '
    'ON "ai_bundle_ab_assignments"("sessionId", "productId")',
    'CREATE INDEX IF NOT EXISTS "ai_bundle_ab_assignments_expiresAt_idx" ON "ai_bundle_ab_assignments"("expiresAt")',
    """CREATE TABLE IF NOT EXISTS "ai_fbt_config" (
        "shop" TEXT NOT NULL, "isEnabled" BOOLEAN NOT NULL DEFAULT false,
        "minSupport" DOUBLE PRECISION NOT NULL DEFAULT 0.01,
        "minConfidence" DOUBLE PRECISION NOT NULL DEFAULT 0.3,
        "minLift" DOUBLE PRECISION NOT NULL DEFAULT 1.0,
        "maxBundlesPerProduct" INTEGER NOT NULL DEFAULT 3, "lookbackDays" INTEGER NOT NULL DEFAULT 90,
        "lastGeneratedAt" TIMESTAMP(3), "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
        CONSTRAINT "ai_fbt_config_pkey" PRIMARY KEY ("shop"))""",
]


def upgrade() -> None:
    for statement in LEGACY_DDL:
        op.execute(statement)


def downgrade() -> None:
    """Deliberately nothing: the legacy tables and their rows belong to the legacy app."""
