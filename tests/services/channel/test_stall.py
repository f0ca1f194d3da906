"""A process that did not run for longer than `claim_idle_s` (a frozen VM, SIGSTOP, swapping) had
its entries claimed by another consumer, which took their recipients over and sends them; once it
runs again it delivers none of what was taken over (issue 16).

The stalled worker runs in a thread with its own event loop, so that stalling that loop (a
blocking sleep scheduled into it) leaves the test, the peer and the other worker running.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from services.channel.model import Job
from services.channel.worker import ChannelWorker, make_recorder
from services.kernel.redis_client import connect as connect_redis
from tests.services.channel import memory, work
from tests.services.channel.conftest import CHANNEL, working
from tests.services.channel.test_erase_race import ALERT, TEXTS
from tests.services.sms.conftest import numbers

#: Entries idle this long are claimed by the other consumer; a stall of half as long is seen.
CLAIM_IDLE_S = 1.0
STALL_S = 3.0


def _worker(
    dsn: str,
    redis: aioredis.Redis,
    pool: asyncpg.Pool,
    client: memory.PeerClient,
    *,
    consumer: str,
    senders: int,
    claim_idle_s: float = CLAIM_IDLE_S,
) -> ChannelWorker[Job]:
    values: dict[str, Any] = {
        "DATABASE_URL": dsn,
        "REDIS_URL": "redis://unused",  # the client is given
        "consumer": consumer,
        "senders": senders,
        "claim_idle_s": claim_idle_s,
        "control_refresh_s": 0.05,
        "log_level": "WARNING",
    }
    settings = memory.Settings(**values)
    return ChannelWorker(
        channel=memory.MemoryChannel(client, senders=senders),
        settings=settings,
        pool=pool,
        redis=redis,
        recorder=make_recorder(channel=CHANNEL, settings=settings, pool=pool),
    )


async def peer_holding_first(start: int) -> tuple[memory.Peer, str, list[str], asyncio.Event]:
    """A started peer, 12 numbers from `start`, and the event that answers the first one's
    deliveries: until it is set, a delivery of the first arrives and waits for its answer."""
    peer = memory.Peer()
    await peer.start()
    first, *others = numbers(12, start=start)
    release = peer.held[first] = asyncio.Event()
    peer.arrived[first] = asyncio.Event()
    return peer, first, others, release


async def all_taken_over(pg_pool: asyncpg.Pool, peer: memory.Peer, addresses: list[str]) -> None:
    """Wait for the peer to have every address; their rows are all held by `other` then."""
    while True:
        if all(peer.received[n] for n in addresses):
            break
        await asyncio.sleep(0.05)  # polling the peer's counts
    holders = await pg_pool.fetch(
        "SELECT DISTINCT holder FROM memory_messages WHERE alert = $1", ALERT
    )
    assert [r["holder"] for r in holders] == ["other"]


async def delivered_and_settled(pg_pool: asyncpg.Pool, *, total: int) -> None:
    """Every recipient of ALERT delivered, and a second more: a copy sent twice has left too."""
    await work.wait_states(
        pg_pool, channel=CHANNEL, alert=ALERT, total=total, states=["delivered"], timeout=30
    )
    await asyncio.sleep(1.0)


class _Threaded:
    """Worker `stalled` in a thread of its own, with its own pool and Redis client."""

    def __init__(self, dsn: str, redis_url: str, port: int) -> None:
        self._args = (dsn, redis_url, port)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started = threading.Event()
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        dsn, redis_url, port = self._args
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        redis = connect_redis(redis_url)
        client = memory.PeerClient("127.0.0.1", port)
        try:
            worker = _worker(dsn, redis, pool, client, consumer="stalled", senders=1)
            async with working(worker):
                self.started.set()
                await self._stop.wait()
        finally:
            await client.close()
            await redis.aclose()
            await pool.close()

    def stall(self, seconds: float) -> None:
        """Block its event loop for `seconds`, as a frozen process."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)


async def test_work_taken_over_during_a_stall_is_not_delivered_by_the_stalled_process(
    pg_dsn: str, redis_url: str, pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    await pg_pool.execute(memory.TABLES_SQL)
    peer, first, others, release = await peer_holding_first(600)
    client = memory.PeerClient("127.0.0.1", peer.port)
    stalled = _Threaded(pg_dsn, redis_url, peer.port)
    stalled.thread.start()
    try:
        async with asyncio.timeout(60):
            await asyncio.to_thread(stalled.started.wait, 30)
            await work.add_work(
                redis_client, channel=CHANNEL, alert=ALERT, to=[first, *others], texts=TEXTS
            )
            # Its one sender held at the peer with `first`; the others wait in its lane, queued
            # and held by it.
            await peer.arrived[first].wait()
            del peer.held[first]  # that delivery stays held; another one of it is answered
            other = _worker(pg_dsn, redis_client, pg_pool, client, consumer="other", senders=4)
            async with working(other):
                stalled.stall(STALL_S)
                # The other consumer claims the idle entry, takes its recipients over and sends
                # every one of them.
                await all_taken_over(pg_pool, peer, [first, *others])
                # The stalled process runs again (its sleep ends), looks, and delivers nothing
                # that was taken over once its sender is free.
                await asyncio.sleep(STALL_S)
                release.set()
                await delivered_and_settled(pg_pool, total=len(others) + 1)
    finally:
        release.set()
        stalled.stop()
        await client.close()
        await peer.stop()
    assert {n: peer.received[n] for n in others} == dict.fromkeys(others, 1)
    # `first` was at the peer when the process stalled: its delivery and the taker's (the
    # durability window, as after a crash).
    assert 1 <= peer.received[first] <= 2


async def test_the_fence_skips_a_recipient_whose_outcome_became_durable_while_it_read_the_rows(
    pg_dsn: str, pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    # bench-faults found it: the fence read which rows were still held, a recipient's outcome was
    # committed meanwhile (its row left `queued`, the job left `_holding`), and the fence failed
    # on the missing job, which stopped the process. The test holds the rows' table locked while
    # the fence reads, and writes one outcome under that lock as the recorder would.
    await pg_pool.execute(memory.TABLES_SQL)
    peer, first, others, release = await peer_holding_first(900)
    client = memory.PeerClient("127.0.0.1", peer.port)
    worker = _worker(pg_dsn, redis_client, pg_pool, client, consumer="holder", senders=1)
    consumer = worker.consumer
    try:
        async with asyncio.timeout(30), working(worker):
            await work.add_work(
                redis_client, channel=CHANNEL, alert=ALERT, to=[first, *others], texts=TEXTS
            )
            await peer.arrived[first].wait()  # the other 11 wait in the lane, held
            key = next(k for k in consumer._holding if k[2] == others[0])
            async with pg_pool.acquire() as conn, conn.transaction():
                await conn.execute("LOCK TABLE memory_messages IN ACCESS EXCLUSIVE MODE")
                looking = asyncio.create_task(consumer._look_for_takeovers())
                while True:  # until the fence's read of the rows waits for the lock
                    # pg_stat_activity is read once per transaction unless told to read it again.
                    await conn.execute("SELECT pg_stat_clear_snapshot()")
                    if await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE '%m.holder = $4%'"
                    ):
                        break
                    await asyncio.sleep(0.02)  # polling PostgreSQL: nothing to await on
                # The recorder's commit of that recipient's outcome, and its callback.
                await conn.execute(
                    "UPDATE memory_messages SET state = 'delivered'"
                    " WHERE alert = $1 AND version = $2 AND address = $3",
                    *key,
                )
                consumer._durable([consumer._holding[key]])
            assert await looking == 0  # the rest still queued under this holder: kept
    finally:
        release.set()
        await client.close()
        await peer.stop()
