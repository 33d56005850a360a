"""Time helpers: Prisma stores `TIMESTAMP(3)` without zone, UTC by convention."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC now truncated to milliseconds, exactly what a TIMESTAMP(3) column keeps."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=(now.microsecond // 1000) * 1000)
