"""The Shopify write-through outbox: `sb_outbox`.

One row per change a bundle's Shopify objects (metaobject, automatic discount) must follow,
written in the same transaction as the bundle change and delivered in `seq` order per bundle by
the dispatcher (app.services.shopify_sync.outbox; docs/write-through.md).

Revision ID: 0005_outbox
Revises: 0004_jobs
Create Date: 2026-11-25 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0005_outbox"
down_revision: str | Sequence[str] | None = "0004_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "sb_outbox"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("shop", sa.Text(), nullable=False),
        sa.Column("bundleId", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("op", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "nextAttemptAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("lastError", sa.Text(), nullable=True),
        sa.Column(
            "createdAt",
            postgresql.TIMESTAMP(precision=3),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("deliveredAt", postgresql.TIMESTAMP(precision=3), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("bundleId", "seq", name="sb_outbox_bundle_seq_key"),
    )
    op.create_index(
        "sb_outbox_due_idx",
        TABLE,
        ["nextAttemptAt", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "sb_outbox_pending_created_idx",
        TABLE,
        ["createdAt"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "sb_outbox_dead_idx",
        TABLE,
        ["createdAt"],
        unique=False,
        postgresql_where=sa.text("status = 'dead'"),
    )


def downgrade() -> None:
    op.drop_index("sb_outbox_dead_idx", table_name=TABLE)
    op.drop_index("sb_outbox_pending_created_idx", table_name=TABLE)
    op.drop_index("sb_outbox_due_idx", table_name=TABLE)
    op.drop_table(TABLE)
