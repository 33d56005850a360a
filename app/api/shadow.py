"""`GET /admin/shadow-mismatches`: the queryable log of shadow-read differences (internal token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.deps import AdminDep, ContainerDep
from app.core.security import SHOP_DOMAIN_RE
from app.models.bundle_api import ShadowMismatchPage
from app.services import bundle_reads

router = APIRouter(tags=["admin"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


@router.get(
    "/admin/shadow-mismatches",
    response_model=ShadowMismatchPage,
    summary="Shadow-read mismatches, newest first (cursor-paginated)",
    responses={
        401: {"description": "Missing or invalid token", **_PROBLEM},
        422: {"description": "Invalid shop, limit or cursor", **_PROBLEM},
    },
)
async def list_shadow_mismatches(
    _: AdminDep,
    container: ContainerDep,
    shop: Annotated[str | None, Query(pattern=SHOP_DOMAIN_RE.pattern, description="Only this shop.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    return await bundle_reads.list_shadow_mismatches(container, shop, limit=limit, cursor=cursor)
