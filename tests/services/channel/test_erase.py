"""Erasing a removed person's address from the work streams, against a real Redis and worker."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from services.channel import erase, keys
from services.kernel.redis_client import connect as connect_redis
from stack.embedded import ManagedProcess
from tests.services.channel import work
from tests.services.channel.conftest import Harness
from tests.services.sms.conftest import numbers

ALERT = "e7a5e000-0000-4000-8000-000000000001"
CHANNEL = "sms"
STREAM = keys.stream(CHANNEL)
GROUP = keys.group(CHANNEL)
TEXTS = {"en": "Test alert: stay indoors."}


def _to(fields: Any) -> list[str]:
    return [address for address, _ in json.loads(fields[b"to"])]


async def _entries(redis: aioredis.Redis, stream: str = STREAM) -> dict[str, list[str]]:
    found: Any = await redis.xrange(stream)
    return {i.decode(): _to(f) for i, f in found}


async def test_waiting_work_is_rewritten_done_work_deleted_and_pending_work_tombstoned(
    redis_client: aioredis.Redis,
) -> None:
    gone = "+32470999999"
    await redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    # Six entries of two; the removed number is in the 1st (acknowledged), the 3rd (pending:
    # read, not acknowledged) and the 5th and 6th (never read; the 6th holds it alone).
    recipients = [*numbers(1), gone, *numbers(3, start=1), gone, *numbers(3, start=4), gone, gone]
    await work.add_work(
        redis_client, channel=CHANNEL, alert=ALERT, to=recipients, texts=TEXTS, per_entry=2
    )
    ids = list(await _entries(redis_client))
    read: Any = await redis_client.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=4)
    assert [i.decode() for i, _ in read[0][1]] == ids[:4]
    await redis_client.xack(STREAM, GROUP, ids[0], ids[1])
    dead = await redis_client.xadd(
        keys.dead_letters(CHANNEL), {"to": json.dumps([[gone, "en"]]), "dead_error": "x"}
    )

    done = await erase.erase(redis_client, channel=CHANNEL, addresses=[gone])

    after = await _entries(redis_client)
    assert done.pending == [ids[2]]
    assert done.rewritten == 1
    assert (
        done.deleted == 3
    )  # the acknowledged entry, the entry of the number alone, the dead letter
    assert ids[0] not in after  # acknowledged: work done, deleted
    assert after[ids[1]] == recipients[2:4]  # acknowledged, without the number: untouched
    assert gone in after[ids[2]]  # pending: a consumer holds it, left in place
    assert after[ids[3]] == recipients[6:8]
    assert ids[4] not in after
    assert ids[5] not in after
    (copy,) = set(after) - set(ids)
    assert after[copy] == [recipients[8]]  # the 5th without the number, at the end
    assert await redis_client.xrange(keys.dead_letters(CHANNEL)) == []
    assert dead
    tombstones = erase.Tombstones(redis_client, CHANNEL)
    await tombstones.refresh()
    assert tombstones.erased(gone)
    assert not tombstones.erased(recipients[0])
    # The tombstone outlives the pending entry's expiry; the stream keeps no number in clear.
    tombstone: Any = await redis_client.zrange(keys.erased(CHANNEL), 0, -1, withscores=True)
    (until,) = tombstone
    pending: Any = await redis_client.xrange(STREAM, ids[2], ids[2])
    fields = pending[0][1]
    assert until[1] >= float(fields[b"expires"]) + erase.TOMBSTONE_MARGIN_S
    assert until[0].decode() == erase.digest(gone) != gone


async def test_under_concurrent_consumption_nobody_else_is_lost_or_duplicated(
    redis_client: aioredis.Redis,
) -> None:
    gone = "+32470999998"
    others = numbers(600)
    recipients = [x for pair in zip(others, [gone] * 600, strict=True) for x in pair]
    await redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await work.add_work(
        redis_client, channel=CHANNEL, alert=ALERT, to=recipients, texts=TEXTS, per_entry=3
    )
    delivered: list[tuple[str, list[str]]] = []
    stop = asyncio.Event()

    async def consume() -> None:
        # Stopped between reads, never inside one: a read cut short would hide what Redis
        # delivered to it.
        while not stop.is_set():
            reply: Any = await redis_client.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=1)
            for _, items in reply or ():
                delivered.extend((i.decode(), _to(f)) for i, f in items)
            await asyncio.sleep(0)

    async with asyncio.timeout(60):
        consumer = asyncio.create_task(consume())
        done = await erase.erase(redis_client, channel=CHANNEL, addresses=[gone])
        stop.set()
        await consumer
        leftover: Any = await redis_client.xreadgroup(GROUP, "c2", {STREAM: ">"})
    delivered += [(i.decode(), _to(f)) for _, items in leftover or () for i, f in items]
    # Every other recipient is delivered exactly once, whatever the interleaving.
    assert Counter(a for _, to in delivered for a in to if a != gone) == Counter(others)
    # The number reaches a consumer only in entries that were pending when the erasure came
    # to them (a consumer read them first): those are tombstoned, the rest were rewritten.
    holding = {entry_id for entry_id, to in delivered if gone in to}
    assert holding == set(done.pending)
    assert done.rewritten + len(done.pending) == 400


async def test_the_worker_never_sends_to_nor_records_an_address_erased_while_pending(
    harness: Harness, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    gone = numbers(1, start=500)[0]
    to = [*numbers(10), gone]
    await redis_client.xgroup_create(
        harness.stream, keys.group(harness.channel), "0", mkstream=True
    )
    await harness.add_work(redis_client, alert=ALERT, to=to, per_entry=len(to))
    # A consumer that dies holding the entry: pending, as in a crash mid-dispatch.
    await redis_client.xreadgroup(keys.group(harness.channel), "dead", {harness.stream: ">"})
    done = await erase.erase(redis_client, channel=harness.channel, addresses=[gone])
    assert len(done.pending) == 1

    await harness.start(claim_idle_s=0.2)
    counts = await harness.wait_states(
        pg_pool, alert=ALERT, total=len(to), states=["delivered", "cancelled"]
    )

    assert counts == {"delivered": 10, "cancelled": 1}
    assert gone not in harness.sent()
    assert sorted(harness.sent()) == sorted(numbers(10))
    table = f"{harness.channel}_messages"
    rows = await pg_pool.fetch(f"SELECT address, state FROM {table} WHERE state = 'cancelled'")
    assert [r["address"].startswith(erase.ERASED_PREFIX) for r in rows] == [True]
    assert not await pg_pool.fetchval(f"SELECT count(*) FROM {table} WHERE address = $1", gone)
    await harness.wait_acknowledged(redis_client)
    counters = await harness.counters(pg_pool, alert=ALERT)
    assert {state: n for state, (n, _) in counters.items()} == {"delivered": 10, "cancelled": 1}


async def test_a_removal_is_answered_once_every_live_consumer_has_its_tombstone(
    redis_client: aioredis.Redis,
) -> None:
    gone = numbers(1, start=950)[0]
    # Two consumers as the worker runs them (they report with their control keys), and one
    # whose last report is old: gone, not waited for.
    live = {name: erase.Tombstones(redis_client, CHANNEL) for name in ("a", "b")}
    for name, tombstones in live.items():
        await tombstones.check()
        await tombstones.report(name, every_s=0.5)
    dead = erase.Tombstones(redis_client, CHANNEL)
    await dead.check()
    await dead.report("dead", every_s=0.01)
    await asyncio.sleep(1.1)  # older than 4 of its intervals and a second
    for name, tombstones in live.items():
        await tombstones.report(name, every_s=0.5)

    removal = asyncio.create_task(erase.erase(redis_client, channel=CHANNEL, addresses=[gone]))
    await asyncio.sleep(0.2)
    assert not removal.done()  # neither live consumer has the tombstone yet
    await live["a"].check()
    await live["a"].report("a", every_s=0.5)
    await asyncio.sleep(0.2)
    assert not removal.done()  # "b" has not
    await live["b"].check()
    await live["b"].report("b", every_s=0.5)
    async with asyncio.timeout(5):
        done = await removal
    assert done.caught_up
    assert all(t.erased(gone) for t in live.values())
    assert not dead.erased(gone)


async def test_a_removal_does_not_wait_for_ever_on_a_consumer_that_stopped_answering(
    redis_client: aioredis.Redis,
) -> None:
    stuck = erase.Tombstones(redis_client, CHANNEL)
    await stuck.check()
    await stuck.report("stuck", every_s=5.0)  # counted live for 21 s
    done = await erase.erase(redis_client, channel=CHANNEL, addresses=numbers(1, start=960))
    version = done.version
    assert (
        await erase.caught_up(redis_client, channel=CHANNEL, version=version, wait_s=0.2) is False
    )


async def test_the_live_consumers_are_those_that_reported_lately(
    redis_client: aioredis.Redis,
) -> None:
    for name, every in (("a", 0.5), ("b", 0.01)):
        tombstones = erase.Tombstones(redis_client, CHANNEL)
        await tombstones.check()
        await tombstones.report(name, every_s=every)
    assert sorted(await erase.live_consumers(redis_client, channel=CHANNEL)) == ["a", "b"]
    await asyncio.sleep(1.1)  # "b": older than four of its intervals and a second
    assert await erase.live_consumers(redis_client, channel=CHANNEL) == ["a"]


async def test_a_check_while_nothing_was_ever_erased_is_one_get(
    private_redis: ManagedProcess,
) -> None:
    # A server of the test's own: the command counts are its alone.
    client = connect_redis(private_redis.url)
    try:
        tombstones = erase.Tombstones(client, CHANNEL)
        await tombstones.check()  # the first check reads the set
        await client.config_resetstat()
        for _ in range(3):
            await tombstones.check()
        stats: Any = await client.info("commandstats")
        assert stats["cmdstat_get"]["calls"] == 3
        assert "cmdstat_zrangebyscore" not in stats
        # The first erasure moves the counter: the next check reads the set again.
        await erase.erase(client, channel=CHANNEL, addresses=["+32470999997"], wait=False)
        await tombstones.check()
        assert tombstones.erased("+32470999997")
    finally:
        await client.aclose()
