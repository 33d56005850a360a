"""The service's own tables: feature flags and their audit log, migration jobs and items,
shadow-read mismatches, idempotency keys.

Revision ID: 0003_service_tables
Revises: 0002_phase1_v2
Create Date: 2026-11-24 03:04:02.186969
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0003_service_tables"
down_revision: str | Sequence[str] | None = "0002_phase1_v2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sb_feature_flag_audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("flagName", sa.Text(), nullable=False),
        sa.Column("changedBy", sa.Text(), nullable=False),
        sa.Column(
            "changedAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("oldValue", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("newValue", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "sb_feature_flag_audit_changedAt_idx", "sb_feature_flag_audit", ["changedAt"], unique=False
    )
    op.create_table(
        "sb_feature_flags",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("rolloutPercent", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "shopOverrides",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("sampleRate", sa.Double(), server_default=sa.text("0.0"), nullable=False),
        sa.Column(
            "updatedAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("updatedBy", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "sb_idempotency_keys",
        sa.Column("shop", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("requestHash", sa.Text(), nullable=False),
        sa.Column("responseStatus", sa.Integer(), nullable=False),
        sa.Column("responseBody", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("resourceId", sa.Text(), nullable=True),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("shop", "key"),
    )
    op.create_index("sb_idempotency_keys_createdAt_idx", "sb_idempotency_keys", ["createdAt"], unique=False)
    op.create_table(
        "sb_migration_jobs",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("dryRun", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("shops", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("batchSize", sa.Integer(), server_default=sa.text("100"), nullable=False),
        sa.Column(
            "options", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("parentJobId", sa.Text(), nullable=True),
        sa.Column("total", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("processed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("migrated", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("skipped", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "perShop", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "checkpoint",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("lastError", sa.Text(), nullable=True),
        sa.Column("leaseOwner", sa.Text(), nullable=True),
        sa.Column("leaseExpiresAt", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("startedAt", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column("finishedAt", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.Column(
            "updatedAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("sb_migration_jobs_createdAt_idx", "sb_migration_jobs", ["createdAt"], unique=False)
    op.create_index("sb_migration_jobs_status_idx", "sb_migration_jobs", ["status"], unique=False)
    op.create_table(
        "sb_shadow_mismatches",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("shop", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("bundleKey", sa.Text(), nullable=True),
        sa.Column("fields", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("legacy", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("v2", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "sb_shadow_mismatches_shop_createdAt_idx", "sb_shadow_mismatches", ["shop", "createdAt"], unique=False
    )
    op.create_table(
        "sb_migration_job_items",
        sa.Column("jobId", sa.Text(), nullable=False),
        sa.Column("itemKind", sa.Text(), nullable=False),
        sa.Column("legacyId", sa.Text(), nullable=False),
        sa.Column("shop", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("v2Id", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lastAttemptAt", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.ForeignKeyConstraint(
            ["jobId"], ["sb_migration_jobs.id"], name="sb_migration_job_items_jobId_fkey", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("jobId", "itemKind", "legacyId"),
    )
    op.create_index(
        "sb_migration_job_items_job_shop_idx",
        "sb_migration_job_items",
        ["jobId", "shop", "position"],
        unique=False,
    )
    op.create_index(
        "sb_migration_job_items_job_status_idx", "sb_migration_job_items", ["jobId", "status"], unique=False
    )


def downgrade() -> None:
    op.drop_index("sb_migration_job_items_job_status_idx", table_name="sb_migration_job_items")
    op.drop_index("sb_migration_job_items_job_shop_idx", table_name="sb_migration_job_items")
    op.drop_table("sb_migration_job_items")
    op.drop_index("sb_shadow_mismatches_shop_createdAt_idx", table_name="sb_shadow_mismatches")
    op.drop_table("sb_shadow_mismatches")
    op.drop_index("sb_migration_jobs_status_idx", table_name="sb_migration_jobs")
    op.drop_index("sb_migration_jobs_createdAt_idx", table_name="sb_migration_jobs")
    op.drop_table("sb_migration_jobs")
    op.drop_index("sb_idempotency_keys_createdAt_idx", table_name="sb_idempotency_keys")
    op.drop_table("sb_idempotency_keys")
    op.drop_table("sb_feature_flags")
    op.drop_index("sb_feature_flag_audit_changedAt_idx", table_name="sb_feature_flag_audit")
    op.drop_table("sb_feature_flag_audit")
