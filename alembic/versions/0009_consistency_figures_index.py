"""A shop's figures read from the index alone: (shop, createdAt) INCLUDE the columns they count.

The rollout driver computes every observed shop's figures on each tick (`ROLLOUT_INTERVAL_S`,
1 s) over all comparisons since the shop's stage began. With the plain (shop, createdAt) index
every one of those rows is a heap fetch, scattered among the other shops' rows: about 190 ms for
100,000 comparisons in a 2,000,000-row table, measured on PostgreSQL 15. With the counted
columns in the index it is an index-only scan: about 64 ms (docs/feature-flags.md, "Evidence").
The table is insert-only apart from pruning, so autovacuum keeps the visibility map current.

The covering index replaces the plain one, which it serves in every query (same key columns).
Both are built and dropped CONCURRENTLY: the table is written by every storefront replica while
a rollout runs, and a plain CREATE INDEX would block those writes for the whole build.

Revision ID: 0009_consistency_figures_index
Revises: 0008_consistency
Create Date: 2026-12-06 08:55:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_consistency_figures_index"
down_revision: str | Sequence[str] | None = "0008_consistency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "sb_consistency_comparisons"
PLAIN = "sb_consistency_comparisons_shop_createdAt_idx"
COVERING = "sb_consistency_comparisons_shop_createdAt_figures_idx"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{COVERING}" ON {TABLE} '
            '(shop, "createdAt") INCLUDE (outcome, "legacyMs", "v2Ms", "v2Error")'
        )
        op.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{PLAIN}"')


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{PLAIN}" ON {TABLE} (shop, "createdAt")')
        op.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{COVERING}"')
