"""Request and response bodies of `/admin/rollouts` and `GET /admin/shops/{shop}/stage`
(api.md, "Guarded rollout"; docs/feature-flags.md, "Guarded rollouts").

Requests forbid unknown fields: a typo such as `dryrun` silently ignored would start the real rollout.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, field_validator

from app.core.security import require_shop_domains

TargetStage = Literal["dualwrite", "shadow", "live", "rampdown", "complete"]
StageName = Literal["off", "dualwrite", "shadow", "live", "rampdown", "complete", "custom"]
RolloutStatusName = Literal["running", "paused", "completed", "aborted"]
ShopStateName = Literal["waiting", "observing", "advancing", "held", "rolled_back", "done"]
StageSource = Literal["global", "percent", "shop_override", "rollout", "env"]
MAX_SHOPS_PER_ROLLOUT = 10_000

EXAMPLE_ROLLOUT_ID = "cr0l1o2u3t4a5b6c7d8e9f0g1"
_URL = f"/admin/rollouts/{EXAMPLE_ROLLOUT_ID}"
_GUARDS: dict[str, Any] = {
    "minComparisons": 400,
    "maxMismatchRate": 0.01,
    "maxErrorRate": 0.01,
    "maxP99Ratio": 1.5,
    "minDwellSeconds": 600,
    "sampleRate": None,
}

CREATE_ROLLOUT_EXAMPLE: dict[str, Any] = {
    "targetStage": "live",
    "shops": ["demo-cafe.myshopify.com", "demo-outdoor.myshopify.com", "demo-books.myshopify.com"],
    "waveSize": 2,
    "guards": {"minComparisons": 400, "maxMismatchRate": 0.01, "minDwellSeconds": 900},
    "dryRun": False,
    "reason": "CHG-311: V2 reads for the first three demo shops",
}
CREATED_EXAMPLE: dict[str, Any] = {"id": EXAMPLE_ROLLOUT_ID, "status": "running", "statusUrl": _URL}
DRY_RUN_EXAMPLE: dict[str, Any] = {
    "dryRun": True,
    "targetStage": "live",
    "waveSize": 2,
    "guards": _GUARDS,
    "waves": 2,
    "shops": [
        {"shop": "demo-cafe.myshopify.com", "stage": "dualwrite", "wave": 0, "path": ["shadow", "live"]},
        {"shop": "demo-outdoor.myshopify.com", "stage": "dualwrite", "wave": 0, "path": ["shadow", "live"]},
        {"shop": "demo-books.myshopify.com", "stage": "off", "wave": 1, "path": ["dualwrite", "shadow", "live"]},
    ],
}
_SHOP_GUARDS = [
    {"name": "minComparisons", "value": 512.0, "threshold": 400.0, "ok": True, "samples": 512},
    {"name": "maxMismatchRate", "value": 0.0075, "threshold": 0.01, "ok": True, "samples": 512},
    {"name": "maxErrorRate", "value": 0.0, "threshold": 0.01, "ok": True, "samples": 498},
    {"name": "maxP99Ratio", "value": 0.62, "threshold": 1.5, "ok": True, "samples": 498},
    {"name": "divergent", "value": 0.0, "threshold": 0.0, "ok": True, "samples": 41},
    {"name": "validation", "value": 0.0, "threshold": 0.0, "ok": True, "samples": 1},
    {"name": "minDwellSeconds", "value": 431.2, "threshold": 600.0, "ok": False, "samples": 1},
]
ROLLOUT_EXAMPLE: dict[str, Any] = {
    "id": EXAMPLE_ROLLOUT_ID,
    "status": "running",
    "targetStage": "live",
    "guards": {**_GUARDS, "minDwellSeconds": 900},
    "waveSize": 2,
    "percent": None,
    "reason": CREATE_ROLLOUT_EXAMPLE["reason"],
    "createdBy": "oncall",
    "createdAt": "2026-01-20T09:00:00.000000Z",
    "updatedAt": "2026-01-20T09:00:00.000000Z",
    "finishedAt": None,
    "shops": [
        {
            "shop": "demo-cafe.myshopify.com",
            "stage": "shadow",
            "state": "observing",
            "since": "2026-01-20T09:10:01.000000Z",
            "wave": 0,
            "guards": _SHOP_GUARDS,
            "lastTransition": {
                "from": "dualwrite",
                "to": "shadow",
                "at": "2026-01-20T09:10:01.000000Z",
                "reason": "advance: divergent=0 (ok, threshold 0, n=12), validation=0 (ok, threshold 0, n=1), "
                "minDwellSeconds=900.4 (ok, threshold 900, n=1)",
            },
        },
        {
            "shop": "demo-books.myshopify.com",
            "stage": "off",
            "state": "waiting",
            "since": "2026-01-20T09:00:00.000000Z",
            "wave": 1,
            "guards": [],
            "lastTransition": None,
        },
    ],
}
ROLLOUT_PAGE_EXAMPLE: dict[str, Any] = {"items": [ROLLOUT_EXAMPLE], "nextCursor": None}
SHOP_STAGE_EXAMPLE: dict[str, Any] = {
    "shop": "demo-cafe.myshopify.com",
    "stage": "shadow",
    "source": "rollout",
    "globalStage": "dualwrite",
    "rolloutId": EXAMPLE_ROLLOUT_ID,
    "rollout": {"id": EXAMPLE_ROLLOUT_ID, "status": "running", "stage": "shadow", "state": "observing"},
    "flags": [
        {"name": "V2_BUNDLE_ENGINE", "value": False, "reason": "shop_override"},
        {"name": "V2_PRICING_ENGINE", "value": False, "reason": "shop_override"},
        {"name": "DUAL_WRITE", "value": True, "reason": "shop_override"},
        {"name": "SHADOW_READS", "value": True, "reason": "shop_override"},
    ],
}


class GuardsIn(BaseModel):
    """Thresholds; each omitted one takes its documented default (docs/feature-flags.md)."""

    model_config = ConfigDict(extra="forbid")

    minComparisons: StrictInt | None = Field(
        default=None, ge=0, le=10_000_000, description="Shadow comparisons needed before advancing (default 400)."
    )
    maxMismatchRate: StrictFloat | StrictInt | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Ceiling of the Wilson 95% upper bound of the confirmed-mismatch rate (default 0.01).",
    )
    maxErrorRate: StrictFloat | StrictInt | None = Field(
        default=None, ge=0, le=1, description="V2 read errors / V2 reads (default 0.01)."
    )
    maxP99Ratio: StrictFloat | StrictInt | None = Field(
        default=None, gt=0, le=1000, description="V2 read p99 / legacy read p99 (default 1.5)."
    )
    minDwellSeconds: StrictFloat | StrictInt | None = Field(
        default=None, ge=0, le=31_536_000, description="Minimum time in each stage (default 600)."
    )
    sampleRate: StrictFloat | StrictInt | None = Field(
        default=None,
        gt=0,
        le=1,
        description="The shop's shadow sample rate while observed (default: the SHADOW_READS flag's).",
    )


class CreateRolloutIn(BaseModel):
    """POST body: exactly one of `shops` (in wave order) or `percent` (a stable hash slice of the known shops)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CREATE_ROLLOUT_EXAMPLE]})

    targetStage: TargetStage = Field(description="Where every shop should end; each moves one stage at a time.")
    shops: list[str] | None = Field(default=None, min_length=1, max_length=MAX_SHOPS_PER_ROLLOUT)
    percent: StrictInt | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Shops whose V2_BUNDLE_ENGINE rollout bucket (sha256 of `name:shop`, 0-99) is below this.",
    )
    waveSize: StrictInt | None = Field(default=None, ge=1, le=10_000, description="Shops moving at once (default 10).")
    guards: GuardsIn | None = None
    dryRun: StrictBool = Field(default=False, description="Say what would happen; write nothing.")
    reason: str = Field(min_length=1, max_length=1000)

    @field_validator("shops")
    @classmethod
    def _valid_shops(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        require_shop_domains(value)
        return value

    @field_validator("reason")
    @classmethod
    def _reason_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class RolloutCreated(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [CREATED_EXAMPLE]})

    id: str
    status: RolloutStatusName
    statusUrl: str


class PlannedShop(BaseModel):
    shop: str
    stage: StageName = Field(description="The shop's effective stage now.")
    wave: int
    path: list[TargetStage] = Field(description="The stages it would walk, in order (empty: already there).")


class RolloutPlan(BaseModel):
    """A dry run's answer: nothing was written."""

    model_config = ConfigDict(json_schema_extra={"examples": [DRY_RUN_EXAMPLE]})

    dryRun: Literal[True]
    targetStage: TargetStage
    waveSize: int
    guards: dict[str, Any]
    waves: int
    shops: list[PlannedShop]


class GuardValueOut(BaseModel):
    name: str = Field(
        description="minComparisons, maxMismatchRate, maxErrorRate, maxP99Ratio, divergent, validation, "
        "minDwellSeconds (verifiedBeforeLive on the step to live)."
    )
    value: float | None = Field(description="Measured value; null when nothing is measured yet.")
    threshold: float
    ok: bool
    samples: int


class TransitionOut(BaseModel):
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    at: datetime
    reason: str

    model_config = ConfigDict(populate_by_name=True)


class RolloutShopOut(BaseModel):
    shop: str
    stage: StageName
    state: ShopStateName
    since: datetime = Field(description="When the shop entered its current stage; guards count samples from then.")
    wave: int
    guards: list[GuardValueOut]
    lastTransition: TransitionOut | None


class RolloutOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [ROLLOUT_EXAMPLE]})

    id: str
    status: RolloutStatusName
    targetStage: TargetStage
    guards: dict[str, Any]
    waveSize: int
    percent: int | None
    reason: str
    createdBy: str
    createdAt: datetime
    updatedAt: datetime
    finishedAt: datetime | None
    shops: list[RolloutShopOut]


class RolloutPage(BaseModel):
    items: list[RolloutOut]
    nextCursor: str | None


class FlagAnswer(BaseModel):
    name: str
    value: bool
    reason: Literal["env", "shop_override", "rollout", "default"]


class ShopRollout(BaseModel):
    id: str
    status: RolloutStatusName
    stage: StageName
    state: ShopStateName


class ShopStageOut(BaseModel):
    """A shop's effective stage and where it comes from: `global` (the fleet's flags), `percent` (a flag's
    rollout percentage), `shop_override` (per-shop overrides set by hand), `rollout` (per-shop overrides a
    guarded rollout set: `rolloutId`), `env` (a `FEATURE_FLAG_<NAME>` kill switch on this replica)."""

    model_config = ConfigDict(json_schema_extra={"examples": [SHOP_STAGE_EXAMPLE]})

    shop: str
    stage: StageName
    source: StageSource
    globalStage: StageName
    rolloutId: str | None
    rollout: ShopRollout | None = Field(description="The shop's unfinished rollout, else its latest one.")
    flags: list[FlagAnswer]
