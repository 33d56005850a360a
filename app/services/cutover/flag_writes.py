"""What every cutover operation shares: its flag writes, inside the operation's own transaction,
and the view it answers with.

Concurrency: every operation takes one transaction-scoped advisory lock (`lock_rollout`), the
table move also the job-creation lock (so no job is planned against a table being moved), and the
move locks the flag rows FOR SHARE and re-checks them, so nobody turns DUAL_WRITE back on while the
tables go. A flag change and a table move commit together or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from app.core.config import FLAG_NAMES, Settings, get_settings
from app.core.errors import Conflict, ValidationFailed
from app.repos import flags as flag_repo
from app.repos import legacy_tables as tables_repo
from app.repos.base import Conn
from app.rules.flags import DEFAULT_STATES, FlagState
from app.rules.stages import Stage, stage_values
from app.services.flags.admin import migration_stage, write_flags_in_transaction
from app.services.flags.snapshot import FlagStore

log = logging.getLogger(__name__)

#: Every replica applies a flag change within 1 s (NOTIFY, 0.5 s poll as safety net): wait a bit more.
FLAG_PROPAGATION_WAIT_S = 1.5


FlagChange = Callable[[FlagState], dict[str, Any]]


async def write_flags(
    conn: Conn, changes: Mapping[str, FlagChange], *, actor: str, reason: str
) -> list[dict[str, Any]]:
    """The flag service's write (row + audit + NOTIFY per changed flag), inside the caller's
    transaction, so a flag change and a table move commit together or not at all.
    Returns `{name, old, new}` per flag written."""
    await require_service_schema(conn)
    writes = await write_flags_in_transaction(conn, changes, actor=actor, reason=reason)
    return [
        {
            "name": w.new.name,
            "old": w.old if w.old is not None else DEFAULT_STATES[w.new.name].values(),
            "new": w.new.values(),
        }
        for w in writes
    ]


async def write_stage(
    conn: Conn, stage: Stage, *, actor: str, reason: str, sample_rate: float | None = None
) -> list[dict[str, Any]]:
    def change(old: FlagState) -> dict[str, Any]:
        return stage_values(stage, old, sample_rate)

    return await write_flags(conn, dict.fromkeys(FLAG_NAMES, change), actor=actor, reason=reason)


def dual_write_on(old: FlagState) -> dict[str, Any]:
    values = old.values()
    values.update(enabled=True, rolloutPercent=100, shopOverrides={})
    return values


async def require_service_schema(conn: Conn) -> None:
    """A clear 409 instead of "relation does not exist" on a database without the service's tables."""
    if not await tables_repo.table_exists(conn, "sb_feature_flags"):
        raise Conflict(
            "The service's tables are not in this database (after a full rollback, or never upgraded): "
            "run `shopibundle db upgrade` first."
        )


async def stored_states(conn: Conn) -> dict[str, FlagState]:
    await require_service_schema(conn)
    rows = await flag_repo.fetch_all(conn)
    states = dict(DEFAULT_STATES)
    states.update({row["name"]: FlagState.from_row(row) for row in rows if row["name"] in states})
    return states


async def flags_view(pool: asyncpg.Pool, store: FlagStore | None, settings: Settings | None) -> dict[str, Any]:
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
        states = await stored_states(conn)
    view_store = FlagStore(settings or get_settings(), states.values())
    return migration_stage(view_store)


EnvOverride = Callable[[str], "bool | None"]


def env_source(store: FlagStore | None, settings: Settings | None) -> EnvOverride:
    """Where this process's `FEATURE_FLAG_<NAME>` values come from (the replica's store, or settings)."""
    if store is not None:
        return store.env_override
    return (settings or get_settings()).flag_env_override


def env_warnings(env_override: EnvOverride, expected: Mapping[str, bool]) -> list[str]:
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


def require_reason(reason: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise ValidationFailed(
            "A reason is required.", errors=[{"field": "body.reason", "message": "must not be blank"}]
        )
    return text
