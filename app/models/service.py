"""The service's own tables: flags and their audit log, migration jobs, shadow mismatches, idempotency.

Snake_case names keep them visibly apart from both Prisma schemas; columns stay camelCase like
everything else the API serialises.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.models.base import boolean, double, integer, jsonb, pk, text, text_array, timestamp


class FeatureFlag(SQLModel, table=True):
    __tablename__ = "sb_feature_flags"
    name: str = pk()
    enabled: bool = boolean(default=False)
    rolloutPercent: int = integer(default=0)
    shopOverrides: dict[str, Any] = jsonb(nullable=False, default_sql="'{}'")
    sampleRate: float = double(default=0.0)
    updatedAt: datetime | None = timestamp(nullable=False, now_default=True)
    updatedBy: str | None = text()


class FeatureFlagAudit(SQLModel, table=True):
    __tablename__ = "sb_feature_flag_audit"
    __table_args__: ClassVar[Any] = (sa.Index("sb_feature_flag_audit_changedAt_idx", "changedAt"),)
    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger(), sa.Identity(), primary_key=True))
    flagName: str = text(nullable=False)
    changedBy: str = text(nullable=False)
    changedAt: datetime | None = timestamp(nullable=False, now_default=True)
    oldValue: dict[str, Any] | None = jsonb()
    newValue: dict[str, Any] = jsonb(nullable=False)
    reason: str = text(nullable=False)


class MigrationJob(SQLModel, table=True):
    """One migration run. Counters live on the row so a dashboard poll is one primary-key read."""

    __tablename__ = "sb_migration_jobs"
    __table_args__: ClassVar[Any] = (
        sa.Index("sb_migration_jobs_status_idx", "status"),
        sa.Index("sb_migration_jobs_createdAt_idx", "createdAt"),
    )
    id: str = pk()
    kind: str = text(nullable=False)
    status: str = text(nullable=False, default="queued")
    dryRun: bool = boolean(default=False)
    shops: list[str] | None = text_array()
    batchSize: int = integer(default=100)
    options: dict[str, Any] = jsonb(nullable=False, default_sql="'{}'")
    parentJobId: str | None = text()
    total: int = integer(default=0)
    processed: int = integer(default=0)
    migrated: int = integer(default=0)
    failed: int = integer(default=0)
    skipped: int = integer(default=0)
    perShop: dict[str, Any] = jsonb(nullable=False, default_sql="'{}'")
    checkpoint: dict[str, Any] = jsonb(nullable=False, default_sql="'{}'")
    lastError: str | None = text()
    # Informational: the worker that recorded the latest batch and when its lease runs out. The
    # leases that matter are per item (MigrationJobItem.claimedBy/claimedAt) and per dispatch (pgqueuer).
    leaseOwner: str | None = text()
    leaseExpiresAt: datetime | None = timestamp()
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    startedAt: datetime | None = timestamp()
    finishedAt: datetime | None = timestamp()
    updatedAt: datetime | None = timestamp(nullable=False, now_default=True)


class MigrationJobItem(SQLModel, table=True):
    """One legacy item of a job: its outcome is the source of truth for the counters."""

    __tablename__ = "sb_migration_job_items"
    __table_args__: ClassVar[Any] = (
        sa.Index("sb_migration_job_items_job_status_idx", "jobId", "status"),
        sa.Index("sb_migration_job_items_job_shop_idx", "jobId", "shop", "position"),
        # The worker's next batch of one shop: only pending rows, so a long job never rescans done ones.
        sa.Index(
            "sb_migration_job_items_pending_idx",
            "jobId",
            "shop",
            "position",
            postgresql_where=sa.text("status = 'pending'"),
        ),
        # GET /jobs/{id}/failures, keyset-paginated by position.
        sa.Index(
            "sb_migration_job_items_failed_idx",
            "jobId",
            "position",
            postgresql_where=sa.text("status = 'failed'"),
        ),
        # In-flight claims (heartbeats, "is anything still running" before cancelled/succeeded).
        sa.Index(
            "sb_migration_job_items_claimed_idx",
            "jobId",
            postgresql_where=sa.text('"claimedBy" IS NOT NULL'),
        ),
    )
    jobId: str = Field(
        sa_column=sa.Column(
            sa.Text(),
            sa.ForeignKey("sb_migration_jobs.id", name="sb_migration_job_items_jobId_fkey", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    itemKind: str = Field(sa_column=sa.Column(sa.Text(), primary_key=True))
    legacyId: str = Field(sa_column=sa.Column(sa.Text(), primary_key=True))
    shop: str = text(nullable=False)
    position: int = integer(default=0)
    status: str = text(nullable=False, default="pending")
    reason: str | None = text()
    detail: str | None = text()
    v2Id: str | None = text()
    attempts: int = integer(default=0)
    lastAttemptAt: datetime | None = timestamp()
    # The worker lease of an item handed to migrate_batch; cleared when its outcome is written.
    # A claim left set by a dead worker marks "an earlier attempt may have written V2 rows".
    claimedBy: str | None = text()
    claimedAt: datetime | None = timestamp()


class ShadowMismatch(SQLModel, table=True):
    __tablename__ = "sb_shadow_mismatches"
    __table_args__: ClassVar[Any] = (sa.Index("sb_shadow_mismatches_shop_createdAt_idx", "shop", "createdAt"),)
    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger(), sa.Identity(), primary_key=True))
    shop: str = text(nullable=False)
    endpoint: str = text(nullable=False)
    bundleKey: str | None = text()
    fields: list[str] | None = text_array()
    legacy: dict[str, Any] | None = jsonb()
    v2: dict[str, Any] | None = jsonb()
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "sb_idempotency_keys"
    __table_args__: ClassVar[Any] = (sa.Index("sb_idempotency_keys_createdAt_idx", "createdAt"),)
    shop: str = Field(sa_column=sa.Column(sa.Text(), primary_key=True))
    key: str = Field(sa_column=sa.Column(sa.Text(), primary_key=True))
    requestHash: str = text(nullable=False)
    responseStatus: int = integer()
    responseBody: dict[str, Any] = jsonb(nullable=False)
    resourceId: str | None = text()
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
