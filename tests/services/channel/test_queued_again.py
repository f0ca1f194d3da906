"""A recipient queued again while this process still holds its first copy (its alert resolved
again: a resumed SendAlert, Redis's data lost and repaired) is delivered once: the first copy's
row is still `queued`, which the queue statement answers as 'to send'."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.channel import keys, store
from tests.services.channel import work
from tests.services.channel.conftest import CHANNEL, Running, working
from tests.services.channel.test_erase_race import ALERT, TEXTS
from tests.services.sms.conftest import numbers


async def _pending(redis: aioredis.Redis) -> int:
    return int((await redis.xpending(keys.stream(CHANNEL), keys.group(CHANNEL)))["pending"])


async def _delivered_and_acknowledged(
    pg_pool: asyncpg.Pool, redis: aioredis.Redis, *, total: int
) -> None:
    """Every recipient delivered, and every entry (the first and its copy) acknowledged."""
    await work.wait_states(
        pg_pool, channel=CHANNEL, alert=ALERT, total=total, states=["delivered"], timeout=30
    )
    while True:
        if not await _pending(redis):
            break
        await asyncio.sleep(0.05)  # polling Redis: nothing to await on


async def test_a_recipient_queued_again_while_its_first_copy_waits_is_delivered_once(
    running_memory: Running, pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    first, *waiting = numbers(4, start=400)
    peer, worker = running_memory.peer, running_memory.worker
    release = peer.held[first] = asyncio.Event()
    peer.arrived[first] = asyncio.Event()
    await work.add_work(
        redis_client, channel=CHANNEL, alert=ALERT, to=[first, *waiting], texts=TEXTS
    )
    async with asyncio.timeout(60), working(worker):
        # The one sender is held at the peer with `first`; the others wait in the lane, queued.
        await peer.arrived[first].wait()
        # The alert resolved again: every recipient in a new entry, the held one included.
        await work.add_work(
            redis_client, channel=CHANNEL, alert=ALERT, to=[first, *waiting], texts=TEXTS
        )
        # Taken by the worker: the second entry's copies found their rows still queued.
        stream = keys.stream(CHANNEL)
        newest: Any = await redis_client.xrevrange(stream, count=1)
        last = newest[0][0]
        while True:
            groups = await redis_client.xinfo_groups(stream)
            if groups[0]["last-delivered-id"] == last:
                break
            await asyncio.sleep(0.01)  # polling Redis: nothing to await on
        assert not peer.received  # the first copy still held at the peer, nothing else sent
        release.set()
        await _delivered_and_acknowledged(pg_pool, redis_client, total=4)
    assert dict(peer.received) == dict.fromkeys([first, *waiting], 1)
    counters = await work.counters(pg_pool, channel=CHANNEL, alert=ALERT)
    assert {state: n for state, (n, _) in counters.items()} == {"delivered": 4}


async def test_a_copy_queued_while_its_first_copy_becomes_durable_is_not_sent_again(
    running_memory: Running,
    pg_pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The copy's queue statement finds the row still queued (so answers 'to send'), and the
    # first copy's outcome becomes durable before the answer is back: the window a loaded
    # process opened under bench-faults' redis_lost (22 of 14,067 sent twice).
    first, *others = numbers(3, start=500)
    peer, worker = running_memory.peer, running_memory.worker
    release = peer.held[first] = asyncio.Event()
    peer.arrived[first] = asyncio.Event()
    real_queue = store.queue
    raced = asyncio.Event()
    answered: list[bool] = []

    async def queue_then_first_durable(*args: Any, **kwargs: Any) -> set[tuple[str, int, str]]:
        send = await real_queue(*args, **kwargs)
        if release.is_set() or first not in kwargs["addresses"]:
            return send
        answered.append((ALERT, 1, first) in send)
        release.set()
        while True:  # the recorder's commit, then its callback
            if not worker.consumer.holds(ALERT, 1, first):
                break
            await asyncio.sleep(0.01)
        raced.set()
        return send

    await work.add_work(
        redis_client, channel=CHANNEL, alert=ALERT, to=[first, *others], texts=TEXTS
    )
    async with asyncio.timeout(60), working(worker):
        await peer.arrived[first].wait()
        monkeypatch.setattr(store, "queue", queue_then_first_durable)
        await work.add_work(
            redis_client, channel=CHANNEL, alert=ALERT, to=[first, *others], texts=TEXTS
        )
        await raced.wait()
        await _delivered_and_acknowledged(pg_pool, redis_client, total=3)
    assert answered == [True]  # the row was still queued: 'to send'
    assert dict(peer.received) == dict.fromkeys([first, *others], 1)
