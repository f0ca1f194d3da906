"""The voice service under test: served in this process or as its own, against the trunk
simulator, with real PostgreSQL, Redis, SIP, RTP and speech."""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateways.tts import Espeak, render_prompt
from services.channel import codec, keys
from services.voice.__main__ import build
from services.voice.settings import Settings
from simulators.siptrunk import SipTrunkSimulator
from stack.embedded import free_port
from tests.gateways.sip.conftest import Factory, trunk_factory
from tests.services.channel import work
from tests.services.channel.conftest import processes, serve_here
from tests.services.kernel.conftest import ServiceProcess

__all__ = ["processes", "serve_here", "trunk_factory"]

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
def trunk(trunk_factory: Factory) -> Factory:
    """Start simulated trunks (fast timers, as the SIP gateway's tests); stopped after the test."""
    return trunk_factory


@pytest.fixture
async def voice_here(
    serve_here: Callable[..., Awaitable[None]], pg_dsn: str, redis_url: str, rules_file: Path
) -> Callable[..., Awaitable[int]]:
    """Serve the voice service in this process against a trunk; returns its gRPC port."""

    async def start(sim: SipTrunkSimulator, **extra: Any) -> int:
        port = free_port()
        values: dict[str, Any] = {
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
            "insecure_dev": True,
            **extra,
        }
        await serve_here("voice", Settings(**values), build)
        return port

    return start


@pytest.fixture
def voice_process(
    processes: Callable[..., ServiceProcess], pg_dsn: str, redis_url: str, rules_file: Path
) -> Callable[..., ServiceProcess]:
    """Start `python -m services.voice` processes; killed after the test."""

    def start(sim: SipTrunkSimulator, **env: str) -> ServiceProcess:
        return processes(
            "services.voice",
            **{
                "DATABASE_URL": pg_dsn,
                "REDIS_URL": redis_url,
                "TOCSIN_TRUNKS": f"trunkA=127.0.0.1:{sim.port}",
                "TOCSIN_SIP_T1_S": "0.05",
                "TOCSIN_RATELIMIT_RULES": str(rules_file),
                "TOCSIN_INSECURE_DEV": "true",
                **env,
            },
        )

    return start


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
    return await work.wait_states(
        pool, channel="voice", alert=alert, total=total, states=states, timeout=timeout
    )


@functools.cache
def message_frames() -> int:
    """RTP frames of TEXT played twice, as the service renders it."""
    return 2 * len(render_prompt(Espeak().speak(text=TEXT, language="nl")).pcma)


def numbers(n: int, *, first: int = 0) -> list[str]:
    """Distinct Belgian landline numbers."""
    return [f"+3250{first + i:06d}" for i in range(n)]
