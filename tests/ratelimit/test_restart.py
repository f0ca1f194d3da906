"""Redis restarts in the middle of a run: the fallback takes over, nothing is over-sent, and the
limiter goes back to Redis by itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import pytest
from prometheus_client import REGISTRY

from bench.loadgen import warm
from bench.windows import busiest_window
from ratelimit import Limiter, LimiterSettings, Rules, keys
from services.kernel.redis_client import connect as connect_redis
from tests.ratelimit.conftest import RestartableRedis

RATE = 300.0
CAPACITY = 50
RULES = f'lease = 25\n[bucket."r"]\nrate = {RATE}\ncapacity = {CAPACITY}\n'
SETTINGS = dict(redis_timeout=0.25, probe_interval=0.2, heartbeat_interval=0.2)


@dataclass
class Record:
    """What the senders of one run saw."""

    #: (wall time the lease could start, tokens, from the fallback)
    grants: list[tuple[float, int, bool]] = field(default_factory=list)
    sends: list[float] = field(default_factory=list)


async def _sender(limiter: Limiter, record: Record) -> None:
    while True:
        lease = await limiter.lease(["r"])
        record.grants.append((time.time(), lease.granted, limiter.in_fallback))
        async for _ in lease.paced():
            record.sends.append(time.time())


async def test_redis_restart_falls_back_without_over_sending_and_recovers(
    restartable_redis: RestartableRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ratelimit")
    rules = Rules.from_toml(RULES)
    clients = [connect_redis(restartable_redis.url) for _ in range(2)]
    await warm(clients[0])
    record = Record()
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            stack.push_async_callback(client.aclose)
        replicas = [
            await stack.enter_async_context(
                Limiter.from_rules(client, rules, settings=LimiterSettings(**SETTINGS))  # type: ignore[arg-type]
            )
            for client in clients
        ]
        assert [limiter.replicas for limiter in replicas] == [1, 2]
        await replicas[0].refresh()
        started = time.time()
        async with asyncio.timeout(30), asyncio.TaskGroup() as group:
            senders = [
                group.create_task(_sender(lim, record)) for lim in replicas for _ in range(8)
            ]
            await asyncio.sleep(2.0)
            await asyncio.to_thread(restartable_redis.stop)
            stopped = time.time()
            await asyncio.sleep(2.0)
            await asyncio.to_thread(restartable_redis.start)
            restarted = time.time()
            await asyncio.sleep(3.0)
            for task in senders:
                task.cancel()
        ended = time.time()
        assert not any(limiter.in_fallback for limiter in replicas)

    # The alert kept going while Redis was away, each replica at half the rate.
    assert any(fallback for t, _, fallback in record.grants if stopped < t < restarted)
    assert any(stopped < t < restarted for t in record.sends)
    # And went back to the shared bucket once Redis answered again.
    assert any(not fallback for t, _, fallback in record.grants if t > restarted)
    assert REGISTRY.get_sample_value("tocsin_ratelimit_fallback", {"bucket": "r"}) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("Redis unreachable" in m for m in messages)
    assert any("Redis answers again" in m for m in messages)

    # Never more than the agreed rate: in total, and in every one-second window.
    granted = sum(n for t, n, _ in record.grants)
    assert granted <= CAPACITY + RATE * (ended - started)
    assert busiest_window(record.sends) <= RATE + CAPACITY


async def test_tokens_granted_locally_are_charged_to_the_restarted_redis(
    restartable_redis: RestartableRedis,
) -> None:
    rules = Rules.from_toml('[fallback]\nreplicas = 1\n[bucket."b"]\nrate = 10\ncapacity = 10\n')
    client = connect_redis(restartable_redis.url)
    try:
        limiter = Limiter.from_rules(client, rules, settings=LimiterSettings(probe_interval=0.0))
        await asyncio.to_thread(restartable_redis.stop)
        await limiter.lease(["b"], 2)  # from the fallback: Redis failed just before
        await limiter.lease(["b"], 2)  # Redis failed again just before: only these two are owed
        assert limiter.in_fallback
        await asyncio.to_thread(restartable_redis.start)
        await limiter.lease(["b"], 2)
        assert not limiter.in_fallback
        # The fresh Redis starts the bucket empty, takes the two tokens owed and the two leased.
        tokens = await client.hget(keys.bucket("b"), "tokens")
        assert tokens is not None
        assert float(tokens) == pytest.approx(-4, abs=0.1)
    finally:
        await client.aclose()
