"""Per-shop stages: a shop's effective stage (its four flags) and the write that pins one shop to a stage.

A per-shop stage is nothing but per-shop overrides of the four flags (`shopOverrides[shop]` set to the
stage table's value of each flag), written through the one flag write (`write_flags_in_transaction`:
row, audit entry, NOTIFY), so every replica applies it within a second and the audit log tells it.
The global stage stays the default of every shop without overrides. Setting a global stage
(`PUT /admin/migration-stage`) clears every override, so it also ends every per-shop stage.
"""

from __future__ import annotations

from typing import Any, Literal

from app.core.config import FLAG_NAMES
from app.core.container import Container
from app.repos import flags as flag_repo
from app.repos import legacy_tables as tables_repo
from app.repos import rollouts as repo
from app.repos.base import Conn
from app.repos.runner import run_read
from app.rules.flags import FlagState
from app.rules.rollouts import stored_stage_of
from app.rules.stages import STAGE_TABLE, Stage, stage_of
from app.services.flags.admin import FlagWrite, write_flags_in_transaction
from app.services.flags.snapshot import FlagStore

Source = Literal["global", "percent", "shop_override", "rollout", "env"]


def _pin(shop: str, stage: Stage) -> dict[str, Any]:
    def change_for(name: str) -> Any:
        def change(old: FlagState) -> dict[str, Any]:
            values = old.values()
            overrides = dict(values["shopOverrides"])
            overrides[shop] = STAGE_TABLE[stage][name]
            values["shopOverrides"] = dict(sorted(overrides.items()))
            return values

        return change

    return {name: change_for(name) for name in FLAG_NAMES}


async def write_shop_stage(conn: Conn, shop: str, stage: Stage, *, actor: str, reason: str) -> list[FlagWrite]:
    """Pin `shop` to `stage` inside the caller's transaction (under the rollout advisory lock, so it
    never interleaves with a global stage change, a rollback or the Phase 5 cleanup). Only flags whose
    override changes are written, each audited with `reason`."""
    await tables_repo.lock_rollout(conn)
    return await write_flags_in_transaction(conn, _pin(shop, stage), actor=actor, reason=reason)


async def stored_stage(conn: Conn, shop: str) -> Stage | Literal["custom"]:
    """The stage the stored flags put `shop` on now (read in the caller's transaction)."""
    rows = await flag_repo.fetch_all(conn)
    return stored_stage_of({row["name"]: FlagState.from_row(row) for row in rows}, shop)


def effective_stage(store: FlagStore, shop: str) -> tuple[Stage | Literal["custom"], Source, list[dict[str, Any]]]:
    """The stage the shop's four flags evaluate to, where that comes from, and each flag's answer."""
    answers = {name: store.evaluate(name, shop) for name in FLAG_NAMES}
    stage: Stage | Literal["custom"] = "custom"
    for candidate, table in STAGE_TABLE.items():
        if all(answers[name].value is on for name, on in table.items()):
            stage = candidate
            break
    reasons = {a.reason for a in answers.values()}
    source: Source
    if "env" in reasons:
        source = "env"
    elif "shop_override" in reasons:
        source = "shop_override"
    elif "rollout" in reasons:
        source = "percent"
    else:
        source = "global"
    flags = [{"name": name, "value": a.value, "reason": a.reason} for name, a in answers.items()]
    return stage, source, flags


async def shop_stage(container: Container, store: FlagStore, shop: str) -> dict[str, Any]:
    """`GET /admin/shops/{shop}/stage`: effective stage, its source, the global stage, the rollout."""
    stage, source, flags = effective_stage(store, shop)
    row = await run_read(container.pool, lambda conn: repo.latest_for_shop(conn, shop))
    rollout: dict[str, Any] | None = None
    if row is not None:
        rollout = {
            "id": row["rolloutId"],
            "status": row["rolloutStatus"],
            "stage": row["stage"],
            "state": row["state"],
        }
        # overrides that a rollout wrote and nobody replaced since: the rollout is the source
        if source == "shop_override" and row["stage"] == stage:
            source = "rollout"
    return {
        "shop": shop,
        "stage": stage,
        "source": source,
        "globalStage": stage_of({s.name: s for s in store.states()}),
        "rolloutId": rollout["id"] if rollout and source == "rollout" else None,
        "rollout": rollout,
        "flags": flags,
    }
