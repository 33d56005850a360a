"""SQL that finds, moves and backs up whole tables (Phase 5 archive, restore, full rollback).

No rules here: which tables move when, and the guards around it, are `app.services.cutover`'s.
Identifiers are quoted here, since table and schema names are interpolated into DDL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import orjson

from app.repos.base import Conn

ARCHIVE_SCHEMA = "archive"
LIVE_SCHEMA = "public"
#: Migrated legacy tables that Phase 5 moves to the archive schema (never dropped).
ARCHIVED_LEGACY_TABLES: tuple[str, ...] = ("bundle_discount_id", "auto_bundle_rules", "auto_bundle_data")
#: Transaction-scoped advisory lock serialising stage changes, rollbacks, cleanups and restores.
ROLLOUT_LOCK_KEY = 0x5B_10B5_0002

Location = Literal["public", "archive", "both", "missing"]

_LOCATIONS_SQL = """
SELECT t.name,
       EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = $2 AND c.relname = t.name AND c.relkind IN ('r', 'p')) AS in_live,
       EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = $3 AND c.relname = t.name AND c.relkind IN ('r', 'p')) AS in_archive
FROM unnest($1::text[]) WITH ORDINALITY AS t(name, position)
ORDER BY t.position
"""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def locations(conn: Conn, tables: Sequence[str] = ARCHIVED_LEGACY_TABLES) -> dict[str, Location]:
    """Where each table is: `public`, `archive`, `both` (needs a person) or `missing`.

    Read from the catalog rather than with `to_regclass('public.x')`, which would depend on the
    archive schema existing and on the session's search_path. One cheap round trip.
    """
    rows = await conn.fetch(_LOCATIONS_SQL, list(tables), LIVE_SCHEMA, ARCHIVE_SCHEMA)
    out: dict[str, Location] = {}
    for row in rows:
        live, archived = bool(row["in_live"]), bool(row["in_archive"])
        out[row["name"]] = "both" if live and archived else "public" if live else "archive" if archived else "missing"
    return out


async def lock_rollout(conn: Conn) -> None:
    """Serialise rollout operations until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", ROLLOUT_LOCK_KEY)


async def set_lock_timeout(conn: Conn, limit: str) -> None:
    await conn.execute(f"SET LOCAL lock_timeout = '{limit}'")


async def lock_flags_for_share(conn: Conn) -> None:
    """Flag writes (FOR UPDATE) wait for this transaction to end."""
    await conn.execute("SELECT 1 FROM sb_feature_flags FOR SHARE")


async def table_exists(conn: Conn, name: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{LIVE_SCHEMA}.{quote_ident(name)}"))


async def count_rows(conn: Conn, schema: str, table: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(table)}"))


async def set_comment(conn: Conn, schema: str, table: str, value: Mapping[str, Any] | None) -> None:
    """Table comments carry the archive bookkeeping (JSON), so it travels with the table itself."""
    literal = "NULL"
    if value is not None:
        literal = await conn.fetchval("SELECT quote_literal($1::text)", orjson.dumps(value).decode())
    await conn.execute(f"COMMENT ON TABLE {quote_ident(schema)}.{quote_ident(table)} IS {literal}")


async def read_comment(conn: Conn, schema: str, table: str) -> dict[str, Any] | None:
    raw = await conn.fetchval(
        "SELECT obj_description(c.oid, 'pg_class') FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
        schema,
        table,
    )
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


async def create_schema(conn: Conn, schema: str) -> None:
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")


async def move_tables(
    conn: Conn, tables: Sequence[str], source: str, target: str, comment: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """`ALTER TABLE source.t SET SCHEMA target` for each table, in the caller's transaction."""
    moved = []
    for table in tables:
        rows = await count_rows(conn, source, table)
        await conn.execute(f"ALTER TABLE {quote_ident(source)}.{quote_ident(table)} SET SCHEMA {quote_ident(target)}")
        await set_comment(conn, target, table, comment)
        moved.append({"table": table, "fromSchema": source, "toSchema": target, "rows": rows})
    return moved


async def backup_tables(conn: Conn, tables: Sequence[str]) -> list[dict[str, Any]]:
    """`<table>_backup` copies of the tables that hold rows; an earlier copy is renamed `<name>_<stamp>`
    (the convention of revision 0002's backups), never overwritten."""
    stamp = await conn.fetchval("SELECT to_char(clock_timestamp(), 'YYYYMMDDHH24MISS')")
    made = []
    for table in tables:
        if not await table_exists(conn, table):
            continue
        rows = await count_rows(conn, LIVE_SCHEMA, table)
        if rows == 0:
            continue
        backup = f"{table}_backup"
        if await table_exists(conn, backup):
            await conn.execute(f"ALTER TABLE {quote_ident(backup)} RENAME TO {quote_ident(f'{backup}_{stamp}')}")
        await conn.execute(f"CREATE TABLE {quote_ident(backup)} AS SELECT * FROM {quote_ident(table)}")
        made.append({"table": backup, "source": table, "rows": rows})
    return made


async def current_backups(conn: Conn) -> list[dict[str, Any]]:
    names = await conn.fetch(
        "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename LIKE '%\\_backup' "
        "ORDER BY tablename",
        LIVE_SCHEMA,
    )
    return [{"table": r["tablename"], "rows": await count_rows(conn, LIVE_SCHEMA, r["tablename"])} for r in names]


async def unfinished_jobs(conn: Conn) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        'SELECT id, kind, status FROM sb_migration_jobs WHERE status = ANY($1::text[]) ORDER BY "createdAt"',
        ["queued", "running", "paused", "cancelling"],
    )
    return [dict(r) for r in rows]


async def count_bundles_changed_since(conn: Conn, since: datetime) -> int:
    return int(await conn.fetchval('SELECT count(*) FROM "Bundle" WHERE "updatedAt" >= $1', since))


async def count_pending_outbox(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM sb_outbox WHERE status = 'pending'"))
