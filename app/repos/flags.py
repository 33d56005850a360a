"""SQL for `sb_feature_flags` and `sb_feature_flag_audit` (raw asyncpg, no rules here).

JSONB travels as text in both directions (the shared pool registers no JSON codec), so this
module is the one place that encodes/decodes it. Timestamps are naive UTC (`TIMESTAMP(3)`,
Prisma's convention) and are passed in by the caller rather than taken from the server clock,
whose time zone is a session setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson

from app.repos.base import Conn

#: A connection (`Conn`), or the pool itself for one-off reads.
Executor: TypeAlias = "Conn | asyncpg.Pool[Any]"

#: The channel every flag write notifies; each replica LISTENs on it.
NOTIFY_CHANNEL = "sb_flags"

_COLUMNS = '"name", "enabled", "rolloutPercent", "shopOverrides", "sampleRate", "updatedAt", "updatedBy"'


def _json_in(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _json_out(value: Any) -> Any:
    if value is None or not isinstance(value, str | bytes):
        return value
    return orjson.loads(value)


def _flag_row(record: asyncpg.Record) -> dict[str, Any]:
    row = dict(record)
    row["shopOverrides"] = _json_out(row["shopOverrides"]) or {}
    return row


async def fetch_all(conn: Executor, *, query_timeout: float | None = None) -> list[dict[str, Any]]:
    """Every flag row: the whole snapshot in one round trip."""
    records = await conn.fetch(f"SELECT {_COLUMNS} FROM sb_feature_flags", timeout=query_timeout)
    return [_flag_row(r) for r in records]


async def lock_one(conn: Conn, name: str) -> dict[str, Any] | None:
    """The row, locked until the transaction ends, so concurrent writers audit a true `old`."""
    record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM sb_feature_flags WHERE name = $1 FOR UPDATE", name)
    return None if record is None else _flag_row(record)


async def insert_missing(
    conn: Conn, name: str, values: Mapping[str, Any], *, updated_at: datetime, updated_by: str
) -> bool:
    """Seed one row unless it exists; True when this call created it (so only one replica audits it)."""
    created = await conn.fetchval(
        'INSERT INTO sb_feature_flags ("name", "enabled", "rolloutPercent", "shopOverrides", "sampleRate", '
        '"updatedAt", "updatedBy") VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7) '
        'ON CONFLICT ("name") DO NOTHING RETURNING "name"',
        name,
        values["enabled"],
        values["rolloutPercent"],
        _json_in(values["shopOverrides"]),
        values["sampleRate"],
        updated_at,
        updated_by,
    )
    return created is not None


async def upsert(
    conn: Conn, name: str, values: Mapping[str, Any], *, updated_at: datetime, updated_by: str
) -> dict[str, Any]:
    record = await conn.fetchrow(
        'INSERT INTO sb_feature_flags ("name", "enabled", "rolloutPercent", "shopOverrides", "sampleRate", '
        '"updatedAt", "updatedBy") VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7) '
        'ON CONFLICT ("name") DO UPDATE SET "enabled" = EXCLUDED."enabled", '
        '"rolloutPercent" = EXCLUDED."rolloutPercent", "shopOverrides" = EXCLUDED."shopOverrides", '
        '"sampleRate" = EXCLUDED."sampleRate", "updatedAt" = EXCLUDED."updatedAt", '
        '"updatedBy" = EXCLUDED."updatedBy" '
        f"RETURNING {_COLUMNS}",
        name,
        values["enabled"],
        values["rolloutPercent"],
        _json_in(values["shopOverrides"]),
        values["sampleRate"],
        updated_at,
        updated_by,
    )
    assert record is not None
    return _flag_row(record)


async def insert_audit(
    conn: Conn,
    *,
    flag_name: str,
    changed_by: str,
    changed_at: datetime,
    old_value: Mapping[str, Any] | None,
    new_value: Mapping[str, Any],
    reason: str,
) -> int:
    audit_id: int = await conn.fetchval(
        'INSERT INTO sb_feature_flag_audit ("flagName", "changedBy", "changedAt", "oldValue", "newValue", "reason") '
        'VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6) RETURNING "id"',
        flag_name,
        changed_by,
        changed_at,
        _json_in(old_value),
        _json_in(new_value),
        reason,
    )
    return audit_id


async def notify(conn: Conn, name: str) -> None:
    """Queued by PostgreSQL and delivered only if the surrounding transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, name)


async def list_audit(
    conn: Executor, *, limit: int, before_id: int | None, flag_name: str | None
) -> list[dict[str, Any]]:
    """Newest first by id (insertion order; `changedAt` can tie), keyset-paginated."""
    records = await conn.fetch(
        'SELECT "id", "flagName", "changedBy", "changedAt", "oldValue", "newValue", "reason" '
        "FROM sb_feature_flag_audit "
        'WHERE ($1::bigint IS NULL OR "id" < $1) AND ($2::text IS NULL OR "flagName" = $2) '
        'ORDER BY "id" DESC LIMIT $3',
        before_id,
        flag_name,
        limit,
    )
    out = []
    for record in records:
        row = dict(record)
        row["oldValue"] = _json_out(row["oldValue"])
        row["newValue"] = _json_out(row["newValue"])
        out.append(row)
    return out
