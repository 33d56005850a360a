"""The rollout driver: every replica, every `ROLLOUT_INTERVAL_S`, evaluates the shops of unfinished
rollouts and moves them (docs/feature-flags.md, "Guarded rollouts").

Safe to run on every replica at once:

* all state is in `sb_rollouts` / `sb_rollout_shops`, so a restarted replica (or another one) takes
  over where the last tick left off;
* a shop is evaluated under its row lock, taken with `FOR UPDATE SKIP LOCKED` (a shop another
  replica is evaluating is skipped this tick), and its transition is a compare-and-set on
  `(stage, state)` in the same transaction as the per-shop flag write and its audit entry: a
  transition happens once or not at all, never twice;
* the rollout's status is read `FOR SHARE` in that transaction, so once a pause has committed no
  shop advances;
* before a shop goes `live` every dual-written bundle of it is verified (a slow read of both stores):
  the shop is first marked `advancing` (committed), verified outside any lock, and moved to `live`
  only if its row is still `advancing` and nothing diverged. A replica that dies meanwhile leaves
  the row `advancing`; the next tick, on any replica, verifies again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, cast

from app.core.container import Container
from app.core.db import transaction
from app.core.errors import DomainError
from app.core.tasks import cancel_and_wait
from app.core.time import as_utc, utcnow
from app.repos import rollouts as repo
from app.repos.base import Conn
from app.rules.consistency import ConsistencyFigures
from app.rules.rollouts import (
    DEFAULT_WAVE_SIZE,
    Decision,
    Evidence,
    Guards,
    GuardValue,
    RolloutStatus,
    ShopState,
    decide,
    flags_guard,
    guard_values,
)
from app.rules.stages import Stage
from app.services import consistency
from app.services.migration.validation import build_validation_report
from app.services.rollouts.stages import stored_stage, write_shop_stage

log = logging.getLogger(__name__)

#: Who the flag audit names for automatic transitions (the reason names the rollout).
DRIVER_ACTOR = "rollout-driver"

FiguresFn = Callable[[Conn, str, datetime], Awaitable[ConsistencyFigures]]
VerifyFn = Callable[[Container, str], Awaitable[int]]


def transition_reason(rollout_id: str, shop: str, from_stage: str, to_stage: str, why: str) -> str:
    """The flag audit's reason of an automatic transition (tests and operators grep for it)."""
    return f"rollout {rollout_id}: {shop} {from_stage} → {to_stage}: {why}"


class RolloutDriver:
    """One per replica (`container.rollout_driver`), started with the other background services."""

    def __init__(
        self,
        container: Container,
        *,
        interval_s: float,
        validation_ttl_s: float,
        figures: FiguresFn = consistency.shop_figures,
        verify: VerifyFn = consistency.verify_shop,
    ) -> None:
        self.container = container
        self.interval_s = interval_s
        self.validation_ttl_s = validation_ttl_s
        self.figures = figures
        self.verify = verify
        self._validation: dict[str, tuple[float, bool | None]] = {}
        #: Shop → the shadow sample rate of the rollout observing it (`guards.sampleRate`), for
        #: `flags.snapshot.shadow_rate`; replaced whole at every tick (a dict read is atomic for readers).
        self.sample_rates: Mapping[str, float] = MappingProxyType({})
        self._task: asyncio.Task[None] | None = None
        self.transitions = 0  # this replica's, for logs and tests

    # ------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rollout-driver")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may come and go: try again next tick
                log.warning("rollout driver tick failed: %s", exc)
            await asyncio.sleep(self.interval_s)

    # ------------------------------------------------------------------------------------ tick
    async def tick(self) -> None:
        """Evaluate every shop of every unfinished rollout once."""
        async with self.container.pool.acquire() as conn:
            rollouts = await repo.unfinished_rollouts(conn)
            shops = await repo.shops_of(conn, [r["id"] for r in rollouts]) if rollouts else []
        self.sample_rates = MappingProxyType(_observed_sample_rates(rollouts, shops))
        for rollout in rollouts:
            rows = [s for s in shops if s["rolloutId"] == rollout["id"]]
            size = rollout["waveSize"] or DEFAULT_WAVE_SIZE
            open_wave = min((s["position"] // size for s in rows if s["state"] != "done"), default=None)
            for row in rows:
                wave_open = open_wave is not None and row["position"] // size <= open_wave
                if row["state"] == "waiting" and (not wave_open or rollout["status"] != "running"):
                    continue  # nothing can happen to it this tick
                try:
                    await self._evaluate(rollout, row["shop"], wave_open)
                except Exception as exc:  # e.g. the legacy tables archived meanwhile: this shop waits,
                    # the others are still evaluated (a step-back elsewhere must not wait for it)
                    log.warning("rollout %s, shop %s: %s", rollout["id"], row["shop"], exc)
            if rollout["status"] == "running":
                await self._complete_if_done(rollout["id"])

    async def _validation_ok(self, shop: str) -> bool | None:
        """The shop's validation report (the seed's checks), cached for `validation_ttl_s`."""
        cached = self._validation.get(shop)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.validation_ttl_s:
            return cached[1]
        try:
            report = await build_validation_report(self.container.pool, shop)
            ok: bool | None = bool(report.get("ok"))
        except DomainError as exc:
            log.warning("validation report of %s unavailable: %s", shop, exc)
            ok = None
        self._validation[shop] = (now, ok)
        return ok

    async def _evidence(self, conn: Conn, shop: str, since: datetime) -> Evidence:
        figures = await self.figures(conn, shop, as_utc(since))
        dwell = (utcnow() - since).total_seconds()
        return Evidence(figures=figures, validation_ok=await self._validation_ok(shop), dwell_seconds=dwell)

    async def _evaluate(self, rollout: dict[str, Any], shop: str, wave_open: bool) -> None:
        rollout_id = rollout["id"]
        guards = Guards.from_api(rollout["guards"])
        target: Stage = rollout["targetStage"]
        verify_needed = False
        async with transaction(self.container.pool) as conn:
            row = await repo.lock_shop(conn, rollout_id, shop)
            if row is None:  # another replica evaluates it, or the rollout finished
                return
            status = await repo.status_for_share(conn, rollout_id)
            if status not in ("running", "paused"):
                return
            stage, state = row["stage"], row["state"]
            current = await stored_stage(conn, shop)
            if state == "waiting":
                if current != stage:  # the flags moved before its wave started: it starts from there
                    moved = await self._set(conn, rollout_id, shop, (stage, state), current, state, [])
                    if not moved:
                        return
                    stage = current
            elif current != stage:
                await self._hold_for_drift(conn, rollout_id, shop, (stage, state), current)
                return
            if state == "advancing":
                verify_needed = True
            else:
                evidence = None if state == "waiting" else await self._evidence(conn, shop, row["since"])
                decision = decide(
                    stage=stage,
                    state=state,
                    target=target,
                    status=cast(RolloutStatus, status),
                    wave_open=wave_open,
                    guards=guards,
                    evidence=evidence,
                )
                if decision.action in ("advance",) and decision.to_stage == "live":
                    # verify every dual-written bundle first, outside this transaction
                    await self._set(conn, rollout_id, shop, (stage, state), stage, "advancing", decision.values)
                    verify_needed = True
                else:
                    await self._apply(conn, rollout_id, shop, (stage, state), decision)
        if verify_needed:
            await self._verify_then_go_live(rollout_id, shop, target, guards)

    async def _hold_for_drift(
        self, conn: Conn, rollout_id: str, shop: str, expected: tuple[str, str], current: str
    ) -> None:
        """Someone changed the shop's flags outside the rollout: hold it and write nothing for it."""
        if expected[1] != "held":
            log.warning(
                "rollout %s: %s is on %s by its flags, not %s: held (abort and start a new rollout to go on)",
                rollout_id,
                shop,
                current,
                expected[0],
            )
        await self._set(conn, rollout_id, shop, expected, expected[0], "held", [flags_guard(current, expected[0])])

    async def _set(
        self,
        conn: Conn,
        rollout_id: str,
        shop: str,
        expected: tuple[str, str],
        stage: str,
        state: str,
        values: tuple[GuardValue, ...] | list[GuardValue],
        *,
        since: datetime | None = None,
    ) -> bool:
        return await repo.transition(
            conn,
            rollout_id,
            shop,
            expected=expected,
            stage=stage,
            state=state,
            since=since,
            now=utcnow(),
            last_transition=None,
            guard_values=[v.to_api() for v in values],
        )

    async def _apply(
        self, conn: Conn, rollout_id: str, shop: str, expected: tuple[str, str], decision: Decision
    ) -> None:
        stage = expected[0]
        if decision.to_stage == stage or decision.action in ("none", "observe", "hold"):
            # a shop that starts is observed from now: its dwell and samples count from its start
            since = utcnow() if decision.action == "start" else None
            await self._set(conn, rollout_id, shop, expected, stage, decision.to_state, decision.values, since=since)
            return
        await self._move(conn, rollout_id, shop, expected, decision.to_stage, decision.to_state, decision)

    async def _move(
        self,
        conn: Conn,
        rollout_id: str,
        shop: str,
        expected: tuple[str, str],
        to_stage: str,
        to_state: ShopState,
        decision: Decision,
    ) -> None:
        """A stage transition: compare-and-set of the row, the per-shop flags and their audit, in the
        caller's transaction (all or nothing)."""
        now = utcnow()
        from_stage = expected[0]
        why = f"{decision.action}: {decision.reason}" if decision.reason else decision.action
        reason = transition_reason(rollout_id, shop, from_stage, to_stage, why)
        moved = await repo.transition(
            conn,
            rollout_id,
            shop,
            expected=expected,
            stage=to_stage,
            state=to_state,
            since=now,
            now=now,
            last_transition={"from": from_stage, "to": to_stage, "at": as_utc(now).isoformat(), "reason": why},
            guard_values=[v.to_api() for v in decision.values],
        )
        if not moved:  # someone else moved it: nothing to write
            return
        await write_shop_stage(conn, shop, cast(Stage, to_stage), actor=DRIVER_ACTOR, reason=reason)
        self.transitions += 1
        log.info("%s", reason)

    async def _verify_then_go_live(self, rollout_id: str, shop: str, target: Stage, guards: Guards) -> None:
        divergent = await self.verify(self.container, shop)
        async with transaction(self.container.pool) as conn:
            row = await repo.lock_shop(conn, rollout_id, shop)
            if row is None or row["state"] != "advancing":
                return
            status = await repo.status_for_share(conn, rollout_id)
            expected = (row["stage"], "advancing")
            current = await stored_stage(conn, shop)
            if current != row["stage"]:
                await self._hold_for_drift(conn, rollout_id, shop, expected, current)
                return
            evidence = await self._evidence(conn, shop, row["since"])
            values = tuple(guard_values(row["stage"], guards, evidence))
            verified = GuardValue("verifiedBeforeLive", float(divergent), 0.0, divergent == 0, 1)
            values = (*values, verified)
            if divergent or status != "running":
                why = (
                    f"dual-write verification before live: {divergent} divergent bundles"
                    if divergent
                    else "paused before going live"
                )
                state: ShopState = "held" if divergent else "observing"
                await self._set(conn, rollout_id, shop, expected, row["stage"], state, values)
                log.info("rollout %s: %s stays on %s: %s", rollout_id, shop, row["stage"], why)
                return
            decision = Decision(
                "advance",
                "live",
                "done" if target == "live" else "observing",
                "verified before live, " + ", ".join(f"{v.name}={v.value}" for v in values),
                values,
            )
            await self._move(conn, rollout_id, shop, expected, "live", decision.to_state, decision)

    async def _complete_if_done(self, rollout_id: str) -> None:
        async with transaction(self.container.pool) as conn:
            if not await repo.all_done(conn, rollout_id):
                return
            rollout = await repo.get_rollout(conn, rollout_id, lock=True)
            if rollout is None or rollout["status"] != "running" or not await repo.all_done(conn, rollout_id):
                return
            await repo.set_status(conn, rollout_id, "completed", finished=True, now=utcnow())
            log.info("rollout %s completed", rollout_id)


def _observed_sample_rates(rollouts: list[dict[str, Any]], shops: list[dict[str, Any]]) -> dict[str, float]:
    """Shop → `guards.sampleRate` of its unfinished rollout, for the shops it observes (started ones)."""
    rates = {r["id"]: Guards.from_api(r["guards"]).sample_rate for r in rollouts}
    return {
        s["shop"]: rate for s in shops if s["state"] != "waiting" and (rate := rates.get(s["rolloutId"])) is not None
    }


async def start_driver(container: Container) -> None:
    """Start this replica's driver (lifecycle), unless `ROLLOUT_DRIVER` is off."""
    settings = container.settings
    if not settings.rollout_driver:
        return
    driver = RolloutDriver(
        container, interval_s=settings.rollout_interval_s, validation_ttl_s=settings.rollout_validation_ttl_s
    )
    container.rollout_driver = driver
    await driver.start()


async def stop_driver(container: Container) -> None:
    driver, container.rollout_driver = container.rollout_driver, None
    if driver is not None:
        await driver.stop()
