"""The rollout's evidence (`sb_consistency_comparisons`): one row per sampled comparison.

Every shadow read, noise (control-vs-control) comparison and dual-write verification leaves one
row, with the read latency of each origin where it was measured, so that any replica can compute a
shop's figures since a moment (app.services.consistency; the rollout guards read them). Rows of a
mismatch keep the two normalised projections and the names of the fields that differ.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.models.base import boolean, jsonb, text, text_array, timestamp


class ConsistencyComparison(SQLModel, table=True):
    __tablename__ = "sb_consistency_comparisons"
    __table_args__: ClassVar[Any] = (
        # A shop's figures are an index-only scan (alembic 0009): the key, plus what they count.
        sa.Index(
            "sb_consistency_comparisons_shop_createdAt_figures_idx",
            "shop",
            "createdAt",
            postgresql_include=["outcome", "legacyMs", "v2Ms", "v2Error"],
        ),
        sa.Index("sb_consistency_comparisons_createdAt_idx", "createdAt"),
    )
    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger(), sa.Identity(), primary_key=True))
    shop: str = text(nullable=False)
    endpoint: str = text(nullable=False)
    #: match | confirmed | transient | noise_match | noise_mismatch | verified | divergent | error
    outcome: str = text(nullable=False)
    bundleKey: str | None = text()
    fields: list[str] | None = text_array()
    legacy: Any = jsonb()
    v2: Any = jsonb()
    legacyMs: float | None = Field(default=None, sa_column=sa.Column(sa.Double(), nullable=True))
    v2Ms: float | None = Field(default=None, sa_column=sa.Column(sa.Double(), nullable=True))
    v2Error: bool = boolean(default=False)
    createdAt: datetime | None = timestamp(nullable=False, now_default=True)
