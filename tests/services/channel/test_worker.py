"""The channel worker's promises, held by SMS and by the memory test channel alike: nothing lost
or sent twice beyond the durability window after kill -9, cancelled and superseded work never
delivered, malformed entries dead-lettered without stopping the consumer, the stream trimmed."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2
from prometheus_client import REGISTRY

from services.channel import keys
from services.kernel import keys as shared
from tests.services.channel.conftest import Harness
from tests.services.kernel.conftest import watch_until
from tests.services.sms.conftest import numbers

ALERT = "c4a00000-0000-4000-8000-000000000001"
UPDATED = "c4a00000-0000-4000-8000-000000000002"


async def test_cancelled_and_superseded_work_is_recorded_and_never_delivered(
    harness: Harness, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    await harness.start()
    await redis_client.set(shared.alert_cancelled(ALERT), "1")
    await redis_client.set(shared.alert_version(UPDATED), "2")
    await harness.add_work(redis_client, alert=ALERT, to=numbers(50))
    await harness.add_work(redis_client, alert=UPDATED, to=numbers(50, start=100), version=1)
    await harness.add_work(redis_client, alert=UPDATED, to=numbers(50, start=100), version=2)

    cancelled = await harness.wait_states(pg_pool, alert=ALERT, total=50, states=["cancelled"])
    updated = await harness.wait_states(
        pg_pool, alert=UPDATED, total=100, states=["superseded", "delivered"]
    )

    assert cancelled == {"cancelled": 50}
    assert updated == {"superseded": 50, "delivered": 50}
    assert harness.sent() == dict.fromkeys(numbers(50, start=100), 1)
    await harness.wait_acknowledged(redis_client)
    assert await harness.counters(pg_pool, alert=ALERT) == {"cancelled": (50, 0)}
    assert await harness.counters(pg_pool, alert=UPDATED) == {
        "superseded": (50, 0),
        "delivered": (50, 50),
    }


async def test_malformed_entries_go_to_the_dead_letters_and_the_rest_is_delivered(
    harness: Harness, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    await harness.start()
    dead_before = REGISTRY.get_sample_value(
        "tocsin_channel_dead_letters_total", {"channel": harness.channel}
    )
    no_to = await redis_client.xadd(
        harness.stream, {"alert": ALERT, "version": "1", "expires": "1e12", "texts": '{"en":"x"}'}
    )
    bad_json = await redis_client.xadd(
        harness.stream,
        {"alert": ALERT, "version": "1", "expires": "1e12", "texts": '{"en":"x"}', "to": "[["},
    )
    await harness.add_work(redis_client, alert=ALERT, to=numbers(30))

    counts = await harness.wait_states(pg_pool, alert=ALERT, total=30, states=["delivered"])
    await harness.wait_acknowledged(redis_client)

    assert counts == {"delivered": 30}
    dead: Any = await redis_client.xrange(keys.dead_letters(harness.channel))
    assert [(f[b"dead_id"], f[b"dead_error"]) for _, f in dead] == [
        (no_to, b"to: missing"),
        (bad_json, b"to: not JSON"),
    ]
    dead_after = REGISTRY.get_sample_value(
        "tocsin_channel_dead_letters_total", {"channel": harness.channel}
    )
    assert (dead_after or 0) - (dead_before or 0) == 2


async def test_the_worker_trims_the_entries_it_has_processed(
    harness: Harness, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    # 250 entries of one recipient each: Redis trims whole nodes of 100 entries.
    await harness.start()
    await harness.add_work(redis_client, alert=ALERT, to=numbers(250), per_entry=1)
    await harness.wait_states(pg_pool, alert=ALERT, total=250, states=["delivered"])
    try:
        async with asyncio.timeout(30):
            while True:
                if await redis_client.xlen(harness.stream) <= 150:
                    break
                await asyncio.sleep(0.2)  # the worker trims every 2 s: nothing to await on
    except TimeoutError:
        length = await redis_client.xlen(harness.stream)
        raise AssertionError(f"the stream still holds {length} of 250 entries") from None


async def test_a_killed_process_leaves_nobody_out_and_duplicates_within_its_window(
    harness: Harness, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    total = 6000
    first = harness.start_process(TOCSIN_CLAIM_IDLE_S="2")
    await watch_until(first.target, health_pb2.HealthCheckResponse.SERVING)
    dest = numbers(total)
    await harness.add_work(redis_client, alert=ALERT, to=dest)
    async with asyncio.timeout(60):
        while True:
            if sum(harness.sent().values()) >= total // 6:
                break
            await asyncio.sleep(0.01)  # the peer counts as it goes: nothing to await on

    os.kill(first.popen.pid, signal.SIGKILL)
    first.popen.wait(10)
    sent_before = sum(harness.sent().values())
    second = harness.start_process(TOCSIN_CLAIM_IDLE_S="2")
    await watch_until(second.target, health_pb2.HealthCheckResponse.SERVING)
    counts = await harness.wait_states(
        pg_pool, alert=ALERT, total=total, states=["delivered"], timeout=90
    )
    await harness.wait_acknowledged(redis_client)

    got = harness.sent()
    duplicates = sum(n - 1 for n in got.values())
    assert 0 < sent_before < total
    assert counts == {"delivered": total}
    # The counters moved with the rows, in the same transactions, whoever wrote them.
    assert await harness.counters(pg_pool, alert=ALERT) == {"delivered": (total, total)}
    assert set(got) == set(dest)
    assert duplicates <= harness.window
