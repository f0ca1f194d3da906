"""Voice API batches survive a Redis that lost its data (FLUSHALL) before the workers read their
stream entries: the voice service writes the entries again from PostgreSQL, for the calls still
queued only, in the batch's own language, at start-up or as soon as it notices the loss (issue 16;
the shared repair of services/channel/apirepair.py, as for SMS)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from services.channel import codec, keys
from services.channel.apirepair import ApiRepair, Repaired
from services.kernel import keys as shared_keys
from services.kernel.redis_client import connect as connect_redis
from services.voice import batches as api_batches
from services.voice import keys as voice_keys
from services.voice.api import VoiceApi
from simulators.siptrunk import SipTrunkSimulator
from stack.embedded import ManagedProcess
from tests.services.channel import work
from tests.services.voice.conftest import TEXT, numbers, wait_states

StartTrunk = Callable[..., Awaitable[SipTrunkSimulator]]
StartVoice = Callable[..., Awaitable[int]]


@pytest.fixture
async def redis(private_redis: ManagedProcess) -> AsyncIterator[aioredis.Redis]:
    """A client of the test's own Redis, which the test flushes (the tests' shared one stays)."""
    client = connect_redis(private_redis.url)
    try:
        yield client
    finally:
        await client.aclose()


def requeued() -> tuple[float, float]:
    """tocsin_voice_api_batches_requeued_total and tocsin_voice_api_calls_requeued_total."""
    batches = REGISTRY.get_sample_value("tocsin_voice_api_batches_requeued_total") or 0.0
    calls = REGISTRY.get_sample_value("tocsin_voice_api_calls_requeued_total") or 0.0
    return batches, calls


def api(pool: asyncpg.Pool, redis: aioredis.Redis) -> VoiceApi:
    """The voice API's domain calls on their own: batches accepted while no voice worker runs."""
    return VoiceApi(pool=pool, redis=redis, trunk="trunkA", sender="BE-Alert")


def calls(sim: SipTrunkSimulator) -> dict[str, int]:
    """Calls that reached the trunk, per number."""
    return {n: d.calls for n, d in sim.destinations.items()}


async def wait_repaired(redis: aioredis.Redis, *, timeout: float = 20) -> None:
    """Wait until the voice service set its marker again (it has repaired)."""
    async with asyncio.timeout(timeout):
        while True:
            if await redis.exists(voice_keys.API_INTACT):
                return
            await asyncio.sleep(0.05)  # polling Redis: there is nothing to await on


async def test_calls_accepted_before_redis_lost_its_data_are_placed_once_each(
    trunk: StartTrunk,
    voice_here: StartVoice,
    pg_pool: asyncpg.Pool,
    private_redis: ManagedProcess,
    redis: aioredis.Redis,
) -> None:
    sim = await trunk()
    lost_numbers, after_numbers = numbers(6), numbers(3, first=100)
    before = requeued()
    # Accepted (rows queued, entries on the stream) while no voice worker runs.
    lost = await api(pg_pool, redis).place(
        caller="", key="lost", numbers=lost_numbers, language="nl", text=TEXT, ttl_s=600
    )
    await redis.flushall()  # the entries, the group, everything: gone before anyone read them
    # Accepted after the loss: its entries are in this Redis, the repair leaves it alone.
    after = await api(pg_pool, redis).place(
        caller="", key="after", numbers=after_numbers, language="nl", text=TEXT, ttl_s=600
    )

    await voice_here(sim, redis_url=private_redis.url)

    assert await wait_states(pg_pool, alert=lost.batch_id, total=6) == {"delivered": 6}
    assert await wait_states(pg_pool, alert=after.batch_id, total=3) == {"delivered": 3}
    assert calls(sim) == dict.fromkeys(lost_numbers + after_numbers, 1)
    batches, requeued_calls = requeued()
    assert (batches - before[0], requeued_calls - before[1]) == (1, 6)
    counts = await work.counters(pg_pool, channel="voice", alert=lost.batch_id)
    assert counts == {"delivered": (6, 6)}
    # The voice service's marker is its own: alerting's and SMS's repairs still run here.
    assert await redis.exists(voice_keys.API_INTACT)
    assert not await redis.exists(shared_keys.REDIS_MARKER)
    assert not await redis.exists("tocsin:sms:redis:intact")


async def test_calls_placed_already_are_not_placed_again_after_the_loss(
    trunk: StartTrunk,
    voice_here: StartVoice,
    pg_pool: asyncpg.Pool,
    private_redis: ManagedProcess,
    redis: aioredis.Redis,
) -> None:
    sim = await trunk()
    await voice_here(sim, redis_url=private_redis.url, api_repair_interval_s=0.1)
    await wait_repaired(redis)  # a new Redis: nothing waited, the marker is set
    to = numbers(4)
    done = await api(pg_pool, redis).place(
        caller="", key="done", numbers=to, language="fr", text="Ceci est un test.", ttl_s=600
    )
    assert await wait_states(pg_pool, alert=done.batch_id, total=4) == {"delivered": 4}
    before = requeued()

    await redis.flushall()  # lost while the service runs: it notices, finds nothing queued
    await wait_repaired(redis)

    assert requeued() == before
    assert await redis.xlen(keys.stream("voice")) == 0
    assert calls(sim) == dict.fromkeys(to, 1)


async def test_an_expired_batch_whose_entries_were_lost_is_recorded_expired_unplaced(
    trunk: StartTrunk,
    voice_here: StartVoice,
    pg_pool: asyncpg.Pool,
    private_redis: ManagedProcess,
    redis: aioredis.Redis,
) -> None:
    sim = await trunk()
    lost = await api(pg_pool, redis).place(
        caller="", key="late", numbers=numbers(5), language="nl", text=TEXT, ttl_s=1
    )
    await redis.flushall()
    await asyncio.sleep(1.2)  # the batch expires meanwhile

    await voice_here(sim, redis_url=private_redis.url)

    states = await wait_states(
        pg_pool, alert=lost.batch_id, total=5, states=["expired"], timeout=20
    )
    assert states == {"expired": 5}
    assert calls(sim) == {}
    counts = await work.counters(pg_pool, channel="voice", alert=lost.batch_id)
    assert counts == {"expired": (5, 0)}


async def test_the_repair_writes_each_batch_once_in_its_own_language(
    pg_pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    bulk = keys.stream("voice", codec.Priority.BULK)
    voice = api(pg_pool, redis)
    one = await voice.place(
        caller="team", key="one", numbers=numbers(600), language="fr", text="Un.", ttl_s=600
    )
    await voice.place(
        caller="team",
        key="two",
        numbers=numbers(10, first=1000),
        language="de",
        text="Zwei.",
        ttl_s=600,
    )
    await redis.flushall()
    first, second = (ApiRepair(api_batches.BATCHES, pool=pg_pool, redis=redis) for _ in range(2))

    done = await asyncio.gather(first.run_once(), second.run_once())

    assert sorted(done, key=lambda d: d is None) == [Repaired(2, 610, 0, 0), None]
    written: Any = await redis.xrange(bulk)
    entries = [codec.decode(fields) for _, fields in written]
    assert [(e.header.alert, dict(e.header.texts), len(e.to)) for e in entries] == [
        (one.batch_id, {"fr": "Un."}, 500),
        (one.batch_id, {"fr": "Un."}, 100),
        ("api:team:two", {"de": "Zwei."}, 10),
    ]
    assert {lang for e in entries for _, lang in e.to} == {"fr", "de"}
    assert all(e.header.sender == "BE-Alert" and e.header.entity == "" for e in entries)
    assert await redis.exists(voice_keys.API_INTACT)
    assert not await redis.exists(voice_keys.API_REPAIR_LOCK)
    # A repair cut short after its writes, before its marker, writes nothing twice.
    await redis.delete(voice_keys.API_INTACT)
    assert await first.run_once() == Repaired()
    assert await redis.xlen(bulk) == 3


async def test_a_batch_keeps_its_language_but_no_number_and_is_forgotten_after_expiry(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    placed = await api(pg_pool, redis_client).place(
        caller="", key="kept", numbers=numbers(3), language="de", text="Bleiben.", ttl_s=1
    )

    row = await pg_pool.fetchrow(
        "SELECT * FROM voice_api_batches WHERE batch_id = $1", placed.batch_id
    )
    assert row is not None
    assert (row["sender"], row["language"], row["text"], row["entity"]) == (
        "BE-Alert",
        "de",
        "Bleiben.",
        "",
    )
    assert not any(n in str(v) for n in numbers(3) for v in dict(row).values())
    await asyncio.sleep(1.1)  # expired, but not a day ago
    assert await api_batches.BATCHES.forget_expired(pg_pool) == 0
    assert await api_batches.BATCHES.forget_expired(pg_pool, keep_s=0) == 1
    assert await pg_pool.fetchval("SELECT count(*) FROM voice_api_batches") == 0
