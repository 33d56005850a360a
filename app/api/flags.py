"""`/admin/flags`: thin HTTP over `app.services.flags.admin` and `.audit` (the migration stage is `app/api/stage.py`).

Everything requires the internal token (AdminDep); the token's name (`ADMIN_API_TOKENS`, "admin"
for `ADMIN_API_TOKEN`) is what the audit log records as `changedBy`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import AdminDep, FlagsDep
from app.api.openapi_docs import (
    ADMIN_AUTH,
    ADMIN_ERRORS,
    BODY_ERRORS,
    FLAGS_NOT_READY,
    PAGINATION_ERRORS,
    UNEXPECTED_ERROR,
    example_response,
    problem,
    problem_example,
)
from app.core.security import SHOP_DOMAIN_RE
from app.schemas.flags import (
    FLAG_AUDIT_PAGE_EXAMPLE,
    FLAG_EVALUATION_EXAMPLE,
    FLAG_EXAMPLE,
    FLAG_LIST_EXAMPLE,
    FlagAuditPage,
    FlagEvaluationOut,
    FlagList,
    FlagOut,
    FlagUpdate,
)
from app.services.cutover.guard import ARCHIVED_LEGACY_TABLES
from app.services.flags import admin, audit

router = APIRouter(tags=["flags"], responses=UNEXPECTED_ERROR)

NOT_READY = problem(503, "Feature flags not loaded yet (start-up); retry", flagsNotReady=FLAGS_NOT_READY)
_NOT_FOUND = problem(
    404,
    "Unknown flag",
    unknownFlag=problem_example(
        404,
        "Unknown feature flag 'V2_READS'; known flags: V2_BUNDLE_ENGINE, V2_PRICING_ENGINE, DUAL_WRITE, SHADOW_READS.",
    ),
)
INVALID_BODY = problem(
    422,
    "Validation failed; `errors[]` names each invalid field",
    blankReason=problem_example(
        422,
        "The request has invalid fields.",
        errors=[{"field": "body.reason", "message": "Value error, must not be blank", "type": "value_error"}],
    ),
)

ARCHIVED_CONFLICT = problem(
    409,
    "The change would read or write the legacy tables, which the Phase 5 cleanup archived: restore them first",
    archived=problem_example(
        409,
        "Flag DUAL_WRITE on (dual writes go to the legacy tables) needs the legacy tables, but bundle_discount_id, "
        "auto_bundle_rules, auto_bundle_data are archived (schema `archive`, Phase 5 cleanup). Move them back first: "
        "`shopibundle cleanup restore --reason ...` or POST /admin/cleanup/restore.",
        archivedTables=list(ARCHIVED_LEGACY_TABLES),
    ),
)

ShopQuery = Annotated[
    str | None,
    Query(pattern=SHOP_DOMAIN_RE.pattern, description="Shop domain; omitted = the global answer."),
]


@router.get(
    "/admin/flags",
    summary="All flags as this replica evaluates them",
    responses={**example_response(FLAG_LIST_EXAMPLE), **ADMIN_AUTH, **NOT_READY},
)
async def list_flags(_: AdminDep, store: FlagsDep) -> FlagList:
    return FlagList(items=[FlagOut.model_validate(f) for f in admin.list_flags(store)])


@router.get(
    "/admin/flags/audit",
    summary="Flag change log, newest first",
    responses={
        **example_response(FLAG_AUDIT_PAGE_EXAMPLE),
        **ADMIN_ERRORS,
        **PAGINATION_ERRORS,
        **_NOT_FOUND,
        **NOT_READY,
    },
)
async def flag_audit(
    _: AdminDep,
    store: FlagsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    flag: Annotated[str | None, Query(description="Only this flag's changes.")] = None,
) -> FlagAuditPage:
    return FlagAuditPage.model_validate(await audit.audit_page(store, limit=limit, cursor=cursor, flag=flag))


@router.get(
    "/admin/flags/{name}",
    summary="One flag",
    responses={**example_response(FLAG_EXAMPLE), **ADMIN_AUTH, **_NOT_FOUND, **NOT_READY},
)
async def get_flag(name: str, _: AdminDep, store: FlagsDep) -> FlagOut:
    return FlagOut.model_validate(admin.get_flag(store, name))


@router.put(
    "/admin/flags/{name}",
    summary="Change a flag (audited; every replica applies it within a second)",
    responses={
        **example_response(FLAG_EXAMPLE, description="The flag's new state."),
        **ADMIN_ERRORS,
        **BODY_ERRORS,
        **INVALID_BODY,
        **_NOT_FOUND,
        **ARCHIVED_CONFLICT,
        **NOT_READY,
    },
)
async def put_flag(name: str, body: FlagUpdate, actor: AdminDep, store: FlagsDep) -> FlagOut:
    state = await admin.update_flag(
        store,
        name,
        actor=actor,
        reason=body.reason,
        enabled=body.enabled,
        rollout_percent=body.rolloutPercent,
        shop_overrides=body.shopOverrides,
        sample_rate=body.sampleRate,
    )
    return FlagOut.model_validate(state)


@router.get(
    "/admin/flags/{name}/evaluate",
    summary="The flag's value for a shop and the rule that decided it",
    responses={
        **example_response(FLAG_EVALUATION_EXAMPLE),
        **ADMIN_ERRORS,
        **problem(
            422,
            "Invalid shop domain",
            invalidShop=problem_example(
                422,
                "The request has invalid fields.",
                errors=[
                    {
                        "field": "query.shop",
                        "message": "String should match pattern '^[a-z0-9][a-z0-9-]*\\.myshopify\\.com$'",
                        "type": "string_pattern_mismatch",
                    }
                ],
            ),
        ),
        **_NOT_FOUND,
        **NOT_READY,
    },
)
async def evaluate_flag(name: str, _: AdminDep, store: FlagsDep, shop: ShopQuery = None) -> FlagEvaluationOut:
    return FlagEvaluationOut.model_validate(admin.evaluate_flag(store, name, shop))
