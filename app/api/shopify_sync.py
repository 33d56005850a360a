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
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from app.api.deps import AdminDep, ContainerDep
from app.api.openapi_docs import (
    ADMIN_ERRORS,
    BODY_ERRORS,
    DB_ERRORS,
    UNEXPECTED_ERROR,
    example_response,
    problem,
    problem_example,
)
from app.core.security import SHOP_DOMAIN_RE
from app.services.shopify_sync import outbox, reconciliation

router = APIRouter(tags=["write-through"], responses=UNEXPECTED_ERROR)

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


RECONCILIATION_IN_EXAMPLE: dict[str, Any] = {"shops": ["demo-outdoor.myshopify.com"], "dryRun": True}


class ReconciliationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [RECONCILIATION_IN_EXAMPLE]})

    shops: list[ShopDomain] | None = Field(None, max_length=500, description="Default: every shop with bundles")
    dryRun: StrictBool = Field(False, description="Report the changes without making them")


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


OUTBOX_STATS_EXAMPLE: dict[str, Any] = {
    "pending": 3,
    "due": 1,
    "retrying": 2,
    "delivered": 1520,
    "deadLetters": 1,
    "oldestPendingAgeSeconds": 42.5,
    "dispatcherRunning": True,
    "dead": [
        {
            "id": 981,
            "shop": "demo-outdoor.myshopify.com",
            "bundleId": "c0a1b2c3d4e5f6g7h8i9j0k1l",
            "seq": 4,
            "op": "delete",
            "attempts": 10,
            "lastError": "shop_frozen: demo-outdoor.myshopify.com: the shop is frozen (unpaid bill)",
            "createdAt": "2026-01-16T08:00:00.000000Z",
            "payload": {
                "metaobjectId": "gid://shopify/Metaobject/100003",
                "discountId": "gid://shopify/DiscountAutomaticNode/100003",
            },
        }
    ],
}

#: A dry run over the demo shop: one drifted metaobject found (and, without dryRun, pushed).
RECONCILIATION_REPORT_EXAMPLE: dict[str, Any] = {
    "dryRun": True,
    "startedAt": "2026-01-16T10:00:00.000000Z",
    "finishedAt": "2026-01-16T10:00:01.250000Z",
    "shops": ["demo-outdoor.myshopify.com"],
    "checked": 22,
    "inSync": 21,
    "changed": 0,
    "skipped": [
        {"shop": "demo-outdoor.myshopify.com", "bundleId": "c4e5f6g7h8i9j0k1l2m3n4o5p", "reason": "outbox_pending"}
    ],
    "changes": [
        {
            "shop": "demo-outdoor.myshopify.com",
            "kind": "metaobject_drift",
            "action": "push_to_shopify",
            "winner": "v2",
            "bundleId": "c0a1b2c3d4e5f6g7h8i9j0k1l",
            "metaobjectId": "gid://shopify/Metaobject/100001",
            "discountId": None,
            "fields": {"bundle_title": {"v2": "Summer Camping Set", "shopify": "Summer Set"}},
            "applied": False,
            "detail": None,
        }
    ],
    "errors": [],
}


@router.get(
    "/admin/outbox",
    response_model=OutboxStatsOut,
    summary="Write-through outbox: pending rows, lag (oldest undelivered age), dead letters",
    responses={**example_response(OUTBOX_STATS_EXAMPLE), **ADMIN_ERRORS, **DB_ERRORS},
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
    responses={
        **example_response(
            RECONCILIATION_REPORT_EXAMPLE,
            description="What was compared and changed; a shop Shopify refused is listed in `errors`, not failed",
        ),
        **ADMIN_ERRORS,
        **BODY_ERRORS,
        **problem(
            422,
            "Validation failed; `errors[]` names each invalid field",
            invalidShop=problem_example(
                422,
                "The request has invalid fields.",
                errors=[
                    {
                        "field": "body.shops.0",
                        "message": "String should match pattern '^[a-z0-9][a-z0-9-]*\\.myshopify\\.com$'",
                        "type": "string_pattern_mismatch",
                    }
                ],
            ),
        ),
        **DB_ERRORS,
    },
)
async def run_reconciliation(body: ReconciliationIn, _: AdminDep, container: ContainerDep) -> dict[str, Any]:
    return await reconciliation.reconcile(container, shops=body.shops, dry_run=body.dryRun)
