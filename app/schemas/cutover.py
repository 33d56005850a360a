"""Request and response models of the rollback and cleanup endpoints (`app/api/cutover.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from app.schemas.flags import FlagOut


def _flag(name: str, enabled: bool, rollout: int, sample: float = 0.0) -> dict[str, Any]:
    return {
        "name": name,
        "enabled": enabled,
        "rolloutPercent": rollout,
        "shopOverrides": {},
        "sampleRate": sample,
        "envOverride": None,
        "updatedAt": "2026-01-20T02:14:05.120000Z",
        "updatedBy": "oncall@example.com",
    }


_DUALWRITE_FLAGS = [
    _flag("V2_BUNDLE_ENGINE", False, 0),
    _flag("V2_PRICING_ENGINE", False, 0),
    _flag("DUAL_WRITE", True, 100),
    _flag("SHADOW_READS", False, 0, 0.1),
]
_COMPLETE_FLAGS = [
    _flag("V2_BUNDLE_ENGINE", True, 100),
    _flag("V2_PRICING_ENGINE", True, 100),
    _flag("DUAL_WRITE", False, 0),
    _flag("SHADOW_READS", False, 0, 0.1),
]
_VALIDATION_OK = {
    "ok": True,
    "unmigratedCount": 0,
    "discountMismatches": 0,
    "aiBundlesUnmigrated": 0,
    "aiBundleStatusMismatches": 0,
    "autoBundleRulesUnmigrated": 0,
    "failedCount": 2,
}
_MOVED = [
    {"table": "bundle_discount_id", "fromSchema": "public", "toSchema": "archive", "rows": 8412},
    {"table": "auto_bundle_rules", "fromSchema": "public", "toSchema": "archive", "rows": 131},
    {"table": "auto_bundle_data", "fromSchema": "public", "toSchema": "archive", "rows": 12},
]

ROLLBACK_IN_EXAMPLE: dict[str, Any] = {"reason": "INC-142: V2 reads return wrong prices"}
CLEANUP_IN_EXAMPLE: dict[str, Any] = {"reason": "Phase 5: 30 days on V2 without incident", "force": False}
RESTORE_IN_EXAMPLE: dict[str, Any] = {"reason": "The legacy app still reads auto_bundle_rules"}

ROLLBACK_EXAMPLE: dict[str, Any] = {
    "action": "immediate_rollback",
    "actor": "oncall@example.com",
    "reason": ROLLBACK_IN_EXAMPLE["reason"],
    "changedFlags": ["V2_BUNDLE_ENGINE", "V2_PRICING_ENGINE"],
    "stage": "dualwrite",
    "flags": _DUALWRITE_FLAGS,
    "propagation": "every replica applies it within 1 s (LISTEN/NOTIFY), no restart",
    "warnings": [],
    "v2Only": {"shops": [], "total": 0},
}
CLEANUP_EXAMPLE: dict[str, Any] = {
    "action": "phase5_cleanup",
    "actor": "oncall@example.com",
    "reason": CLEANUP_IN_EXAMPLE["reason"],
    "changedFlags": ["DUAL_WRITE"],
    "stage": "complete",
    "flags": _COMPLETE_FLAGS,
    "warnings": [],
    "forced": False,
    "validation": _VALIDATION_OK,
    "archivedAt": "2026-02-20T03:00:01.500000Z",
    "archivedTables": _MOVED,
    "keptTables": [
        {"table": "ai_fbt_bundles", "why": "read by /proxy/ai-bundles-for-product and the legacy AI generator"}
    ],
}
RESTORE_EXAMPLE: dict[str, Any] = {
    "action": "restore_from_archive",
    "actor": "oncall@example.com",
    "reason": RESTORE_IN_EXAMPLE["reason"],
    "changedFlags": ["DUAL_WRITE"],
    "stage": "rampdown",
    "flags": [*_COMPLETE_FLAGS[:2], _flag("DUAL_WRITE", True, 100), _COMPLETE_FLAGS[3]],
    "warnings": ["4 V2 bundles changed while archived are missing from the legacy tables"],
    "restoredTables": [{**m, "fromSchema": "archive", "toSchema": "public"} for m in _MOVED],
    "archivedAt": "2026-02-20T03:00:01.500000Z",
    "bundlesChangedWhileArchived": 4,
}

StageOut = Literal["off", "dualwrite", "shadow", "live", "rampdown", "complete", "custom"]


class _Reasoned(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000, description="Why; kept in the flag audit log.")

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class RollbackIn(_Reasoned):
    """Immediate rollback: one option, the confirmation that V2-only data may be hidden."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [ROLLBACK_IN_EXAMPLE]})

    confirm: StrictBool = Field(
        default=False,
        description="Proceed although shops reading from V2 hold data the legacy tables cannot represent "
        "(without it such a rollback answers 409 with the list; `GET /admin/rollback/preview` shows it first). "
        "Nothing is deleted either way.",
    )


class V2OnlyBundle(BaseModel):
    id: str
    name: str | None
    shopifyMetaobjectId: str | None
    updatedAt: datetime | None
    reasons: list[str] = Field(
        description="not_representable | ai_only | ai_fields | draft | variant | quantity | duplicate_product | "
        "fractional_percentage | pricing_not_representable | tags_or_images"
    )


class V2OnlyShop(BaseModel):
    shop: str
    readsFromV2Since: datetime | None = Field(description="When the shop left legacy reads (null: before the audit).")
    count: int = Field(description="Bundles changed since then that hold V2-only data.")
    scanned: int
    truncated: bool = Field(description="More bundles changed than were examined.")
    bundles: list[V2OnlyBundle] = Field(description="At most 100, newest change first.")


class V2OnlyHoldings(BaseModel):
    """What only V2 holds for the shops reading from V2: hidden (not deleted) by a rollback."""

    shops: list[V2OnlyShop]
    total: int


class CleanupIn(_Reasoned):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CLEANUP_IN_EXAMPLE]})

    force: StrictBool = Field(
        default=False,
        description="Archive even if the validation report is not ok or reads are not on V2 yet.",
    )


class RestoreIn(_Reasoned):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [RESTORE_IN_EXAMPLE]})


class MovedTable(BaseModel):
    table: str
    fromSchema: str
    toSchema: str
    rows: int = Field(description="Rows in the table when it moved (they move with it, untouched)")


class KeptTable(BaseModel):
    table: str
    why: str


class ValidationSummary(BaseModel):
    ok: bool
    unmigratedCount: int
    discountMismatches: int
    aiBundlesUnmigrated: int
    aiBundleStatusMismatches: int
    autoBundleRulesUnmigrated: int
    failedCount: int


class _FlagsResult(BaseModel):
    actor: str
    reason: str
    changedFlags: list[str] = Field(description="Flags this call changed (each with an audit entry)")
    stage: StageOut = Field(description="The migration stage the flags are in now")
    flags: list[FlagOut]
    warnings: list[str] = Field(description="Things an operator must know (kill-switch variables, stale tables)")


class RollbackOut(_FlagsResult):
    action: Literal["immediate_rollback"]
    propagation: str
    v2Only: V2OnlyHoldings = Field(description="What only V2 held when the rollback was confirmed (kept in V2).")


class CleanupOut(_FlagsResult):
    action: Literal["phase5_cleanup"]
    forced: bool
    validation: ValidationSummary
    archivedAt: datetime
    archivedTables: list[MovedTable]
    keptTables: list[KeptTable] = Field(description="Legacy tables left in public, and why")


class RestoreOut(_FlagsResult):
    action: Literal["restore_from_archive"]
    restoredTables: list[MovedTable]
    archivedAt: datetime | None
    bundlesChangedWhileArchived: int = Field(
        description="V2 bundles created or changed while the tables were archived: missing from the legacy tables"
    )
