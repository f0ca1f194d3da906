"""Failover: a trunk in trouble (503 without Retry-After, silence) hands its calls to the next."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import redis.asyncio as aioredis

from simulators.siptrunk import SipTrunkSimulator
from tests.services.kernel.conftest import ServiceProcess
from tests.services.voice.conftest import add_calls, message_frames, numbers, wait_states
from tests.services.voice.test_channel import FAST

StartTrunk = Callable[..., Awaitable[SipTrunkSimulator]]
StartProcess = Callable[..., ServiceProcess]


def start_on_two(
    voice_process: StartProcess, first: SipTrunkSimulator, second: SipTrunkSimulator
) -> None:
    """A voice process with `first` as its calling trunk and `second` behind it."""
    voice_process(
        first,
        **{
            **FAST,
            "TOCSIN_TRUNKS": f"trunkA=127.0.0.1:{first.port},trunkB=127.0.0.1:{second.port}",
            "TOCSIN_FAILOVER_HOLD_S": "120",
        },
    )


async def attempts(pool: asyncpg.Pool, alert: str) -> list[int]:
    """Attempts recorded per recipient of the alert."""
    rows = await pool.fetch("SELECT attempts FROM voice_messages WHERE alert = $1", alert)
    return [r["attempts"] for r in rows]


async def test_a_trunk_answering_503_hands_its_calls_to_the_next_and_is_passed_over(
    trunk: StartTrunk,
    voice_process: StartProcess,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    # No channel free, and no Retry-After: every INVITE is refused with a bare 503.
    broken = await trunk(channels=0, retry_after=0)
    spare = await trunk()
    start_on_two(voice_process, broken, spare)
    first = numbers(6)
    await add_calls(redis_client, alert="a-fail", to=first, per_entry=3)
    assert await wait_states(pg_pool, alert="a-fail", total=6) == {"delivered": 6}
    refused = len(broken.records)
    assert 1 <= refused <= 6
    assert broken.unavailable == refused
    assert all(r.outcome == "unavailable" and not r.answered for r in broken.records)
    assert sorted(spare.destinations) == first
    assert all(d.calls == 1 and d.answered == 1 for d in spare.destinations.values())
    assert {r.frames for r in spare.records} == {message_frames()}
    assert await attempts(pg_pool, "a-fail") == [1] * 6  # the trunk's refusal is no attempt
    # Held: the next calls go straight to the second trunk.
    later = numbers(4, first=50)
    await add_calls(redis_client, alert="a-fail-2", to=later)
    assert await wait_states(pg_pool, alert="a-fail-2", total=4) == {"delivered": 4}
    assert len(broken.records) == refused
    assert sorted(spare.destinations) == sorted([*first, *later])


async def test_a_silent_trunk_times_out_and_its_calls_go_to_the_next(
    trunk: StartTrunk,
    voice_process: StartProcess,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    silent = await trunk()
    silent.gone = True  # it receives and answers nothing: timer B ends each INVITE
    spare = await trunk()
    start_on_two(voice_process, silent, spare)
    to = numbers(3)
    await add_calls(redis_client, alert="a-silent", to=to)
    assert await wait_states(pg_pool, alert="a-silent", total=3) == {"delivered": 3}
    assert silent.records == []
    assert sorted(spare.destinations) == to
    assert all(d.calls == 1 and d.answered == 1 for d in spare.destinations.values())
    assert await attempts(pg_pool, "a-silent") == [1] * 3


async def test_with_one_trunk_in_trouble_the_call_is_tried_again_later(
    trunk: StartTrunk,
    voice_process: StartProcess,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    number = numbers(1)[0]
    sim = await trunk(scripts={number: ("unavailable", "unavailable", "answer")}, retry_after=0)
    voice_process(sim, **FAST)
    await add_calls(redis_client, alert="a-one", to=[number])
    assert await wait_states(pg_pool, alert="a-one", total=1) == {"delivered": 1}
    assert sim.destinations[number].calls == 3
    assert sim.destinations[number].answered == 1
    assert await attempts(pg_pool, "a-one") == [1]
