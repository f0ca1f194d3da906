"""An SMS at the SMSC when its number is removed: the submit_sm_resp and the receipt that come
after the removal are recorded on the row it renamed, under its placeholder, never the number."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import redis.asyncio as aioredis

from services.channel import erase, store
from services.channel.model import Entry, Job, State
from services.channel.recorder import Recorder
from services.channel.retention import erase_address
from services.sms.channel import receipt_row
from tests.services.channel import work
from tests.services.sms.conftest import StartSms, StartSmscs, add_work, wait_outcomes

ALERT = "e7a5e000-0000-4000-8000-0000000000b1"
GONE, KEPT = "+32470000901", "+32470000902"


async def test_a_submission_and_a_receipt_after_the_removal_land_on_the_renamed_row(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    recorder = Recorder(
        channel="sms", pool=pg_pool, write_batch=100, write_interval_s=0.01, receipt_hold_s=5
    )
    # As the worker wires it: the tombstones read in memory, checked with each write.
    recorder.tombstones = erase.Tombstones(redis_client, "sms")
    entry = Entry("1-0", ALERT, 1, time.time() + 60, remaining=2)
    jobs = [Job(entry, address, "opA", "hello", "BE-Alert", 1) for address in (GONE, KEPT)]
    await store.queue(
        pg_pool,
        store.Tables.of("sms"),
        alerts=[ALERT] * 2,
        versions=[1] * 2,
        addresses=[GONE, KEPT],
        operators=["opA"] * 2,
        segments=[1] * 2,
    )
    runner = asyncio.create_task(recorder.run())
    try:
        async with asyncio.timeout(20):
            # Both submit_sm are at the SMSC, their responses not yet in, when the removal lands.
            done = await erase.erase(redis_client, channel="sms", addresses=[GONE])
            token = done.tokens[GONE]
            await erase_address(pg_pool, address=GONE, tokens={"sms": token})
            for i, job in enumerate(jobs):
                job.refs, job.via, job.submitted_at = [f"m-{i}"], "opA-0", time.time()
                recorder.submitted(job)
            await recorder.flush_once()
            await asyncio.gather(
                *(recorder.receipt("opA", f"m-{i}", receipt_row("DELIVRD")) for i in range(2))
            )
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner

    placeholder = erase.placeholder(token, ALERT, 1)
    rows = await pg_pool.fetch("SELECT address, state, message_ids FROM sms_messages")
    assert sorted((r["address"], r["state"], r["message_ids"]) for r in rows) == sorted(
        [(placeholder, "delivered", ["m-0"]), (KEPT, "delivered", ["m-1"])]
    )
    ids = await pg_pool.fetch("SELECT message_id, address FROM sms_message_ids")
    assert sorted((r["message_id"], r["address"]) for r in ids) == [
        ("m-0", placeholder),
        ("m-1", KEPT),
    ]
    counters = await work.counters(pg_pool, channel="sms", alert=ALERT)
    assert {state: n for state, (n, _) in counters.items()} == {"delivered": 2}
    assert counters == await work.counted(pg_pool, channel="sms", alert=ALERT)


async def test_a_receipt_on_its_way_when_the_removal_lands_finds_the_renamed_row(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    recorder = Recorder(
        channel="sms", pool=pg_pool, write_batch=100, write_interval_s=0.01, receipt_hold_s=1
    )
    recorder.tombstones = erase.Tombstones(redis_client, "sms")
    entry = Entry("1-0", ALERT, 1, time.time() + 60, remaining=1)
    job = Job(entry, GONE, "opA", "hello", "BE-Alert", 1)
    await store.queue(
        pg_pool,
        store.Tables.of("sms"),
        alerts=[ALERT],
        versions=[1],
        addresses=[GONE],
        operators=["opA"],
        segments=[1],
    )
    job.refs, job.via, job.submitted_at = ["m-9"], "opA-0", time.time()
    recorder.submitted(job)
    await recorder.flush_once()
    runner = asyncio.create_task(recorder.run())
    try:
        async with asyncio.timeout(20):
            done = await erase.erase(redis_client, channel="sms", addresses=[GONE])
            await erase_address(pg_pool, address=GONE, tokens={"sms": done.tokens[GONE]})
            await recorder.receipt("opA", "m-9", receipt_row("DELIVRD"))
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner

    placeholder = erase.placeholder(done.tokens[GONE], ALERT, 1)
    rows = await pg_pool.fetch("SELECT address, state FROM sms_messages")
    assert [(r["address"], r["state"]) for r in rows] == [(placeholder, State.DELIVERED.value)]
    dump = str(await pg_pool.fetch("SELECT * FROM sms_message_ids"))
    assert GONE not in dump
    counters = await work.counters(pg_pool, channel="sms", alert=ALERT)
    assert {state: n for state, (n, _) in counters.items()} == {"delivered": 1}


async def test_through_the_service_a_receipt_after_the_removal_lands_on_the_renamed_row(
    smscs: StartSmscs,
    start_sms: StartSms,
    pg_pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
) -> None:
    # The SMSC answers the submit_sm at once and holds the receipts for a while: the removal
    # lands between the two.
    sims = await smscs(("opA",), receipt_delay_s=3.0)
    await start_sms(sims, routes="opA=32", receipt_hold_s=2.0)
    others = [f"+3247000096{i}" for i in range(3)]
    await add_work(redis_client, alert=ALERT, numbers=[GONE, *others])
    await wait_outcomes(pg_pool, alert=ALERT, total=4, states=["submitted"], timeout=30)
    done = await erase.erase(redis_client, channel="sms", addresses=[GONE])
    await erase_address(pg_pool, address=GONE, tokens={"sms": done.tokens[GONE]})
    placeholder = erase.placeholder(done.tokens[GONE], ALERT, 1)
    state = await pg_pool.fetchval("SELECT state FROM sms_messages WHERE address = $1", placeholder)
    assert state == "submitted"  # the receipt is still on its way

    await wait_outcomes(pg_pool, alert=ALERT, total=4, states=["delivered"], timeout=30)

    rows = await pg_pool.fetch("SELECT address, state FROM sms_messages")
    assert sorted((r["address"], r["state"]) for r in rows) == sorted(
        [(placeholder, "delivered"), *((n, "delivered") for n in others)]
    )
    dump = str(await pg_pool.fetch("SELECT * FROM sms_message_ids"))
    assert GONE not in dump
    counters = await work.counters(pg_pool, channel="sms", alert=ALERT)
    assert {state: n for state, (n, _) in counters.items()} == {"delivered": 4}
