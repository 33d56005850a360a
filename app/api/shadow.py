"""`GET /admin/shadow-mismatches`: the queryable log of shadow-read differences (internal token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.deps import AdminDep, ContainerDep
from app.api.openapi_docs import (
    ADMIN_ERRORS,
    DB_ERRORS,
    INVALID_LIMIT,
    UNEXPECTED_ERROR,
    example_response,
    problem,
    problem_example,
)
from app.core.security import SHOP_DOMAIN_RE
from app.schemas.bundles import SHADOW_MISMATCH_PAGE_EXAMPLE, ShadowMismatchPage
from app.services.bundles import reads as bundle_reads

router = APIRouter(tags=["admin"], responses=UNEXPECTED_ERROR)


@router.get(
    "/admin/shadow-mismatches",
    response_model=ShadowMismatchPage,
    summary="Shadow-read mismatches, newest first (cursor-paginated)",
    responses={
        **example_response(SHADOW_MISMATCH_PAGE_EXAMPLE),
        **ADMIN_ERRORS,
        **problem(
            422,
            "Invalid shop, `limit` or `cursor`",
            invalidLimit=INVALID_LIMIT,
            invalidCursor=problem_example(
                422, "Invalid cursor.", errors=[{"field": "query.cursor", "message": "malformed"}]
            ),
        ),
        **DB_ERRORS,
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
