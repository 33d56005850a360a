"""Guarded rollouts, the person's side: start (or dry-run) a rollout, read it, pause, resume, abort.

The driver (`app.services.rollouts.driver`) moves the shops; everything here only writes the
rollout's rows. docs/feature-flags.md, "Guarded rollouts", has the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from app.core.container import Container
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.ids import new_id
from app.core.time import as_utc, naive_utc, utcnow
from app.repos import rollouts as repo
from app.repos.base import Conn, Executor
from app.repos.runner import run_read, run_transaction
from app.rules.cursors import decode_keyset_cursor, encode_cursor
from app.rules.flags import Flag, rollout_bucket
from app.rules.rollouts import DEFAULT_WAVE_SIZE, UNFINISHED, Guards, RolloutStatus, next_stage
from app.rules.stages import Stage
from app.schemas.rollouts import CreateRolloutIn
from app.services.cutover.guard import require_legacy_tables
from app.services.flags.snapshot import FlagStore
from app.services.rollouts.stages import effective_stage

__all__ = [
    "RolloutConflict",
    "abort_rollout",
    "create_rollout",
    "get_rollout",
    "list_rollouts",
    "pause_rollout",
    "resume_rollout",
    "rollout_view",
]

#: The hash bucket a percentage selects by: the same stable bucket as the flag that switches reads.
PERCENT_FLAG = Flag.V2_BUNDLE_ENGINE


class RolloutConflict(Conflict):
    """409: an unfinished rollout already covers one of the shops."""

    def __init__(self, covered: Sequence[dict[str, Any]]) -> None:
        names = ", ".join(f"{c['shop']} ({c['rolloutId']})" for c in covered) or "one of the shops"
        super().__init__(
            f"An unfinished rollout already covers {names}: pause/abort it or leave these shops out.",
            coveredShops=[dict(c) for c in covered],
        )


def status_url(rollout_id: str) -> str:
    return f"/admin/rollouts/{rollout_id}"


def _path(stage: str, target: Stage) -> list[str]:
    out: list[str] = []
    current: str = stage
    while (step := next_stage(current, target)) is not None:
        out.append(step)
        current = step
    return out


async def _select_shops(conn: Executor, shops: Sequence[str] | None, percent: int | None) -> list[str]:
    if shops is not None:
        return list(dict.fromkeys(shops))  # order kept (it is the wave order), duplicates dropped
    assert percent is not None
    known = await repo.known_shops(conn)
    return [s for s in known if rollout_bucket(PERCENT_FLAG, s) < percent]


async def create_rollout(
    container: Container, store: FlagStore, body: CreateRolloutIn, *, actor: str
) -> dict[str, Any]:
    """Plan (and unless `dryRun`, store) a rollout. Returns the created rollout's `{id, status,
    statusUrl}`, or for a dry run the plan: each shop's stage now, the stages it would walk, its wave.
    The request body is the one the API and `shopibundle rollout start` both validate."""
    target_stage: Stage = body.targetStage
    reason, shops, percent, dry_run = body.reason, body.shops, body.percent, body.dryRun
    wave_size = body.waveSize
    guards = body.guards.model_dump(exclude_none=True) if body.guards else None
    if (shops is None) == (percent is None):
        raise ValidationFailed(
            "Give either shops or percent.",
            errors=[{"field": "body.shops", "message": "exactly one of shops, percent"}],
        )
    if not reason.strip():
        raise ValidationFailed(
            "A reason is required.", errors=[{"field": "body.reason", "message": "must not be blank"}]
        )
    resolved = Guards.from_api(guards)
    size = wave_size or DEFAULT_WAVE_SIZE
    rollout_id = new_id()
    now = utcnow()

    async def work(conn: Executor) -> dict[str, Any]:
        await require_legacy_tables(
            cast(Conn, conn), "A guarded rollout (it walks through dual writes and shadow reads)"
        )
        selected = await _select_shops(conn, shops, percent)
        if not selected:
            raise ValidationFailed(
                "No shop selected.", errors=[{"field": "body.percent", "message": "selects no known shop"}]
            )
        covered = await repo.covering(conn, selected)
        if covered:
            raise RolloutConflict(covered)
        plan: list[dict[str, Any]] = []
        for position, shop in enumerate(selected):
            stage, _, _ = effective_stage(store, shop)
            plan.append({"shop": shop, "stage": stage, "wave": position // size, "path": _path(stage, target_stage)})
        if dry_run:
            return {
                "dryRun": True,
                "targetStage": target_stage,
                "waveSize": size,
                "guards": resolved.to_api(),
                "waves": (len(selected) + size - 1) // size,
                "shops": plan,
            }
        await repo.insert_rollout(
            conn,
            rollout_id=rollout_id,
            target_stage=target_stage,
            guards=resolved.to_api(),
            wave_size=size,
            percent=percent,
            reason=reason.strip(),
            created_by=actor,
            now=now,
        )
        await repo.insert_shops(conn, rollout_id, [(p["shop"], p["stage"]) for p in plan], now)
        return {"id": rollout_id, "status": "running", "statusUrl": status_url(rollout_id)}

    # two rollouts racing for a shop: the partial unique index decides, the loser gets the 409
    conflicts = {repo.ACTIVE_SHOP_KEY: lambda: RolloutConflict([])}
    return await run_transaction(container.pool, work, conflicts=conflicts)


def _shop_view(row: dict[str, Any], wave_size: int) -> dict[str, Any]:
    return {
        "shop": row["shop"],
        "stage": row["stage"],
        "state": row["state"],
        "since": as_utc(row["since"]),
        "wave": row["position"] // max(wave_size, 1),
        "guards": row["guardValues"] or [],
        "lastTransition": row["lastTransition"],
    }


def rollout_view(rollout: dict[str, Any], shops: Sequence[dict[str, Any]]) -> dict[str, Any]:
    size = rollout["waveSize"] or DEFAULT_WAVE_SIZE
    return {
        "id": rollout["id"],
        "status": rollout["status"],
        "targetStage": rollout["targetStage"],
        "guards": Guards.from_api(rollout["guards"]).to_api(),
        "waveSize": size,
        "percent": rollout["percent"],
        "reason": rollout["reason"],
        "createdBy": rollout["createdBy"],
        "createdAt": as_utc(rollout["createdAt"]),
        "updatedAt": as_utc(rollout["updatedAt"]),
        "finishedAt": as_utc(rollout["finishedAt"]),
        "shops": [_shop_view(s, size) for s in shops if s["rolloutId"] == rollout["id"]],
    }


class NoSuchRollout(NotFound):
    def __init__(self, rollout_id: str) -> None:
        super().__init__(f"No rollout {rollout_id!r}.")


async def get_rollout(container: Container, rollout_id: str) -> dict[str, Any]:
    async def work(conn: Executor) -> dict[str, Any]:
        rollout = await repo.get_rollout(conn, rollout_id)
        if rollout is None:
            raise NoSuchRollout(rollout_id)
        return rollout_view(rollout, await repo.shops_of(conn, [rollout_id]))

    return await run_read(container.pool, work)


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    at, key = decode_keyset_cursor(cursor, "rollout", key_type=str)
    return at, str(key)


async def list_rollouts(container: Container, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """Newest first, with their shops."""
    before = _decode_cursor(cursor) if cursor else None

    async def work(conn: Executor) -> dict[str, Any]:
        rows = await repo.list_rollouts(conn, limit=limit + 1, before=before)
        page = rows[:limit]
        shops = await repo.shops_of(conn, [r["id"] for r in page])
        items = [rollout_view(r, shops) for r in page]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor("rollout", page[-1]["id"], naive_utc(page[-1]["createdAt"]))
        return {"items": items, "nextCursor": next_cursor}

    return await run_read(container.pool, work)


async def _change_status(
    container: Container,
    rollout_id: str,
    *,
    allowed_from: tuple[RolloutStatus, ...],
    to: RolloutStatus,
    actor: str,
    action: str,
) -> dict[str, Any]:
    now = utcnow()

    async def work(conn: Executor) -> dict[str, Any]:
        rollout = await repo.get_rollout(conn, rollout_id, lock=True)
        if rollout is None:
            raise NoSuchRollout(rollout_id)
        status = rollout["status"]
        if status not in allowed_from and status != to:
            raise Conflict(f"Rollout {rollout_id} is {status}: it cannot be {action}d.", rolloutStatus=status)
        if status != to:
            await repo.set_status(conn, rollout_id, to, finished=to not in UNFINISHED, now=now)
        if to == "running":
            await repo.resume_rolled_back(
                conn,
                rollout_id,
                {
                    "from": "rolled_back",
                    "to": "observing",
                    "at": as_utc(now).isoformat(),
                    "reason": f"resumed by {actor}",
                },
                now,
            )
        updated = await repo.get_rollout(conn, rollout_id)
        assert updated is not None
        return rollout_view(updated, await repo.shops_of(conn, [rollout_id]))

    return await run_transaction(container.pool, work)


async def pause_rollout(container: Container, rollout_id: str, *, actor: str) -> dict[str, Any]:
    """No shop advances any more; step-backs stay armed."""
    return await _change_status(
        container, rollout_id, allowed_from=("running",), to="paused", actor=actor, action="pause"
    )


async def resume_rollout(container: Container, rollout_id: str, *, actor: str) -> dict[str, Any]:
    """Advances again; rolled-back shops observe again from now."""
    return await _change_status(
        container, rollout_id, allowed_from=("paused", "running"), to="running", actor=actor, action="resume"
    )


async def abort_rollout(container: Container, rollout_id: str, *, actor: str) -> dict[str, Any]:
    """Stops the rollout for good: every shop stays on the stage it has (its per-shop flags stay),
    nothing moves it any more, and its shops are free for another rollout."""
    return await _change_status(
        container, rollout_id, allowed_from=("running", "paused"), to="aborted", actor=actor, action="abort"
    )
