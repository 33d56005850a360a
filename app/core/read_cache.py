"""A bounded in-process cache of computed read answers, kept exact by database notifications.

Generic: it knows partitions (a shop), keys and values, not what they mean. The contract a user
of it must keep, and what the cache guarantees in return:

* **Writers notify.** Every transaction that changes what an answer of partition P was computed
  from runs `pg_notify(<channel>, P)` (database triggers do it, so no writer can forget); the
  payload `*` means "every partition". PostgreSQL delivers a notification only after its
  transaction commits, to every listening session, in commit order.
* **Readers take a token before computing.** `token(P)` records the partition's generation (and
  the cache's epoch); `put(P, key, value, token)` stores only if neither moved since. So an
  answer computed from a snapshot older than a write whose notification arrived meanwhile is
  never stored after that notification: it would otherwise stay stale until its deadline.
* **Entries expire.** Each entry has a safety TTL (monotonic clock) and, optionally, a wall-clock
  `valid_until`: the moment the answer changes by itself with no write (a pricing rule's window
  opening or closing). A hit is served only strictly before both.
* **Doubt clears everything.** The listener (`InvalidationListener`) owns one dedicated
  connection. Whenever it cannot vouch that every notification has been received (before the
  first LISTEN, on reconnect, when the connection dies or a heartbeat is not echoed in time) the
  cache is emptied and stops serving and storing until LISTEN is back. The heartbeat is itself a
  notification sent by the listener to its own channel: because notifications arrive in commit
  order, receiving it proves that every notification committed before it has been received, so
  a silently dead connection is noticed within `heartbeat_s + heartbeat_timeout_s`.

Bounded by entry count with least-recently-used eviction. Not thread-safe: one event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg

from app.core.db import asyncpg_connect_kwargs
from app.core.metrics import READ_CACHE_ENTRIES, READ_CACHE_INVALIDATIONS, READ_CACHE_LOOKUPS, READ_CACHE_STORES
from app.core.tasks import cancel_and_wait, wait_event

log = logging.getLogger(__name__)

__all__ = [
    "ALL_PARTITIONS",
    "InvalidationListener",
    "ReadCache",
    "ReadCacheToken",
]

V = TypeVar("V")

#: Notification payload that invalidates every partition (e.g. a TRUNCATE).
ALL_PARTITIONS = "*"
#: Payloads starting with this are the listeners' own heartbeats, never a partition: partition
#: names (shop domains) cannot start with it.
_MARKER_PREFIX = "~"


@dataclass(frozen=True, slots=True)
class ReadCacheToken:
    """What a reader records before computing: the cache epoch and the partition's generation."""

    epoch: int
    generation: int


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    expires_monotonic: float
    valid_until_wall: float  # +inf: no wall-clock boundary


class ReadCache(Generic[V]):
    """Answers keyed by (partition, key); see the module docstring for the contract.

    `serving` starts False when the cache is fed by a listener (`InvalidationListener` sets it once
    LISTEN is established): until then nothing is served or stored.
    """

    def __init__(
        self,
        name: str,
        *,
        max_entries: int = 100_000,
        ttl_s: float = 30.0,
        serving: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self.name = name
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._serving = serving
        self._entries: OrderedDict[tuple[str, Hashable], _Entry[V]] = OrderedDict()
        self._keys_of: dict[str, set[Hashable]] = {}
        # Generations only ever grow within an epoch; invalidate_all starts a new epoch and forgets
        # them (every token of the old epoch is refused), which also bounds this dict.
        self._epoch = 0
        self._generations: dict[str, int] = {}
        self._tally: dict[tuple[str, str, str], int] = {}
        # Cumulative look-up outcomes (tests read them); `flush_metrics` hands over the increments.
        self.hits = 0
        self.misses = 0
        self.expired = 0
        self._flushed = (0, 0, 0)

    # ------------------------------------------------------------------------------- hot path

    @property
    def serving(self) -> bool:
        return self._serving

    def get(self, partition: str, key: Hashable) -> V | None:
        """The stored answer, or None (absent, expired, or the cache is not serving)."""
        if not self._serving:
            self.misses += 1
            return None
        full_key = (partition, key)
        entry = self._entries.get(full_key)
        if entry is None:
            self.misses += 1
            return None
        if entry.expires_monotonic <= self._monotonic() or entry.valid_until_wall <= self._wall_clock():
            self._remove(partition, key)
            self.expired += 1
            return None
        self._entries.move_to_end(full_key)
        self.hits += 1
        return entry.value

    def token(self, partition: str) -> ReadCacheToken:
        """Record before computing an answer of `partition` (see `put`)."""
        return ReadCacheToken(self._epoch, self._generations.get(partition, 0))

    def put(
        self,
        partition: str,
        key: Hashable,
        value: V,
        token: ReadCacheToken,
        *,
        valid_until: float | None = None,
    ) -> bool:
        """Store `value` unless `partition` was invalidated since `token` was taken (or the cache is
        not serving). `valid_until`: wall-clock epoch seconds from which the answer may differ
        with no write; already past → not stored. True when stored."""
        if not self._serving or token != self.token(partition):
            self._count(("stores", "stale", ""))
            return False
        wall_deadline = float("inf") if valid_until is None else valid_until
        if wall_deadline <= self._wall_clock():
            self._count(("stores", "expired", ""))
            return False
        full_key = (partition, key)
        self._entries[full_key] = _Entry(value, self._monotonic() + self.ttl_s, wall_deadline)
        self._entries.move_to_end(full_key)
        self._keys_of.setdefault(partition, set()).add(key)
        while len(self._entries) > self.max_entries:
            (old_partition, old_key), _ = self._entries.popitem(last=False)
            self._forget_key(old_partition, old_key)
            self._count(("stores", "evicted", ""))
        self._count(("stores", "stored", ""))
        return True

    async def get_or_compute(
        self, partition: str, key: Hashable, compute: Callable[[], Awaitable[tuple[V, float | None]]]
    ) -> V:
        """The stored answer, else `compute()` → (answer, valid_until) stored under the contract
        above (token taken before computing). The computed answer is returned even when it is
        not stored: it is as fresh as an uncached read."""
        hit = self.get(partition, key)
        if hit is not None:
            return hit
        token = self.token(partition)
        value, valid_until = await compute()
        self.put(partition, key, value, token, valid_until=valid_until)
        return value

    # --------------------------------------------------------------------------- invalidation

    def invalidate(self, partition: str, reason: str = "notify") -> None:
        """Drop every answer of `partition` and refuse answers computed before now."""
        self._generations[partition] = self._generations.get(partition, 0) + 1
        for key in self._keys_of.pop(partition, ()):
            self._entries.pop((partition, key), None)
        self._count(("invalidations", "partition", reason))

    def invalidate_all(self, reason: str = "all") -> None:
        """Drop everything and refuse every answer computed before now."""
        self._epoch += 1
        self._generations.clear()
        self._entries.clear()
        self._keys_of.clear()
        self._count(("invalidations", "all", reason))

    def set_serving(self, serving: bool, reason: str) -> None:
        """Start or stop serving; either way everything held so far is dropped (it is in doubt)."""
        self.invalidate_all(reason)
        self._serving = serving

    # ------------------------------------------------------------------------------ inspection

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, full_key: object) -> bool:
        return full_key in self._entries

    def flush_metrics(self) -> None:
        """Hand the tallies to the OpenTelemetry instruments (called from the listener's tick)."""
        attrs = {"cache": self.name}
        current = (self.hits, self.misses, self.expired)
        for outcome, now, before in zip(("hit", "miss", "expired"), current, self._flushed, strict=True):
            if now > before:
                READ_CACHE_LOOKUPS.add(now - before, {**attrs, "outcome": outcome})
        self._flushed = current
        tally, self._tally = self._tally, {}
        for (instrument, first, second), count in tally.items():
            if instrument == "stores":
                READ_CACHE_STORES.add(count, {**attrs, "outcome": first})
            else:
                READ_CACHE_INVALIDATIONS.add(count, {**attrs, "scope": first, "reason": second})
        READ_CACHE_ENTRIES.set(len(self._entries), attrs)

    # -------------------------------------------------------------------------------- internals

    def _remove(self, partition: str, key: Hashable) -> None:
        self._entries.pop((partition, key), None)
        self._forget_key(partition, key)

    def _forget_key(self, partition: str, key: Hashable) -> None:
        keys = self._keys_of.get(partition)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._keys_of[partition]

    def _count(self, tally_key: tuple[str, str, str]) -> None:
        """(instrument, outcome or scope, reason) += 1, flushed by `flush_metrics`."""
        self._tally[tally_key] = self._tally.get(tally_key, 0) + 1


class InvalidationListener:
    """Feeds a `ReadCache` from LISTEN on `channel` over one dedicated connection (see module doc).

    Payload = a partition → `invalidate(partition)`; `*` → `invalidate_all()`; a payload starting
    with `~` is a heartbeat (ours is awaited, other replicas' are ignored). Every `heartbeat_s` a
    heartbeat goes round; not back within `heartbeat_timeout_s`, the cache stops serving (and is
    emptied) until it is back, and not back within `RECONNECT_AFTER_S` the connection is re-made.
    A late heartbeat alone loses nothing (the connection delivers in order), so a slow moment
    under load costs a cold cache, not a reconnect. Reconnects back off exponentially.
    """

    RECONNECT_MAX_S = 5.0
    RECONNECT_AFTER_S = 10.0

    def __init__(
        self,
        cache: ReadCache[Any],
        database_url: str,
        channel: str,
        *,
        application_name: str = "shopibundle-read-cache",
        heartbeat_s: float = 0.5,
        heartbeat_timeout_s: float = 0.5,
    ) -> None:
        self.cache = cache
        self.channel = channel
        self._database_url = database_url
        self._application_name = application_name
        self._heartbeat_s = heartbeat_s
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._marker_prefix = f"{_MARKER_PREFIX}{uuid.uuid4().hex[:12]}:"
        self._marker_seq = itertools.count()
        self._markers: dict[str, asyncio.Future[None]] = {}
        self._conn: asyncpg.Connection | None = None
        self._conn_lock = asyncio.Lock()
        self._lost = asyncio.Event()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: How many times LISTEN was established (tests and logs: each one started from an empty cache).
        self.connects = 0
        cache.set_serving(False, "listener_start")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, wait_s: float = 5.0) -> None:
        """Start the background task; wait up to `wait_s` for LISTEN (until then: no caching)."""
        self._task = asyncio.create_task(self._run(), name=f"read-cache-listener:{self.channel}")
        await wait_event(self._connected, wait_s)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self.cache.flush_metrics()

    async def sync(self, timeout_s: float = 5.0) -> None:
        """Return once every notification committed before this call has been applied to the cache
        (a marker sent through the channel comes back after them: delivery is in commit order).
        Raises `TimeoutError`, or `ConnectionError` while not listening."""
        conn = self._conn
        if conn is None or not self.connected:
            raise ConnectionError("the read-cache listener is not connected")
        async with asyncio.timeout(timeout_s):
            await self._send_marker(conn)

    def terminate_connection(self) -> None:
        """Drop the LISTEN connection as a network fault would (tests and chaos tooling)."""
        conn = self._conn
        if conn is not None:
            conn.terminate()
            self._on_termination(conn)

    # ------------------------------------------------------------------------------ internals

    def _on_notify(self, _conn: object, _pid: int, _channel: str, raw: object) -> None:
        payload = str(raw)
        if payload.startswith(_MARKER_PREFIX):
            waiter = self._markers.pop(payload, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        if payload == ALL_PARTITIONS:
            self.cache.invalidate_all("notify_all")
        else:
            self.cache.invalidate(payload)

    def _on_termination(self, _conn: object) -> None:
        # Stop serving at once: the loop notices `_lost` only at its next wake-up.
        if self.cache.serving:
            self.cache.set_serving(False, "listener_lost")
        self._connected.clear()
        self._lost.set()
        for waiter in self._markers.values():  # their markers will never come back: reconnect now
            if not waiter.done():
                waiter.set_exception(ConnectionError("the read-cache listener connection was lost"))

    async def _send_marker(self, conn: asyncpg.Connection) -> None:
        """Notify our own marker and wait until it comes back (no timeout of its own)."""
        marker = f"{self._marker_prefix}{next(self._marker_seq)}"
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._markers[marker] = waiter
        try:
            async with self._conn_lock:
                await conn.execute("SELECT pg_notify($1, $2)", self.channel, marker)
            await waiter
        finally:
            self._markers.pop(marker, None)
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # failed by a lost connection before it was awaited: retrieved here

    async def _heartbeat(self, conn: asyncpg.Connection) -> None:
        beat = asyncio.ensure_future(self._send_marker(conn))
        try:
            try:
                async with asyncio.timeout(self._heartbeat_timeout_s):
                    await asyncio.shield(beat)
                return
            except TimeoutError:
                pass
            if self.cache.serving:
                log.info("read cache %s: heartbeat late; not serving until it is back", self.cache.name)
                self.cache.set_serving(False, "heartbeat_late")
            async with asyncio.timeout(self.RECONNECT_AFTER_S):  # else: reconnect
                await asyncio.shield(beat)
            if not self._lost.is_set():
                self.cache.set_serving(True, "heartbeat_back")
        finally:
            await cancel_and_wait(beat)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            conn: asyncpg.Connection | None = None
            try:
                self._lost.clear()
                conn = await self._connect()
                self._conn = conn
                # Notifications sent while nobody listened are gone: start from nothing.
                self.cache.set_serving(True, "listener_connected")
                self._connected.set()
                self.connects += 1
                backoff = 0.1
                while not self._lost.is_set():
                    await self._heartbeat(conn)
                    self.cache.flush_metrics()
                    await wait_event(self._lost, self._heartbeat_s)
                log.warning("read cache %s: listener connection lost; cache cleared", self.cache.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connect failure, a heartbeat never echoed, a dead socket
                log.warning(
                    "read cache %s: listener unavailable (%s: %s); cache cleared, retrying in about %.1fs",
                    self.cache.name,
                    type(exc).__name__,
                    exc,
                    backoff,
                )
            finally:
                self._connected.clear()
                self._conn = None
                if self.cache.serving:
                    self.cache.set_serving(False, "listener_lost")
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self.RECONNECT_MAX_S)

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            timeout=5.0,
            server_settings={"application_name": self._application_name},
            **asyncpg_connect_kwargs(self._database_url),
        )
        try:
            conn.add_termination_listener(self._on_termination)
            await conn.add_listener(self.channel, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        return conn
