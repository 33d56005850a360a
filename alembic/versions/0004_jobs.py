"""Migration job engine: item claims, the indexes the worker's hot queries need, pgqueuer's schema.

* `sb_migration_job_items."claimedBy"/"claimedAt"`: the per-item lease a worker takes before it
  hands an item to `migrate_batch`. An outcome is only written while the claim is still ours, and a
  claim that was never settled (the worker died) is how a re-run knows that `already_migrated`
  means "my earlier attempt wrote it" (docs/decisions.md, "Migration job engine").
* Partial indexes: the next pending items of one shop, a job's failures in order, in-flight claims.
* pgqueuer's tables, enum, trigger and function (`pgqueuer.Queries.install`), which dispatch the
  per-(job, shop) work. `alembic/env.py` keeps them out of autogenerate's comparison.

Revision ID: 0004_jobs
Revises: 0003_service_tables
Create Date: 2026-11-24 04:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0004_jobs"
down_revision: str | Sequence[str] | None = "0003_service_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ITEMS = "sb_migration_job_items"


def _run_raw(sql: str) -> None:
    """Run a multi-statement script on the migration's own asyncpg connection (and transaction).

    pgqueuer's install script holds a plpgsql function body, so it cannot be split on `;`, and
    SQLAlchemy's asyncpg adapter prepares statements, which allows only one per call.
    """
    dbapi_conn: Any = op.get_bind().connection.dbapi_connection
    dbapi_conn.run_async(lambda raw: raw.execute(sql))


def upgrade() -> None:
    op.add_column(ITEMS, sa.Column("claimedBy", sa.Text(), nullable=True))
    op.add_column(ITEMS, sa.Column("claimedAt", postgresql.TIMESTAMP(precision=3), nullable=True))
    op.create_index(
        "sb_migration_job_items_pending_idx",
        ITEMS,
        ["jobId", "shop", "position"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "sb_migration_job_items_failed_idx",
        ITEMS,
        ["jobId", "position"],
        unique=False,
        postgresql_where=sa.text("status = 'failed'"),
    )
    op.create_index(
        "sb_migration_job_items_claimed_idx",
        ITEMS,
        ["jobId"],
        unique=False,
        postgresql_where=sa.text('"claimedBy" IS NOT NULL'),
    )
    installed = op.get_bind().execute(sa.text("SELECT to_regclass('pgqueuer') IS NOT NULL")).scalar()
    if not installed:
        from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment

        _run_raw(QueryBuilderEnvironment().build_install_query())


def downgrade() -> None:
    installed = op.get_bind().execute(sa.text("SELECT to_regclass('pgqueuer') IS NOT NULL")).scalar()
    if installed:
        from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment

        _run_raw(QueryBuilderEnvironment().build_uninstall_query())
    op.drop_index("sb_migration_job_items_claimed_idx", table_name=ITEMS)
    op.drop_index("sb_migration_job_items_failed_idx", table_name=ITEMS)
    op.drop_index("sb_migration_job_items_pending_idx", table_name=ITEMS)
    op.drop_column(ITEMS, "claimedAt")
    op.drop_column(ITEMS, "claimedBy")
