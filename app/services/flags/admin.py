"""Flag administration: the API's views of the replica snapshot, the migration stage, and writes.

Every flag write goes through `write_flags_in_transaction` (row, audit entry and NOTIFY in one
transaction), whether it comes from `PUT /admin/flags/{name}` or from a stage or rollout change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.core.config import FLAG_NAMES
from app.core.db import transaction
from app.core.time import as_utc, utcnow
from app.repos import flags as repo
from app.rules.flags import DEFAULT_STATES, FlagState, legacy_tables_need
from app.rules.stages import stage_of
from app.services.cutover.guard import require_legacy_tables
from app.services.flags.snapshot import FlagStore, UnknownFlag

# ========================================================================================== views


def flag_view(store: FlagStore, state: FlagState) -> dict[str, Any]:
    """The API shape of one flag (camelCase), including the replica's environment override."""
    return {
        "name": state.name,
        **state.values(),
        "envOverride": store.env_override(state.name),
        "updatedAt": as_utc(state.updated_at),
        "updatedBy": state.updated_by,
    }


def list_flags(store: FlagStore) -> list[dict[str, Any]]:
    """What this replica evaluates with (≤ one refresh interval behind the table)."""
    return [flag_view(store, state) for state in store.states()]


def get_flag(store: FlagStore, name: str) -> dict[str, Any]:
    return flag_view(store, store.state(name))


def evaluate_flag(store: FlagStore, name: str, shop: str | None) -> dict[str, Any]:
    result = store.evaluate(name, shop)
    return {"name": name, "shop": shop, "value": result.value, "reason": result.reason}


# ============================================================================================ writes

Change = Callable[[FlagState], dict[str, Any]]


@dataclass(frozen=True)
class FlagWrite:
    """One flag row written: the values before (None when the row did not exist) and the new state."""

    old: dict[str, Any] | None
    new: FlagState


async def write_flags_in_transaction(
    conn: repo.Conn, changes: Mapping[str, Change], *, actor: str, reason: str, skip_unchanged: bool = True
) -> list[FlagWrite]:
    """Row + audit entry + NOTIFY per changed flag, inside the caller's transaction.

    The one implementation of a flag write: the admin API uses it through `_write`, the rollout
    service inside its own transaction (a flag change and a table move commit together or not at all).
    A value that would read or write the legacy tables (`legacy_tables_need`) is refused with a 409
    while Phase 5 has them archived; the check runs after the row lock, so it cannot race a cleanup.
    Rows are locked in `FLAG_NAMES` order so two concurrent multi-flag writes cannot deadlock, and
    each `change` computes the new values from the locked row, so omitted fields keep what is stored
    now rather than what this replica last saw. NOTIFY is delivered at commit.
    """
    now = utcnow()
    written: list[FlagWrite] = []
    for name in FLAG_NAMES:
        change = changes.get(name)
        if change is None:
            continue
        row = await repo.lock_one(conn, name)
        old = FlagState.from_row(row) if row is not None else DEFAULT_STATES[name]
        new_values = change(old)
        if skip_unchanged and row is not None and new_values == old.values():
            continue
        need = legacy_tables_need(FlagState.from_row({"name": name, **new_values}))
        if need is not None:
            await require_legacy_tables(conn, f"Flag {need}")
        new_row = await repo.upsert(conn, name, new_values, updated_at=now, updated_by=actor)
        await repo.insert_audit(
            conn,
            flag_name=name,
            changed_by=actor,
            changed_at=now,
            old_value=old.values() if row is not None else None,
            new_value=new_values,
            reason=reason,
        )
        await repo.notify(conn, name)
        written.append(FlagWrite(old=old.values() if row is not None else None, new=FlagState.from_row(new_row)))
    return written


async def _write(
    store: FlagStore, changes: Mapping[str, Change], *, actor: str, reason: str, skip_unchanged: bool
) -> list[FlagState]:
    """`write_flags_in_transaction` in a transaction of its own, then applied to the local snapshot."""
    async with transaction(store.pool) as conn:
        writes = await write_flags_in_transaction(
            conn, changes, actor=actor, reason=reason, skip_unchanged=skip_unchanged
        )
    written = [w.new for w in writes]
    if written:
        store.apply(written)
    return written


async def update_flag(
    store: FlagStore,
    name: str,
    *,
    actor: str,
    reason: str,
    enabled: bool,
    rollout_percent: int | None = None,
    shop_overrides: Mapping[str, bool] | None = None,
    sample_rate: float | None = None,
) -> dict[str, Any]:
    """PUT semantics: `enabled` is set; omitted optional fields keep their stored value; a given
    `shop_overrides` replaces the whole map (send `{}` to clear it). Always audited, even when
    nothing changes, because the reason itself is worth keeping."""
    if name not in DEFAULT_STATES:
        raise UnknownFlag(name)

    def change(old: FlagState) -> dict[str, Any]:
        values = old.values()
        values["enabled"] = enabled
        if rollout_percent is not None:
            values["rolloutPercent"] = rollout_percent
        if shop_overrides is not None:
            values["shopOverrides"] = dict(sorted(shop_overrides.items()))
        if sample_rate is not None:
            values["sampleRate"] = sample_rate
        return values

    (state,) = await _write(store, {name: change}, actor=actor, reason=reason, skip_unchanged=False)
    return flag_view(store, state)


def migration_stage(store: FlagStore) -> dict[str, Any]:
    states = store.states()
    return {"stage": stage_of({s.name: s for s in states}), "flags": [flag_view(store, s) for s in states]}
