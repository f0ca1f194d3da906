"""kill -9 of a voice process mid-campaign: nobody missed, duplicates bounded and counted."""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
import redis.asyncio as aioredis

from simulators.siptrunk import SipTrunkSimulator
from tests.services.kernel.conftest import ServiceProcess
from tests.services.voice.conftest import add_calls, numbers, wait_states

StartTrunk = Callable[..., Awaitable[SipTrunkSimulator]]


@pytest.mark.timeout(180)
async def test_kill_9_mid_campaign_misses_nobody(
    trunk: StartTrunk,
    voice_process: Callable[..., ServiceProcess],
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    sim = await trunk()
    env = {
        "TOCSIN_TRUNK_CHANNELS": "6",
        "TOCSIN_CLAIM_IDLE_S": "1",
        "TOCSIN_CHANNEL_LEASE_S": "10",
        "TOCSIN_SHUTDOWN_GRACE_S": "1",
    }
    victim = voice_process(sim, TOCSIN_CONSUMER="victim", **env)
    to = numbers(24)
    await add_calls(redis_client, alert="a-crash", to=to, per_entry=2)
    first_invite = await _first_source(sim)
    survivor = voice_process(sim, TOCSIN_CONSUMER="survivor", **env)

    def victim_playing() -> bool:
        return any(
            r.source == first_invite and r.answered and r.frames > 0 and not r.ended
            for r in sim.records
        )

    await sim.wait_until(victim_playing)
    in_progress = sum(1 for r in sim.records if r.source == first_invite and not r.ended)
    os.kill(victim.popen.pid, signal.SIGKILL)
    victim.popen.wait(10)
    counts = await wait_states(pg_pool, alert="a-crash", total=len(to), timeout=150)
    assert counts == {"delivered": len(to)}
    assert survivor.popen.poll() is None
    heard = {n: d.answered for n, d in sim.destinations.items()}
    assert sorted(heard) == to
    assert all(times >= 1 for times in heard.values())  # nobody missed
    duplicates = sum(times - 1 for times in heard.values())
    assert in_progress >= 1
    assert duplicates <= in_progress, f"{duplicates} duplicate calls, {in_progress} in progress"


async def _first_source(sim: SipTrunkSimulator) -> tuple[str, int]:
    await sim.wait_until(lambda: bool(sim.records))
    return sim.records[0].source
