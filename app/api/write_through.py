"""Admin endpoints of the Shopify write-through (internal token): outbox health and reconciliation.

* `GET /admin/outbox`: how far behind Shopify is (pending rows, age of the oldest, rows being
  retried) and the dead letters that need reconciliation.
* `POST /admin/reconciliation`: compare every V2 manual bundle with its metaobject and discount and
  repair drift by the documented rule (docs/write-through.md); `dryRun` only reports. Runs inline:
  it is an operator's tool, bounded by the number of manual bundles of the shops given.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import AdminDep, ContainerDep
from app.core.security import SHOP_DOMAIN_RE
from app.services import outbox, reconciliation

router = APIRouter(tags=["write-through"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid token", **_PROBLEM},
    422: {"description": "Validation failed", **_PROBLEM},
}

ShopDomain = Annotated[str, Field(pattern=SHOP_DOMAIN_RE.pattern)]


class DeadLetterOut(BaseModel):
    id: int
    shop: str
    bundleId: str
    seq: int
    op: str
    attempts: int
    lastError: str | None
    createdAt: datetime | None
    payload: dict[str, Any] | None


class OutboxStatsOut(BaseModel):
    """`pending` includes rows waiting for a retry (`retrying`) and rows due now (`due`)."""

    pending: int
    due: int
    retrying: int
    delivered: int
    deadLetters: int
    oldestPendingAgeSeconds: float | None = Field(description="Age of the oldest undelivered row: the lag")
    dispatcherRunning: bool = Field(description="Whether this replica runs a dispatcher")
    dead: list[DeadLetterOut]


class ReconciliationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shops: list[ShopDomain] | None = Field(None, max_length=500, description="Default: every shop with bundles")
    dryRun: bool = Field(False, description="Report the changes without making them")


class ReconciliationChangeOut(BaseModel):
    shop: str
    kind: str
    action: str
    winner: str
    bundleId: str | None = None
    metaobjectId: str | None = None
    discountId: str | None = None
    fields: dict[str, dict[str, Any]] = Field(default_factory=dict)
    applied: bool
    detail: str | None = None


class ReconciliationReportOut(BaseModel):
    dryRun: bool
    startedAt: datetime
    finishedAt: datetime | None
    shops: list[str]
    checked: int
    inSync: int
    changed: int
    skipped: list[dict[str, Any]]
    changes: list[ReconciliationChangeOut]
    errors: list[dict[str, Any]]


@router.get(
    "/admin/outbox",
    response_model=OutboxStatsOut,
    summary="Write-through outbox: pending rows, lag (oldest undelivered age), dead letters",
    responses=_ERRORS,
)
async def outbox_stats(
    _: AdminDep,
    container: ContainerDep,
    shop: Annotated[str | None, Query(pattern=SHOP_DOMAIN_RE.pattern, description="Only this shop.")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Dead letters listed at most")] = 50,
) -> dict[str, Any]:
    return await outbox.outbox_stats(container, shop=shop, limit=limit)


@router.post(
    "/admin/reconciliation",
    response_model=ReconciliationReportOut,
    summary="Compare V2 manual bundles with their Shopify metaobjects and discounts; repair drift",
    responses=_ERRORS,
)
async def run_reconciliation(body: ReconciliationIn, _: AdminDep, container: ContainerDep) -> dict[str, Any]:
    return await reconciliation.reconcile(container, shops=body.shops, dry_run=body.dryRun)
