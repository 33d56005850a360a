"""Guarded per-shop rollouts: `sb_rollouts` and `sb_rollout_shops`.

A rollout moves a set of shops through the migration stages, one stage at a time, each shop on its
own clock, advancing only while its guards hold (app.services.rollouts; docs/feature-flags.md,
"Guarded rollouts"). Its state is durable here so that any replica's driver can pick it up after a
restart, and so that two replicas never both move one shop (row locks + compare-and-set on
`(stage, state)`).

* `sb_rollouts`: one row per rollout: `status` (running | paused | completed | aborted), the target
  stage, the guard thresholds, the wave size.
* `sb_rollout_shops`: one row per (rollout, shop): the shop's stage as the rollout set it, its
  state (waiting | observing | advancing | held | rolled_back | done), when it entered the stage
  (`since`: guards count samples from then), the last transition and the latest guard values.
  `active` is true while the rollout is unfinished; the partial unique index on `shop` where
  `active` makes "an unfinished rollout already covers this shop" a constraint, not a race.

Revision ID: 0007_guarded_rollout
Revises: 0006_storefront_notify
Create Date: 2026-12-06 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0007_guarded_rollout"
down_revision: str | Sequence[str] | None = "0006_storefront_notify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS3 = postgresql.TIMESTAMP(precision=3)
NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "sb_rollouts",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'running'"), nullable=False),
        sa.Column("targetStage", sa.Text(), nullable=False),
        sa.Column("guards", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("waveSize", sa.Integer(), nullable=True),
        sa.Column("percent", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("createdBy", sa.Text(), nullable=False),
        sa.Column("createdAt", TS3, server_default=NOW, nullable=False),
        sa.Column("updatedAt", TS3, server_default=NOW, nullable=False),
        sa.Column("finishedAt", TS3, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("sb_rollouts_status_idx", "sb_rollouts", ["status"], unique=False)
    op.create_index("sb_rollouts_createdAt_idx", "sb_rollouts", ["createdAt"], unique=False)
    op.create_table(
        "sb_rollout_shops",
        sa.Column("rolloutId", sa.Text(), nullable=False),
        sa.Column("shop", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("startStage", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'waiting'"), nullable=False),
        sa.Column("since", TS3, server_default=NOW, nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("lastTransition", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "guardValues", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'"), nullable=False
        ),
        sa.Column("evaluatedAt", TS3, nullable=True),
        sa.Column("updatedAt", TS3, server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["rolloutId"], ["sb_rollouts.id"], name="sb_rollout_shops_rolloutId_fkey", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("rolloutId", "shop"),
    )
    op.create_index(
        "sb_rollout_shops_rollout_position_idx", "sb_rollout_shops", ["rolloutId", "position"], unique=False
    )
    op.create_index(
        "sb_rollout_shops_active_shop_key",
        "sb_rollout_shops",
        ["shop"],
        unique=True,
        postgresql_where=sa.text("active"),
    )


def downgrade() -> None:
    op.drop_index("sb_rollout_shops_active_shop_key", table_name="sb_rollout_shops")
    op.drop_index("sb_rollout_shops_rollout_position_idx", table_name="sb_rollout_shops")
    op.drop_table("sb_rollout_shops")
    op.drop_index("sb_rollouts_createdAt_idx", table_name="sb_rollouts")
    op.drop_index("sb_rollouts_status_idx", table_name="sb_rollouts")
    op.drop_table("sb_rollouts")
