"""The voice service end to end: stream in, calls through the simulated trunk, outcomes out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import redis.asyncio as aioredis

from services.kernel import keys as shared
from simulators.siptrunk import SipTrunkSimulator
from tests.services.kernel.conftest import ServiceProcess
from tests.services.voice.conftest import add_calls, message_frames, numbers, wait_states

StartTrunk = Callable[..., Awaitable[SipTrunkSimulator]]
StartProcess = Callable[..., ServiceProcess]

#: The settings `voice_here` gives an in-process service, for a `python -m services.voice`
#: process: these tests run the service as a process, which the test kills when it ends.
FAST = {
    "TOCSIN_TRUNK_CHANNELS": "20",
    "TOCSIN_RING_TIMEOUT_S": "5",
    "TOCSIN_RETRY_MIN_S": "0.1",
    "TOCSIN_RETRY_MAX_S": "0.2",
    "TOCSIN_CONTROL_REFRESH_S": "0.1",
    "TOCSIN_SHUTDOWN_GRACE_S": "1.0",
}


def start_voice(voice_process: StartProcess, sim: SipTrunkSimulator, **env: str) -> None:
    """A voice process on the trunk, with FAST settings and `env` over them."""
    voice_process(sim, **{**FAST, **env})


async def test_every_number_is_called_once_and_hears_the_message_twice(
    trunk: StartTrunk,
    voice_process: StartProcess,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    sim = await trunk()
    start_voice(voice_process, sim)
    to = numbers(12)
    await add_calls(redis_client, alert="a-once", to=to, per_entry=5)
    counts = await wait_states(pg_pool, alert="a-once", total=len(to))
    assert counts == {"delivered": 12}
    assert sorted(sim.destinations) == to
    assert all(d.calls == 1 and d.answered == 1 for d in sim.destinations.values())
    assert {r.frames for r in sim.records} == {message_frames()}  # the whole message, twice
    assert all(r.seq_errors == 0 and r.ts_errors == 0 for r in sim.records)
    units = await pg_pool.fetchval(
        "SELECT sum(segments) FROM voice_messages WHERE alert = 'a-once'"
    )
    assert units == 12
    progress = await pg_pool.fetch(
        "SELECT state, recipients, units FROM channel_progress"
        " WHERE alert = 'a-once' AND channel = 'voice' AND recipients > 0"
    )
    assert [(r["state"], r["recipients"], r["units"]) for r in progress] == [("delivered", 12, 12)]
    assert sim.max_active <= 20


async def test_busy_and_unanswered_are_retried_rejections_are_not(
    trunk: StartTrunk,
    voice_process: StartProcess,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    later, always_busy, rejected, unanswered = numbers(4)
    sim = await trunk(
        scripts={
            later: ("busy", "answer"),
            always_busy: ("busy", "busy", "busy", "answer"),
            rejected: ("reject", "answer"),
            unanswered: ("no_answer", "answer"),
        }
    )
    start_voice(voice_process, sim, TOCSIN_MAX_ATTEMPTS="3", TOCSIN_RING_TIMEOUT_S="0.5")
    await add_calls(redis_client, alert="a-retry", to=[later, always_busy, rejected, unanswered])
    counts = await wait_states(pg_pool, alert="a-retry", total=4)
    assert counts == {"delivered": 2, "failed": 2}
    rows = {
        r["address"]: (r["state"], r["attempts"], r["error"])
        for r in await pg_pool.fetch(
            "SELECT address, state, attempts, error FROM voice_messages WHERE alert = 'a-retry'"
        )
    }
    assert rows[later][:2] == ("delivered", 2)
    assert rows[unanswered][:2] == ("delivered", 2)
    assert rows[always_busy] == ("failed", 3, "busy (486) after 3 attempts")
    assert rows[rejected] == ("failed", 1, "rejected (404)")
    calls = {n: d.calls for n, d in sim.destinations.items()}
    assert calls == {later: 2, always_busy: 3, rejected: 1, unanswered: 2}
    assert sim.cancels == 1


async def test_cancel_stops_ringing_calls_and_cuts_no_message(
    trunk: StartTrunk,
    voice_process: StartProcess,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    ringing = numbers(5)
    playing = numbers(1, first=100)[0]
    sim = await trunk(scripts={n: ("no_answer",) for n in ringing}, keep_audio=False)
    start_voice(voice_process, sim, TOCSIN_RING_TIMEOUT_S="60")
    await add_calls(redis_client, alert="a-cancel", to=[*ringing, playing])

    def all_up() -> bool:
        answered = [r for r in sim.records if r.answered]
        return sim.active == 6 and bool(answered) and answered[0].frames > 0

    await sim.wait_until(all_up)
    await redis_client.set(shared.alert_cancelled("a-cancel"), "1")
    counts = await wait_states(pg_pool, alert="a-cancel", total=6)
    assert counts == {"cancelled": 5, "delivered": 1}
    assert sim.cancels == 5
    heard = next(r for r in sim.records if r.answered)
    assert heard.number == playing
    others = [r for r in sim.records if not r.answered]
    assert all(r.outcome == "cancelled" for r in others)
    assert heard.frames == message_frames()
    assert heard.ended
    charged = await pg_pool.fetchval(
        "SELECT sum(units) FROM channel_progress WHERE alert = 'a-cancel' AND channel = 'voice'"
    )
    assert charged == 1


async def test_channels_are_never_exceeded(
    trunk: StartTrunk,
    voice_process: Callable[..., ServiceProcess],
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    sim = await trunk(channels=4)
    for consumer in ("one", "two"):  # two replicas on the same trunk
        voice_process(sim, TOCSIN_TRUNK_CHANNELS="4", TOCSIN_CONSUMER=consumer)
    to = numbers(12)
    await add_calls(redis_client, alert="a-chan", to=to, per_entry=3)
    counts = await wait_states(pg_pool, alert="a-chan", total=12)
    assert counts == {"delivered": 12}
    assert sim.max_active == 4
    assert sim.unavailable == 0
