"""`GET /admin/shops/{shop}/consistency`: the evidence the rollout guards read (internal token)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from app.api.deps import AdminDep, ContainerDep
from app.api.openapi_docs import ADMIN_ERRORS, DB_ERRORS, UNEXPECTED_ERROR, example_response, problem
from app.core.security import SHOP_DOMAIN_RE
from app.schemas.consistency import CONSISTENCY_REPORT_EXAMPLE, ConsistencyReport
from app.services import consistency

router = APIRouter(tags=["admin"], responses=UNEXPECTED_ERROR)


@router.get(
    "/admin/shops/{shop}/consistency",
    response_model=ConsistencyReport,
    summary="A shop's shadow comparisons, noise baseline, dual-write verification and latest diffs",
    responses={
        **example_response(CONSISTENCY_REPORT_EXAMPLE),
        **ADMIN_ERRORS,
        **problem(422, "Invalid shop or `since`"),
        **DB_ERRORS,
    },
)
async def shop_consistency(
    _: AdminDep,
    container: ContainerDep,
    shop: Annotated[str, Path(pattern=SHOP_DOMAIN_RE.pattern)],
    since: Annotated[
        datetime | None,
        Query(description="Count samples from this moment (default: the shop's stage start, else 24 hours)."),
    ] = None,
) -> dict[str, Any]:
    return await consistency.consistency_report(container, shop, since)
