"""The one TTL cache: expiry on its clock, room made when full, one load shared by its callers."""

from __future__ import annotations

import asyncio

import pytest

from services.kernel.cache import TtlCache


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_value_lives_for_its_ttl_or_until_its_own_end_if_sooner() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(ttl_s=5.0, clock=clock)
    cache.put("a", 1)
    cache.put("b", 2, until=clock.now + 1.0)
    clock.now += 1.0
    assert cache.get("a") == 1
    assert cache.get("b") is None
    clock.now += 4.0
    assert cache.get("a") is None
    assert len(cache) == 0


def test_a_zero_ttl_keeps_nothing() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=0.0)
    cache.put("a", 1)
    assert cache.get("a") is None


def test_a_full_cache_drops_the_expired_first_and_everything_if_none_expired() -> None:
    clock = Clock()
    cache: TtlCache[int, int] = TtlCache(ttl_s=10.0, max_entries=3, clock=clock)
    cache.put(1, 1, until=clock.now + 1)
    cache.put(2, 2)
    cache.put(3, 3)
    clock.now += 2
    cache.put(4, 4)
    assert [cache.get(k) for k in (1, 2, 3, 4)] == [None, 2, 3, 4]
    cache.put(5, 5)
    assert [cache.get(k) for k in (2, 3, 4, 5)] == [None, None, None, 5]


def test_values_are_forgotten_by_key_or_by_what_they_hold() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=60.0)
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        cache.put(key, value)
    cache.forget("a")
    cache.forget_if(lambda v: v % 2 == 0)
    assert [cache.get(k) for k in "abc"] == [None, None, 3]


def test_a_bad_size_is_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        TtlCache[str, int](ttl_s=1.0, max_entries=0)


async def test_concurrent_callers_share_one_load_and_a_failure_is_not_kept() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=60.0)
    loads = 0
    release = asyncio.Event()

    async def load() -> int:
        nonlocal loads
        loads += 1
        await release.wait()
        return loads

    callers = [asyncio.create_task(cache.get_or_load("k", load)) for _ in range(5)]
    await asyncio.sleep(0)
    callers[0].cancel()  # one caller going away does not cancel the load for the others
    release.set()
    results = await asyncio.gather(*callers[1:])
    assert results == [1, 1, 1, 1]
    assert await cache.get_or_load("k", load) == 1
    assert loads == 1

    async def fail() -> int:
        raise RuntimeError("store down")

    with pytest.raises(RuntimeError):
        await cache.get_or_load("f", fail)
    assert await cache.get_or_load("f", load) == 2
