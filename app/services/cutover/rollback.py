"""Rollbacks: the plan's "Rollback Procedure" as operations of this service (`shopibundle rollback
...`, `POST /admin/rollback`). The runbook (docs/runbook.md) says when to use which; this docstring
says what each one does and why.

Immediate rollback: `immediate_rollback` (`POST /admin/rollback`, `shopibundle rollback immediate`)
    The plan's "export FEATURE_FLAG_V2_BUNDLE_ENGINE=false ... restart", without the restart: the
    stored flags move to the `dualwrite` stage in one audited transaction, exactly::

        V2_BUNDLE_ENGINE   enabled=false rolloutPercent=0   shopOverrides={}  reads: legacy, every shop
        V2_PRICING_ENGINE  enabled=false rolloutPercent=0   shopOverrides={}  /proxy/v2: legacy percentage
        SHADOW_READS       enabled=false rolloutPercent=0   shopOverrides={}  no V2 work on reads (sampleRate kept)
        DUAL_WRITE         enabled=true  rolloutPercent=100 shopOverrides={}  writes: V2 + legacy, one transaction

    DUAL_WRITE stays on because the legacy tables now answer every read: a write through the V2 API
    that did not reach them would vanish from the merchant's view (and from the legacy app, should it
    take over). Per-shop overrides are cleared: a leftover `V2_BUNDLE_ENGINE: true` for one shop
    would keep that shop on the store being rolled back. Every replica applies the change within
    1 s (the flag store's NOTIFY, with its 0.5 s poll as a safety net). `FEATURE_FLAG_<NAME>` in a
    replica's environment still beats the stored values (the response warns about this process's).
    Migration jobs are left alone: they only read legacy rows and write V2 rows. Refused (409) while
    the legacy tables are archived: reads would go to tables that are not there.

Full rollback: `full_rollback` (`shopibundle rollback full --yes`; CLI only, because it removes the
schema the service itself runs on)
    Refuses without confirmation. Then (1) archived legacy tables are moved back to `public` and
    the flags go to the immediate-rollback position, in one transaction, and it waits for every
    replica still running to hear it; (2) the service's own tables that hold history are copied to
    `<table>_backup` (flag audit, jobs, job items, shadow mismatches, outbox; an older copy is
    renamed `<table>_backup_<stamp>`, never overwritten); (3) Alembic downgrades to
    `0001_legacy_baseline`, whose Phase 1 step copies every V2 table holding rows to its backup
    (`bundle_v2_backup`, `bundle_component_backup`, ...) and drops the V2 tables.
    Why down to 0001 and not "just Phase 1": the history is linear (0002 Phase 1 → 0003 service
    tables → 0004 jobs → 0005 outbox), so undoing 0002 undoes everything after it; keeping the
    service's tables would need a branch in the history for no gain, since the service cannot run
    without the V2 tables anyway. Afterwards only the legacy tables and the backups remain: the
    legacy app takes over, and with the flag table gone a service replica would fall back to the
    flag defaults (DUAL_WRITE on, the rest off) plus the environment kill switch
    (`FEATURE_FLAG_V2_BUNDLE_ENGINE=false`), but `/readyz` answers 503 (schema behind head), so
    replicas should be stopped. `shopibundle db upgrade` goes forward again; the backups stay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from app.core.config import Settings
from app.core.db import asyncpg_connect_kwargs
from app.core.errors import BadRequest, Conflict
from app.core.migrations import current_revision, downgrade
from app.repos import legacy_tables as tables_repo
from app.repos.legacy_tables import ARCHIVE_SCHEMA, ARCHIVED_LEGACY_TABLES, LIVE_SCHEMA
from app.rules.flags import Flag
from app.rules.stages import STAGE_TABLE, Stage
from app.services.consistency.v2_only import describe, v2_only_holdings
from app.services.cutover.flag_writes import (
    FLAG_PROPAGATION_WAIT_S,
    env_source,
    env_warnings,
    flags_view,
    require_reason,
    stored_states,
    write_stage,
)
from app.services.cutover.guard import legacy_table_locations, require_legacy_tables
from app.services.flags.snapshot import FlagStore

log = logging.getLogger(__name__)

#: The position an immediate rollback moves the flags to (see the module docstring for the values).
IMMEDIATE_ROLLBACK_STAGE: Stage = "dualwrite"
BASELINE_REVISION = "0001_legacy_baseline"
#: Service tables with history worth keeping when a full rollback drops them.
SERVICE_BACKUP_TABLES: tuple[str, ...] = (
    "sb_feature_flag_audit",
    "sb_migration_jobs",
    "sb_migration_job_items",
    "sb_shadow_mismatches",
    "sb_outbox",
)


class ConfirmationRequired(BadRequest):
    """A destructive operation was asked for without its explicit confirmation."""


class V2OnlyData(Conflict):
    """A rollback would hide data only V2 holds; the problem lists it (`v2Only`). Confirm to proceed."""

    title, type_slug = "V2-only data would be hidden", "v2-only-data"


def jsonable(holdings: Mapping[str, Any]) -> dict[str, Any]:
    """The holdings with their datetimes as ISO strings (a problem body is plain JSON)."""

    def convert(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat().replace("+00:00", "Z")
        if isinstance(value, Mapping):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    result: dict[str, Any] = convert(holdings)
    return result


def _was_fully_on(entry_old: Mapping[str, Any]) -> bool:
    overrides = entry_old.get("shopOverrides") or {}
    on = bool(entry_old.get("enabled")) or int(entry_old.get("rolloutPercent") or 0) >= 100
    return on and all(overrides.values())


async def immediate_rollback(
    pool: asyncpg.Pool,
    *,
    actor: str,
    reason: str,
    store: FlagStore | None = None,
    settings: Settings | None = None,
    confirm: bool = False,
) -> dict[str, Any]:
    """Reads back to legacy, V2 features off, DUAL_WRITE on: the `dualwrite` stage (module docstring).

    Idempotent: flags already in place are not rewritten. 409 while the legacy tables are archived.
    409 `v2-only-data` with the list when shops reading from V2 hold data the legacy tables cannot
    represent, unless `confirm` (nothing is deleted either way; the result lists it).
    """
    reason = require_reason(reason)
    env_override = env_source(store, settings)
    async with pool.acquire() as conn, conn.transaction():
        await tables_repo.lock_rollout(conn)
        await require_legacy_tables(conn, "An immediate rollback (reads from the legacy tables)")
        holdings = await v2_only_holdings(conn)
        if holdings["total"] and not confirm:
            raise V2OnlyData(describe(holdings) + " Confirm to proceed.", v2Only=jsonable(holdings))
        before = await stored_states(conn)
        written = await write_stage(
            conn,
            IMMEDIATE_ROLLBACK_STAGE,
            actor=actor,
            reason=f"immediate rollback → {IMMEDIATE_ROLLBACK_STAGE}: {reason}",
        )
        stale = await tables_repo.read_comment(conn, LIVE_SCHEMA, ARCHIVED_LEGACY_TABLES[0])
    warnings = env_warnings(env_override, STAGE_TABLE[IMMEDIATE_ROLLBACK_STAGE])
    if not _was_fully_on(before[Flag.DUAL_WRITE].values()):
        warnings.append(
            "DUAL_WRITE was not on for every shop before this rollback: V2 writes made while it was off never "
            "reached the legacy tables, which now answer reads. Compare with `shopibundle validate`."
        )
    if stale and stale.get("archivedAt"):
        warnings.append(
            f"The legacy tables were archived from {stale.get('archivedAt')} to {stale.get('restoredAt')} "
            "(DUAL_WRITE off): V2 writes of that period are missing from them."
        )
    view = await flags_view(pool, store, settings)
    log.info("immediate rollback by %s: %s (flags changed: %s)", actor, reason, [w["name"] for w in written])
    return {
        "action": "immediate_rollback",
        "actor": actor,
        "reason": reason,
        "changedFlags": [w["name"] for w in written],
        **view,
        "propagation": "every replica within 1 s (LISTEN/NOTIFY; 0.5 s polling as the safety net), no restart",
        "warnings": warnings,
        "v2Only": holdings,
    }


# ================================================================================== full rollback


async def rollback_preview(pool: asyncpg.Pool) -> dict[str, Any]:
    """`GET /admin/rollback/preview`: what only V2 holds for the shops reading from V2 now."""
    async with pool.acquire() as conn:
        return await v2_only_holdings(conn)


async def full_rollback_preview(url: str) -> dict[str, Any]:
    """What only V2 holds for the shops reading from V2 (empty when the service's tables are gone)."""
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(url))
    try:
        if not (
            await tables_repo.table_exists(conn, "sb_feature_flags") and await tables_repo.table_exists(conn, "Bundle")
        ):
            return {"shops": [], "total": 0}
        return await v2_only_holdings(conn)
    finally:
        await conn.close()


async def full_rollback(
    url: str,
    *,
    confirmed: bool,
    actor: str,
    reason: str,
    propagation_wait_s: float = FLAG_PROPAGATION_WAIT_S,
) -> dict[str, Any]:
    """The plan's "Full Rollback": preserve, then drop the V2 schema (Alembic down to the baseline).

    Blocking work (Alembic) runs in a thread. See the module docstring for the steps and why the
    target is `0001_legacy_baseline`.
    """
    kwargs: dict[str, Any] = asyncpg_connect_kwargs(url)
    holdings = await full_rollback_preview(url)
    if not confirmed:
        message = (
            "A full rollback drops every V2 table and the service's own tables (after copying those holding rows "
            "to *_backup tables) and leaves the database at revision 0001_legacy_baseline."
        )
        if holdings["total"]:
            message += " " + describe(holdings) + " After a full rollback it is only in the *_backup tables."
        raise ConfirmationRequired(message + " Confirm with --yes.", v2Only=jsonable(holdings))
    reason = require_reason(reason)
    conn = await asyncpg.connect(**kwargs)
    warnings: list[str] = []
    try:
        revision = await current_revision(conn)
        if revision in (None, BASELINE_REVISION):
            return {
                "action": "full_rollback",
                "fromRevision": revision,
                "toRevision": revision,
                "restoredTables": [],
                "changedFlags": [],
                "serviceBackups": [],
                "backups": await tables_repo.current_backups(conn),
                "warnings": ["Nothing to roll back: the database is not past the legacy baseline."],
            }
        has_flags = await tables_repo.table_exists(conn, "sb_feature_flags")
        restored, written = await _legacy_tables_back(
            conn, actor=actor, reason=reason, has_flags=has_flags, warnings=warnings
        )
        if has_flags:
            await asyncio.sleep(propagation_wait_s)  # replicas still running stop reading V2 first
        service_backups = await _back_up_service_tables(conn, warnings)
    finally:
        await conn.close()
    log.info("full rollback by %s from %s: %s", actor, revision, reason)
    await asyncio.to_thread(downgrade, url, BASELINE_REVISION)
    conn = await asyncpg.connect(**kwargs)
    try:
        to_revision = await current_revision(conn)
        backups = await tables_repo.current_backups(conn)
    finally:
        await conn.close()
    warnings.append(
        "The service's tables are gone: stop its replicas (/readyz answers 503); the legacy app serves the legacy "
        "tables. `shopibundle db upgrade` goes forward again; the backups stay."
    )
    return {
        "action": "full_rollback",
        "actor": actor,
        "reason": reason,
        "fromRevision": revision,
        "toRevision": to_revision,
        "restoredTables": restored,
        "changedFlags": [w["name"] for w in written],
        "serviceBackups": service_backups,
        "backups": backups,
        "warnings": warnings,
        "v2Only": jsonable(holdings),
    }


async def _legacy_tables_back(
    conn: asyncpg.Connection, *, actor: str, reason: str, has_flags: bool, warnings: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Step 1, one transaction: archived legacy tables back to `public` (the legacy app needs them
    where Prisma put them) and, while the flag table exists, the flags to the immediate-rollback
    position. Returns (tables moved, flags written)."""
    restored: list[dict[str, Any]] = []
    written: list[dict[str, Any]] = []
    async with conn.transaction():
        await tables_repo.lock_rollout(conn)
        locations = await legacy_table_locations(conn)
        archived = [t for t, where in locations.items() if where == "archive"]
        if archived:
            restored = await tables_repo.move_tables(conn, archived, ARCHIVE_SCHEMA, LIVE_SCHEMA, None)
            warnings.append(
                "The legacy tables were archived and are back in public; V2 writes made while they were archived "
                "are only in the V2 backups."
            )
        if has_flags:
            written = await write_stage(
                conn,
                IMMEDIATE_ROLLBACK_STAGE,
                actor=actor,
                reason=f"full rollback (before the downgrade): {reason}",
            )
    return restored, written


async def _back_up_service_tables(conn: asyncpg.Connection, warnings: list[str]) -> list[dict[str, Any]]:
    """Step 2, one transaction: the service's tables that hold history copied to `<table>_backup`."""
    async with conn.transaction():
        service_backups: list[dict[str, Any]] = await tables_repo.backup_tables(conn, SERVICE_BACKUP_TABLES)
        if await tables_repo.table_exists(conn, "sb_outbox"):
            pending = await tables_repo.count_pending_outbox(conn)
            if pending:
                warnings.append(
                    f"{pending} outbox row(s) were still pending: those Shopify changes were never made "
                    "(kept in sb_outbox_backup)."
                )
    return service_backups
