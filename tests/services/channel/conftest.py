"""One harness over SMS and the memory test channel, so that the worker's tests run on both."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.channel import keys
from services.channel.model import Job
from services.channel.worker import ChannelWorker, make_recorder
from stack.embedded import free_port
from tests.services.channel import memory, work
from tests.services.kernel.conftest import ServiceProcess, service_env
from tests.services.sms.conftest import (
    ROUTES,
    WIDE_OPEN_RULES,
    ServeHere,
    StartSms,
    StartSmscs,
    numbers,
    serve_here,
    smscs,
    start_sms,
)

__all__ = ["serve_here", "smscs", "start_sms"]

#: The kernel's serve module (the package exports its `serve` function under the same name).
kernel_serve = importlib.import_module("services.kernel.serve")
ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Harness:
    """A channel under test: how to run it, feed it and see what reached its peer."""

    channel: str
    #: Serve it in this process with these settings.
    start: Callable[..., Awaitable[None]]
    #: Start it as its own process with these TOCSIN_ variables.
    start_process: Callable[..., ServiceProcess]
    #: What reached the far end: address -> times.
    sent: Callable[[], dict[str, int]]
    #: Deliveries one process may have in hand without a durable trace.
    window: int

    @property
    def stream(self) -> str:
        """The channel's work stream."""
        return keys.stream(self.channel)

    async def add_work(
        self,
        redis: aioredis.Redis,
        *,
        alert: str,
        to: Sequence[str],
        version: int = 1,
        per_entry: int = 300,
    ) -> None:
        """Recipients onto the channel's stream, through the codec."""
        await work.add_work(
            redis,
            channel=self.channel,
            alert=alert,
            to=to,
            texts={"en": "Test alert: stay indoors."},
            version=version,
            per_entry=per_entry,
        )

    async def wait_states(
        self,
        pool: asyncpg.Pool,
        *,
        alert: str,
        total: int,
        states: Sequence[str],
        timeout: float = 60,
    ) -> dict[str, int]:
        """Wait until `total` rows of the alert are in `states`; counts per state."""
        return await work.wait_states(
            pool, channel=self.channel, alert=alert, total=total, states=states, timeout=timeout
        )

    async def counters(self, pool: asyncpg.Pool, *, alert: str) -> dict[str, tuple[int, int]]:
        """The progress counters of the alert: state -> (recipients, units)."""
        return await work.counters(pool, channel=self.channel, alert=alert)

    async def wait_acknowledged(self, redis: aioredis.Redis, *, timeout: float = 10) -> None:
        """Wait until the group has no pending entry."""
        async with asyncio.timeout(timeout):
            while True:
                info = await redis.xpending(self.stream, keys.group(self.channel))
                if not int(info["pending"]):
                    return
                await asyncio.sleep(0.05)  # polling Redis: there is nothing to await on


@pytest.fixture
def processes() -> Iterator[Callable[..., ServiceProcess]]:
    """Start `python -m <module>` processes with the given environment; killed after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(module: str, **env: str) -> ServiceProcess:
        grpc_port, metrics_port = free_port(), free_port()
        popen = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=service_env(
                TOCSIN_GRPC_PORT=str(grpc_port),
                TOCSIN_METRICS_PORT=str(metrics_port),
                TOCSIN_HEALTH_INTERVAL_S="0.2",
                TOCSIN_HEALTH_TIMEOUT_S="0.5",
                TOCSIN_LOG_LEVEL="WARNING",
                **env,
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(popen)
        return ServiceProcess(popen, grpc_port, metrics_port)

    yield start
    for popen in started:
        if popen.poll() is None:
            popen.kill()
        popen.wait(10)


@pytest.fixture(params=["sms", "memory"])
async def harness(
    request: pytest.FixtureRequest,
    pg_dsn: str,
    redis_url: str,
    pg_pool: asyncpg.Pool,
    smscs: StartSmscs,
    start_sms: StartSms,
    serve_here: ServeHere,
    processes: Callable[..., ServiceProcess],
) -> AsyncIterator[Harness]:
    """SMS against an SMSC simulator, or the memory channel against its peer."""
    stores = {"DATABASE_URL": pg_dsn, "REDIS_URL": redis_url}
    if request.param == "sms":
        sims = await smscs(("opA",))
        common = {"smsc": sims.spec, "routes": "opA=32", "binds_per_operator": 2, "window": 20}

        async def start_sms_here(**extra: Any) -> None:
            await start_sms(sims, **{**common, **extra})

        def start_sms_process(**env: str) -> ServiceProcess:
            return processes(
                "services.sms",
                **stores,
                TOCSIN_SMSC=sims.spec,
                TOCSIN_ROUTES="opA=32",
                TOCSIN_BINDS_PER_OPERATOR="2",
                TOCSIN_WINDOW="20",
                TOCSIN_RATELIMIT_RULES=str(WIDE_OPEN_RULES),
                **env,
            )

        yield Harness("sms", start_sms_here, start_sms_process, sims.messages, window=40)
        return
    await pg_pool.execute(memory.TABLES_SQL)
    peer = memory.Peer(delay_s=0.001)
    await peer.start()
    spec = f"127.0.0.1:{peer.port}"

    async def start_memory_here(**extra: Any) -> None:
        values: dict[str, Any] = {
            **stores,
            "grpc_port": 0,
            "metrics_port": 0,
            "peer": spec,
            "senders": 20,
            "retry_min_s": 0.05,
            "retry_max_s": 0.2,
            "shutdown_grace_s": 1.0,
            "log_level": "WARNING",
            # Plaintext, as the SMS service's own tests: tests/security runs services with TLS.
            "insecure_dev": True,
            **extra,
        }
        await serve_here("memory", memory.Settings(**values), memory.build)

    def start_memory_process(**env: str) -> ServiceProcess:
        return processes(
            "tests.services.channel.memory", **stores, TOCSIN_PEER=spec, TOCSIN_SENDERS="20", **env
        )

    yield Harness(
        "memory", start_memory_here, start_memory_process, lambda: dict(peer.received), 20
    )
    await peer.stop()


__all__ += ["ROUTES", "numbers"]


# -- the memory channel's worker in the test's own process ----------------------------------

#: The memory test channel's name.
CHANNEL = memory.NAME


class Running:
    """The memory channel's worker in this process (one sender), and its gated peer."""

    def __init__(self, peer: memory.Peer, worker: ChannelWorker[Job]) -> None:
        self.peer = peer
        self.worker = worker


@pytest.fixture
async def running_memory(
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
        # The worker reads tombstones with its control keys: soon, in tests of removals.
        "control_refresh_s": 0.05,
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


@contextlib.asynccontextmanager
async def working(worker: ChannelWorker[Job]) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
