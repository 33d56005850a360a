"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import ContainerDep
from app.services import health as health_service

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: 200 while the process lives")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database answers and schema at Alembic head",
    responses={503: {"description": "Not ready", "content": {"application/problem+json": {}}}},
)
async def readyz(container: ContainerDep) -> JSONResponse:
    report = await asyncio.wait_for(health_service.readiness(container), timeout=5)
    return JSONResponse(report, status_code=200 if report["ready"] else 503)
