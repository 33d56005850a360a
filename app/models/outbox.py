"""The Shopify write-through outbox (`sb_outbox`): one row per change a bundle's Shopify objects must follow.

A row is written in the same transaction as the bundle change it describes, so "the database says
the bundle changed" and "Shopify will be told" are one atomic fact (the transactional outbox
pattern). The dispatcher (`app.services.shopify_sync.outbox`) delivers rows in `seq` order per bundle.

* `seq` numbers the rows of one bundle (1, 2, ...); `(bundleId, seq)` is unique. Writers hold the
  bundle's row lock while they pick the next number, so seq order is commit order.
* `status`: `pending` (to deliver; `nextAttemptAt` says when), `delivered`, `dead` (gave up after
  `OUTBOX_MAX_ATTEMPTS` permanent failures; visible in `GET /admin/outbox`), `resolved` (a dead row
  whose bundle reconciliation has since repaired).
* No foreign key to "Bundle": the row of a delete must outlive the bundle it deletes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.models.base import integer, jsonb, text, timestamp


class OutboxRow(SQLModel, table=True):
    __tablename__ = "sb_outbox"
    __table_args__: ClassVar[Any] = (
        sa.UniqueConstraint("bundleId", "seq", name="sb_outbox_bundle_seq_key"),
        # The dispatcher's scan: due pending rows, oldest first.
        sa.Index("sb_outbox_due_idx", "nextAttemptAt", "id", postgresql_where=sa.text("status = 'pending'")),
        # Lag gauge and stats: the oldest pending row.
        sa.Index("sb_outbox_pending_created_idx", "createdAt", postgresql_where=sa.text("status = 'pending'")),
        # The dead-letter list of the admin endpoint.
        sa.Index("sb_outbox_dead_idx", "createdAt", postgresql_where=sa.text("status = 'dead'")),
    )
    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger(), sa.Identity(), primary_key=True))
    shop: str = text(nullable=False)
    bundleId: str = text(nullable=False)
    seq: int = integer()
    op: str = text(nullable=False)
    payload: dict[str, Any] = jsonb(nullable=False)
    status: str = text(nullable=False, default="pending")
    attempts: int = integer(default=0)
    nextAttemptAt: datetime | None = timestamp(nullable=False, now_default=True)
    lastError: str | None = text()
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    deliveredAt: datetime | None = timestamp()
