"""A complete channel in a few lines, for the tests: it delivers to an in-memory peer over a
loopback socket. `python -m tests.services.channel.memory` runs it as a service process (with
TOCSIN_PEER=host:port), so that it can be killed like any channel service.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from typing import ClassVar

from services.channel.codec import Header
from services.channel.model import Entry, Job, State
from services.channel.ports import Answer, Sorted
from services.channel.settings import ChannelSettings
from services.channel.worker import ChannelWorker, make_recorder
from services.kernel import Kernel, run_service

#: The channel's name: stream `tocsin:stream:memory`, tables `memory_messages`, ...
NAME = "memory"
#: Its tables, the shape of every channel's (a real channel has them in a migration).
TABLES_SQL = """
CREATE TABLE IF NOT EXISTS memory_messages (LIKE sms_messages INCLUDING ALL);
CREATE TABLE IF NOT EXISTS memory_message_ids (LIKE sms_message_ids INCLUDING ALL);
"""


class Peer:
    """The far end: answers `<id>\\t<address>` lines with `<id>\\t<reply>`, counting what it took.

    `busy[address]` answers `busy` that many times first; addresses in `refuse` get `refused`;
    a delivery to an address in `held` arrives (`arrived[address]` is set) and is answered only
    once its event is set: a delivery in flight at the peer.
    """

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.received: Counter[str] = Counter()
        #: Addresses as they were taken, in order.
        self.order: list[str] = []
        self._took = asyncio.Event()
        self.busy: Counter[str] = Counter()
        self.refuse: set[str] = set()
        self.held: dict[str, asyncio.Event] = {}
        self.arrived: dict[str, asyncio.Event] = {}
        self.delay_s = delay_s
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop the connections."""
        if self._server is not None:
            self._server.close()
            # Python 3.11's Server.close() leaves accepted connections open: close them too.
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def _answer(self, address: str) -> str:
        if address in self.refuse:
            return "refused"
        if self.busy[address] > 0:
            self.busy[address] -= 1
            return "busy"
        self.received[address] += 1
        self.order.append(address)
        self._took.set()
        return "ok"

    async def wait_taken(self, addresses: list[str]) -> None:
        """Return once every one of `addresses` was taken."""
        missing = {a for a in addresses if a not in self.received}
        seen = len(self.order)
        while missing:
            self._took.clear()
            await self._took.wait()
            missing.difference_update(self.order[seen:])
            seen = len(self.order)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while line := await reader.readline():
                    ident, _, address = line.decode().rstrip("\n").partition("\t")
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    if address in self.held:
                        self.arrived.setdefault(address, asyncio.Event()).set()
                        await self.held[address].wait()
                    writer.write(f"{ident}\t{self._answer(address)}\n".encode())
        finally:
            self._writers.discard(writer)
            writer.close()


class PeerClient:
    """One connection to the peer; answers matched to requests by id."""

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._ids = itertools.count()
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def send(self, address: str) -> str:
        """The peer's reply to one delivery, or `lost` if the connection went or could not be
        made (the peer stopped: delivered again later, as a real channel's link would)."""
        async with self._lock:
            if self._writer is None or self._writer.is_closing():
                try:
                    reader, self._writer = await asyncio.open_connection(*self._address)
                except OSError:
                    return "lost"
                self._reading = asyncio.create_task(self._read(reader))
        ident = str(next(self._ids))
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = fut
        self._writer.write(f"{ident}\t{address}\n".encode())
        return await fut

    async def _read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                ident, _, reply = line.decode().rstrip("\n").partition("\t")
                fut = self._waiting.pop(ident, None)
                if fut is not None and not fut.done():
                    fut.set_result(reply)
        waiting, self._waiting = self._waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_result("lost")

    async def close(self) -> None:
        """Close the connection."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)


class MemoryChannel:
    """The channel: one route, `senders` deliveries at once, one unit per recipient."""

    name = NAME

    def __init__(self, peer: PeerClient, *, senders: int) -> None:
        self._peer = peer
        self._senders = senders

    def lanes(self) -> dict[str, int]:
        """One route."""
        return {"peer": self._senders}

    def job(self, entry: Entry, header: Header, address: str, language: str) -> Job:
        """Any address but an empty one."""
        job = Job(entry, address, "peer", header.text_for(language), header.sender, 1)
        if not address:
            job.error = "invalid address"
        return job

    async def deliver(self, job: Job) -> Answer:
        """Send, and sort the reply."""
        job.attempts += 1
        reply = await self._peer.send(job.address)
        if reply == "ok":
            return Answer(Sorted.DONE, State.DELIVERED)
        if reply == "lost":
            return Answer(Sorted.AGAIN)
        if reply == "busy":
            return Answer(Sorted.LATER, error="busy")
        return Answer(Sorted.FAILED, error=reply)

    def gave_up(self, job: Job, reason: str) -> None:
        """No metrics of its own."""


class Settings(ChannelSettings):
    """The test channel's settings: the peer, and how many deliveries at once."""

    default_grpc_port: ClassVar[int] = 0
    default_metrics_port: ClassVar[int] = 0

    # The peer's host:port.
    peer: str = "127.0.0.1:0"
    # Deliveries at once (the durability window).
    senders: int = 20


async def build(kernel: Kernel[Settings]) -> None:
    """Wire the memory channel on the worker, as a channel service's __main__ does."""
    settings = kernel.settings
    host, _, port = settings.peer.rpartition(":")
    peer = PeerClient(host, int(port))
    recorder = make_recorder(channel=NAME, settings=settings, pool=kernel.pg)
    worker: ChannelWorker[Job] = ChannelWorker(
        channel=MemoryChannel(peer, senders=settings.senders),
        settings=settings,
        pool=kernel.pg,
        redis=kernel.redis,
        recorder=recorder,
    )
    kernel.add_background(worker.run(), name="memory-worker")

    async def shutdown() -> None:
        await worker.drain(timeout=settings.shutdown_grace_s)
        await peer.close()

    kernel.on_shutdown(shutdown)


if __name__ == "__main__":
    run_service(name="memory", settings_cls=Settings, build=build)
