"""The e-mail service on this test's PostgreSQL and Redis, against a relay simulator or aiosmtpd."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from aiosmtpd.handlers import AsyncMessage
from aiosmtpd.smtp import SMTP
from tocsin.email.v1 import email_pb2, email_pb2_grpc

from services.channel import codec, keys
from services.email import __main__ as email_main
from services.email.settings import Settings
from services.kernel.tls import channel_to, load_material
from simulators.smtp import RelayConfig, RelaySimulator
from stack.embedded import free_port
from tests.services.channel.conftest import processes, serve_here
from tests.services.channel.work import wait_states

__all__ = ["processes", "serve_here"]

ALERT = "11111111-2222-4333-8444-555555555555"


def addresses(n: int, *, prefix: str = "citizen") -> list[str]:
    """`n` distinct addresses."""
    return [f"{prefix}{i}@example.org" for i in range(n)]


async def add_work(
    redis: aioredis.Redis,
    *,
    to: Sequence[tuple[str, str]],
    alert: str = ALERT,
    version: int = 1,
    kind: str = "emergency",
    texts: dict[str, str] | None = None,
) -> None:
    """Recipients (address, language) onto the e-mail stream, as targeting writes them."""
    header = codec.Header(
        alert=alert,
        version=version,
        kind=kind,
        expires=time.time() + 600,
        sender="BE-Alert",
        texts=texts
        or {
            "fr": "Évacuez le quartier de Jambes. Montez à l'étage.",
            "nl": "Verlaat de wijk. Ga naar boven.",
            "en": "Leave the area. Go upstairs.",
        },
    )
    async with redis.pipeline(transaction=False) as pipe:
        for fields in codec.entries(header, list(to), size=codec.ENTRY_SIZE):
            pipe.xadd(keys.stream("email"), fields)  # type: ignore[arg-type]
        await pipe.execute()


async def states(
    pool: asyncpg.Pool, *, total: int, wanted: Sequence[str], alert: str = ALERT
) -> dict[str, int]:
    """Wait until `total` recipients of the alert are in `wanted` states; counts per state."""
    return await wait_states(
        pool, channel="email", alert=alert, total=total, states=wanted, timeout=60
    )


@dataclass
class Service:
    """The e-mail service's settings as started, and a stub of its API."""

    settings: Settings
    stub: email_pb2_grpc.EmailServiceAsyncStub

    async def progress(self, alert: str = ALERT) -> dict[int, int]:
        """Recipients per outcome (proto State) over every version."""
        reply = await self.stub.GetAlertProgress(email_pb2.GetAlertProgressRequest(alert_id=alert))
        found: dict[int, int] = {}
        for version in reply.versions:
            for c in version.counts:
                found[c.state] = found.get(c.state, 0) + c.count
        return found


StartEmail = Callable[..., Awaitable[Service]]
#: The relay fixture: a simulator with the given behaviour, started.
Relay = Callable[..., Awaitable[RelaySimulator]]


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    """Relay simulators with the given behaviour; stopped after the test."""
    started: list[RelaySimulator] = []

    async def make(**fields: Any) -> RelaySimulator:
        sim = RelaySimulator(RelayConfig(keep_messages=True, **fields))
        await sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()


def email_values(pg_dsn: str, redis_url: str, relay_port: int, **extra: Any) -> dict[str, Any]:
    """Settings of a service under test: quick retries, small transactions waiting little."""
    return {
        "database_url": pg_dsn,
        "redis_url": redis_url,
        "grpc_port": free_port(),
        "metrics_port": 0,
        "smtp_port": relay_port,
        "smtp_tls": "none",
        "smtp_connections": 2,
        "smtp_linger_s": 0.01,
        "bounce_port": free_port(),
        "retry_min_s": 0.05,
        "retry_max_s": 0.2,
        "claim_idle_s": 2.0,
        "shutdown_grace_s": 1.0,
        "log_level": "WARNING",
        # Plaintext unless the test gives tls_dir (test_access.py runs it with mutual TLS).
        "insecure_dev": "tls_dir" not in extra,
        **extra,
    }


@pytest.fixture
async def start_email(
    pg_dsn: str, redis_url: str, serve_here: Callable[..., Awaitable[None]]
) -> AsyncIterator[StartEmail]:
    """Serve the e-mail service in this process against the relay on `relay_port`."""
    channels: list[grpc.aio.Channel] = []

    async def start(relay_port: int, **extra: Any) -> Service:
        settings = Settings(**email_values(pg_dsn, redis_url, relay_port, **extra))
        await serve_here("email", settings, email_main.build)
        address = f"127.0.0.1:{settings.grpc_bind_port}"
        caller = extra.get("tls_dir")
        material = None if caller is None else load_material(caller.parent / "alerting")
        channel = channel_to(address, service="email", material=material)
        channels.append(channel)
        return Service(settings, email_pb2_grpc.EmailServiceStub(channel))

    yield start
    for channel in channels:
        await channel.close()


class Inbox(AsyncMessage):
    """aiosmtpd's own message handler: an independent relay that keeps what it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Message] = []
        self.received: dict[str, int] = {}
        self.arrived = asyncio.Event()

    async def handle_message(self, message: Message) -> None:
        self.messages.append(message)
        for address in str(message["X-RcptTo"]).split(", "):
            self.received[address] = self.received.get(address, 0) + 1
        self.arrived.set()


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[Inbox, int]]:
    """A plain aiosmtpd server on a free port and what it received."""
    handler = Inbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    try:
        yield handler, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
