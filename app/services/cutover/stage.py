"""The migration stage: `set_stage`, the one implementation behind `PUT /admin/migration-stage` and
`shopibundle stage set`, and `rollout_status` (`shopibundle stage get`)."""

from __future__ import annotations

from typing import Any

import asyncpg

from app.core.config import Settings
from app.core.errors import ValidationFailed
from app.repos import legacy_tables as tables_repo
from app.rules.stages import STAGE_TABLE, Stage
from app.services.cutover.flag_writes import (
    env_source,
    env_warnings,
    flags_view,
    require_reason,
    write_stage,
)
from app.services.cutover.guard import legacy_table_locations, require_legacy_tables
from app.services.flags.snapshot import FlagStore


async def rollout_status(
    pool: asyncpg.Pool, store: FlagStore | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Stage, flags and where the legacy tables are (for `shopibundle stage get`)."""
    view = await flags_view(pool, store, settings)
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
    reason = require_reason(reason)
    if sample_rate is not None and not 0 < sample_rate <= 1:
        raise ValidationFailed("sampleRate must be in (0, 1].", errors=[{"field": "sampleRate", "message": "range"}])
    async with pool.acquire() as conn, conn.transaction():
        await tables_repo.lock_rollout(conn)
        if stage != "complete":
            await require_legacy_tables(conn, f"Stage {stage} (it reads or writes the legacy tables)")
        written = await write_stage(
            conn, stage, actor=actor, reason=f"migration stage → {stage}: {reason}", sample_rate=sample_rate
        )
    view = await flags_view(pool, store, settings)
    return {
        "action": "set_stage",
        "actor": actor,
        "reason": reason,
        "changedFlags": [w["name"] for w in written],
        **view,
        "warnings": env_warnings(env_source(store, settings), STAGE_TABLE[stage]),
    }
