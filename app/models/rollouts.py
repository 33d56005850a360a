"""Guarded rollouts (`sb_rollouts`, `sb_rollout_shops`): the durable state of the rollout driver.

Every replica's driver reads these rows; a shop's transition is a compare-and-set on its
`(stage, state)` under a row lock, in the same transaction as the flag write and its audit entry
(app.services.rollouts). `active` is true while the rollout is unfinished: the partial unique
index on `shop` makes "one unfinished rollout per shop" a database constraint.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.models.base import boolean, integer, jsonb, pk, text, timestamp


class Rollout(SQLModel, table=True):
    __tablename__ = "sb_rollouts"
    __table_args__: ClassVar[Any] = (
        sa.Index("sb_rollouts_status_idx", "status"),
        sa.Index("sb_rollouts_createdAt_idx", "createdAt"),
    )
    id: str = pk()
    status: str = text(nullable=False, default="running")
    targetStage: str = text(nullable=False)
    guards: dict[str, Any] = jsonb(nullable=False, default_sql="'{}'")
    waveSize: int | None = integer(nullable=True)
    percent: int | None = integer(nullable=True)
    reason: str = text(nullable=False)
    createdBy: str = text(nullable=False)
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
    updatedAt: datetime | None = timestamp(nullable=False, now_default=True)
    finishedAt: datetime | None = timestamp()


class RolloutShop(SQLModel, table=True):
    __tablename__ = "sb_rollout_shops"
    __table_args__: ClassVar[Any] = (
        sa.Index("sb_rollout_shops_rollout_position_idx", "rolloutId", "position"),
        sa.Index("sb_rollout_shops_active_shop_key", "shop", unique=True, postgresql_where=sa.text("active")),
    )
    rolloutId: str = Field(
        sa_column=sa.Column(
            sa.Text(),
            sa.ForeignKey("sb_rollouts.id", name="sb_rollout_shops_rolloutId_fkey", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    shop: str = Field(sa_column=sa.Column(sa.Text(), primary_key=True))
    position: int = integer(default=0)
    startStage: str = text(nullable=False)
    stage: str = text(nullable=False)
    state: str = text(nullable=False, default="waiting")
    since: datetime | None = timestamp(nullable=False, now_default=True)
    active: bool = boolean(default=True)
    lastTransition: dict[str, Any] | None = jsonb()
    guardValues: list[Any] = jsonb(nullable=False, default_sql="'[]'")
    evaluatedAt: datetime | None = timestamp()
    updatedAt: datetime | None = timestamp(nullable=False, now_default=True)
