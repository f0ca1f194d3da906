"""A recipient queued again while this process still holds its first copy (its alert resolved
again: a resumed SendAlert, Redis's data lost and repaired) is delivered once: the first copy's
row is still `queued`, which the queue statement answers as 'to send'."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.channel import keys
from services.channel.model import Job
from services.channel.worker import ChannelWorker, make_recorder
from tests.services.channel import memory, work
from tests.services.channel.test_erase_race import ALERT, CHANNEL, TEXTS, Running, _working
from tests.services.sms.conftest import numbers


@pytest.fixture
async def running(
    pg_dsn: str, redis_url: str, pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> AsyncIterator[Running]:
    await pg_pool.execute(memory.TABLES_SQL)
    peer = memory.Peer()
    await peer.start()
    client = memory.PeerClient("127.0.0.1", peer.port)
    values: dict[str, Any] = {
        "DATABASE_URL": pg_dsn,
        "REDIS_URL": redis_url,
        "senders": 1,
        "log_level": "WARNING",
    }
    settings = memory.Settings(**values)
    worker: ChannelWorker[Job] = ChannelWorker(
        channel=memory.MemoryChannel(client, senders=1),
        settings=settings,
        pool=pg_pool,
        redis=redis_client,
        recorder=make_recorder(channel=CHANNEL, settings=settings, pool=pg_pool),
    )
    yield Running(peer, worker)
    for event in peer.held.values():
        event.set()
    await client.close()
    await peer.stop()


async def _pending(redis: aioredis.Redis) -> int:
    return int((await redis.xpending(keys.stream(CHANNEL), keys.group(CHANNEL)))["pending"])


async def test_a_recipient_queued_again_while_its_first_copy_waits_is_delivered_once(
    running: Running, pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    first, *waiting = numbers(4, start=400)
    peer, worker = running.peer, running.worker
    release = peer.held[first] = asyncio.Event()
    peer.arrived[first] = asyncio.Event()
    await work.add_work(
        redis_client, channel=CHANNEL, alert=ALERT, to=[first, *waiting], texts=TEXTS
    )
    async with asyncio.timeout(60), _working(worker):
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
        await work.wait_states(
            pg_pool, channel=CHANNEL, alert=ALERT, total=4, states=["delivered"], timeout=30
        )
        while True:  # both entries acknowledged
            if not await _pending(redis_client):
                break
            await asyncio.sleep(0.05)
    assert dict(peer.received) == dict.fromkeys([first, *waiting], 1)
    counters = await work.counters(pg_pool, channel=CHANNEL, alert=ALERT)
    assert {state: n for state, (n, _) in counters.items()} == {"delivered": 4}
