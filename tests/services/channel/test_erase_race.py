"""A removal that lands while the worker holds the recipient's work (docs/security.md): the job
waiting in a lane is never sent, a delivery in flight is recorded on the row the removal renamed,
and the number is nowhere in the delivery records afterwards, the counters exact."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.channel import erase, keys, store
from services.channel.model import Entry, Job, State
from services.channel.recorder import Recorder
from services.channel.retention import erase_address
from tests.services.channel import work
from tests.services.channel.conftest import CHANNEL, Running, working
from tests.services.sms.conftest import numbers

ALERT = "e7a5e000-0000-4000-8000-0000000000a1"
TEXTS = {"en": "Test alert: stay indoors."}


async def _remove(pool: asyncpg.Pool, redis: aioredis.Redis, address: str) -> str:
    """A removal as RemoveSubscriber does it: streams (tombstone) first, then the records."""
    done = await erase.erase(redis, channel=CHANNEL, addresses=[address])
    token = done.tokens[address]
    await erase_address(pool, address=address, tokens={CHANNEL: token}, channels=[CHANNEL])
    return token


async def _records(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"SELECT address, state FROM {CHANNEL}_messages WHERE alert = $1", ALERT
    )
    return [dict(r) for r in rows]


async def _holding(pool: asyncpg.Pool, address: str) -> int:
    """Rows and message-id rows of every channel table that hold `address`."""
    found = 0
    for table in (f"{CHANNEL}_messages", f"{CHANNEL}_message_ids"):
        found += await pool.fetchval(f"SELECT count(*) FROM {table} WHERE address = $1", address)
    return int(found)


async def _settled(pool: asyncpg.Pool, redis: aioredis.Redis, total: int) -> None:
    await work.wait_states(
        pool,
        channel=CHANNEL,
        alert=ALERT,
        total=total,
        states=["delivered", "cancelled"],
        timeout=30,
    )
    async with asyncio.timeout(30):
        while True:
            info = await redis.xpending(keys.stream(CHANNEL), keys.group(CHANNEL))
            if not int(info["pending"]):
                return
            await asyncio.sleep(0.05)  # polling Redis: there is nothing to await on


async def _add(redis: aioredis.Redis, to: Sequence[str]) -> None:
    await work.add_work(redis, channel=CHANNEL, alert=ALERT, to=to, texts=TEXTS, per_entry=len(to))


async def test_a_job_waiting_in_a_lane_when_the_removal_lands_is_never_sent(
    running_memory: Running, pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    first, gone, *others = numbers(5, start=700)
    peer, worker = running_memory.peer, running_memory.worker
    release = peer.held[first] = asyncio.Event()
    peer.arrived[first] = asyncio.Event()
    await _add(redis_client, [first, gone, *others])
    async with asyncio.timeout(60), working(worker):
        # The one sender is busy with `first` at the peer: `gone` was taken from the stream,
        # recorded queued and waits in the lane.
        await peer.arrived[first].wait()
        assert {r["address"]: r["state"] for r in await _records(pg_pool)}[gone] == "queued"
        # The removal is answered once the worker has the tombstone (it reads them with its
        # control keys, every control_refresh_s): the sender is let go at once after it.
        token = await _remove(pg_pool, redis_client, gone)
        assert worker.tombstones.erased(gone)
        release.set()
        await _settled(pg_pool, redis_client, total=5)

    assert gone not in peer.received
    assert sorted(peer.received) == sorted([first, *others])
    rows = await _records(pg_pool)
    placeholder = erase.placeholder(token, ALERT, 1)
    assert sorted((r["address"] == placeholder, r["state"]) for r in rows) == [
        (False, "delivered"),
        (False, "delivered"),
        (False, "delivered"),
        (False, "delivered"),
        (True, "cancelled"),
    ]
    assert await _holding(pg_pool, gone) == 0
    counters = await work.counters(pg_pool, channel=CHANNEL, alert=ALERT)
    assert {state: n for state, (n, _) in counters.items()} == {"delivered": 4, "cancelled": 1}


async def test_a_delivery_in_flight_when_the_removal_lands_is_recorded_on_the_renamed_row(
    running_memory: Running, pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    gone, *others = numbers(4, start=800)
    peer, worker = running_memory.peer, running_memory.worker
    release = peer.held[gone] = asyncio.Event()
    peer.arrived[gone] = asyncio.Event()
    await _add(redis_client, [gone, *others])
    async with asyncio.timeout(60), working(worker):
        await peer.arrived[gone].wait()  # at the peer, its answer held back
        token = await _remove(pg_pool, redis_client, gone)
        placeholder = erase.placeholder(token, ALERT, 1)
        assert {r["address"]: r["state"] for r in await _records(pg_pool)}[placeholder] == (
            "queued"
        )
        release.set()
        await _settled(pg_pool, redis_client, total=4)

    # Too late not to send; but its outcome went onto the renamed row, not a new one.
    assert gone in peer.received
    rows = await _records(pg_pool)
    assert sorted((r["address"] == placeholder, r["state"]) for r in rows) == [
        (False, "delivered"),
        (False, "delivered"),
        (False, "delivered"),
        (True, "delivered"),
    ]
    assert await _holding(pg_pool, gone) == 0
    counters = await work.counters(pg_pool, channel=CHANNEL, alert=ALERT)
    assert {state: n for state, (n, _) in counters.items()} == {"delivered": 4}


@pytest.mark.parametrize("renamed_first", [True, False])
async def test_a_row_queued_under_the_number_after_the_removal_goes_to_its_placeholder(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, renamed_first: bool
) -> None:
    # A take that read the tombstones just before the removal queues its row just after the
    # renaming (queueing runs outside the erasure lock): beside the renamed row, or alone.
    gone, tables = numbers(1, start=900)[0], store.Tables.of("sms")

    async def queue() -> None:
        await store.queue(
            pg_pool,
            tables,
            alerts=[ALERT],
            versions=[1],
            addresses=[gone],
            operators=["opA"],
            segments=[1],
        )

    if renamed_first:
        await queue()
    done = await erase.erase(redis_client, channel="sms", addresses=[gone])
    await erase_address(pg_pool, address=gone, tokens={"sms": done.tokens[gone]})
    await queue()
    recorder = Recorder(
        channel="sms", pool=pg_pool, write_batch=100, write_interval_s=0.01, receipt_hold_s=1
    )
    recorder.tombstones = erase.Tombstones(redis_client, "sms")
    entry = Entry("1-0", ALERT, 1, time.time() + 60, remaining=1)
    job = Job(entry, gone, "opA", "hello", "BE-Alert", 1)
    job.error = "recipient removed"
    recorder.final(job, State.CANCELLED)
    async with asyncio.timeout(20):
        await recorder.flush_once()
        await recorder.close()

    rows = await pg_pool.fetch("SELECT address, state FROM sms_messages")
    placeholder = erase.placeholder(done.tokens[gone], ALERT, 1)
    assert [(r["address"], r["state"]) for r in rows] == [(placeholder, "cancelled")]
    counters = await work.counters(pg_pool, channel="sms", alert=ALERT)
    assert counters == {"cancelled": (1, 0)}
