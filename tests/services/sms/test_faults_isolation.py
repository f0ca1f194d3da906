"""One operator's SMSC down does not stall the others: its work waits, durably queued, while the
other operators deliver everything; once it is back its work goes out too (issue 16)."""

from __future__ import annotations

import asyncio

import asyncpg
import redis.asyncio as aioredis

from simulators.smsc.config import SmscConfig
from simulators.smsc.server import SmscSimulator
from tests.services.sms.conftest import StartSms, StartSmscs, add_work, numbers, wait_outcomes

ALERT = "5a0c1e9e-0000-4000-8000-0000000007c1"


async def per_operator(pool: asyncpg.Pool) -> dict[tuple[str, str], int]:
    """(operator, state) -> recipients of the alert."""
    rows = await pool.fetch(
        "SELECT operator, state, count(*) AS n FROM sms_messages WHERE alert = $1"
        " GROUP BY operator, state",
        ALERT,
    )
    return {(r["operator"], r["state"]): int(r["n"]) for r in rows}


async def test_the_other_operators_deliver_everything_while_one_smsc_refuses_connections(
    smscs: StartSmscs,
    start_sms: StartSms,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    sims = await smscs()
    # Fewer recipients in flight than the down operator's work: reading must go on anyway.
    await start_sms(sims, max_in_flight=60, read_count=2)
    down = sims.by_name["opC"]
    await down.wait_for(lambda: down.bound_sessions == 2, timeout=20)
    port = down.port
    await down.stop()  # opC's SMSC refuses connections from now on

    to = numbers(300)  # 100 per operator, interleaved on the stream
    await add_work(redis_client, alert=ALERT, numbers=to, per_entry=5)
    async with asyncio.timeout(60):
        while True:
            counts = await per_operator(pg_pool)
            if counts.get(("opA", "delivered"), 0) + counts.get(("opB", "delivered"), 0) == 200:
                break
            await asyncio.sleep(0.1)  # polling PostgreSQL: there is nothing to await on
    # opC's work waited durably (queued in PostgreSQL), nothing of it lost or failed.
    assert counts.get(("opC", "queued"), 0) == 100, counts
    assert sum(sims.by_name[op].submit_pdus for op in ("opA", "opB")) == 200

    back = SmscSimulator(SmscConfig(name="opC", port=port))
    await back.start()
    try:
        states = await wait_outcomes(
            pg_pool, alert=ALERT, total=len(to), states=["delivered"], timeout=60
        )
        assert states == {"delivered": len(to)}
        assert sum(back.messages.values()) == 100
    finally:
        await back.stop()
