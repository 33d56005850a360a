"""`/admin/migration-stage`: thin HTTP over `app.services.cutover.stage.set_stage`, the CLI's `stage set`.

Listed with the flags in the API document (a stage is a position of all four flags).
"""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import AdminDep, ContainerDep, FlagsDep
from app.api.flags import ARCHIVED_CONFLICT, INVALID_BODY, NOT_READY
from app.api.openapi_docs import (
    ADMIN_AUTH,
    ADMIN_ERRORS,
    BODY_ERRORS,
    UNEXPECTED_ERROR,
    example_response,
)
from app.schemas.flags import MIGRATION_STAGE_EXAMPLE, MigrationStageOut, MigrationStageUpdate
from app.services.cutover import stage as stage_service
from app.services.flags import admin

router = APIRouter(tags=["flags"], responses=UNEXPECTED_ERROR)


@router.get(
    "/admin/migration-stage",
    summary="Current migration stage, derived from the flags",
    responses={**example_response(MIGRATION_STAGE_EXAMPLE), **ADMIN_AUTH, **NOT_READY},
)
async def get_migration_stage(_: AdminDep, store: FlagsDep) -> MigrationStageOut:
    return MigrationStageOut.model_validate(admin.migration_stage(store))


@router.put(
    "/admin/migration-stage",
    summary="Move every flag to a migration stage (audited)",
    responses={
        **example_response(MIGRATION_STAGE_EXAMPLE, description="The new stage and every flag's state."),
        **ADMIN_ERRORS,
        **BODY_ERRORS,
        **INVALID_BODY,
        **ARCHIVED_CONFLICT,
        **NOT_READY,
    },
)
async def put_migration_stage(
    body: MigrationStageUpdate, actor: AdminDep, container: ContainerDep, store: FlagsDep
) -> MigrationStageOut:
    result = await stage_service.set_stage(
        container.pool, body.stage, actor=actor, reason=body.reason, sample_rate=body.sampleRate, store=store
    )
    return MigrationStageOut.model_validate(result)
