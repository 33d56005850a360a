"""`/admin/flags` and `/admin/migration-stage`: thin HTTP over `app.services.flags`.

Everything requires the internal token (AdminDep); its actor (`X-Actor`, default "admin") is
what the audit log records as `changedBy`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import AdminDep, FlagsDep
from app.core.security import SHOP_DOMAIN_RE
from app.models.flag_api import (
    FlagAuditPage,
    FlagEvaluationOut,
    FlagList,
    FlagOut,
    FlagUpdate,
    MigrationStageOut,
    MigrationStageUpdate,
)
from app.services import flags as service

router = APIRouter(tags=["flags"])

_PROBLEM: dict[str, object] = {"content": {"application/problem+json": {}}}
_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"description": "Missing or invalid token", **_PROBLEM},
    422: {"description": "Validation failed", **_PROBLEM},
}
_NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"description": "Unknown flag", **_PROBLEM}}

ShopQuery = Annotated[
    str | None,
    Query(pattern=SHOP_DOMAIN_RE.pattern, description="Shop domain; omitted = the global answer."),
]


@router.get("/admin/flags", summary="All flags as this replica evaluates them", responses=_ERRORS)
async def list_flags(_: AdminDep, store: FlagsDep) -> FlagList:
    return FlagList(items=[FlagOut.model_validate(f) for f in service.list_flags(store)])


@router.get("/admin/flags/audit", summary="Flag change log, newest first", responses={**_ERRORS, **_NOT_FOUND})
async def flag_audit(
    _: AdminDep,
    store: FlagsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    flag: Annotated[str | None, Query(description="Only this flag's changes.")] = None,
) -> FlagAuditPage:
    return FlagAuditPage.model_validate(await service.audit_page(store, limit=limit, cursor=cursor, flag=flag))


@router.get("/admin/flags/{name}", summary="One flag", responses={**_ERRORS, **_NOT_FOUND})
async def get_flag(name: str, _: AdminDep, store: FlagsDep) -> FlagOut:
    return FlagOut.model_validate(service.get_flag(store, name))


@router.put(
    "/admin/flags/{name}",
    summary="Change a flag (audited; every replica applies it within a second)",
    responses={**_ERRORS, **_NOT_FOUND},
)
async def put_flag(name: str, body: FlagUpdate, actor: AdminDep, store: FlagsDep) -> FlagOut:
    state = await service.update_flag(
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
    responses={**_ERRORS, **_NOT_FOUND},
)
async def evaluate_flag(name: str, _: AdminDep, store: FlagsDep, shop: ShopQuery = None) -> FlagEvaluationOut:
    return FlagEvaluationOut.model_validate(service.evaluate_flag(store, name, shop))


@router.get("/admin/migration-stage", summary="Current migration stage, derived from the flags", responses=_ERRORS)
async def get_migration_stage(_: AdminDep, store: FlagsDep) -> MigrationStageOut:
    return MigrationStageOut.model_validate(service.migration_stage(store))


@router.put("/admin/migration-stage", summary="Move every flag to a migration stage (audited)", responses=_ERRORS)
async def put_migration_stage(body: MigrationStageUpdate, actor: AdminDep, store: FlagsDep) -> MigrationStageOut:
    result = await service.set_migration_stage(
        store, body.stage, actor=actor, reason=body.reason, sample_rate=body.sampleRate
    )
    return MigrationStageOut.model_validate(result)
