"""Request and response bodies of `/admin/migrations/jobs` (api.md, "Migration jobs").

Requests forbid unknown fields: on an admin API that starts a production backfill, a typo such
as `dryrun` silently ignored would run the real thing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from app.core.security import is_valid_shop

JobKind = Literal["bundles", "ai_bundles", "auto_bundle_rules", "all"]
JobStatus = Literal["queued", "running", "paused", "cancelling", "cancelled", "succeeded", "failed"]
MAX_SHOPS_PER_JOB = 10_000
MAX_BATCH_SIZE = 1000


class CreateJobIn(BaseModel):
    """POST body. `shops` omitted = every shop with legacy data."""

    model_config = ConfigDict(extra="forbid")

    kind: JobKind = Field(description="What to migrate; `all` runs auto rules, then AI bundles, then bundles.")
    shops: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SHOPS_PER_JOB,
        description="Restrict the job to these shops (omitted = all shops).",
    )
    dryRun: StrictBool = Field(default=False, description="Count and report what would happen; write no V2 rows.")
    batchSize: int = Field(default=100, ge=1, le=MAX_BATCH_SIZE, description="Items per batch (one shop each).")
    fillProducts: StrictBool = Field(
        default=False, description="Also cache component title/price/image/SKU from Shopify products."
    )

    @field_validator("shops")
    @classmethod
    def _valid_shops(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        bad = [shop for shop in value if not is_valid_shop(shop)]
        if bad:
            raise ValueError(f"not a shop domain (^[a-z0-9][a-z0-9-]*\\.myshopify\\.com$): {bad[:5]}")
        return sorted(set(value))


class RetryFailedIn(BaseModel):
    """Optional POST body of retry-failed; omitted fields are inherited from the failed job."""

    model_config = ConfigDict(extra="forbid")

    dryRun: StrictBool | None = None
    batchSize: int | None = Field(default=None, ge=1, le=MAX_BATCH_SIZE)


class JobStats(BaseModel):
    total: int = Field(description="Items planned when the job was created.")
    migrated: int
    failed: int
    skipped: int
    processed: int = Field(description="migrated + failed + skipped.")


class ShopStats(BaseModel):
    shop: str
    total: int
    migrated: int
    failed: int
    skipped: int


class JobOut(BaseModel):
    id: str
    kind: JobKind
    status: JobStatus
    dryRun: bool
    shops: list[str] | None = Field(description="The shops the job was restricted to; null = all shops.")
    batchSize: int
    parentJobId: str | None = Field(description="The job whose failures this retry job re-runs.")
    stats: JobStats
    progress: float = Field(ge=0, le=1, description="processed / total (1 for an empty finished job).")
    ratePerSecond: float = Field(description="Items processed per second of running time (pauses excluded).")
    etaSeconds: float | None = Field(description="Seconds left at the current rate; null when unknown.")
    perShop: list[ShopStats]
    createdAt: datetime
    startedAt: datetime | None
    finishedAt: datetime | None
    updatedAt: datetime
    lastError: str | None
    statusUrl: str
    failuresUrl: str


class JobPage(BaseModel):
    items: list[JobOut]
    nextCursor: str | None


class FailureOut(BaseModel):
    itemKind: str = Field(description="auto_rule | ai_bundle | bundle")
    legacyId: str = Field(description="The legacy key (the metaobject GID for manual bundles).")
    shop: str
    reason: str | None = Field(description="Stable reason code (docs/migration.md).")
    detail: str | None
    attempts: int
    lastAttemptAt: datetime | None


class FailurePage(BaseModel):
    items: list[FailureOut]
    nextCursor: str | None
