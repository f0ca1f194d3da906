"""The Lua script through the driver, on the real Redis: atomicity, reservation, clock, expiry."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from bench.loadgen import warm
from ratelimit import keys
from ratelimit.model import BucketSpec
from ratelimit.redis import ScriptDriver

# Slow buckets, so that the time between two calls refills next to nothing.
WIDE = BucketSpec("wide", rate=10.0, capacity=100)
NARROW = BucketSpec("narrow", rate=1.0, capacity=10)


async def _tokens(client: aioredis.Redis, name: str) -> float:
    value = await client.hget(keys.bucket(name), "tokens")
    assert value is not None
    return float(value)


async def test_all_buckets_or_none(redis_client: aioredis.Redis) -> None:
    await warm(redis_client)
    driver = ScriptDriver(redis_client)
    first = await driver.acquire([WIDE, NARROW], 10, max_wait=1.0)
    assert (first.granted, first.wait) == (True, 0.0)
    assert await _tokens(redis_client, "wide") == pytest.approx(90, abs=0.5)
    assert await _tokens(redis_client, "narrow") == pytest.approx(0, abs=0.5)

    refused = await driver.acquire([WIDE, NARROW], 10, max_wait=1.0)
    assert not refused.granted
    assert refused.limiting == "narrow"
    # Ten tokens at 1/s is ten seconds; the lease could be reserved one second ahead: 9 s more.
    assert 8.5 < refused.wait <= 9.0
    assert await _tokens(redis_client, "wide") == pytest.approx(90, abs=0.5)


async def test_a_short_wait_is_a_lease_reserved_ahead(redis_client: aioredis.Redis) -> None:
    await warm(redis_client)
    driver = ScriptDriver(redis_client)
    spec = BucketSpec("b", rate=10.0, capacity=5)
    assert (await driver.acquire([spec], 5, max_wait=1.0)).wait == 0.0
    ahead = await driver.acquire([spec], 5, max_wait=1.0)
    assert ahead.granted
    assert ahead.limiting == "b"
    assert 0.45 < ahead.wait <= 0.5
    assert await _tokens(redis_client, "b") == pytest.approx(-5, abs=0.5)
    # A third lease would start a second ahead; allowed half a second, it is refused for half one.
    refused = await driver.acquire([spec], 5, max_wait=0.5)
    assert not refused.granted
    assert 0.45 < refused.wait <= 0.5


async def test_a_redis_without_memory_starts_buckets_empty(redis_client: aioredis.Redis) -> None:
    driver = ScriptDriver(redis_client)
    answer = await driver.acquire([WIDE], 10, max_wait=5.0)
    assert answer.granted
    assert 0.9 < answer.wait <= 1.0
    epoch = await redis_client.hget(keys.META, keys.META_EPOCH)
    seconds, micros = await redis_client.time()
    assert epoch is not None
    assert 0 <= seconds * 1_000_000 + micros - int(epoch) < 5_000_000


async def test_state_past_its_own_expiry_counts_as_full(redis_client: aioredis.Redis) -> None:
    await warm(redis_client)
    seconds, micros = await redis_client.time()
    now = seconds * 1_000_000 + micros
    await redis_client.hset(
        keys.bucket("wide"), mapping={"tokens": "-1000", "ts": now - 10, "exp": now - 1}
    )
    driver = ScriptDriver(redis_client)
    assert (await driver.acquire([WIDE], 100, max_wait=0.1)).wait == 0.0


async def test_state_keeps_redis_time_and_expires_after_refill(
    redis_client: aioredis.Redis,
) -> None:
    await warm(redis_client)
    driver = ScriptDriver(redis_client)
    await driver.acquire([NARROW], 4, max_wait=1.0)
    seconds, micros = await redis_client.time()
    state = await redis_client.hgetall(keys.bucket("narrow"))
    ts, exp = int(state[b"ts"]), int(state[b"exp"])
    assert 0 <= seconds * 1_000_000 + micros - ts < 5_000_000
    # Four tokens short at 1/s: full again four seconds later, and the key outlives that.
    assert exp - ts == pytest.approx(4_000_000, abs=20_000)
    ttl = await redis_client.pttl(keys.bucket("narrow"))
    assert 3_000 < ttl <= 4_000 + keys.BUCKET_TTL_MARGIN_MS + 10


async def test_the_script_is_loaded_again_after_noscript(redis_client: aioredis.Redis) -> None:
    await warm(redis_client)
    driver = ScriptDriver(redis_client)
    assert (await driver.acquire([WIDE], 1, max_wait=1.0)).granted
    await redis_client.script_flush()
    assert (await driver.acquire([WIDE], 1, max_wait=1.0)).granted
    assert await _tokens(redis_client, "wide") == pytest.approx(98, abs=0.5)


async def test_a_debt_is_taken_even_when_the_lease_is_refused(
    redis_client: aioredis.Redis,
) -> None:
    await warm(redis_client)
    driver = ScriptDriver(redis_client)
    answer = await driver.acquire([WIDE], 50, max_wait=0.1, debts={"wide": 80.0})
    assert not answer.granted
    assert await _tokens(redis_client, "wide") == pytest.approx(20, abs=0.5)


async def test_heartbeat_counts_live_replicas_only(redis_client: aioredis.Redis) -> None:
    driver = ScriptDriver(redis_client)
    await redis_client.zadd(keys.REPLICAS, {"gone": 1})
    assert await driver.heartbeat("a", ttl=5.0) == (1, 0)
    assert await driver.heartbeat("b", ttl=5.0) == (2, 0)
    await driver.leave("a")
    assert await driver.heartbeat("b", ttl=5.0) == (1, 0)
