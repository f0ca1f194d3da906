"""The recorder on its own: receipts wait for their row, and are dropped after the hold time."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import pytest

from services.channel.model import Entry, Job, State
from services.channel.recorder import ReceiptDropped, Recorder
from services.sms.channel import receipt_row


async def test_a_receipt_waits_for_its_row_then_one_without_a_row_is_dropped(
    pg_pool: asyncpg.Pool,
) -> None:
    recorder = Recorder(
        channel="sms", pool=pg_pool, write_batch=100, write_interval_s=0.01, receipt_hold_s=0.3
    )
    durable: list[Job] = []
    recorder.on_durable = durable.extend
    runner = asyncio.create_task(recorder.run())
    try:
        early = recorder.receipt("opA", "m-1", receipt_row("DELIVRD"))
        stray = recorder.receipt("opA", "nobody", receipt_row("DELIVRD"))
        entry = Entry("1-0", "alert-r", 1, time.time() + 60, remaining=1)
        job = Job(entry, "+32470000001", "opA", "hello", "BE-Alert", 1)
        await pg_pool.execute(
            "INSERT INTO sms_messages (alert, version, address, operator, segments)"
            " VALUES ('alert-r', 1, '+32470000001', 'opA', 1)"
        )
        job.refs, job.via, job.submitted_at = ["m-1"], "opA-0", time.time()
        recorder.submitted(job)

        async with asyncio.timeout(10):
            await early
            with pytest.raises(ReceiptDropped):
                await stray

        row = await pg_pool.fetchrow("SELECT state, message_ids, bind FROM sms_messages")
        assert row is not None
        assert (row["state"], row["message_ids"], row["bind"]) == (
            State.DELIVERED.value,
            ["m-1"],
            "opA-0",
        )
        assert durable == [job]
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
