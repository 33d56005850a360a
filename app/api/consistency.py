"""`GET /admin/shops/{shop}/consistency`: the evidence the rollout guards read (internal token)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from app.api.deps import AdminDep, ContainerDep
from app.api.openapi_docs import ADMIN_ERRORS, DB_ERRORS, UNEXPECTED_ERROR, example_response, problem
from app.core.errors import ValidationFailed
from app.core.security import SHOP_DOMAIN_RE
from app.schemas.consistency import CONSISTENCY_REPORT_EXAMPLE, ConsistencyReport
from app.services import consistency

#: A date and time as ISO 8601 writes it (a bare number is not a moment: no epoch seconds).
ISO_DATETIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?$"
)

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
        str | None,
        Query(
            pattern=ISO_DATETIME.pattern,
            max_length=40,
            description="Count samples from this moment, ISO 8601 (no zone: UTC; default: the shop's stage "
            "start, else the last 24 hours).",
            examples=["2026-12-06T03:10:00Z"],
        ),
    ] = None,
) -> dict[str, Any]:
    return await consistency.consistency_report(container, shop, parse_since(since))


def parse_since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        # In UTC here: a zone offset at the edge of the calendar (year 1, +05:00) is a 422, not an overflow.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationFailed(
            "Invalid since.", errors=[{"field": "query.since", "message": "not a date and time (ISO 8601)"}]
        ) from None
