"""Trunk channels and calls per second, held in Redis for every replica."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from ratelimit.config import Rules
from ratelimit.limiter import Limiter
from services.voice import keys
from services.voice.capacity import CallPacer, TrunkChannels


async def test_channels_are_never_exceeded_across_replicas(redis_client: aioredis.Redis) -> None:
    replicas = [TrunkChannels(redis_client, limits={"t": 3}) for _ in range(3)]
    holding = 0
    most = 0
    release = asyncio.Event()

    async def call(channels: TrunkChannels) -> None:
        nonlocal holding, most
        async with channels.hold("t", lease_s=30):
            holding += 1
            most = max(most, holding)
            if holding == 3:
                release.set()
            await release.wait()
            await asyncio.sleep(0)
            holding -= 1

    await asyncio.wait_for(asyncio.gather(*(call(replicas[i % 3]) for i in range(12))), 20)
    assert most == 3
    assert await redis_client.zcard(keys.trunk_channels("t")) == 0


async def test_a_dead_replicas_channels_lapse(redis_client: aioredis.Redis) -> None:
    channels = TrunkChannels(redis_client, limits={"t": 1})
    gone = channels.hold("t", lease_s=0.3)
    await gone.__aenter__()  # a replica killed mid-call never leaves the block
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with TrunkChannels(redis_client, limits={"t": 1}).hold("t", lease_s=30):
        waited = loop.time() - start
    assert waited >= 0.2


@pytest.mark.timeout(30)
async def test_calls_per_second_come_from_the_trunks_bucket(redis_client: aioredis.Redis) -> None:
    rules = Rules.from_toml('lease = 5\n[bucket."voice:trunk:*"]\nrate = 20\ncapacity = 5\n')
    limiter = Limiter.from_rules(redis_client, rules)
    pacer = CallPacer(limiter)
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(11):
        await pacer.take("t")
        times.append(loop.time())
    # 11 calls at 20 per second (paced 1 % below) span at least half a second.
    assert times[-1] - times[0] >= 0.45
