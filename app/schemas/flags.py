"""Request and response bodies of `/admin/flags` and `/admin/migration-stage`.

Requests forbid unknown fields: on an admin API that flips production behaviour, a typo such
as `rollout` silently ignored is worse than a 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, field_validator

from app.core.security import is_valid_shop

StageName = Literal["off", "dualwrite", "shadow", "live", "rampdown", "complete"]
MAX_SHOP_OVERRIDES = 10_000


def _reason(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


# --------------------------------------------------------------------------------------------
# Examples (OpenAPI): phase 4 of the runbook, V2 reads for 10% of shops plus the demo shop
# --------------------------------------------------------------------------------------------

FLAG_UPDATE_EXAMPLE: dict[str, Any] = {
    "enabled": False,
    "rolloutPercent": 10,
    "shopOverrides": {"demo-outdoor.myshopify.com": True},
    "reason": "phase 4: V2 reads canary 10%",
}


def _flag(
    name: str, enabled: bool, rollout: int = 0, at: str = "2026-01-10T09:00:00.000000Z", **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "enabled": enabled,
        "rolloutPercent": rollout,
        "shopOverrides": {},
        "sampleRate": 0.0,
        "envOverride": None,
        "updatedAt": at,
        "updatedBy": "alice",
        **extra,
    }


FLAG_EXAMPLE: dict[str, Any] = _flag(
    "V2_BUNDLE_ENGINE",
    False,
    10,
    "2026-01-15T10:30:00.123000Z",
    shopOverrides={"demo-outdoor.myshopify.com": True},
)

FLAG_LIST_EXAMPLE: dict[str, Any] = {
    "items": [
        FLAG_EXAMPLE,
        _flag("V2_PRICING_ENGINE", False),
        _flag("DUAL_WRITE", True, 100),
        _flag("SHADOW_READS", True, 100, sampleRate=0.1),
    ],
    "nextCursor": None,
}

FLAG_EVALUATION_EXAMPLE: dict[str, Any] = {
    "name": "V2_BUNDLE_ENGINE",
    "shop": "demo-outdoor.myshopify.com",
    "value": True,
    "reason": "shop_override",
}

FLAG_AUDIT_PAGE_EXAMPLE: dict[str, Any] = {
    "items": [
        {
            "id": 18,
            "flagName": "V2_BUNDLE_ENGINE",
            "changedBy": "alice",
            "changedAt": "2026-01-15T10:30:00.123000Z",
            "oldValue": {"enabled": False, "rolloutPercent": 0, "shopOverrides": {}, "sampleRate": 0.0},
            "newValue": {
                "enabled": False,
                "rolloutPercent": 10,
                "shopOverrides": {"demo-outdoor.myshopify.com": True},
                "sampleRate": 0.0,
            },
            "reason": "phase 4: V2 reads canary 10%",
        }
    ],
    "nextCursor": "YXVkaXQ6MTg",
}

MIGRATION_STAGE_UPDATE_EXAMPLE: dict[str, Any] = {
    "stage": "shadow",
    "reason": "phase 3: compare legacy and V2 reads",
    "sampleRate": 0.1,
}

MIGRATION_STAGE_EXAMPLE: dict[str, Any] = {
    "stage": "shadow",
    "flags": [
        _flag("V2_BUNDLE_ENGINE", False),
        _flag("V2_PRICING_ENGINE", False),
        _flag("DUAL_WRITE", True, 100),
        _flag("SHADOW_READS", True, 100, sampleRate=0.1),
    ],
}


class FlagUpdate(BaseModel):
    """PUT body. Omitted optional fields keep their stored value; `shopOverrides` replaces the map."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [FLAG_UPDATE_EXAMPLE]})

    enabled: StrictBool = Field(description="Global default for shops without an override.")
    rolloutPercent: StrictInt | None = Field(
        default=None,
        ge=0,
        le=100,
        description="While `enabled` is false, turn the flag on for this stable percentage of shops (100 = all).",
    )
    shopOverrides: dict[str, StrictBool] | None = Field(
        default=None,
        description="Shop domain → value, beating rollout and default. Replaces the stored map; `{}` clears it.",
    )
    sampleRate: StrictFloat | None = Field(
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
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [MIGRATION_STAGE_UPDATE_EXAMPLE]})

    stage: StageName
    reason: str = Field(min_length=1, max_length=1000)
    sampleRate: StrictFloat | None = Field(
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
