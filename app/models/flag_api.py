"""Request and response bodies of `/admin/flags` and `/admin/migration-stage`.

Requests forbid unknown fields: on an admin API that flips production behaviour, a typo such
as `rollout` silently ignored is worse than a 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from app.core.security import is_valid_shop

StageName = Literal["off", "dualwrite", "shadow", "live", "rampdown", "complete"]
MAX_SHOP_OVERRIDES = 10_000


def _reason(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


class FlagUpdate(BaseModel):
    """PUT body. Omitted optional fields keep their stored value; `shopOverrides` replaces the map."""

    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool = Field(description="Global default for shops without an override.")
    rolloutPercent: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="While `enabled` is false, turn the flag on for this stable percentage of shops (100 = all).",
    )
    shopOverrides: dict[str, StrictBool] | None = Field(
        default=None,
        description="Shop domain → value, beating rollout and default. Replaces the stored map; `{}` clears it.",
    )
    sampleRate: float | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False, description="SHADOW_READS: fraction of reads to compare."
    )
    reason: str = Field(min_length=1, max_length=1000, description="Why; kept in the audit log.")

    @field_validator("reason")
    @classmethod
    def _reason_not_blank(cls, value: str) -> str:
        return _reason(value)

    @field_validator("shopOverrides")
    @classmethod
    def _valid_shops(cls, value: dict[str, bool] | None) -> dict[str, bool] | None:
        if value is None:
            return None
        if len(value) > MAX_SHOP_OVERRIDES:
            raise ValueError(f"at most {MAX_SHOP_OVERRIDES} shop overrides")
        bad = [shop for shop in value if not is_valid_shop(shop)]
        if bad:
            raise ValueError(
                f"invalid shop domain(s) {', '.join(repr(s) for s in bad[:5])}: "
                "must match ^[a-z0-9][a-z0-9-]*\\.myshopify\\.com$"
            )
        return value


class FlagOut(BaseModel):
    name: str
    enabled: bool
    rolloutPercent: int
    shopOverrides: dict[str, bool]
    sampleRate: float
    envOverride: bool | None = Field(description="FEATURE_FLAG_<NAME> on this replica; beats everything stored.")
    updatedAt: datetime | None
    updatedBy: str | None


class FlagList(BaseModel):
    items: list[FlagOut]
    nextCursor: str | None = Field(default=None, description="Always null: there are only four flags.")


class FlagEvaluationOut(BaseModel):
    name: str
    shop: str | None
    value: bool
    reason: Literal["env", "shop_override", "rollout", "default"]


class FlagAuditEntry(BaseModel):
    id: int
    flagName: str
    changedBy: str
    changedAt: datetime
    oldValue: dict[str, Any] | None = Field(description="Null when the change created the row.")
    newValue: dict[str, Any]
    reason: str


class FlagAuditPage(BaseModel):
    items: list[FlagAuditEntry]
    nextCursor: str | None


class MigrationStageUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: StageName
    reason: str = Field(min_length=1, max_length=1000)
    sampleRate: float | None = Field(
        default=None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="SHADOW_READS sample rate for stages that turn it on (default: the stored rate, else 0.1).",
    )

    @field_validator("reason")
    @classmethod
    def _reason_not_blank(cls, value: str) -> str:
        return _reason(value)


class MigrationStageOut(BaseModel):
    stage: Literal["off", "dualwrite", "shadow", "live", "rampdown", "complete", "custom"]
    flags: list[FlagOut]
