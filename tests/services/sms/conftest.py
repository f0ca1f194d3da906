"""Fixtures for the SMS service: SMSC simulators, the service in-process, work on the stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from tocsin.sms.v1 import sms_pb2_grpc

from services.kernel import keys, serve
from services.sms.__main__ import build
from services.sms.settings import Settings
from simulators.smsc.config import SmscConfig
from simulators.smsc.server import SmscSimulator
from tests.services.channel import work
from tests.services.kernel.conftest import start_service, watch_until

__all__ = ["start_service", "watch_until"]

#: The kernel's serve module (the package exports its `serve` function under the same name).

#: Rate-limit rules that never hold a test back (throttling comes from the simulator).
WIDE_OPEN_RULES = Path(__file__).with_name("wide_open_rules.toml")
#: Operators of the tests and the prefixes routed to each.
ROUTES = "opA=3247;opB=3249;opC=3248"


@dataclass
class Smscs:
    """Simulators by operator name."""

    by_name: dict[str, SmscSimulator]

    @property
    def spec(self) -> str:
        """The TOCSIN_SMSC value naming them."""
        return ",".join(f"{n}=127.0.0.1:{s.port}" for n, s in self.by_name.items())

    def messages(self) -> dict[str, int]:
        """Full messages per destination (with '+'), over every simulator."""
        out: dict[str, int] = {}
        for sim in self.by_name.values():
            for dest, n in sim.messages.items():
                out[f"+{dest}"] = out.get(f"+{dest}", 0) + n
        return out

    async def stop(self) -> None:
        """Stop every simulator."""
        for sim in self.by_name.values():
            await sim.stop()


StartSmscs = Callable[..., Awaitable[Smscs]]


@pytest.fixture
async def smscs() -> AsyncIterator[StartSmscs]:
    """Start one simulator per operator (opA, opB, opC), each with the given config fields."""
    started: list[Smscs] = []

    async def start(operators: Sequence[str] = ("opA", "opB", "opC"), **config: Any) -> Smscs:
        found = Smscs({})
        for name in operators:
            sim = SmscSimulator(SmscConfig(name=name, **config))
            await sim.start()
            found.by_name[name] = sim
        started.append(found)
        return found

    yield start
    for s in started:
        await s.stop()


@dataclass
class RunningSms:
    """An SMS service serving in this process."""

    settings: Settings
    task: asyncio.Task[None]
    channel: grpc.aio.Channel

    @property
    def stub(self) -> sms_pb2_grpc.SmsServiceAsyncStub:
        """A client of its API."""
        return sms_pb2_grpc.SmsServiceStub(self.channel)


StartSms = Callable[..., Awaitable[RunningSms]]


def sms_settings(*, pg_dsn: str, redis_url: str, smscs: Smscs, **extra: Any) -> Settings:
    """Settings for a test service: fast claims and writes, local token bucket, free ports."""
    values: dict[str, Any] = {
        "DATABASE_URL": pg_dsn,
        "REDIS_URL": redis_url,
        "grpc_port": 0,
        "metrics_port": 0,
        "smsc": smscs.spec,
        "routes": ROUTES,
        "binds_per_operator": 2,
        "window": 20,
        "ratelimit_rules": WIDE_OPEN_RULES,
        "retry_min_s": 0.05,
        "retry_max_s": 0.2,
        "shutdown_grace_s": 1.0,
        "health_interval_s": 0.2,
        "log_level": "WARNING",
        # The SMS service's own tests bind a plaintext port; tests/security runs it with TLS.
        "insecure_dev": True,
    }
    values.update(extra)
    return Settings(**values)


ServeHere = Callable[[str, Any, Callable[[Any], Awaitable[None]]], Awaitable["asyncio.Task[None]"]]


@pytest.fixture
async def serve_here(metrics_servers: list[Any]) -> AsyncIterator[ServeHere]:
    """Serve a service in this process until the test ends: (name, settings, build) -> task."""
    tasks: list[asyncio.Task[None]] = []

    async def start(
        name: str, settings: Any, build: Callable[[Any], Awaitable[None]]
    ) -> asyncio.Task[None]:
        ready = asyncio.Event()
        task = asyncio.create_task(serve(name=name, settings=settings, build=build, ready=ready))
        tasks.append(task)
        async with asyncio.timeout(20):
            done, _ = await asyncio.wait(
                [task, asyncio.ensure_future(ready.wait())], return_when=asyncio.FIRST_COMPLETED
            )
        if task in done:
            task.result()
        return task

    yield start
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def start_sms(pg_dsn: str, redis_url: str, serve_here: ServeHere) -> AsyncIterator[StartSms]:
    """Serve the SMS service in this process against the given simulators."""
    running: list[RunningSms] = []

    async def start(smscs: Smscs, **extra: Any) -> RunningSms:
        settings = sms_settings(pg_dsn=pg_dsn, redis_url=redis_url, smscs=smscs, **extra)
        port: list[int] = []

        async def capture(kernel: Any) -> None:
            await build(kernel)
            port.append(kernel.server.add_insecure_port("127.0.0.1:0"))

        task = await serve_here("sms", settings, capture)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port[0]}")
        service = RunningSms(settings, task, channel)
        running.append(service)
        return service

    yield start
    for service in running:
        await service.channel.close()


async def add_work(
    redis: aioredis.Redis,
    *,
    alert: str,
    numbers: Sequence[str],
    version: int = 1,
    text: str = "Test alert: stay indoors, close windows.",
    ttl_s: float = 600,
    per_entry: int = 300,
) -> None:
    """Write recipients onto the SMS stream as the targeting service does."""
    await work.add_work(
        redis,
        channel="sms",
        alert=alert,
        to=numbers,
        texts={"en": text, "nl": "NL " + text},
        version=version,
        ttl_s=ttl_s,
        per_entry=per_entry,
    )


def numbers(n: int, *, start: int = 0) -> list[str]:
    """`n` Belgian mobile numbers spread over opA (047x), opB (049x) and opC (048x)."""
    heads = ("+32470", "+32490", "+32480")
    return [f"{heads[i % 3]}{i:06d}" for i in range(start, start + n)]


async def wait_outcomes(
    pool: asyncpg.Pool, *, alert: str, total: int, states: Sequence[str], timeout: float = 60
) -> dict[str, int]:
    """Wait until `total` rows of the alert are in `states`; return counts per state."""
    return await work.wait_states(
        pool, channel="sms", alert=alert, total=total, states=states, timeout=timeout
    )


async def stream_pending(redis: aioredis.Redis) -> int:
    """Entries delivered to the group and not acknowledged."""
    info = await redis.xpending(keys.SMS_STREAM, keys.SMS_GROUP)
    return int(info["pending"])


async def wait_acknowledged(redis: aioredis.Redis, *, timeout: float = 10) -> None:
    """Wait until the group has no pending entry (acknowledgements follow the writes)."""
    async with asyncio.timeout(timeout):
        while True:
            if not await stream_pending(redis):
                return
            await asyncio.sleep(0.05)  # polling Redis: there is nothing to await on
