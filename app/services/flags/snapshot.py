"""The replica's flag snapshot: what every request and background path evaluates flags with.

The rules themselves are pure (`app.rules.flags`); admin views and writes are `flags.admin`, the
audit log `flags.audit`. docs/feature-flags.md has the rules (evaluation order, rollout buckets,
stages, the default before a snapshot is loaded). In short: every replica keeps the four rows
in memory (a check is a dictionary look-up, never a query), each write NOTIFYs in its own
transaction and every replica LISTENs (plus a `FLAG_CACHE_TTL_S` poll as the safety net), a
failed reload keeps the last snapshot, and `FEATURE_FLAG_<NAME>` in the environment beats
everything stored (the kill switch).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import asyncpg

from app.core.config import FLAG_NAMES, Settings
from app.core.container import Container
from app.core.db import asyncpg_connect_kwargs, transaction
from app.core.errors import NotFound, NotReady
from app.core.metrics import FLAG_EVALUATIONS
from app.core.tasks import cancel_and_wait, wait_event
from app.core.time import utcnow
from app.repos import flags as repo
from app.rules.flags import (
    DEFAULT_STATES,
    Flag,
    FlagEvaluation,
    FlagState,
    evaluate_state,
)

log = logging.getLogger(__name__)

__all__ = [
    "FlagStore",
    "UnknownFlag",
    "flag_on",
    "is_on",
    "shadow_rate",
    "start_flags",
    "stop_flags",
]


#: Who the service writes as when it seeds a missing row.
SYSTEM_ACTOR = "system"
#: Application name of the LISTEN connection, so operators (and tests) can find it in pg_stat_activity.
LISTENER_APPLICATION_NAME = "shopibundle-flags"


class UnknownFlag(NotFound):
    """A flag name outside `Flag` (a 404 at the API; a programming error anywhere else)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown feature flag {name!r}; known flags: {', '.join(FLAG_NAMES)}.")


class FlagStore:
    """The replica's in-memory view of the flag table, kept fresh by LISTEN/NOTIFY plus polling.

    Reads (`evaluate`, `is_enabled`, `sample_rate`, `state`, `states`) are synchronous and touch
    no I/O. `start()` seeds missing rows, loads the snapshot and starts one background task that
    LISTENs on a dedicated connection and reloads on notification or every `FLAG_CACHE_TTL_S`.
    Constructed without `start()`, it is a pure rule engine over the given states, which is what
    the unit tests use.
    """

    RECONNECT_MAX_S = 5.0
    QUERY_TIMEOUT_S = 2.0

    def __init__(self, settings: Settings, states: Iterable[FlagState] = ()) -> None:
        self._settings = settings
        snapshot = dict(DEFAULT_STATES)
        for state in states:
            if state.name in snapshot:
                snapshot[state.name] = state
        self._states: Mapping[str, FlagState] = MappingProxyType(snapshot)
        self._tally: dict[tuple[str, bool, str], int] = {}
        self._pool: asyncpg.Pool | None = None
        self._database_url: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._dirty = asyncio.Event()
        self._listening = asyncio.Event()
        # Bumped by every local write; a reload that saw it move may hold pre-write rows and is dropped.
        self._local_writes = 0
        self._last_reload_monotonic: float | None = None
        self._reload_failures = 0

    # ----------------------------------------------------------------------------- reads (hot path)

    def env_override(self, name: str) -> bool | None:
        return self._settings.flag_env_override(name)

    def evaluate(self, name: str, shop: str | None = None) -> FlagEvaluation:
        """The flag's value for `shop` (None: the global answer) and which rule decided it."""
        state = self._states.get(name)
        if state is None:
            raise UnknownFlag(name)
        result = evaluate_state(state, shop, self._settings.flag_env_override(name))
        key = (state.name, result.value, result.reason)
        self._tally[key] = self._tally.get(key, 0) + 1
        return result

    def is_enabled(self, name: str, shop: str | None = None) -> bool:
        return self.evaluate(name, shop).value

    def sample_rate(self, name: str = Flag.SHADOW_READS, shop: str | None = None) -> float:
        """Fraction of reads to shadow for `shop`: the stored `sampleRate` when the flag is on for it, else 0."""
        if not self.evaluate(name, shop).value:
            return 0.0
        return self._states[name].sample_rate

    def state(self, name: str) -> FlagState:
        state = self._states.get(name)
        if state is None:
            raise UnknownFlag(name)
        return state

    def states(self) -> list[FlagState]:
        """All flags in `FLAG_NAMES` order."""
        snapshot = self._states
        return [snapshot[name] for name in FLAG_NAMES]

    @property
    def listening(self) -> bool:
        """True while the LISTEN connection is up (propagation in milliseconds, not polling time)."""
        return self._listening.is_set()

    @property
    def snapshot_age_s(self) -> float | None:
        """Seconds since the last successful reload (None before the first)."""
        if self._last_reload_monotonic is None:
            return None
        return time.monotonic() - self._last_reload_monotonic

    # ---------------------------------------------------------------------------- snapshot updates

    def replace(self, states: Iterable[FlagState]) -> None:
        """Swap in a complete snapshot (missing rows fall back to the defaults)."""
        snapshot = dict(DEFAULT_STATES)
        for state in states:
            if state.name in snapshot:
                snapshot[state.name] = state
        self._states = MappingProxyType(snapshot)

    def apply(self, states: Iterable[FlagState]) -> None:
        """A write this replica just committed: visible to the next request, without waiting for NOTIFY.

        A reload already in flight may have read the rows before this commit, so it is told to
        discard its result; and another replica may have committed after us, so a reload is
        requested right away rather than trusting our copy until the next tick.
        """
        snapshot = dict(self._states)
        for state in states:
            snapshot[state.name] = state
        self._local_writes += 1
        self._states = MappingProxyType(snapshot)
        self._dirty.set()

    async def reload(self, conn: repo.Conn | None = None) -> bool:
        """Reload the snapshot in one query. False when a local write raced it (a retry is queued).

        Uses `conn` (the listener's own connection) when given, else a pooled connection with an
        acquire timeout, so a pool exhausted by request traffic cannot stall propagation forever.
        """
        writes_before = self._local_writes
        if conn is not None:
            rows = await repo.fetch_all(conn, query_timeout=self.QUERY_TIMEOUT_S)
        else:
            async with self.pool.acquire(timeout=self.QUERY_TIMEOUT_S) as pooled:
                rows = await repo.fetch_all(pooled, query_timeout=self.QUERY_TIMEOUT_S)
        if self._local_writes != writes_before:
            self._dirty.set()
            return False
        self.replace(FlagState.from_row(row) for row in rows)
        self._last_reload_monotonic = time.monotonic()
        return True

    # -------------------------------------------------------------------------------------- metrics

    def flush_metrics(self) -> None:
        """Hand the evaluation tally to the OpenTelemetry counter.

        Counting in a plain dict and flushing once per refresh tick keeps the per-request cost at
        one dict update instead of an SDK call with attribute hashing and locking.
        """
        tally, self._tally = self._tally, {}
        for (name, value, reason), count in tally.items():
            FLAG_EVALUATIONS.add(count, {"flag": name, "value": "true" if value else "false", "reason": reason})

    # ------------------------------------------------------------------------------------ lifecycle

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise NotReady("The flag store is not connected to the database.")
        return self._pool

    async def start(self, pool: asyncpg.Pool, database_url: str) -> None:
        """Seed, load, then keep fresh. Fails (and so fails start-up) only if the first load fails."""
        self._pool = pool
        self._database_url = database_url
        await self._seed()
        await self.reload()
        self._task = asyncio.create_task(self._run(), name="flags-refresher")
        # Wait briefly for LISTEN so a change right after start-up is not left to polling;
        # if the listener cannot connect, polling still bounds propagation.
        await wait_event(self._listening, 5.0)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self.flush_metrics()

    async def _seed(self) -> None:
        """Create missing rows with the defaults; the replica that actually inserts one audits it."""
        now = utcnow()
        async with transaction(self.pool) as conn:
            for name in FLAG_NAMES:
                values = DEFAULT_STATES[name].values()
                if await repo.insert_missing(conn, name, values, updated_at=now, updated_by=SYSTEM_ACTOR):
                    await repo.insert_audit(
                        conn,
                        flag_name=name,
                        changed_by=SYSTEM_ACTOR,
                        changed_at=now,
                        old_value=None,
                        new_value=values,
                        reason="seeded default",
                    )
                    await repo.notify(conn, name)

    def _on_notify(self, *_: object) -> None:
        self._dirty.set()

    async def _connect_listener(self) -> asyncpg.Connection:
        assert self._database_url is not None
        conn: asyncpg.Connection = await asyncpg.connect(
            timeout=5.0,
            server_settings={"application_name": LISTENER_APPLICATION_NAME},
            **asyncpg_connect_kwargs(self._database_url),
        )
        try:
            # A server-side close wakes the loop at once instead of at the next tick.
            conn.add_termination_listener(lambda _conn: self._dirty.set())
            await conn.add_listener(repo.NOTIFY_CHANNEL, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _run(self) -> None:
        """One task owns the LISTEN connection and does every reload, so the connection never sees
        two operations at once. Each tick (a notification, or `FLAG_CACHE_TTL_S` of silence)
        reloads over that connection, which doubles as its liveness check; when it fails the
        connection is dropped and re-made with exponential backoff, and until then reloads go
        through the pool."""
        interval = max(0.05, self._settings.flag_cache_ttl_s)
        conn: asyncpg.Connection | None = None
        backoff, next_connect = 0.1, 0.0
        try:
            while True:
                if conn is not None and conn.is_closed():
                    log.warning("flag listener connection closed; reconnecting")
                    conn = None
                    self._listening.clear()
                if conn is None and time.monotonic() >= next_connect:
                    try:
                        conn = await self._connect_listener()
                        self._listening.set()
                        backoff = 0.1
                        self._dirty.set()  # notifications sent while we were away are gone: catch up
                    except Exception as exc:
                        log.warning("flag listener cannot connect (%s); retrying in about %.1fs", exc, backoff)
                        next_connect = time.monotonic() + backoff * (0.5 + random.random())
                        backoff = min(backoff * 2, self.RECONNECT_MAX_S)
                await wait_event(self._dirty, interval)
                # Cleared before the query: a notification arriving during it sets it again.
                self._dirty.clear()
                if conn is not None and conn.is_closed():
                    continue  # woken by the termination listener: reconnect first, then reload
                try:
                    await self.reload(conn)
                    if self._reload_failures:
                        log.info("flag snapshot reload recovered after %d failures", self._reload_failures)
                    self._reload_failures = 0
                except Exception as exc:  # whatever it is, the last good snapshot stays in use
                    self._reload_failures += 1
                    # First failure, then every ~30 s: enough to alert on without flooding the log.
                    if self._reload_failures == 1 or self._reload_failures % max(1, int(30 / interval)) == 0:
                        log.warning(
                            "flag snapshot reload failed (%d in a row), keeping the last one: %s",
                            self._reload_failures,
                            exc,
                        )
                    if conn is not None:  # the listener connection is suspect: re-make it
                        conn.terminate()
                        conn = None
                        self._listening.clear()
                self.flush_metrics()
        finally:
            self._listening.clear()
            if conn is not None and not conn.is_closed():
                conn.terminate()


def flag_on(store: FlagStore | None, settings: Settings, name: str, shop: str | None) -> bool:
    """THE flag lookup of the request and background paths: the replica's snapshot, or, while none
    is loaded (early start-up, a CLI process that did not start one), the documented defaults
    (`DEFAULT_STATES`: DUAL_WRITE on, everything else off; docs/feature-flags.md) with the
    `FEATURE_FLAG_<NAME>` kill switch still applied."""
    if store is not None:
        return store.is_enabled(name, shop)
    return evaluate_state(DEFAULT_STATES[name], shop, settings.flag_env_override(name)).value


def is_on(container: Container, name: str, shop: str | None) -> bool:
    """`flag_on` for the container's store."""
    return flag_on(container.flags, container.settings, name, shop)


def shadow_rate(container: Container, shop: str) -> float:
    """Fraction of reads to shadow for `shop`; without a loaded snapshot the default's `sampleRate`, 0.
    While a guarded rollout observes the shop with its own `sampleRate`, that rate (the replica's
    rollout driver keeps them, refreshed every tick; docs/feature-flags.md, "Guarded rollouts")."""
    store = container.flags
    if store is None:
        return 0.0
    driver = container.rollout_driver
    if driver is not None and store.is_enabled(Flag.SHADOW_READS, shop):
        observed = driver.sample_rates.get(shop)
        if observed is not None:
            return observed
    return store.sample_rate(Flag.SHADOW_READS, shop)


async def start_flags(container: Container) -> FlagStore:
    """Create and start the replica's flag store (called by `lifecycle.start`)."""
    store = FlagStore(container.settings)
    await store.start(container.pool, container.session_database_url)
    return store


async def stop_flags(container: Container) -> None:
    store = container.flags
    if isinstance(store, FlagStore):
        await store.stop()
