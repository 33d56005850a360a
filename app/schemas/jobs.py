"""Request and response bodies of `/admin/migrations/jobs` (api.md, "Migration jobs").

Requests forbid unknown fields: on an admin API that starts a production backfill, a typo such
as `dryrun` silently ignored would run the real thing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from app.core.security import require_shop_domains

JobKind = Literal["bundles", "ai_bundles", "auto_bundle_rules", "all"]
JobStatus = Literal["queued", "running", "paused", "cancelling", "cancelled", "succeeded", "failed"]
MAX_SHOPS_PER_JOB = 10_000
MAX_BATCH_SIZE = 1000


# --------------------------------------------------------------------------------------------
# Examples (OpenAPI): a bundles job over the demo shops, seen at several points of its life
# --------------------------------------------------------------------------------------------

EXAMPLE_JOB_ID = "c0a1b2c3d4e5f6g7h8i9j0k1l"
EXAMPLE_RETRY_JOB_ID = "c7h8i9j0k1l2m3n4o5p6q7r8s"
_JOB_URL = f"/admin/migrations/jobs/{EXAMPLE_JOB_ID}"

CREATE_JOB_EXAMPLE: dict[str, Any] = {
    "kind": "bundles",
    "shops": ["demo-cafe.myshopify.com", "demo-outdoor.myshopify.com"],
    "dryRun": False,
    "batchSize": 100,
}

RETRY_FAILED_EXAMPLE: dict[str, Any] = {"batchSize": 50}

#: Just created (202): planned, nothing processed yet.
JOB_QUEUED_EXAMPLE: dict[str, Any] = {
    "id": EXAMPLE_JOB_ID,
    "kind": "bundles",
    "status": "queued",
    "dryRun": False,
    "shops": ["demo-cafe.myshopify.com", "demo-outdoor.myshopify.com"],
    "batchSize": 100,
    "parentJobId": None,
    "stats": {"total": 48, "migrated": 0, "failed": 0, "skipped": 0, "processed": 0},
    "progress": 0.0,
    "ratePerSecond": 0.0,
    "etaSeconds": None,
    "perShop": [
        {"shop": "demo-cafe.myshopify.com", "total": 24, "migrated": 0, "failed": 0, "skipped": 0},
        {"shop": "demo-outdoor.myshopify.com", "total": 24, "migrated": 0, "failed": 0, "skipped": 0},
    ],
    "createdAt": "2026-01-16T09:00:00.000000Z",
    "startedAt": None,
    "finishedAt": None,
    "updatedAt": "2026-01-16T09:00:00.000000Z",
    "lastError": None,
    "statusUrl": _JOB_URL,
    "failuresUrl": f"{_JOB_URL}/failures",
}

#: Half-way: counters, rate and ETA.
JOB_RUNNING_EXAMPLE: dict[str, Any] = {
    **JOB_QUEUED_EXAMPLE,
    "status": "running",
    "stats": {"total": 48, "migrated": 22, "failed": 1, "skipped": 1, "processed": 24},
    "progress": 0.5,
    "ratePerSecond": 12.0,
    "etaSeconds": 2.0,
    "perShop": [
        {"shop": "demo-cafe.myshopify.com", "total": 24, "migrated": 0, "failed": 0, "skipped": 0},
        {"shop": "demo-outdoor.myshopify.com", "total": 24, "migrated": 22, "failed": 1, "skipped": 1},
    ],
    "startedAt": "2026-01-16T09:00:00.500000Z",
    "updatedAt": "2026-01-16T09:00:02.500000Z",
}

JOB_PAUSED_EXAMPLE: dict[str, Any] = {**JOB_RUNNING_EXAMPLE, "status": "paused", "etaSeconds": None}
JOB_CANCELLING_EXAMPLE: dict[str, Any] = {**JOB_RUNNING_EXAMPLE, "status": "cancelling", "etaSeconds": None}

#: The new job of retry-failed: only the parent's failed items.
JOB_RETRY_EXAMPLE: dict[str, Any] = {
    **JOB_QUEUED_EXAMPLE,
    "id": EXAMPLE_RETRY_JOB_ID,
    "shops": ["demo-outdoor.myshopify.com"],
    "batchSize": 50,
    "parentJobId": EXAMPLE_JOB_ID,
    "stats": {"total": 1, "migrated": 0, "failed": 0, "skipped": 0, "processed": 0},
    "perShop": [{"shop": "demo-outdoor.myshopify.com", "total": 1, "migrated": 0, "failed": 0, "skipped": 0}],
    "createdAt": "2026-01-16T09:10:00.000000Z",
    "updatedAt": "2026-01-16T09:10:00.000000Z",
    "statusUrl": f"/admin/migrations/jobs/{EXAMPLE_RETRY_JOB_ID}",
    "failuresUrl": f"/admin/migrations/jobs/{EXAMPLE_RETRY_JOB_ID}/failures",
}

JOB_PAGE_EXAMPLE: dict[str, Any] = {
    "items": [JOB_RUNNING_EXAMPLE],
    "nextCursor": "am9iOjIwMjYtMDEtMTZUMDk6MDA6MDArMDA6MDB8YzBhMWIyYzNkNGU1ZjZnN2g4aTlqMGsxbA",
}

FAILURE_PAGE_EXAMPLE: dict[str, Any] = {
    "items": [
        {
            "itemKind": "bundle",
            "legacyId": "gid://shopify/Metaobject/100017",
            "shop": "demo-outdoor.myshopify.com",
            "reason": "metaobject_not_found",
            "detail": "nodes() returned null",
            "attempts": 1,
            "lastAttemptAt": "2026-01-16T09:00:01.750000Z",
        }
    ],
    "nextCursor": None,
}


class CreateJobIn(BaseModel):
    """POST body. `shops` omitted = every shop with legacy data."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CREATE_JOB_EXAMPLE]})

    kind: JobKind = Field(description="What to migrate; `all` runs auto rules, then AI bundles, then bundles.")
    shops: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SHOPS_PER_JOB,
        description="Restrict the job to these shops (omitted = all shops).",
    )
    dryRun: StrictBool = Field(default=False, description="Count and report what would happen; write no V2 rows.")
    batchSize: StrictInt = Field(default=100, ge=1, le=MAX_BATCH_SIZE, description="Items per batch (one shop each).")
    fillProducts: StrictBool = Field(
        default=False, description="Also cache component title/price/image/SKU from Shopify products."
    )

    @field_validator("shops")
    @classmethod
    def _valid_shops(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        require_shop_domains(value)
        return sorted(set(value))


class RetryFailedIn(BaseModel):
    """Optional POST body of retry-failed; omitted fields are inherited from the failed job."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [RETRY_FAILED_EXAMPLE]})

    dryRun: StrictBool | None = None
    batchSize: StrictInt | None = Field(default=None, ge=1, le=MAX_BATCH_SIZE)


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
