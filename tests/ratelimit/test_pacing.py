"""Pacing without bursts: leases tile, late slots are forfeited, the headroom slows every rate."""

from __future__ import annotations

import asyncio
import itertools
import math
import time

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from bench.loadgen import warm
from ratelimit import Lease, LeaseExhaustedError, Limiter, LimiterSettings, Rules
from ratelimit.clock import RedisClock

RATE = 200.0
LEASE = 10
#: Capacity equal to the lease (as in the default rules): leases tile, nothing goes out on top.
TILED = f"""
lease = {LEASE}
[bucket."g"]
rate = {RATE}
capacity = {LEASE}
[bucket."op:*"]
parent = "g"
share = 1.0
capacity = {LEASE}
"""
PACED = RATE * (1 - Rules.from_toml(TILED).headroom)


def _forfeited(bucket: str) -> float:
    sample = "tocsin_ratelimit_tokens_forfeited_total"
    return REGISTRY.get_sample_value(sample, {"bucket": bucket}) or 0.0


async def test_a_late_slot_is_forfeited_not_sent_late() -> None:
    # A lease whose first three slots passed while the event loop was busy elsewhere.
    lease = Lease(
        buckets=("b",), granted=6, interval=0.1, start=time.monotonic() - 0.25, slack=0.03
    )
    assert await lease.take()
    # Slots 0, 1 and 2 (250, 150 and 50 ms ago) are forfeited together; slot 3 (50 ms ahead) is
    # used at its time.
    assert lease.forfeited == 3
    assert lease.taken == 4
    sent = [(3, time.monotonic())]
    sent += [(slot, time.monotonic()) async for slot in lease.paced()]
    # Each token goes out at its own slot, within the slack: none is caught up later.
    assert len(sent) + lease.forfeited == 6
    for slot, at in sent:
        assert 0 <= at - (lease.start + slot * lease.interval) <= lease.slack + 0.005


async def test_a_lease_whose_slots_all_passed_sends_nothing() -> None:
    lease = Lease(buckets=("b",), granted=5, interval=0.01, start=time.monotonic() - 1, slack=0.002)
    assert not await lease.take()
    assert (lease.forfeited, lease.remaining) == (5, 0)
    assert [i async for i in lease.paced()] == []
    with pytest.raises(LeaseExhaustedError):
        await lease.take()


async def test_a_sender_woken_late_forfeits_its_slot(redis_client: aioredis.Redis) -> None:
    await warm(redis_client)
    limiter = Limiter.from_rules(redis_client, Rules.from_toml(TILED))
    before = {bucket: _forfeited(bucket) for bucket in ("g", "op:x")}
    lease = await limiter.lease(["g", "op:x"])
    assert lease.slack == LimiterSettings().slot_tolerance
    assert await lease.take()
    # The next slot is 5 ms away; the loop is blocked for 30 ms: slots 1 to 6 pass meanwhile.
    waiter = asyncio.create_task(lease.take())
    await asyncio.sleep(0)
    time.sleep(0.03)  # noqa: ASYNC251 - the point: the event loop is busy while the slots pass
    assert await waiter
    sent = time.monotonic()
    assert lease.forfeited >= 5
    assert sent - (lease.start + (lease.taken - 1) * lease.interval) <= lease.slack + 1e-3
    # Counted for every bucket of the lease.
    for bucket, count in before.items():
        assert _forfeited(bucket) == count + lease.forfeited


async def test_concurrent_leases_on_one_bucket_tile(redis_client: aioredis.Redis) -> None:
    await warm(redis_client)
    limiter = Limiter.from_rules(redis_client, Rules.from_toml(TILED))
    # Two operators' senders lease over the same global bucket at once, ten leases each.
    calls = [limiter.lease(["g", f"op:{op}"]) for _ in range(10) for op in ("a", "b")]
    leases = sorted(await asyncio.gather(*calls), key=lambda lease: lease.start)
    assert all(lease.granted == LEASE for lease in leases)
    # Each lease starts when the one before it is paced out: never two leases at once.
    for before, after in itertools.pairwise(leases):
        assert after.start >= before.start + before.granted * before.interval - 1e-6
        assert before.interval == pytest.approx(1 / PACED)
    # And no time is lost between them either (a busy machine may delay a request a little).
    span = leases[-1].start - leases[0].start
    assert span <= (len(leases) - 1) * LEASE / PACED + 0.25


async def test_two_replicas_tile_through_redis(redis_client: aioredis.Redis) -> None:
    await warm(redis_client)
    rules = Rules.from_toml(TILED)
    first, second = (Limiter.from_rules(redis_client, rules) for _ in range(2))

    async def leases(limiter: Limiter, op: str) -> list[Lease]:
        return [await limiter.lease(["g", f"op:{op}"]) for _ in range(8)]

    found = await asyncio.gather(leases(first, "a"), leases(second, "b"))
    ordered = sorted((lease for part in found for lease in part), key=lambda lease: lease.start)
    # Reserved back to back on Redis' clock, and started here when Redis meant, however long each
    # call took: within the clock's error (half the fastest round trip so far; a few ms at worst on
    # a busy machine), not the length of a slow call.
    for before, after in itertools.pairwise(ordered):
        assert after.start >= before.start + LEASE / PACED - 0.01


async def test_a_bucket_holding_more_than_a_lease_allows_only_that_burst(
    redis_client: aioredis.Redis,
) -> None:
    await warm(redis_client)
    # Capacity twice the lease: the second lease may start at once, on top of the first (the
    # burst the rules allow), and a late sender may catch up, never by more than that burst.
    rules = Rules.from_toml(TILED.replace(f"capacity = {LEASE}", f"capacity = {2 * LEASE}"))
    limiter = Limiter.from_rules(redis_client, rules)
    first = await limiter.lease(["g"])
    second = await limiter.lease(["g"])
    third = await limiter.lease(["g"])
    assert second.start - first.start < 0.01
    assert third.start >= first.start + LEASE / PACED - 0.005
    assert second.slack == math.inf
    # Half a lease of burst: a slot may be that late, and no later.
    half = LEASE + LEASE // 2
    rules = Rules.from_toml(TILED.replace(f"capacity = {LEASE}", f"capacity = {half}"))
    lease = await Limiter.from_rules(redis_client, rules).lease(["op:x"])
    assert lease.slack == pytest.approx((LEASE // 2) / PACED)


async def test_the_headroom_slows_the_bucket_and_the_pace(redis_client: aioredis.Redis) -> None:
    await warm(redis_client)
    rules = Rules.from_toml(TILED.replace(f"lease = {LEASE}", f"lease = {LEASE}\nheadroom = 0.1"))
    limiter = Limiter.from_rules(redis_client, rules)
    first = await limiter.lease(["g"])
    second = await limiter.lease(["g"])
    # 200/s less 10 %: ten tokens every 1/18 s, in Redis as in the pacing.
    assert first.interval == pytest.approx(1 / 180)
    assert second.start - first.start == pytest.approx(LEASE / 180, abs=0.005)


def test_redis_time_is_mapped_to_this_clock_within_the_fastest_round_trip() -> None:
    clock = RedisClock(drift=0.0)
    clock.observe(100.0, sent=10.0, read=10.002)
    # The latest this moment can have been here: a lease starts late by the error, never early.
    assert clock.local(100.0) == pytest.approx(10.002)
    assert clock.error == pytest.approx(0.001)
    # A slow call (a busy loop, 200 ms) teaches nothing new and moves nothing.
    clock.observe(101.0, sent=10.9, read=11.1)
    assert clock.local(101.0) == pytest.approx(11.002)
    # A faster one narrows the interval to what both allow.
    clock.observe(102.0, sent=12.0004, read=12.0008)
    assert clock.local(102.0) == pytest.approx(12.0008, abs=1e-6)
    assert clock.error == pytest.approx(0.0002)
    # Redis' wall clock stepped by a minute: the answer that shows it wins at once.
    clock.observe(200.0, sent=13.0, read=13.001)
    assert clock.local(200.0) == pytest.approx(13.001)
