"""Rollbacks and the Phase 5 cleanup: the plan's "Rollback Procedure" and "Phase 5: Cleanup" as
operations of this service (`shopibundle rollback|cleanup ...`, `POST /admin/rollback|cleanup`).

The runbook (docs/runbook.md) says when to use which; this docstring says what each one does and why.

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

Concurrency: every operation takes one transaction-scoped advisory lock (`ROLLOUT_LOCK_KEY`), the
table move also the job-creation lock (so no job is planned against a table being moved), and the
move locks the flag rows FOR SHARE and re-checks them, so nobody turns DUAL_WRITE back on while the
tables go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import asyncpg

from app.core.config import FLAG_NAMES, Settings, get_settings
from app.core.db import asyncpg_connect_kwargs
from app.core.errors import BadRequest, Conflict, ValidationFailed
from app.core.migrations import current_revision, downgrade
from app.core.time import utcnow
from app.repos import flags as flag_repo
from app.repos import jobs as jobs_repo
from app.repos import legacy_tables as tables_repo
from app.repos.base import Conn
from app.repos.legacy_tables import ARCHIVE_SCHEMA, ARCHIVED_LEGACY_TABLES, LIVE_SCHEMA, Location
from app.rules.flags import DEFAULT_STATES, Flag, FlagState
from app.rules.stages import STAGE_TABLE, Stage, stage_of, stage_values
from app.services.consistency.v2_only import describe, v2_only_holdings
from app.services.cutover.guard import LegacyTablesArchived, require_legacy_tables
from app.services.flags.admin import migration_stage, write_flags_in_transaction
from app.services.flags.snapshot import FlagStore
from app.services.migration.validation import build_validation_report

log = logging.getLogger(__name__)

__all__ = [
    "ARCHIVED_LEGACY_TABLES",
    "ARCHIVE_SCHEMA",
    "BASELINE_REVISION",
    "FLAG_PROPAGATION_WAIT_S",
    "IMMEDIATE_ROLLBACK_STAGE",
    "KEPT_LEGACY_TABLES",
    "LegacyTablesArchived",
    "full_rollback",
    "immediate_rollback",
    "legacy_table_locations",
    "phase5_cleanup",
    "require_legacy_tables",
    "restore_from_archive",
    "rollback_preview",
    "rollout_status",
    "set_stage",
]

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
#: The position an immediate rollback moves the flags to (see the module docstring for the values).
IMMEDIATE_ROLLBACK_STAGE: Stage = "dualwrite"
#: Stages in which reads already come from V2, so a cleanup does not switch them (unless forced).
V2_READ_STAGES: tuple[str, ...] = ("live", "rampdown", "complete")
#: Every replica applies a flag change within 1 s (NOTIFY, 0.5 s poll as safety net): wait a bit more.
FLAG_PROPAGATION_WAIT_S = 1.5
#: How long the table move may wait for a lock before giving up (a 409 to retry, not a stalled fleet).
LOCK_TIMEOUT = "5s"
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


async def legacy_table_locations(conn: Conn) -> dict[str, Location]:
    """Where each archivable legacy table is: `public`, `archive`, `both` (needs a person) or `missing`."""
    return await tables_repo.locations(conn)


# ========================================================================================== flags

FlagChange = Callable[[FlagState], dict[str, Any]]


async def _write_flags(
    conn: Conn, changes: Mapping[str, FlagChange], *, actor: str, reason: str
) -> list[dict[str, Any]]:
    """The flag service's write (row + audit + NOTIFY per changed flag), inside the caller's
    transaction, so a flag change and a table move commit together or not at all.
    Returns `{name, old, new}` per flag written."""
    await _require_service_schema(conn)
    writes = await write_flags_in_transaction(conn, changes, actor=actor, reason=reason)
    return [
        {
            "name": w.new.name,
            "old": w.old if w.old is not None else DEFAULT_STATES[w.new.name].values(),
            "new": w.new.values(),
        }
        for w in writes
    ]


async def _write_stage(
    conn: Conn, stage: Stage, *, actor: str, reason: str, sample_rate: float | None = None
) -> list[dict[str, Any]]:
    def change(old: FlagState) -> dict[str, Any]:
        return stage_values(stage, old, sample_rate)

    return await _write_flags(conn, dict.fromkeys(FLAG_NAMES, change), actor=actor, reason=reason)


def _dual_write_on(old: FlagState) -> dict[str, Any]:
    values = old.values()
    values.update(enabled=True, rolloutPercent=100, shopOverrides={})
    return values


async def _require_service_schema(conn: Conn) -> None:
    """A clear 409 instead of "relation does not exist" on a database without the service's tables."""
    if not await tables_repo.table_exists(conn, "sb_feature_flags"):
        raise Conflict(
            "The service's tables are not in this database (after a full rollback, or never upgraded): "
            "run `shopibundle db upgrade` first."
        )


async def _stored_states(conn: Conn) -> dict[str, FlagState]:
    await _require_service_schema(conn)
    rows = await flag_repo.fetch_all(conn)
    states = dict(DEFAULT_STATES)
    states.update({row["name"]: FlagState.from_row(row) for row in rows if row["name"] in states})
    return states


async def _flags_view(pool: asyncpg.Pool, store: FlagStore | None, settings: Settings | None) -> dict[str, Any]:
    """`{stage, flags}` as `/admin/migration-stage` shows it. With the replica's store, reloaded
    first (this replica then serves the new values at once, not after its NOTIFY round trip);
    without one (CLI), built from the stored rows with this process's environment overrides."""
    if store is not None:
        try:
            await store.reload()
        except Exception as exc:  # the NOTIFY will still bring it; the view may lag by a tick
            log.warning("flag reload after a rollout change failed: %s", exc)
        return migration_stage(store)
    async with pool.acquire() as conn:
        states = await _stored_states(conn)
    view_store = FlagStore(settings or get_settings(), states.values())
    return migration_stage(view_store)


EnvOverride = Callable[[str], "bool | None"]


def _env_source(store: FlagStore | None, settings: Settings | None) -> EnvOverride:
    """Where this process's `FEATURE_FLAG_<NAME>` values come from (the replica's store, or settings)."""
    if store is not None:
        return store.env_override
    return (settings or get_settings()).flag_env_override


def _env_warnings(env_override: EnvOverride, expected: Mapping[str, bool]) -> list[str]:
    """Kill-switch variables of THIS process that contradict the position just written."""
    warnings = []
    for name, value in expected.items():
        env = env_override(name)
        if env is not None and env != value:
            warnings.append(
                f"FEATURE_FLAG_{name}={'true' if env else 'false'} is set in this process's environment and beats "
                f"the stored value; check every replica's environment too."
            )
    return warnings


def _require_reason(reason: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise ValidationFailed(
            "A reason is required.", errors=[{"field": "body.reason", "message": "must not be blank"}]
        )
    return text


def _was_fully_on(entry_old: Mapping[str, Any]) -> bool:
    overrides = entry_old.get("shopOverrides") or {}
    on = bool(entry_old.get("enabled")) or int(entry_old.get("rolloutPercent") or 0) >= 100
    return on and all(overrides.values())


# ==================================================================================== operations


async def rollout_status(
    pool: asyncpg.Pool, store: FlagStore | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Stage, flags and where the legacy tables are (for `shopibundle stage get`)."""
    view = await _flags_view(pool, store, settings)
    async with pool.acquire() as conn:
        locations = await legacy_table_locations(conn)
    return {**view, "legacyTables": locations}


async def set_stage(
    pool: asyncpg.Pool,
    stage: Stage,
    *,
    actor: str,
    reason: str,
    sample_rate: float | None = None,
    store: FlagStore | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """`PUT /admin/migration-stage` for the CLI (same values, same audit reason), plus one guard:
    while the legacy tables are archived only `complete` is allowed, since every other stage
    reads or writes them."""
    if stage not in STAGE_TABLE:
        raise ValidationFailed(f"Unknown stage {stage!r}.", errors=[{"field": "stage", "message": "unknown"}])
    reason = _require_reason(reason)
    if sample_rate is not None and not 0 < sample_rate <= 1:
        raise ValidationFailed("sampleRate must be in (0, 1].", errors=[{"field": "sampleRate", "message": "range"}])
    async with pool.acquire() as conn, conn.transaction():
        await tables_repo.lock_rollout(conn)
        if stage != "complete":
            await require_legacy_tables(conn, f"Stage {stage} (it reads or writes the legacy tables)")
        written = await _write_stage(
            conn, stage, actor=actor, reason=f"migration stage → {stage}: {reason}", sample_rate=sample_rate
        )
    view = await _flags_view(pool, store, settings)
    return {
        "action": "set_stage",
        "actor": actor,
        "reason": reason,
        "changedFlags": [w["name"] for w in written],
        **view,
        "warnings": _env_warnings(_env_source(store, settings), STAGE_TABLE[stage]),
    }


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
    reason = _require_reason(reason)
    env_override = _env_source(store, settings)
    async with pool.acquire() as conn, conn.transaction():
        await tables_repo.lock_rollout(conn)
        await require_legacy_tables(conn, "An immediate rollback (reads from the legacy tables)")
        holdings = await v2_only_holdings(conn)
        if holdings["total"] and not confirm:
            raise V2OnlyData(describe(holdings) + " Confirm to proceed.", v2Only=jsonable(holdings))
        before = await _stored_states(conn)
        written = await _write_stage(
            conn,
            IMMEDIATE_ROLLBACK_STAGE,
            actor=actor,
            reason=f"immediate rollback → {IMMEDIATE_ROLLBACK_STAGE}: {reason}",
        )
        stale = await tables_repo.read_comment(conn, LIVE_SCHEMA, ARCHIVED_LEGACY_TABLES[0])
    warnings = _env_warnings(env_override, STAGE_TABLE[IMMEDIATE_ROLLBACK_STAGE])
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
    view = await _flags_view(pool, store, settings)
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
    reason = _require_reason(reason)
    env_override = _env_source(store, settings)
    action = "Phase 5 cleanup"
    async with pool.acquire() as conn:
        _require_all_public(await legacy_table_locations(conn), action)
        await _require_no_unfinished_jobs(conn)
        stage_before = stage_of(await _stored_states(conn))
    report = await build_validation_report(pool, None, list_limit=20)
    validation = _validation_summary(report)
    if not force:
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
    # 1. Stop dual writes (and make sure reads are on V2) everywhere, before any table moves.
    async with pool.acquire() as conn, conn.transaction():
        await tables_repo.lock_rollout(conn)
        written = await _write_stage(conn, "complete", actor=actor, reason=f"phase 5 cleanup → complete: {reason}")
    if store is not None:
        await _flags_view(pool, store, settings)
    # 2. Every replica applies flag changes within 1 s: after this, nobody starts a dual write.
    await asyncio.sleep(propagation_wait_s)
    # 3. The move, in one transaction; in-flight dual writes hold their table locks until they commit.
    archived_at = utcnow().isoformat(timespec="milliseconds") + "Z"
    try:
        async with pool.acquire() as conn, conn.transaction():
            await tables_repo.lock_rollout(conn)
            await jobs_repo.lock_job_creation(conn)
            await tables_repo.set_lock_timeout(conn, LOCK_TIMEOUT)
            _require_all_public(await legacy_table_locations(conn), action)
            await _require_no_unfinished_jobs(conn)
            # FOR SHARE: a flag write (FOR UPDATE) now waits for this commit, so DUAL_WRITE cannot come back
            # on while the tables move; a change made during the wait above is caught here.
            await tables_repo.lock_flags_for_share(conn)
            if stage_of(await _stored_states(conn)) != "complete":
                raise Conflict(
                    "The flags left the `complete` stage while the cleanup waited for replicas; nothing was archived. "
                    "Check the flag audit log (`GET /admin/flags/audit`) and re-run the cleanup.",
                )
            await tables_repo.create_schema(conn, ARCHIVE_SCHEMA)
            moved = await tables_repo.move_tables(
                conn,
                ARCHIVED_LEGACY_TABLES,
                LIVE_SCHEMA,
                ARCHIVE_SCHEMA,
                {"archivedAt": archived_at, "archivedBy": actor, "reason": reason, "by": "shopibundle cleanup"},
            )
    except asyncpg.LockNotAvailableError as exc:
        raise Conflict(
            f"Could not lock the legacy tables within {LOCK_TIMEOUT} (long transactions on them); nothing was "
            "archived, dual write stays off (stage complete). Retry the cleanup.",
        ) from exc
    warnings = _env_warnings(env_override, STAGE_TABLE["complete"])
    if force and not validation["ok"]:
        warnings.append(f"Forced past a validation report that was not ok: {validation}.")
    log.info("phase 5 cleanup by %s: %s; archived %s", actor, reason, [m["table"] for m in moved])
    view = await _flags_view(pool, store, settings)
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


async def restore_from_archive(
    pool: asyncpg.Pool,
    *,
    actor: str,
    reason: str,
    store: FlagStore | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Move the archived legacy tables back to `public` and turn DUAL_WRITE on, in one transaction."""
    reason = _require_reason(reason)
    env_override = _env_source(store, settings)
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
            written = await _write_flags(
                conn,
                {Flag.DUAL_WRITE: _dual_write_on},
                actor=actor,
                reason=f"restore from archive → DUAL_WRITE on: {reason}",
            )
            changed = 0
            if archived_at_text:
                since = datetime.fromisoformat(archived_at_text.rstrip("Z"))
                changed = await tables_repo.count_bundles_changed_since(conn, since)
    except asyncpg.LockNotAvailableError as exc:
        raise Conflict(f"Could not lock the archived tables within {LOCK_TIMEOUT}; nothing moved. Retry.") from exc
    warnings = _env_warnings(env_override, {Flag.DUAL_WRITE: True})
    if changed:
        warnings.append(
            f"{changed} V2 bundle(s) were created or changed while the legacy tables were archived (and deletions "
            "are not counted): the legacy tables do not have those changes. Reads stay on V2; do not roll reads "
            "back to legacy before reconciling."
        )
    log.info("restore from archive by %s: %s; restored %s", actor, reason, to_restore)
    view = await _flags_view(pool, store, settings)
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
    reason = _require_reason(reason)
    conn = await asyncpg.connect(**kwargs)
    warnings: list[str] = []
    restored: list[dict[str, Any]] = []
    written: list[dict[str, Any]] = []
    service_backups: list[dict[str, Any]] = []
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
        async with conn.transaction():
            await tables_repo.lock_rollout(conn)
            locations = await legacy_table_locations(conn)
            archived = [t for t, where in locations.items() if where == "archive"]
            if archived:  # the legacy app needs them where Prisma put them
                restored = await tables_repo.move_tables(conn, archived, ARCHIVE_SCHEMA, LIVE_SCHEMA, None)
                warnings.append(
                    "The legacy tables were archived and are back in public; V2 writes made while they were archived "
                    "are only in the V2 backups."
                )
            if has_flags:
                written = await _write_stage(
                    conn,
                    IMMEDIATE_ROLLBACK_STAGE,
                    actor=actor,
                    reason=f"full rollback (before the downgrade): {reason}",
                )
        if has_flags:
            await asyncio.sleep(propagation_wait_s)  # replicas still running stop reading V2 first
        async with conn.transaction():
            service_backups = await tables_repo.backup_tables(conn, SERVICE_BACKUP_TABLES)
            if await tables_repo.table_exists(conn, "sb_outbox"):
                pending = await tables_repo.count_pending_outbox(conn)
                if pending:
                    warnings.append(
                        f"{pending} outbox row(s) were still pending: those Shopify changes were never made "
                        "(kept in sb_outbox_backup)."
                    )
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
