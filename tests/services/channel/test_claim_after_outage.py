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
from services.kernel.redis_client import connect as connect_redis
from tests.services.channel import memory, work
from tests.services.channel.conftest import CHANNEL, working
from tests.services.channel.test_erase_race import ALERT, TEXTS
from tests.services.channel.test_stall import _worker, delivered_and_settled
from tests.services.sms.conftest import numbers

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


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


async def test_a_live_consumer_s_work_is_not_claimed_when_redis_answers_again(
    pg_dsn: str, redis_url: str, pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    await pg_pool.execute(memory.TABLES_SQL)
    peer = memory.Peer()
    await peer.start()
    target = urlsplit(redis_url).port or 6379
    relay_a, relay_b = _Relay(target), _Relay(target)
    await relay_a.start()
    await relay_b.start()
    first, *others = numbers(12, start=700)
    release = peer.held[first] = asyncio.Event()
    peer.arrived[first] = asyncio.Event()
    redis_a = connect_redis(_through(redis_url, relay_a.port))
    redis_b = connect_redis(_through(redis_url, relay_b.port))
    client_a = memory.PeerClient("127.0.0.1", peer.port)
    client_b = memory.PeerClient("127.0.0.1", peer.port)
    holder = _worker(
        pg_dsn, redis_a, pg_pool, client_a, consumer="holder", senders=1, claim_idle_s=CLAIM_IDLE_S
    )
    other = _worker(
        pg_dsn, redis_b, pg_pool, client_b, consumer="other", senders=4, claim_idle_s=CLAIM_IDLE_S
    )
    try:
        async with asyncio.timeout(60), working(holder):
            await work.add_work(
                redis_client, channel=CHANNEL, alert=ALERT, to=[first, *others], texts=TEXTS
            )
            # Its one sender held at the peer with `first`; the others wait in its lane.
            await peer.arrived[first].wait()
            del peer.held[first]  # that delivery stays held; another one of it is answered
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
