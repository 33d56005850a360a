"""`/admin/migrations/jobs`: thin HTTP over `app.services.migration_jobs` (internal token).

Every state change answers 202: the worker acts on it asynchronously (a cancel becomes
`cancelled` once in-flight batches end). Job bodies carry `statusUrl`, which a client polls.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response

from app.api.deps import AdminDep, ContainerDep
from app.core.security import SHOP_DOMAIN_RE
from app.models.job_api import CreateJobIn, FailurePage, JobKind, JobOut, JobPage, JobStatus, RetryFailedIn
from app.services import migration_jobs as service

router = APIRouter(tags=["migrations"])

_PROBLEM: dict[str, object] = {"content": {"application/problem+json": {}}}
_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"description": "Missing or invalid token", **_PROBLEM},
    422: {"description": "Validation failed", **_PROBLEM},
}
_NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"description": "Unknown job", **_PROBLEM}}
_CONFLICT: dict[int | str, dict[str, object]] = {
    409: {"description": "An unfinished job overlaps, or the transition is not allowed", **_PROBLEM}
}

JobId = Annotated[str, Path(min_length=1, max_length=64, description="Job id")]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=500)]
JOBS = "/admin/migrations/jobs"


@router.post(
    JOBS,
    status_code=202,
    summary="Start a migration job (planned at once: total known; 409 if an unfinished job overlaps)",
    responses={**_ERRORS, **_CONFLICT},
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


@router.get(JOBS, summary="Migration jobs, newest first", responses=_ERRORS)
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
    responses={**_ERRORS, **_NOT_FOUND},
)
async def get_job(job_id: JobId, _: AdminDep, container: ContainerDep) -> JobOut:
    return await service.get_job(container.pool, job_id)


@router.get(
    JOBS + "/{job_id}/failures",
    summary="Failed items with stable reason codes, in plan order",
    responses={**_ERRORS, **_NOT_FOUND},
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
    responses={**_ERRORS, **_NOT_FOUND, **_CONFLICT},
)
async def cancel_job(job_id: JobId, _: AdminDep, container: ContainerDep) -> JobOut:
    return await service.cancel_job(container.pool, job_id, lease_s=container.settings.job_lease_s)


@router.post(
    JOBS + "/{job_id}/pause",
    status_code=202,
    summary="Pause: workers stop claiming batches",
    responses={**_ERRORS, **_NOT_FOUND, **_CONFLICT},
)
async def pause_job(job_id: JobId, _: AdminDep, container: ContainerDep) -> JobOut:
    return await service.pause_job(container.pool, job_id)


@router.post(
    JOBS + "/{job_id}/resume",
    status_code=202,
    summary="Resume a paused job",
    responses={**_ERRORS, **_NOT_FOUND, **_CONFLICT},
)
async def resume_job(job_id: JobId, _: AdminDep, container: ContainerDep) -> JobOut:
    return await service.resume_job(container.pool, job_id)


@router.post(
    JOBS + "/{job_id}/retry-failed",
    status_code=202,
    summary="A new job (parentJobId) over this finished job's failed items",
    responses={**_ERRORS, **_NOT_FOUND, **_CONFLICT},
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
