"""Two replicas send over SMPP to the SMSC simulator through the limiter: no one-second window at
the SMSC holds more than the global rate."""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from bench.loadgen import warm
from gateways.smpp import BindConfig, SmppClient, SubmitRequest, SubmitResult
from ratelimit import Limiter, Rules
from services.kernel.redis_client import connect as connect_redis
from simulators.smsc import SmscConfig, SmscSimulator

RATE = 300
#: Capacity equal to the lease, as in the default rules: leases tile, no burst on top of the rate.
CAPACITY = 25
RULES = f"""
lease = {CAPACITY}
[bucket."sms:global"]
rate = {RATE}
capacity = {CAPACITY}
[bucket."sms:op:sim"]
parent = "sms:global"
share = 1.0
capacity = {CAPACITY}
[bucket."sms:bind:sim:*"]
parent = "sms:global"
share = 1.0
capacity = {CAPACITY}
"""
SECONDS = 4.0


def _forfeited() -> float:
    sample = "tocsin_ratelimit_tokens_forfeited_total"
    return REGISTRY.get_sample_value(sample, {"bucket": "sms:global"}) or 0.0


async def _send(limiter: Limiter, client: SmppClient, bind: str) -> None:
    """One bind's sender: lease, then one submit_sm per token at the lease's pace."""
    buckets = ["sms:global", "sms:op:sim", f"sms:bind:sim:{bind}"]
    pending: set[asyncio.Task[SubmitResult]] = set()
    try:
        while True:
            lease = await limiter.lease(buckets)
            async for i in lease.paced():
                task = asyncio.create_task(client.submit(SubmitRequest(f"+3247{i:07d}", text="x")))
                pending.add(task)
                task.add_done_callback(pending.discard)
    finally:
        for task in pending:
            task.cancel()


async def test_no_second_at_the_smsc_holds_more_than_the_rate(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    await warm(redis_client)
    # The SMSC would answer "throttled" to anything above the rate in one second.
    sim = SmscSimulator(SmscConfig(name="sim", max_rate=RATE))
    port = await sim.start()
    rules = Rules.from_toml(RULES)
    forfeited = _forfeited()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(sim.stop)
        senders = []
        for replica in range(2):
            client = connect_redis(redis_url)
            stack.push_async_callback(client.aclose)
            limiter = await stack.enter_async_context(Limiter.from_rules(client, rules))
            for bind in range(2):
                name = f"{replica}-{bind}"
                smpp = SmppClient(
                    BindConfig(name, "127.0.0.1", port, "tocsin", "secret", window=50)
                )
                await smpp.start()
                stack.push_async_callback(smpp.close)
                await smpp.wait_bound(5)
                senders.append((limiter, smpp, name))
        async with asyncio.timeout(30), asyncio.TaskGroup() as group:
            tasks = [group.create_task(_send(*sender)) for sender in senders]
            await asyncio.sleep(SECONDS)
            for task in tasks:
                task.cancel()

    arrivals = sum(sim.per_second.values())
    assert arrivals <= CAPACITY + RATE * (SECONDS + 1)
    # What was not sent, the senders forfeited (they were late: a starved test process is), so the
    # limiter itself held nothing back.
    assert arrivals + _forfeited() - forfeited >= 0.8 * RATE * SECONDS
    # Every window, the first one included: leases tile from the first on.
    assert max(sim.per_second.values()) <= RATE
    assert set(sim.statuses) == {0}
