"""`/admin/rollback`, `/admin/cleanup`, `/admin/cleanup/restore`: thin HTTP over `app.services.cutover`.

All synchronous (200 with what changed): each is a couple of short transactions; the cleanup also
waits about 1.5 s for every replica to stop dual-writing before it moves the tables. The actor in
the flag audit log is the admin token's name. The full rollback has no endpoint on purpose: it
drops the schema this service runs on, so it is `shopibundle rollback full --yes` only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import AdminDep, ContainerDep, FlagsDep
from app.api.openapi_docs import (
    ADMIN_AUTH,
    ADMIN_ERRORS,
    BODY_ERRORS,
    DB_ERRORS,
    FLAGS_NOT_READY,
    UNEXPECTED_ERROR,
    Responses,
    example_response,
    problem,
    problem_example,
)
from app.schemas.cutover import (
    CLEANUP_EXAMPLE,
    RESTORE_EXAMPLE,
    ROLLBACK_EXAMPLE,
    CleanupIn,
    CleanupOut,
    RestoreIn,
    RestoreOut,
    RollbackIn,
    RollbackOut,
    V2OnlyHoldings,
)
from app.services.cutover import cleanup, rollback
from app.services.cutover.guard import ARCHIVED_LEGACY_TABLES

router = APIRouter(tags=["rollout"], responses=UNEXPECTED_ERROR)

_ARCHIVED = problem_example(
    409,
    "An immediate rollback (reads from the legacy tables) needs the legacy tables, but bundle_discount_id, "
    "auto_bundle_rules, auto_bundle_data are archived (schema `archive`, Phase 5 cleanup). Move them back first: "
    "`shopibundle cleanup restore --reason ...` or POST /admin/cleanup/restore.",
    archivedTables=list(ARCHIVED_LEGACY_TABLES),
)
_ERRORS: Responses = {
    **ADMIN_ERRORS,
    **BODY_ERRORS,
    **problem(503, "Feature flags not loaded yet", ready=FLAGS_NOT_READY),
}

V2_ONLY_EXAMPLE: dict[str, Any] = {
    "shops": [
        {
            "shop": "acme.myshopify.com",
            "readsFromV2Since": "2026-12-06T03:10:00Z",
            "count": 2,
            "scanned": 14,
            "truncated": False,
            "bundles": [
                {
                    "id": "cm4b1x2y30000",
                    "name": "Gift box",
                    "shopifyMetaobjectId": None,
                    "updatedAt": "2026-12-06T03:12:40Z",
                    "reasons": ["not_representable"],
                },
                {
                    "id": "cm4b1x2y30001",
                    "name": "Trio",
                    "shopifyMetaobjectId": "gid://shopify/Metaobject/101",
                    "updatedAt": "2026-12-06T03:14:02Z",
                    "reasons": ["quantity", "fractional_percentage"],
                },
            ],
        }
    ],
    "total": 2,
}

_ROLLBACK_CONFLICT = problem(
    409,
    "The legacy tables are archived (restore them first), or shops reading from V2 hold data the legacy tables "
    "cannot represent (`v2Only` lists it; send `confirm: true` to proceed)",
    archived=_ARCHIVED,
    v2OnlyData=problem_example(
        409,
        "2 V2 bundle(s) in 1 shop(s) reading from V2 hold data the legacy tables cannot represent: "
        "acme.myshopify.com (2). Nothing is deleted, but reads from legacy will not show it. Confirm to proceed.",
        v2Only=V2_ONLY_EXAMPLE,
    ),
)
_CLEANUP_CONFLICT = problem(
    409,
    "Refused, nothing archived: validation not ok, reads not on V2 yet, unfinished jobs, already archived, "
    "or a lock not obtained within 5 s",
    validation=problem_example(
        409,
        "The validation report is not ok, so the legacy tables still hold something V2 lacks: {...}. Fix it "
        "(`shopibundle validate`), or pass force if the remainder is understood.",
        validation={
            "ok": False,
            "unmigratedCount": 3,
            "discountMismatches": 0,
            "aiBundlesUnmigrated": 0,
            "aiBundleStatusMismatches": 0,
            "autoBundleRulesUnmigrated": 0,
            "failedCount": 2,
        },
    ),
    unfinishedJobs=problem_example(
        409,
        "Unfinished migration jobs read the legacy tables: c0a1b2 (all, running). Let them finish or cancel them "
        "(`shopibundle migrate cancel JOB`) first.",
        unfinishedJobs=["c0a1b2"],
    ),
)
_RESTORE_CONFLICT = problem(
    409,
    "Nothing to restore, or a table exists in both schemas",
    nothing=problem_example(409, "Nothing to restore: the legacy tables are not archived."),
)


@router.post(
    "/admin/rollback",
    summary="Immediate rollback: reads from legacy, V2 features off, dual write kept on (every replica within 1 s)",
    responses={**example_response(ROLLBACK_EXAMPLE), **_ERRORS, **_ROLLBACK_CONFLICT},
)
async def post_rollback(body: RollbackIn, actor: AdminDep, container: ContainerDep, store: FlagsDep) -> RollbackOut:
    result: dict[str, Any] = await rollback.immediate_rollback(
        container.pool, actor=actor, reason=body.reason, store=store, confirm=body.confirm
    )
    return RollbackOut.model_validate(result)


@router.get(
    "/admin/rollback/preview",
    summary="What only V2 holds for the shops reading from V2 (what a rollback would hide; nothing is deleted)",
    responses={**example_response(V2_ONLY_EXAMPLE), **ADMIN_AUTH, **DB_ERRORS},
)
async def get_rollback_preview(_: AdminDep, container: ContainerDep) -> V2OnlyHoldings:
    result: dict[str, Any] = await rollback.rollback_preview(container.pool)
    return V2OnlyHoldings.model_validate(result)


@router.post(
    "/admin/cleanup",
    summary="Phase 5 cleanup: dual write off (stage complete), migrated legacy tables moved to schema `archive`",
    responses={**example_response(CLEANUP_EXAMPLE), **_ERRORS, **_CLEANUP_CONFLICT},
)
async def post_cleanup(body: CleanupIn, actor: AdminDep, container: ContainerDep, store: FlagsDep) -> CleanupOut:
    result = await cleanup.phase5_cleanup(
        container.pool, actor=actor, reason=body.reason, force=body.force, store=store
    )
    return CleanupOut.model_validate(result)


@router.post(
    "/admin/cleanup/restore",
    summary="Undo the cleanup: archived legacy tables back to public and dual write on, in one transaction",
    responses={**example_response(RESTORE_EXAMPLE), **_ERRORS, **_RESTORE_CONFLICT},
)
async def post_cleanup_restore(
    body: RestoreIn, actor: AdminDep, container: ContainerDep, store: FlagsDep
) -> RestoreOut:
    result = await cleanup.restore_from_archive(container.pool, actor=actor, reason=body.reason, store=store)
    return RestoreOut.model_validate(result)
