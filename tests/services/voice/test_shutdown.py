"""The voice service built and stopped in this process, with calls ringing and playing: it stops
within a bound (it once hung about one run in twenty: a Redis call swallowed the cancellation of
the stream consumer's control loop, see services/kernel/redis_client.py)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.kernel.serve import serve
from services.voice.__main__ import build
from services.voice.settings import Settings
from simulators.siptrunk import SipTrunkSimulator
from stack.embedded import free_port
from tests.services.voice.conftest import add_calls, numbers

StartTrunk = Callable[..., Awaitable[SipTrunkSimulator]]
#: Seconds the whole shutdown may take: the grace (1 s), the last writes, the server's stop.
STOP_WITHIN_S = 15


def _tasks() -> str:
    """Every task and where it waits, for the failure message."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"--- {task!r:.160}", file=out)
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                print(f"    {frame.f_code.co_filename}:{frame.f_lineno}", file=out)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return out.getvalue()


@pytest.mark.parametrize("round_", range(3))
async def test_stops_within_a_bound_with_calls_ringing_and_playing(
    round_: int,
    trunk: StartTrunk,
    pg_dsn: str,
    redis_url: str,
    redis_client: aioredis.Redis,
    rules_file: Path,
) -> None:
    ringing, playing, busy = numbers(4), numbers(4, first=100), numbers(4, first=200)
    sim = await trunk(
        scripts={
            **{n: ("no_answer",) for n in ringing},
            **{n: ("busy", "busy", "busy") for n in busy},
        }
    )
    settings = Settings(
        database_url=pg_dsn,
        redis_url=redis_url,
        grpc_port=free_port(),
        metrics_port=0,
        trunks=f"trunkA=127.0.0.1:{sim.port}",
        trunk_channels=20,
        sip_t1_s=0.05,
        ring_timeout_s=60,
        retry_min_s=0.05,
        retry_max_s=0.1,
        control_refresh_s=0.01,  # the control loop calls Redis all the time: the old hang's spot
        ratelimit_rules=rules_file,
        shutdown_grace_s=1.0,
        log_level="WARNING",
        insecure_dev=True,
    )
    ready = asyncio.Event()
    service = asyncio.create_task(serve(name="voice", settings=settings, build=build, ready=ready))
    try:
        async with asyncio.timeout(20):
            await ready.wait()
        await add_calls(redis_client, alert="a-stop", to=[*ringing, *playing, *busy], per_entry=3)
        async with asyncio.timeout(30):
            await sim.wait_until(
                lambda: sim.active >= 6 and sum(r.frames > 0 for r in sim.records) >= 2
            )
    finally:
        service.cancel()  # as SIGTERM does: health NOT_SERVING, drain, stop
        done, _ = await asyncio.wait([service], timeout=STOP_WITHIN_S)
    assert done, f"the voice service did not stop within {STOP_WITHIN_S} s:\n{_tasks()}"
    assert service.cancelled()
