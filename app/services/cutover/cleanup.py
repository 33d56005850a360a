"""Plan Phase 5: the cleanup (`POST /admin/cleanup`, `shopibundle cleanup`) and its way back
(`POST /admin/cleanup/restore`, `shopibundle cleanup restore`).

Phase 5 cleanup: `phase5_cleanup` (`POST /admin/cleanup`, `shopibundle cleanup`)
    Requires the validation report to be ok and reads to be on V2 already (stage live, rampdown or
    complete) unless forced, and no unfinished migration job (they read the legacy tables; never
    skippable). Then: (1) stage `complete` (DUAL_WRITE off, V2 reads and pricing on, shadow reads
    off), committed and audited; (2) a wait of `FLAG_PROPAGATION_WAIT_S` so that no replica still
    dual-writes; (3) in ONE transaction, under a short `lock_timeout`: `CREATE SCHEMA IF NOT EXISTS
    archive` and `ALTER TABLE public.<t> SET SCHEMA archive` for each of `ARCHIVED_LEGACY_TABLES`,
    each table marked with a JSON comment (when, who, why). Never a DROP: rows, indexes and
    constraints move with the table, and `restore_from_archive` moves them back.
    Archived: `bundle_discount_id`, `auto_bundle_rules`, `auto_bundle_data` (fully migrated to V2,
    read only by the legacy read path, dual write and the migration jobs, all off in `complete`).
    Kept in `public` (`KEPT_LEGACY_TABLES`): `session`, `active_stores`, `oauth_state` (offline
    tokens and OAuth: the Shopify client reads them), `ai_fbt_config`, `ai_bundle_events`,
    `ai_bundle_ab_assignments` and `ai_fbt_bundles` (`/proxy/ai-bundles-for-product` answers from
    them whatever the flags say, and the legacy AI generator keeps writing `ai_fbt_bundles`).
    While archived: the service answers from V2 only (V2_BUNDLE_ENGINE must stay on); the
    validation report and job creation answer 409 (`LegacyTablesArchived`) instead of failing on a
    missing table; an immediate rollback is refused. Restore first.

Restore: `restore_from_archive` (`POST /admin/cleanup/restore`, `shopibundle cleanup restore`)
    In one transaction: the archived tables move back to `public` and DUAL_WRITE is turned on again
    (enabled, 100 %, no overrides; from `complete` that is the `rampdown` stage), so the tables exist
    exactly when replicas start writing them. Reads stay on V2. The legacy tables lack whatever V2
    writes happened while they were archived (DUAL_WRITE was off): the response counts the V2
    bundles changed meanwhile, and the restored table keeps a comment saying since when it is
    behind, which a later immediate rollback reports as a warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from app.core.config import Settings
from app.core.errors import Conflict
from app.core.time import utcnow
from app.repos import jobs as jobs_repo
from app.repos import legacy_tables as tables_repo
from app.repos.base import Conn
from app.repos.legacy_tables import ARCHIVE_SCHEMA, ARCHIVED_LEGACY_TABLES, LIVE_SCHEMA, Location
from app.rules.flags import Flag
from app.rules.stages import STAGE_TABLE, stage_of
from app.services.cutover.flag_writes import (
    FLAG_PROPAGATION_WAIT_S,
    dual_write_on,
    env_source,
    env_warnings,
    flags_view,
    require_reason,
    stored_states,
    write_flags,
    write_stage,
)
from app.services.cutover.guard import legacy_table_locations
from app.services.flags.snapshot import FlagStore
from app.services.migration.validation import build_validation_report

log = logging.getLogger(__name__)

#: Legacy tables Phase 5 leaves in `public`, and why.
KEPT_LEGACY_TABLES: Mapping[str, str] = {
    "session": "offline access tokens: every Shopify call reads them",
    "active_stores": "installed shops (OAuth / install state)",
    "oauth_state": "OAuth CSRF state",
    "ai_fbt_bundles": "/proxy/ai-bundles-for-product answers from it; the legacy AI generator still writes it",
    "ai_fbt_config": "per-shop AI config read by /proxy/ai-bundles-for-product",
    "ai_bundle_events": "AI event tracking, still written",
    "ai_bundle_ab_assignments": "A/B assignments read by /proxy/ai-bundles-for-product",
}
#: Stages in which reads already come from V2, so a cleanup does not switch them (unless forced).
V2_READ_STAGES: tuple[str, ...] = ("live", "rampdown", "complete")
_CLEANUP = "Phase 5 cleanup"
#: How long the table move may wait for a lock before giving up (a 409 to retry, not a stalled fleet).
LOCK_TIMEOUT = "5s"


def _validation_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ok": bool(report["ok"]),
        "unmigratedCount": int(report["unmigratedCount"]),
        "discountMismatches": len(report["discountMismatches"]),
        "aiBundlesUnmigrated": int(report["aiBundles"]["unmigratedCount"]),
        "aiBundleStatusMismatches": len(report["aiBundles"]["statusMismatches"]),
        "autoBundleRulesUnmigrated": int(report["autoBundleRules"]["unmigratedCount"]),
        "failedCount": int(report["failedCount"]),
    }


async def _require_no_unfinished_jobs(conn: Conn) -> None:
    jobs = await tables_repo.unfinished_jobs(conn)
    if jobs:
        listed = ", ".join(f"{j['id']} ({j['kind']}, {j['status']})" for j in jobs[:5])
        raise Conflict(
            f"Unfinished migration jobs read the legacy tables: {listed}. Let them finish or cancel them "
            "(`shopibundle migrate cancel JOB`) first.",
            unfinishedJobs=[j["id"] for j in jobs],
        )


def _require_all_public(locations: Mapping[str, Location], action: str) -> None:
    archived = [t for t, where in locations.items() if where in ("archive", "both")]
    missing = [t for t, where in locations.items() if where == "missing"]
    if archived:
        raise Conflict(
            f"{action}: {', '.join(archived)} already in schema `{ARCHIVE_SCHEMA}`. "
            "`shopibundle cleanup restore` moves them back; a table in both schemas needs a person.",
            archivedTables=archived,
        )
    if missing:
        raise Conflict(
            f"{action}: legacy table(s) {', '.join(missing)} not found in any schema.", missingTables=missing
        )


async def phase5_cleanup(
    pool: asyncpg.Pool,
    *,
    actor: str,
    reason: str,
    force: bool = False,
    store: FlagStore | None = None,
    settings: Settings | None = None,
    propagation_wait_s: float = FLAG_PROPAGATION_WAIT_S,
) -> dict[str, Any]:
    """Plan Phase 5: dual write off (stage complete), then the migrated legacy tables into `archive`.

    `force` skips the validation and "reads already on V2" preconditions, never the others.
    """
    reason = require_reason(reason)
    env_override = env_source(store, settings)
    validation = await _cleanup_preconditions(pool, force)
    # 1. Stop dual writes (and make sure reads are on V2) everywhere, before any table moves.
    async with pool.acquire() as conn, conn.transaction():
        await tables_repo.lock_rollout(conn)
        written = await write_stage(conn, "complete", actor=actor, reason=f"phase 5 cleanup → complete: {reason}")
    if store is not None:
        await flags_view(pool, store, settings)
    # 2. Every replica applies flag changes within 1 s: after this, nobody starts a dual write.
    await asyncio.sleep(propagation_wait_s)
    # 3. The move, in one transaction; in-flight dual writes hold their table locks until they commit.
    archived_at = utcnow().isoformat(timespec="milliseconds") + "Z"
    moved = await _archive_tables(pool, actor=actor, reason=reason, archived_at=archived_at)
    warnings = env_warnings(env_override, STAGE_TABLE["complete"])
    if force and not validation["ok"]:
        warnings.append(f"Forced past a validation report that was not ok: {validation}.")
    log.info("phase 5 cleanup by %s: %s; archived %s", actor, reason, [m["table"] for m in moved])
    view = await flags_view(pool, store, settings)
    return {
        "action": "phase5_cleanup",
        "actor": actor,
        "reason": reason,
        "forced": force,
        "validation": validation,
        "archivedAt": archived_at,
        "archivedTables": moved,
        "keptTables": [{"table": t, "why": why} for t, why in KEPT_LEGACY_TABLES.items()],
        "changedFlags": [w["name"] for w in written],
        **view,
        "warnings": warnings,
    }


async def _cleanup_preconditions(pool: asyncpg.Pool, force: bool) -> dict[str, Any]:
    """Refuse (409) unless the tables are all in `public`, no job reads them, and, unless forced, the
    validation report is ok and reads are on V2 already. Returns the validation summary."""
    async with pool.acquire() as conn:
        _require_all_public(await legacy_table_locations(conn), _CLEANUP)
        await _require_no_unfinished_jobs(conn)
        stage_before = stage_of(await stored_states(conn))
    report = await build_validation_report(pool, None, list_limit=20)
    validation = _validation_summary(report)
    if force:
        return validation
    if not validation["ok"]:
        raise Conflict(
            "The validation report is not ok, so the legacy tables still hold something V2 lacks: "
            f"{validation}. Fix it (`shopibundle validate`), or pass force if the remainder is understood.",
            validation=validation,
        )
    if stage_before not in V2_READ_STAGES:
        raise Conflict(
            f"Reads are not on V2 yet (stage {stage_before}): Phase 4 (stage live, then rampdown) comes "
            "before the cleanup. Pass force to switch reads and archive in one go.",
            stage=stage_before,
        )
    return validation


async def _archive_tables(pool: asyncpg.Pool, *, actor: str, reason: str, archived_at: str) -> list[dict[str, Any]]:
    """The move itself, in one transaction under a short lock timeout, with every precondition
    checked again under the locks (a change made while replicas were waited for is caught here)."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            await tables_repo.lock_rollout(conn)
            await jobs_repo.lock_job_creation(conn)
            await tables_repo.set_lock_timeout(conn, LOCK_TIMEOUT)
            _require_all_public(await legacy_table_locations(conn), _CLEANUP)
            await _require_no_unfinished_jobs(conn)
            # FOR SHARE: a flag write (FOR UPDATE) now waits for this commit, so DUAL_WRITE cannot come back
            # on while the tables move.
            await tables_repo.lock_flags_for_share(conn)
            if stage_of(await stored_states(conn)) != "complete":
                raise Conflict(
                    "The flags left the `complete` stage while the cleanup waited for replicas; nothing was archived. "
                    "Check the flag audit log (`GET /admin/flags/audit`) and re-run the cleanup.",
                )
            await tables_repo.create_schema(conn, ARCHIVE_SCHEMA)
            moved: list[dict[str, Any]] = await tables_repo.move_tables(
                conn,
                ARCHIVED_LEGACY_TABLES,
                LIVE_SCHEMA,
                ARCHIVE_SCHEMA,
                {"archivedAt": archived_at, "archivedBy": actor, "reason": reason, "by": "shopibundle cleanup"},
            )
            return moved
    except asyncpg.LockNotAvailableError as exc:
        raise Conflict(
            f"Could not lock the legacy tables within {LOCK_TIMEOUT} (long transactions on them); nothing was "
            "archived, dual write stays off (stage complete). Retry the cleanup.",
        ) from exc


async def restore_from_archive(
    pool: asyncpg.Pool,
    *,
    actor: str,
    reason: str,
    store: FlagStore | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Move the archived legacy tables back to `public` and turn DUAL_WRITE on, in one transaction."""
    reason = require_reason(reason)
    env_override = env_source(store, settings)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await tables_repo.lock_rollout(conn)
            await tables_repo.set_lock_timeout(conn, LOCK_TIMEOUT)
            locations = await legacy_table_locations(conn)
            both = [t for t, where in locations.items() if where == "both"]
            if both:
                raise Conflict(
                    f"{', '.join(both)} exist in both `public` and `{ARCHIVE_SCHEMA}`: compare them and drop or "
                    "rename one by hand; nothing was moved.",
                    tables=both,
                )
            to_restore = [t for t, where in locations.items() if where == "archive"]
            if not to_restore:
                raise Conflict("Nothing to restore: the legacy tables are not archived.", legacyTables=locations)
            marks = [await tables_repo.read_comment(conn, ARCHIVE_SCHEMA, t) for t in to_restore]
            archived_at_text = min((m["archivedAt"] for m in marks if m and m.get("archivedAt")), default=None)
            restored_at = utcnow().isoformat(timespec="milliseconds") + "Z"
            note = {
                "archivedAt": archived_at_text,
                "restoredAt": restored_at,
                "restoredBy": actor,
                "note": "V2 writes between archivedAt and restoredAt are not in this table (dual write was off)",
            }
            moved = await tables_repo.move_tables(
                conn, to_restore, ARCHIVE_SCHEMA, LIVE_SCHEMA, note if archived_at_text else None
            )
            written = await write_flags(
                conn,
                {Flag.DUAL_WRITE: dual_write_on},
                actor=actor,
                reason=f"restore from archive → DUAL_WRITE on: {reason}",
            )
            changed = 0
            if archived_at_text:
                since = datetime.fromisoformat(archived_at_text.rstrip("Z"))
                changed = await tables_repo.count_bundles_changed_since(conn, since)
    except asyncpg.LockNotAvailableError as exc:
        raise Conflict(f"Could not lock the archived tables within {LOCK_TIMEOUT}; nothing moved. Retry.") from exc
    warnings = env_warnings(env_override, {Flag.DUAL_WRITE: True})
    if changed:
        warnings.append(
            f"{changed} V2 bundle(s) were created or changed while the legacy tables were archived (and deletions "
            "are not counted): the legacy tables do not have those changes. Reads stay on V2; do not roll reads "
            "back to legacy before reconciling."
        )
    log.info("restore from archive by %s: %s; restored %s", actor, reason, to_restore)
    view = await flags_view(pool, store, settings)
    return {
        "action": "restore_from_archive",
        "actor": actor,
        "reason": reason,
        "restoredTables": moved,
        "archivedAt": archived_at_text,
        "bundlesChangedWhileArchived": changed,
        "changedFlags": [w["name"] for w in written],
        **view,
        "warnings": warnings,
    }
