"""`/admin/migrations/jobs`: thin HTTP over `app.services.migration.jobs` (internal token).

Every state change answers 202: the worker acts on it asynchronously (a cancel becomes
`cancelled` once in-flight batches end). Job bodies carry `statusUrl`, which a client polls.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response

from app.api.deps import AdminDep, ContainerDep
from app.api.openapi_docs import (
    ADMIN_ERRORS,
    BODY_ERRORS,
    INVALID_CURSOR,
    INVALID_LIMIT,
    PAGINATION_ERRORS,
    UNEXPECTED_ERROR,
    Responses,
    example_response,
    problem,
    problem_example,
)
from app.core.security import SHOP_DOMAIN_RE
from app.schemas.jobs import (
    EXAMPLE_JOB_ID,
    FAILURE_PAGE_EXAMPLE,
    JOB_CANCELLING_EXAMPLE,
    JOB_PAGE_EXAMPLE,
    JOB_PAUSED_EXAMPLE,
    JOB_QUEUED_EXAMPLE,
    JOB_RETRY_EXAMPLE,
    JOB_RUNNING_EXAMPLE,
    CreateJobIn,
    FailurePage,
    JobKind,
    JobOut,
    JobPage,
    JobStatus,
    RetryFailedIn,
)
from app.services.migration import jobs as service

router = APIRouter(tags=["migrations"], responses=UNEXPECTED_ERROR)

_NOT_FOUND = problem(404, "Unknown job", noSuchJob=problem_example(404, f"No migration job {EXAMPLE_JOB_ID}."))


def _legacy_archived(action: str) -> dict[str, object]:
    return problem_example(
        409,
        f"{action} needs the legacy tables, but bundle_discount_id is archived (schema `archive`, Phase 5 "
        "cleanup). Move them back first: `shopibundle cleanup restore --reason ...` or POST /admin/cleanup/restore.",
        archivedTables=["bundle_discount_id"],
    )


def _transition(detail: str) -> Responses:
    return problem(409, "The job's status does not allow this transition", notAllowed=problem_example(409, detail))


_RUNNING_JOB_ID = "cq9r8s7t6u5v4w3x2y1z0a1b2"
_OVERLAP = problem_example(
    409,
    f"Job {_RUNNING_JOB_ID} (bundles, running) already covers some of these shops.",
    conflictingJobId=_RUNNING_JOB_ID,
)
_INVALID_SHOPS = problem(
    422,
    "Validation failed; `errors[]` names each invalid field",
    invalidShops=problem_example(
        422,
        "The request has invalid fields.",
        errors=[
            {
                "field": "body.shops",
                "message": "Value error, not a shop domain (^[a-z0-9][a-z0-9-]*\\.myshopify\\.com$): ['demo-outdoor']",
                "type": "value_error",
            }
        ],
    ),
)
_INVALID_JOB_ID = problem_example(
    422,
    "The request has invalid fields.",
    errors=[{"field": "path.job_id", "message": "String should have at most 64 characters", "type": "string_too_long"}],
)
_JOB_ID_ERRORS = problem(422, "Job id over 64 characters", invalidJobId=_INVALID_JOB_ID)
_LOCATION: dict[str, Any] = {"Location": {"description": "The job's statusUrl", "schema": {"type": "string"}}}

JobId = Annotated[str, Path(min_length=1, max_length=64, description="Job id")]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=500)]
JOBS = "/admin/migrations/jobs"


@router.post(
    JOBS,
    status_code=202,
    summary="Start a migration job (planned at once: total known; 409 if an unfinished job overlaps)",
    responses={
        **example_response(JOB_QUEUED_EXAMPLE, 202, "Planned and queued; poll `statusUrl`", headers=_LOCATION),
        **ADMIN_ERRORS,
        **BODY_ERRORS,
        **_INVALID_SHOPS,
        **problem(
            409,
            "An unfinished job overlaps (kind and shops), or the legacy tables are archived",
            overlappingJob=_OVERLAP,
            legacyTablesArchived=_legacy_archived("Planning a migration job"),
        ),
    },
)
async def create_job(body: CreateJobIn, _: AdminDep, container: ContainerDep, response: Response) -> JobOut:
    job = await service.create_job(
        container.pool,
        kind=body.kind,
        shops=body.shops,
        dry_run=body.dryRun,
        batch_size=body.batchSize,
        fill_products=body.fillProducts,
    )
    response.headers["Location"] = job.statusUrl
    return job


@router.get(
    JOBS,
    summary="Migration jobs, newest first",
    responses={**example_response(JOB_PAGE_EXAMPLE), **ADMIN_ERRORS, **PAGINATION_ERRORS},
)
async def list_jobs(
    _: AdminDep,
    container: ContainerDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: Annotated[JobStatus | None, Query()] = None,
    kind: Annotated[JobKind | None, Query()] = None,
) -> JobPage:
    return await service.list_jobs(container.pool, limit=limit, cursor=cursor, status=status, kind=kind)


@router.get(
    JOBS + "/{job_id}",
    summary="One job: status, counters, progress, rate, ETA, per-shop breakdown (one indexed read)",
    responses={**example_response(JOB_RUNNING_EXAMPLE), **ADMIN_ERRORS, **_JOB_ID_ERRORS, **_NOT_FOUND},
)
async def get_job(job_id: JobId, _: AdminDep, container: ContainerDep) -> JobOut:
    return await service.get_job(container.pool, job_id)


@router.get(
    JOBS + "/{job_id}/failures",
    summary="Failed items with stable reason codes, in plan order",
    responses={
        **example_response(FAILURE_PAGE_EXAMPLE),
        **ADMIN_ERRORS,
        **problem(
            422,
            "Invalid job id, `limit`, `cursor` or `shop`",
            invalidLimit=INVALID_LIMIT,
            invalidCursor=INVALID_CURSOR,
            invalidJobId=_INVALID_JOB_ID,
        ),
        **_NOT_FOUND,
    },
)
async def list_failures(
    job_id: JobId,
    _: AdminDep,
    container: ContainerDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    shop: Annotated[str | None, Query(pattern=SHOP_DOMAIN_RE.pattern)] = None,
    reason: Annotated[str | None, Query(max_length=100)] = None,
) -> FailurePage:
    return await service.list_failures(container.pool, job_id, limit=limit, cursor=cursor, shop=shop, reason=reason)


@router.post(
    JOBS + "/{job_id}/cancel",
    status_code=202,
    summary="Cancel: cancelling, then cancelled when in-flight batches end",
    responses={
        **example_response(JOB_CANCELLING_EXAMPLE, 202),
        **ADMIN_ERRORS,
        **_JOB_ID_ERRORS,
        **_NOT_FOUND,
        **_transition(f"Job {EXAMPLE_JOB_ID} is already succeeded."),
    },
)
async def cancel_job(job_id: JobId, _: AdminDep, container: ContainerDep) -> JobOut:
    return await service.cancel_job(container.pool, job_id, lease_s=container.settings.job_lease_s)


@router.post(
    JOBS + "/{job_id}/pause",
    status_code=202,
    summary="Pause: workers stop claiming batches",
    responses={
        **example_response(JOB_PAUSED_EXAMPLE, 202),
        **ADMIN_ERRORS,
        **_JOB_ID_ERRORS,
        **_NOT_FOUND,
        **_transition(f"Job {EXAMPLE_JOB_ID} is succeeded; only a queued or running job can be paused."),
    },
)
async def pause_job(job_id: JobId, _: AdminDep, container: ContainerDep) -> JobOut:
    return await service.pause_job(container.pool, job_id)


@router.post(
    JOBS + "/{job_id}/resume",
    status_code=202,
    summary="Resume a paused job",
    responses={
        **example_response(JOB_RUNNING_EXAMPLE, 202),
        **ADMIN_ERRORS,
        **_JOB_ID_ERRORS,
        **_NOT_FOUND,
        **_transition(f"Job {EXAMPLE_JOB_ID} is running; only a paused job can be resumed."),
    },
)
async def resume_job(job_id: JobId, _: AdminDep, container: ContainerDep) -> JobOut:
    return await service.resume_job(container.pool, job_id)


@router.post(
    JOBS + "/{job_id}/retry-failed",
    status_code=202,
    summary="A new job (parentJobId) over this finished job's failed items",
    responses={
        **example_response(JOB_RETRY_EXAMPLE, 202, "The new job, queued; poll `statusUrl`", headers=_LOCATION),
        **ADMIN_ERRORS,
        **BODY_ERRORS,
        **problem(
            422,
            "Invalid job id or body",
            invalidJobId=_INVALID_JOB_ID,
            invalidBatchSize=problem_example(
                422,
                "The request has invalid fields.",
                errors=[
                    {
                        "field": "body.batchSize",
                        "message": "Input should be greater than or equal to 1",
                        "type": "greater_than_equal",
                    }
                ],
            ),
        ),
        **_NOT_FOUND,
        **problem(
            409,
            "The job has not finished, has no failed items, overlaps an unfinished job, or the legacy tables are "
            "archived",
            notFinished=problem_example(
                409, f"Job {EXAMPLE_JOB_ID} is running; retry its failures once it has finished."
            ),
            noFailures=problem_example(409, f"Job {EXAMPLE_JOB_ID} has no failed items."),
            overlappingJob=_OVERLAP,
            legacyTablesArchived=_legacy_archived("Retrying a migration job's failures"),
        ),
    },
)
async def retry_failed(
    job_id: JobId,
    _: AdminDep,
    container: ContainerDep,
    response: Response,
    body: Annotated[RetryFailedIn | None, Body()] = None,
) -> JobOut:
    job = await service.retry_failed(
        container.pool,
        job_id,
        dry_run=body.dryRun if body else None,
        batch_size=body.batchSize if body else None,
    )
    response.headers["Location"] = job.statusUrl
    return job
