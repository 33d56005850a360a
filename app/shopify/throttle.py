"""A local model of Shopify's per-shop leaky bucket (calculated query cost).

Shopify refuses a request whose requested cost exceeds what the shop's bucket holds, and a
refused request still costs a round trip. Migrations read thousands of metaobjects per shop,
so hitting THROTTLED in steady state would waste half the calls. Instead every response's
``extensions.cost.throttleStatus`` feeds this model, which extrapolates the refill with a
monotonic clock and makes the next caller wait *before* sending until its estimated cost fits.

Concurrent callers of one shop go through `ShopThrottle.acquire`, which holds an
`asyncio.Lock` (FIFO) while waiting and debits the estimated cost before releasing it, so two
tasks cannot both spend the same points. Costs of requests still in flight are subtracted
from the server's figures when a response arrives, because those figures may predate them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ThrottleStatus:
    """``extensions.cost.throttleStatus`` of one response."""

    maximum_available: float
    currently_available: float
    restore_rate: float


@dataclass(frozen=True, slots=True)
class QueryCost:
    """``extensions.cost`` of one response (any part may be missing in odd bodies)."""

    requested: float | None
    actual: float | None
    throttle_status: ThrottleStatus | None


def parse_cost(body: Mapping[str, Any]) -> QueryCost | None:
    """Read ``extensions.cost`` leniently: a missing or odd cost must never fail a request."""
    extensions = body.get("extensions")
    cost = extensions.get("cost") if isinstance(extensions, Mapping) else None
    if not isinstance(cost, Mapping):
        return None
    status = cost.get("throttleStatus")
    throttle_status: ThrottleStatus | None = None
    if isinstance(status, Mapping):
        maximum = _number(status.get("maximumAvailable"))
        current = _number(status.get("currentlyAvailable"))
        rate = _number(status.get("restoreRate"))
        if maximum is not None and current is not None and rate is not None and rate > 0:
            throttle_status = ThrottleStatus(maximum, current, rate)
    return QueryCost(
        requested=_number(cost.get("requestedQueryCost")),
        actual=_number(cost.get("actualQueryCost")),
        throttle_status=throttle_status,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class ShopThrottle:
    """Cost bucket estimate for one shop (app + shop, as Shopify keys it).

    Until the first response the bucket is unknown and nothing waits: guessing a plan would
    either slow Plus shops down or throttle Standard ones, and one response is enough to know.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.lock = asyncio.Lock()
        self.maximum_available: float | None = None
        self.restore_rate: float | None = None
        self._available: float | None = None  # as of `_observed_at`
        self._observed_at = 0.0
        self._in_flight = 0.0
        self._blocked_until = 0.0

    @property
    def known(self) -> bool:
        return self._available is not None and self.restore_rate is not None

    def available(self) -> float | None:
        """Points estimated to be in the bucket now (refill extrapolated, capped at the maximum)."""
        if self._available is None or self.restore_rate is None:
            return None
        elapsed = max(0.0, self._clock() - self._observed_at)
        refilled = self._available + elapsed * self.restore_rate
        if self.maximum_available is not None:
            refilled = min(refilled, self.maximum_available)
        return refilled

    def delay_for(self, cost: float) -> float:
        """Seconds to wait before a request of `cost` points would be accepted (0 if now).

        A cost above the bucket's maximum can never fit; we wait for a full bucket and let
        Shopify answer (MAX_COST_EXCEEDED lets the caller split the request).
        """
        now = self._clock()
        blocked = max(0.0, self._blocked_until - now)
        available = self.available()
        if available is None or self.restore_rate is None:
            return blocked
        if self.maximum_available is not None:
            cost = min(cost, self.maximum_available)
        missing = cost - available
        return max(blocked, missing / self.restore_rate if missing > 0 else 0.0)

    def reserve(self, cost: float) -> None:
        """Debit `cost` locally for a request about to be sent."""
        self._in_flight += cost
        available = self.available()
        if available is not None:
            self._available = available - cost
            self._observed_at = self._clock()

    def settle(self, reserved: float, status: ThrottleStatus | None) -> None:
        """A request that reserved `reserved` points finished; adopt the server's figures if any.

        Without figures (timeout, 5xx) the local debit stays: whether Shopify charged is unknown,
        and over-estimating spend only costs a short wait.
        """
        self._in_flight = max(0.0, self._in_flight - reserved)
        if status is None:
            return
        self.maximum_available = status.maximum_available
        self.restore_rate = status.restore_rate
        self._available = status.currently_available - self._in_flight
        self._observed_at = self._clock()

    def block_for(self, seconds: float) -> None:
        """Make the next acquire wait at least `seconds` (Retry-After, or throttled without figures)."""
        self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, seconds))

    async def acquire(self, cost: float, sleep: Callable[[float], Awaitable[None]]) -> float:
        """Wait in FIFO order until `cost` fits, reserve it, and return the seconds waited."""
        async with self.lock:
            delay = self.delay_for(cost)
            if delay > 0:
                await sleep(delay)
            self.reserve(cost)
            return delay
