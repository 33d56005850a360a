"""Shadow comparisons off the response path: sampling, the bounded runner, confirm-or-transient, noise.

Used by the bundle API (app.services.bundles.reads), the storefront (app.services.storefront.reads) and
dual-write verification (app.services.consistency). What a comparison does:

1. The request decides whether it is sampled (`sampled`: `SHADOW_READS` on for the shop, then one
   random draw against the shop's sample rate) and, when it is, times its own read. Nothing else
   happens on the response path: the comparison is handed to the `EvidenceRunner`, a bounded set
   of background tasks (`SHADOW_MAX_IN_FLIGHT`; beyond it a comparison is dropped and counted,
   never queued, so a slow origin cannot build a backlog or hold memory).
2. In the background the other origin is read (and timed); both answers are reduced to the
   normalised projection (`rules.consistency.diff_fields` names what differs).
3. Equal → `match`. Different → re-read **both** origins `CONSISTENCY_RECHECK_DELAY_S` later (the
   wait is a separate task, holding no comparison slot): still different → `confirmed` (recorded
   with the fresh projections and the fields that differ); equal by then → `transient` (a write
   raced the two reads: dual writes change both stores in one transaction, so a real divergence
   persists and a race does not).
4. Every `CONSISTENCY_NOISE_EVERY`-th comparison of a shop (the first included, so at least
   1/N of them, per replica) also compares the legacy answer with a second legacy read: the
   `noise_match` / `noise_mismatch` baseline of the comparison itself.

Each outcome is one row of `sb_consistency_comparisons` (with the timed latencies), which is what
every replica's rollout guards read.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from app.core.container import Container
from app.core.errors import DomainError
from app.core.metrics import SHADOW_COMPARISONS, SHADOW_MISMATCHES
from app.core.tasks import stop_tasks
from app.core.time import naive_utc, utcnow
from app.repos import consistency as repo
from app.repos import runner
from app.repos import shadow as shadow_repo
from app.repos.base import Executor
from app.repos.consistency import ComparisonRow
from app.rules.consistency import (
    OUTCOME_CONFIRMED,
    OUTCOME_DIVERGENT,
    OUTCOME_ERROR,
    OUTCOME_MATCH,
    OUTCOME_NOISE_MATCH,
    OUTCOME_NOISE_MISMATCH,
    OUTCOME_TRANSIENT,
    OUTCOME_VERIFIED,
    diff_fields,
    field_label,
)
from app.services.flags import snapshot as flags

log = logging.getLogger(__name__)

#: Reads one origin again and returns its normalised projection (None: the origin has no answer).
Reread = Callable[[], Awaitable[Any]]
#: `verifier(container, shop, bundle_id)`: dual-write verification of one bundle (set at start-up by
#: the composition root, app.services.ops.lifecycle, since the verifier needs the bundle readers).
Verifier = Callable[[Container, str, str], Coroutine[Any, Any, None]]

ENDPOINT_VERIFY = "dual-write verification"
#: How often a replica deletes comparisons older than `CONSISTENCY_RETENTION_H`.
PRUNE_EVERY_S = 3600.0


class EvidenceRunner:
    """Background comparisons, at most `max_in_flight` at once (extra ones are dropped, not queued),
    and the delayed re-reads of mismatches (at most `4 * max_in_flight` waiting)."""

    def __init__(self, max_in_flight: int = 16) -> None:
        self.max_in_flight = max_in_flight
        self.verifier: Verifier | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._delayed: set[asyncio.Task[None]] = set()
        self._noise_counters: dict[str, int] = {}
        self._pruned_at: float | None = None

    def prune_due(self, every_s: float = PRUNE_EVERY_S) -> bool:
        """True at most once per `every_s` on this replica (the first call included)."""
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < every_s:
            return False
        self._pruned_at = now
        return True

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def submit(self, endpoint: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Start `factory()` in the background unless `max_in_flight` comparisons already run."""
        if len(self._tasks) >= self.max_in_flight:
            SHADOW_COMPARISONS.add(1, {"endpoint": endpoint, "outcome": "dropped"})
            return False
        task = asyncio.create_task(self._guarded(endpoint, factory()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def submit_later(self, delay_s: float, endpoint: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run `factory()` after `delay_s` (the wait holds no comparison slot)."""
        if len(self._delayed) >= 4 * self.max_in_flight:
            SHADOW_COMPARISONS.add(1, {"endpoint": endpoint, "outcome": "dropped"})
            return False

        async def later() -> None:
            await asyncio.sleep(delay_s)
            await factory()

        task = asyncio.create_task(self._guarded(endpoint, later()))
        self._delayed.add(task)
        task.add_done_callback(self._delayed.discard)
        return True

    def take_noise_turn(self, shop: str, every: int) -> bool:
        """True for the 1st, (every+1)-th, ... comparison of `shop` on this replica."""
        count = self._noise_counters.get(shop, 0)
        if len(self._noise_counters) > 100_000:  # bounded: an idle shop's counter is cheap to restart
            self._noise_counters.clear()
        self._noise_counters[shop] = count + 1
        return count % max(1, every) == 0

    @staticmethod
    async def _guarded(endpoint: str, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            SHADOW_COMPARISONS.add(1, {"endpoint": endpoint, "outcome": "error"})
            log.warning("shadow comparison failed", exc_info=True)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for running comparisons and pending re-reads (tests; graceful shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self._tasks or self._delayed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.wait([*self._tasks, *self._delayed], timeout=remaining)

    async def close(self) -> None:
        """Cancel what is still running, with no grace: a comparison is evidence, not work to finish,
        and one stuck in a retry loop must not hold up shutdown (lifecycle bounds the wait)."""
        await stop_tasks([*self._tasks, *self._delayed], grace_s=0)


def get_runner(container: Container) -> EvidenceRunner:
    found = container.shadow_runner
    if found is None:
        found = container.shadow_runner = EvidenceRunner(container.settings.shadow_max_in_flight)
    return found


def sampled(container: Container, shop: str) -> bool:
    """The request's sampling decision: an in-memory flag look-up and one random draw."""
    if not flags.is_on(container, "SHADOW_READS", shop):
        return False
    try:
        rate = flags.shadow_rate(container, shop)
    except Exception:  # a broken flag store must not break reads
        log.warning("SHADOW_READS sample rate unavailable", exc_info=True)
        return False
    return rate > 0 and random.random() < rate


async def timed(read: Reread) -> tuple[Any, float]:
    """(answer, milliseconds) of one read."""
    started = time.perf_counter()
    answer = await read()
    return answer, (time.perf_counter() - started) * 1000.0


async def record(container: Container, row: ComparisonRow) -> None:
    """Store one comparison (and count it); a confirmed shadow-read mismatch also goes to the
    shadow-mismatch log (`GET /admin/shadow-mismatches`; divergences are in the consistency report)."""
    SHADOW_COMPARISONS.add(1, {"endpoint": row.endpoint, "outcome": row.outcome})
    now = naive_utc(utcnow())
    logged = row.outcome == OUTCOME_CONFIRMED
    counted = row.outcome in (OUTCOME_CONFIRMED, OUTCOME_DIVERGENT)
    for label in dict.fromkeys(field_label(f) for f in row.fields or ()) if counted else ():
        SHADOW_MISMATCHES.add(1, {"field": label, "endpoint": row.endpoint})

    async def write(conn: Executor) -> None:
        await repo.insert(conn, row, now)
        if logged:
            await shadow_repo.insert_mismatch(
                conn,
                shop=row.shop,
                endpoint=row.endpoint,
                bundle_key=row.bundle_key,
                fields=list(row.fields or ()),
                legacy=row.legacy if isinstance(row.legacy, dict) else None,
                v2=row.v2 if isinstance(row.v2, dict) else None,
                created_at=now,
            )

    await runner.run_transaction(container.pool, write)
    if get_runner(container).prune_due():
        cutoff = naive_utc(utcnow() - timedelta(hours=container.settings.consistency_retention_h))
        deleted = await runner.run_read(container.pool, lambda conn: repo.prune(conn, cutoff))
        log.info("pruned %d consistency comparisons older than %s", deleted, cutoff)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One shadow comparison: both projections (None: that origin has no answer), their timings,
    and how to read each origin again for the re-check and the noise baseline."""

    shop: str
    endpoint: str
    key: str | None
    legacy: Any
    v2: Any
    reread_legacy: Reread
    reread_v2: Reread
    legacy_ms: float | None = None
    v2_ms: float | None = None
    #: The legacy read of the re-check, past the legacy reader's metaobject cache (default:
    #: `reread_legacy`): a cached metaobject older than a write-through is not a divergence.
    fresh_legacy: Reread | None = None


async def settle(container: Container, c: Comparison) -> None:
    """Record `c` as a match, or re-check it later (confirmed | transient); maybe add a noise sample."""
    fields = diff_fields(c.legacy, c.v2)
    base = ComparisonRow(c.shop, c.endpoint, OUTCOME_MATCH, c.key, legacy_ms=c.legacy_ms, v2_ms=c.v2_ms)
    if not fields:
        await record(container, base)
    else:
        SHADOW_COMPARISONS.add(1, {"endpoint": c.endpoint, "outcome": "mismatch"})
        runner_ = get_runner(container)
        delay = container.settings.consistency_recheck_delay_s
        if not runner_.submit_later(delay, c.endpoint, lambda: _recheck(container, c, base, fields)):
            log.info("shadow re-check dropped for %s (%s)", c.shop, c.key)
    if get_runner(container).take_noise_turn(c.shop, container.settings.consistency_noise_every):
        control = await c.reread_legacy()
        noise = diff_fields(c.legacy, control)
        outcome = OUTCOME_NOISE_MISMATCH if noise else OUTCOME_NOISE_MATCH
        await record(
            container,
            ComparisonRow(
                c.shop,
                c.endpoint,
                outcome,
                c.key,
                fields=noise or None,
                legacy=c.legacy if noise else None,
                v2=control if noise else None,
            ),
        )


async def _recheck(container: Container, c: Comparison, base: ComparisonRow, first_fields: list[str]) -> None:
    legacy, v2 = await asyncio.gather((c.fresh_legacy or c.reread_legacy)(), c.reread_v2())
    fields = diff_fields(legacy, v2)
    if fields:
        await record(container, replace(base, outcome=OUTCOME_CONFIRMED, fields=fields, legacy=legacy, v2=v2))
    else:  # a write raced the first reads: keep what differed then, for the record
        await record(container, replace(base, outcome=OUTCOME_TRANSIENT, fields=first_fields, legacy=c.legacy, v2=c.v2))


async def verify_pair(
    container: Container, shop: str, key: str, legacy: Reread, v2: Reread, fresh_legacy: Reread | None = None
) -> bool:
    """Dual-write verification of one bundle, now: re-read both stores; a difference is re-read once
    more after the re-check delay (the legacy side with `fresh_legacy` when given) and recorded
    `divergent` (with its diff) if it persists, else `verified`. True when divergent."""
    first_legacy, first_v2 = await asyncio.gather(legacy(), v2())
    fields = diff_fields(first_legacy, first_v2)
    if fields:
        await asyncio.sleep(container.settings.consistency_recheck_delay_s)
        first_legacy, first_v2 = await asyncio.gather((fresh_legacy or legacy)(), v2())
        fields = diff_fields(first_legacy, first_v2)
    row = ComparisonRow(shop, ENDPOINT_VERIFY, OUTCOME_DIVERGENT if fields else OUTCOME_VERIFIED, key)
    if fields:
        row = replace(row, fields=fields, legacy=first_legacy, v2=first_v2)
    await record(container, row)
    return bool(fields)


def v2_read_failed(container: Container, shop: str, endpoint: str, key: str | None, exc: BaseException) -> None:
    """A sampled V2 read failed on the server's side (not a 4xx answer): an `error` row, in the
    background, for the guards' V2 error rate."""
    if isinstance(exc, DomainError) and exc.status < 500:
        return
    row = ComparisonRow(shop, endpoint, OUTCOME_ERROR, key, v2_error=True)
    get_runner(container).submit(endpoint, lambda: record(container, row))


def after_dual_write(container: Container, shop: str, bundle_id: str) -> None:
    """After a committed dual write: verify the bundle in the background (`CONSISTENCY_VERIFY_RATE`)."""
    runner_ = get_runner(container)
    verifier = runner_.verifier
    rate = container.settings.consistency_verify_rate
    if verifier is None or rate <= 0 or random.random() >= rate:
        return
    runner_.submit(ENDPOINT_VERIFY, lambda: verifier(container, shop, bundle_id))
