"""Readiness rules: the database answers and its schema is at this code's Alembic head."""

from __future__ import annotations

from typing import Any

from app.core.container import Container
from app.core.migrations import current_revision, head_revision


async def readiness(container: Container) -> dict[str, Any]:
    head = head_revision()
    try:
        async with container.pool.acquire() as conn:
            current = await current_revision(conn)  # type: ignore[arg-type]  # pool proxy quacks alike
    except Exception as exc:  # the database being down is exactly what this reports
        return {"ready": False, "database": "unreachable", "detail": str(exc)[:200], "schema": {"head": head}}
    ready = current == head
    return {
        "ready": ready,
        "database": "ok",
        "schema": {"current": current, "head": head, "status": "current" if ready else "behind"},
    }
