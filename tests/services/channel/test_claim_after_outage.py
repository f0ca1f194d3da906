"""After Redis was away for longer than `claim_idle_s`, every pending entry looks abandoned: its
idle time counted the outage. A consumer that claimed at once took over what a live one still
held and both sent it; now every consumer first leaves the others a few rounds to make their own
entries fresh (issue 16).

Both workers reach Redis through a TCP relay that the test cuts and restores: an outage for them
while Redis itself, with the entries' idle times, goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis

from services.channel import erase
from services.channel.model import Job
from services.channel.worker import ChannelWorker
from services.kernel.redis_client import connect as connect_redis
from tests.services.channel import memory, work
from tests.services.channel.conftest import CHANNEL, working
from tests.services.channel.test_erase_race import ALERT, TEXTS
from tests.services.channel.test_stall import (
    _worker,
    all_taken_over,
    delivered_and_settled,
    peer_holding_first,
)

#: Entries idle this long are claimed (claim rounds every third of it).
CLAIM_IDLE_S = 2.0
#: Longer than claim_idle_s: every entry is claimable when Redis answers again.
OUTAGE_S = CLAIM_IDLE_S + 1.5
#: Redis answers the holder this much later than the other consumer: the other's claim round
#: comes first (as it does for half of the consumers of a real outage, whichever runs first).
HOLDER_LATER_S = 0.5


class _Relay:
    """A TCP relay on loopback to one port; `cut` drops every connection and refuses new ones
    until `restore`."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.down = False
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()
        self._writers.discard(sink)

    def cut(self) -> None:
        self.down = True
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    def restore(self) -> None:
        self.down = False

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _relayed(redis_url: str) -> tuple[_Relay, aioredis.Redis]:
    """A started relay to Redis, and a client that reaches Redis through it."""
    relay = _Relay(urlsplit(redis_url).port or 6379)
    await relay.start()
    parts = urlsplit(redis_url)
    return relay, connect_redis(urlunsplit(parts._replace(netloc=f"127.0.0.1:{relay.port}")))


def _holder_and_other(
    dsn: str,
    pool: asyncpg.Pool,
    peer: memory.Peer,
    redis_holder: aioredis.Redis,
    redis_other: aioredis.Redis,
) -> tuple[tuple[ChannelWorker[Job], ChannelWorker[Job]], tuple[memory.PeerClient, ...]]:
    """The holder (one sender) and the other consumer (four senders), each on its own Redis
    client and its own connection to the peer; and those two connections."""
    clients = tuple(memory.PeerClient("127.0.0.1", peer.port) for _ in range(2))
    workers = tuple(
        _worker(dsn, redis, pool, client, consumer=name, senders=senders, claim_idle_s=CLAIM_IDLE_S)
        for redis, client, name, senders in (
            (redis_holder, clients[0], "holder", 1),
            (redis_other, clients[1], "other", 4),
        )
    )
    return (workers[0], workers[1]), clients


async def _holder_busy(
    redis: aioredis.Redis, peer: memory.Peer, first: str, others: list[str]
) -> None:
    """Queue the numbers; return once the holder's one sender is at the peer with `first` (its
    answer held), the others waiting in its lane. Another delivery of `first` is answered."""
    await work.add_work(redis, channel=CHANNEL, alert=ALERT, to=[first, *others], texts=TEXTS)
    await peer.arrived[first].wait()
    del peer.held[first]


async def test_a_live_consumer_s_work_is_not_claimed_when_redis_answers_again(
    pg_dsn: str, redis_url: str, pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    await pg_pool.execute(memory.TABLES_SQL)
    peer, first, others, release = await peer_holding_first(700)
    relay_a, redis_a = await _relayed(redis_url)
    relay_b, redis_b = await _relayed(redis_url)
    (holder, other), (client_a, client_b) = _holder_and_other(
        pg_dsn, pg_pool, peer, redis_a, redis_b
    )
    try:
        async with asyncio.timeout(60), working(holder):
            await _holder_busy(redis_client, peer, first, others)
            async with working(other):
                while True:  # both consumers up: their groups made, their reports written
                    live = await erase.live_consumers(redis_client, channel=CHANNEL)
                    if {"holder", "other"} <= set(live):
                        break
                    await asyncio.sleep(0.02)  # polling Redis: nothing to await on
                relay_a.cut()
                relay_b.cut()
                await asyncio.sleep(OUTAGE_S)
                relay_b.restore()
                await asyncio.sleep(HOLDER_LATER_S)
                relay_a.restore()
                # Rounds enough for a claim without the grace, and for the holder's touch.
                await asyncio.sleep(2 * CLAIM_IDLE_S)
                assert not peer.received  # nobody took over what the holder still holds
                release.set()
                await delivered_and_settled(pg_pool, total=len(others) + 1)
    finally:
        release.set()
        for closing in (client_a.close(), client_b.close(), redis_a.aclose(), redis_b.aclose()):
            await closing
        await relay_a.stop()
        await relay_b.stop()
        await peer.stop()
    assert dict(peer.received) == dict.fromkeys([first, *others], 1)
    holders = await pg_pool.fetch(
        "SELECT DISTINCT holder FROM memory_messages WHERE alert = $1", ALERT
    )
    assert [r["holder"] for r in holders] == ["holder"]


async def test_a_consumer_cut_off_from_redis_alone_delivers_none_of_what_was_taken_over(
    pg_dsn: str, redis_url: str, pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    # A partition: the holder no longer reaches Redis, the other consumer does. The holder's
    # entries go idle, the other claims them and sends their recipients; the holder, which goes
    # on running, must not send them too once its sender is free.
    await pg_pool.execute(memory.TABLES_SQL)
    peer, first, others, release = await peer_holding_first(800)
    relay, redis_a = await _relayed(redis_url)
    (holder, other), (client_a, client_b) = _holder_and_other(
        pg_dsn, pg_pool, peer, redis_a, redis_client
    )
    try:
        async with asyncio.timeout(60), working(holder):
            await _holder_busy(redis_client, peer, first, others)
            async with working(other):
                relay.cut()
                await all_taken_over(pg_pool, peer, [first, *others])
                # The holder's sender is free while Redis is still out of its reach: it sends
                # nothing more, then, once Redis answers, learns what was taken over.
                release.set()
                await asyncio.sleep(CLAIM_IDLE_S)
                assert {n: peer.received[n] for n in others} == dict.fromkeys(others, 1)
                relay.restore()
                await delivered_and_settled(pg_pool, total=len(others) + 1)
    finally:
        release.set()
        for closing in (client_a.close(), client_b.close(), redis_a.aclose()):
            await closing
        await relay.stop()
        await peer.stop()
    assert {n: peer.received[n] for n in others} == dict.fromkeys(others, 1)
    # `first` was at the peer when Redis went out of reach: its delivery and the taker's.
    assert 1 <= peer.received[first] <= 2
