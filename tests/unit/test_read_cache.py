"""The generic read cache: generations, deadlines, LRU bound, serving state, marker handling."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.read_cache import ALL_PARTITIONS, InvalidationListener, ReadCache


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def make_cache(**kwargs: Any) -> tuple[ReadCache[str], Clock, Clock]:
    mono, wall = Clock(), Clock(1_800_000_000.0)
    cache: ReadCache[str] = ReadCache("test", monotonic=mono, wall_clock=wall, **kwargs)
    return cache, mono, wall


def test_put_then_get_and_miss_counts() -> None:
    cache, _, _ = make_cache()
    assert cache.get("s1", "p1") is None
    assert cache.put("s1", "p1", "answer", cache.token("s1"))
    assert cache.get("s1", "p1") == "answer"
    assert cache.get("s1", "p2") is None
    assert cache.get("s2", "p1") is None  # partitions are separate
    assert (cache.hits, cache.misses) == (1, 3)


def test_answer_computed_before_an_invalidation_is_not_stored() -> None:
    cache, _, _ = make_cache()
    token = cache.token("s1")
    cache.invalidate("s1")  # a write's notification arrives while the reader computes
    assert not cache.put("s1", "p1", "stale", token)
    assert cache.get("s1", "p1") is None
    # Another partition's invalidation does not refuse it.
    token = cache.token("s1")
    cache.invalidate("s2")
    assert cache.put("s1", "p1", "fresh", token)
    assert cache.get("s1", "p1") == "fresh"


def test_invalidate_all_refuses_every_older_token_and_empties() -> None:
    cache, _, _ = make_cache()
    cache.put("s1", "p1", "a", cache.token("s1"))
    old = cache.token("s2")
    cache.invalidate("s2")  # s2 at generation 1 ...
    cache.invalidate_all()  # ... then the generations are forgotten: the epoch still refuses `old`
    assert len(cache) == 0
    assert not cache.put("s2", "p1", "b", old)
    assert cache.put("s2", "p1", "c", cache.token("s2"))


def test_invalidate_drops_only_that_partition() -> None:
    cache, _, _ = make_cache()
    for shop in ("s1", "s2"):
        for product in ("p1", "p2"):
            cache.put(shop, product, f"{shop}/{product}", cache.token(shop))
    cache.invalidate("s1")
    assert cache.get("s1", "p1") is None and cache.get("s1", "p2") is None
    assert cache.get("s2", "p1") == "s2/p1" and cache.get("s2", "p2") == "s2/p2"
    assert len(cache) == 2


def test_safety_ttl_on_the_monotonic_clock() -> None:
    cache, mono, _ = make_cache(ttl_s=30)
    cache.put("s1", "p1", "a", cache.token("s1"))
    mono.now += 29.999
    assert cache.get("s1", "p1") == "a"
    mono.now += 0.001
    assert cache.get("s1", "p1") is None
    assert cache.expired == 1 and len(cache) == 0


def test_valid_until_is_a_wall_clock_deadline_exclusive() -> None:
    cache, _, wall = make_cache()
    boundary = wall.now + 5
    cache.put("s1", "p1", "before the rule ends", cache.token("s1"), valid_until=boundary)
    wall.now = boundary - 0.001
    assert cache.get("s1", "p1") == "before the rule ends"
    wall.now = boundary  # the rule's end is exclusive: at the boundary the answer has changed
    assert cache.get("s1", "p1") is None


def test_an_answer_already_past_its_validity_is_not_stored() -> None:
    cache, _, wall = make_cache()
    assert not cache.put("s1", "p1", "a", cache.token("s1"), valid_until=wall.now)
    assert len(cache) == 0


def test_lru_bound_evicts_the_least_recently_used() -> None:
    cache, _, _ = make_cache(max_entries=2)
    cache.put("s1", "a", "A", cache.token("s1"))
    cache.put("s1", "b", "B", cache.token("s1"))
    assert cache.get("s1", "a") == "A"  # a is now the most recent
    cache.put("s2", "c", "C", cache.token("s2"))
    assert len(cache) == 2
    assert cache.get("s1", "b") is None
    assert cache.get("s1", "a") == "A" and cache.get("s2", "c") == "C"
    cache.invalidate("s1")  # the partition index stayed consistent through the eviction
    assert len(cache) == 1


def test_not_serving_neither_serves_nor_stores() -> None:
    cache, _, _ = make_cache()
    cache.put("s1", "p1", "a", cache.token("s1"))
    cache.set_serving(False, "test")
    assert len(cache) == 0
    assert not cache.put("s1", "p1", "a", cache.token("s1"))
    assert cache.get("s1", "p1") is None
    token = cache.token("s1")
    cache.set_serving(True, "test")  # coming back starts a new epoch: older tokens are refused
    assert not cache.put("s1", "p1", "a", token)
    assert cache.put("s1", "p1", "a", cache.token("s1"))


def test_flush_metrics_keeps_the_cumulative_counts() -> None:
    cache, _, _ = make_cache()
    cache.get("s1", "p1")
    cache.put("s1", "p1", "a", cache.token("s1"))
    cache.get("s1", "p1")
    cache.flush_metrics()
    cache.flush_metrics()  # nothing new: nothing added
    assert (cache.hits, cache.misses, cache.expired) == (1, 1, 0)


@pytest.mark.parametrize("bad", [{"max_entries": 0}, {"ttl_s": 0}])
def test_bad_bounds_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ReadCache("x", **bad)


def test_listener_payloads_invalidate_a_shop_all_shops_or_nothing() -> None:
    cache: ReadCache[str] = ReadCache("test")
    listener = InvalidationListener(cache, "postgresql://nobody@127.0.0.1:1/none", "chan")
    assert not cache.serving  # nothing is served before LISTEN is established
    cache.set_serving(True, "test")
    for shop in ("s1", "s2"):
        cache.put(shop, "p", shop, cache.token(shop))
    listener._on_notify(None, 1, "chan", "~someone-else:1")  # another replica's heartbeat
    assert len(cache) == 2
    listener._on_notify(None, 1, "chan", "s1")
    assert cache.get("s1", "p") is None and cache.get("s2", "p") == "s2"
    listener._on_notify(None, 1, "chan", ALL_PARTITIONS)
    assert len(cache) == 0
    cache.put("s1", "p", "s1", cache.token("s1"))
    listener._on_termination(None)  # the connection died: stop serving, forget everything
    assert not cache.serving and len(cache) == 0


async def test_get_or_compute_stores_unless_invalidated_meanwhile() -> None:
    cache, _, wall = make_cache()
    calls = []

    async def compute() -> tuple[str, float | None]:
        calls.append(1)
        return f"answer {len(calls)}", wall.now + 10

    assert await cache.get_or_compute("s1", "p", compute) == "answer 1"
    assert await cache.get_or_compute("s1", "p", compute) == "answer 1"  # a hit
    assert len(calls) == 1

    async def racing_compute() -> tuple[str, float | None]:
        cache.invalidate("s1")  # the write's notification arrives while the answer is computed
        return "computed from the old snapshot", None

    cache.invalidate("s1")
    assert await cache.get_or_compute("s1", "p", racing_compute) == "computed from the old snapshot"
    assert cache.get("s1", "p") is None  # returned to its caller, never stored
