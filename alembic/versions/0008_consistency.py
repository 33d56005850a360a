"""The rollout's evidence: `sb_consistency_comparisons`.

One row per sampled comparison (shadow read, noise baseline, dual-write verification) with its
outcome, the read latency of each origin where measured, and for a mismatch the two normalised
projections and the fields that differ (app.services.consistency). Indexed by (shop, createdAt)
for a shop's figures since a moment, and by createdAt for pruning.

Revision ID: 0008_consistency
Revises: 0007_guarded_rollout
Create Date: 2026-12-06 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0008_consistency"
down_revision: str | Sequence[str] | None = "0007_guarded_rollout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS3 = postgresql.TIMESTAMP(precision=3)


def upgrade() -> None:
    op.create_table(
        "sb_consistency_comparisons",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("shop", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("bundleKey", sa.Text(), nullable=True),
        sa.Column("fields", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("legacy", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("v2", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("legacyMs", sa.Double(), nullable=True),
        sa.Column("v2Ms", sa.Double(), nullable=True),
        sa.Column("v2Error", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("createdAt", TS3, server_default=sa.text("CURRENT_TIMESTAMP"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "sb_consistency_comparisons_shop_createdAt_idx", "sb_consistency_comparisons", ["shop", "createdAt"]
    )
    op.create_index("sb_consistency_comparisons_createdAt_idx", "sb_consistency_comparisons", ["createdAt"])


def downgrade() -> None:
    op.drop_index("sb_consistency_comparisons_createdAt_idx", table_name="sb_consistency_comparisons")
    op.drop_index("sb_consistency_comparisons_shop_createdAt_idx", table_name="sb_consistency_comparisons")
    op.drop_table("sb_consistency_comparisons")
