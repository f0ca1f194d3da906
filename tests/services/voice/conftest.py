"""The voice service under test: served in this process or as its own, against the trunk
simulator, with real PostgreSQL, Redis, SIP, RTP and speech."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import prometheus_client
import pytest
import redis.asyncio as aioredis

from gateways.tts import Espeak, render_prompt
from services.channel import codec, keys
from services.kernel import serve
from services.voice.__main__ import build
from services.voice.settings import Settings
from simulators.siptrunk import SipTrunkSimulator, TrunkConfig
from stack.embedded import free_port
from tests.services.kernel.conftest import ServiceProcess, service_env

kernel_serve = importlib.import_module("services.kernel.serve")
ROOT = Path(__file__).resolve().parents[3]
#: Short, so that a call (spoken twice, with its pauses) lasts a few seconds.
TEXT = "Test. Blijf binnen."
#: Calls per second wide open: these tests are about behaviour, not the trunk's CPS.
RULES = 'lease = 50\n[bucket."voice:trunk:*"]\nrate = 1000\ncapacity = 50\n'


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    """A rules file with the trunk's bucket opened wide."""
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return path


@pytest.fixture
async def trunk() -> AsyncIterator[Callable[..., Awaitable[SipTrunkSimulator]]]:
    """Start simulated trunks (fast timers); stopped after the test."""
    started: list[SipTrunkSimulator] = []

    async def start(**config: Any) -> SipTrunkSimulator:
        sim = SipTrunkSimulator(TrunkConfig(t1=0.05, ring_delay=0.05, **config))
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest.fixture
async def voice_here(
    monkeypatch: pytest.MonkeyPatch, pg_dsn: str, redis_url: str, rules_file: Path
) -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """Serve the voice service in this process against a trunk; returns its gRPC port."""
    tasks: list[asyncio.Task[None]] = []
    metrics_servers: list[Any] = []

    def start_http_server(*args: Any, **kwargs: Any) -> Any:
        server, thread = prometheus_client.start_http_server(*args, **kwargs)
        metrics_servers.append(server)
        return server, thread

    monkeypatch.setattr(kernel_serve, "start_http_server", start_http_server)

    async def start(sim: SipTrunkSimulator, **extra: Any) -> int:
        port = free_port()
        settings = Settings(
            **{
                "database_url": pg_dsn,
                "redis_url": redis_url,
                "grpc_port": port,
                "metrics_port": 0,
                "trunks": f"trunkA=127.0.0.1:{sim.port}",
                "trunk_channels": 20,
                "sip_t1_s": 0.05,
                "ring_timeout_s": 5,
                "retry_min_s": 0.1,
                "retry_max_s": 0.2,
                "control_refresh_s": 0.1,
                "ratelimit_rules": rules_file,
                "shutdown_grace_s": 1.0,
                "log_level": "WARNING",
                **extra,
            }
        )
        ready = asyncio.Event()
        task = asyncio.create_task(serve(name="voice", settings=settings, build=build, ready=ready))
        tasks.append(task)
        async with asyncio.timeout(30):
            done, _ = await asyncio.wait(
                [task, asyncio.ensure_future(ready.wait())], return_when=asyncio.FIRST_COMPLETED
            )
        if task in done:
            task.result()
        return port

    yield start
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for server in metrics_servers:
        server.server_close()


@pytest.fixture
def voice_process(
    pg_dsn: str, redis_url: str, rules_file: Path
) -> Iterator[Callable[..., ServiceProcess]]:
    """Start `python -m services.voice` processes; killed after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(sim: SipTrunkSimulator, **env: str) -> ServiceProcess:
        grpc_port, metrics_port = free_port(), free_port()
        popen = subprocess.Popen(
            [sys.executable, "-m", "services.voice"],
            cwd=ROOT,
            env=service_env(
                DATABASE_URL=pg_dsn,
                REDIS_URL=redis_url,
                TOCSIN_GRPC_PORT=str(grpc_port),
                TOCSIN_METRICS_PORT=str(metrics_port),
                TOCSIN_TRUNKS=f"trunkA=127.0.0.1:{sim.port}",
                TOCSIN_SIP_T1_S="0.05",
                TOCSIN_RATELIMIT_RULES=str(rules_file),
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


async def add_calls(
    redis: aioredis.Redis,
    *,
    alert: str,
    to: Sequence[str],
    version: int = 1,
    ttl_s: float = 600,
    per_entry: int = 500,
) -> None:
    """Recipients (Dutch) onto the voice stream, as targeting writes them."""
    header = codec.Header(
        alert=alert,
        version=version,
        kind="test",
        expires=time.time() + ttl_s,
        sender="BE-Alert",
        texts={"nl": TEXT},
    )
    async with redis.pipeline(transaction=False) as pipe:
        for fields in codec.entries(header, [(a, "nl") for a in to], size=per_entry):
            pipe.xadd(keys.stream("voice"), fields)  # type: ignore[arg-type]
        await pipe.execute()


async def wait_states(
    pool: asyncpg.Pool,
    *,
    alert: str,
    total: int,
    states: Sequence[str] = ("delivered", "failed", "cancelled", "expired"),
    timeout: float = 60,
) -> dict[str, int]:
    """Wait until `total` rows of the alert are in `states`; counts per state."""
    sql = "SELECT state, count(*) FROM voice_messages WHERE alert = $1 GROUP BY state"
    async with asyncio.timeout(timeout):
        while True:
            counts = {r[0]: r[1] for r in await pool.fetch(sql, alert)}
            if sum(counts.get(s, 0) for s in states) >= total:
                return counts
            await asyncio.sleep(0.1)  # polling PostgreSQL: there is nothing to await on


@functools.cache
def message_frames() -> int:
    """RTP frames of TEXT played twice, as the service renders it."""
    return 2 * len(render_prompt(Espeak().speak(text=TEXT, language="nl")).pcma)


def numbers(n: int, *, first: int = 0) -> list[str]:
    """Distinct Belgian landline numbers."""
    return [f"+3250{first + i:06d}" for i in range(n)]
