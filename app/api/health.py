"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import ContainerDep
from app.api.openapi_docs import UNEXPECTED_ERROR, example_response
from app.schemas.health import Readiness
from app.services.ops import health as health_service

router = APIRouter(tags=["operations"], responses=UNEXPECTED_ERROR)


READY_EXAMPLE = {
    "ready": True,
    "database": "ok",
    "schema": {"current": "0005_outbox", "head": "0005_outbox", "status": "current"},
}
NOT_READY_EXAMPLE = {
    "ready": False,
    "database": "ok",
    "schema": {"current": "0004_jobs", "head": "0005_outbox", "status": "behind"},
}


@router.get(
    "/healthz",
    summary="Liveness: 200 while the process lives",
    responses=example_response({"status": "ok"}),
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database answers and schema at Alembic head",
    responses={
        **example_response(READY_EXAMPLE, description="Ready", model=Readiness),
        **example_response(
            NOT_READY_EXAMPLE,
            503,
            "Not ready: the database does not answer, or its schema is behind this code's head. The body is "
            "the readiness report (application/json), not a problem.",
            model=Readiness,
        ),
    },
)
async def readyz(container: ContainerDep) -> JSONResponse:
    async with asyncio.timeout(5):
        report = await health_service.readiness(container)
    return JSONResponse(report, status_code=200 if report["ready"] else 503)
