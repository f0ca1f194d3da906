"""Nothing stale is handed to an operator, reconnect included: texts waiting inside a bind while
the SMSC is down are withdrawn unsent when their alert is cancelled, superseded or expires
meanwhile, or their number is removed, while the others go out once it is back (issues 15, 16)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from services.channel import erase
from services.channel.retention import erase_address
from services.kernel import keys
from simulators.smsc.config import SmscConfig
from simulators.smsc.server import SmscSimulator
from tests.services.sms.conftest import StartSms, StartSmscs, add_work, numbers, wait_outcomes

STALE = "5a0c1e9e-0000-4000-8000-0000000005a1"
FRESH = "5a0c1e9e-0000-4000-8000-0000000005a2"
#: The alert's life when it is to expire while the SMSC is down.
SHORT_TTL_S = 3.0


def withdrawn(operator: str) -> float:
    """tocsin_sms_withdrawn_total of `operator`."""
    value = REGISTRY.get_sample_value("tocsin_sms_withdrawn_total", {"operator": operator})
    return value or 0.0


async def smsc_gone(smscs: StartSmscs, start_sms: StartSms) -> int:
    """The SMS service bound to opA's SMSC, which then goes away: every reconnect is refused
    from now on. Its port, to serve it again there."""
    sims = await smscs(("opA",))
    await start_sms(sims, routes="opA=32", control_refresh_s=0.1)
    first = sims.by_name["opA"]
    await first.wait_for(lambda: first.bound_sessions == 2, timeout=20)
    await first.stop()
    return first.port


@pytest.mark.parametrize("ended", ["cancelled", "superseded", "expired"])
async def test_texts_waiting_for_a_down_smsc_are_not_sent_once_their_alert_ended(
    ended: str,
    smscs: StartSmscs,
    start_sms: StartSms,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    port = await smsc_gone(smscs, start_sms)
    before = withdrawn("opA")

    stale, fresh = numbers(30), numbers(10, start=100)
    ttl = SHORT_TTL_S if ended == "expired" else 600.0
    await add_work(redis_client, alert=STALE, numbers=stale, ttl_s=ttl)
    await add_work(redis_client, alert=FRESH, numbers=fresh)
    await wait_outcomes(pg_pool, alert=STALE, total=len(stale), states=["queued"], timeout=20)
    await wait_outcomes(pg_pool, alert=FRESH, total=len(fresh), states=["queued"], timeout=20)
    expires = time.time() + ttl
    if ended == "cancelled":
        await redis_client.set(keys.alert_cancelled(STALE), "1")
    elif ended == "superseded":
        await redis_client.set(keys.alert_version(STALE), "2")
    # Long enough for a few control refreshes (0.1 s), or for the alert to expire.
    await asyncio.sleep(1.0 if ended != "expired" else max(0.0, expires - time.time()) + 0.2)

    back = SmscSimulator(SmscConfig(name="opA", port=port))
    await back.start()
    try:
        fresh_states = await wait_outcomes(
            pg_pool, alert=FRESH, total=len(fresh), states=["delivered"], timeout=60
        )
        stale_states = await wait_outcomes(
            pg_pool, alert=STALE, total=len(stale), states=[ended], timeout=20
        )
        assert fresh_states == {"delivered": len(fresh)}
        assert stale_states == {ended: len(stale)}
        # The SMSC got the fresh alert's texts only, and none past its validity.
        assert sum(back.messages.values()) == len(fresh)
        assert back.submit_pdus == len(fresh)
        assert back.stale_submits == 0
        # They had waited inside the bind, and were withdrawn there.
        assert withdrawn("opA") - before == len(stale)
    finally:
        await back.stop()


async def test_a_number_removed_while_its_text_waits_for_a_down_smsc_is_not_sent(
    smscs: StartSmscs,
    start_sms: StartSms,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    port = await smsc_gone(smscs, start_sms)
    before = withdrawn("opA")
    gone, *kept = numbers(5, start=200)
    await add_work(redis_client, alert=FRESH, numbers=[gone, *kept])
    await wait_outcomes(pg_pool, alert=FRESH, total=5, states=["queued"], timeout=20)

    # The text to `gone` waits inside a bind for the SMSC when the number is removed, as
    # RemoveSubscriber does it: streams (tombstone) first, then the delivery records.
    done = await erase.erase(redis_client, channel="sms", addresses=[gone])
    assert done.caught_up
    await erase_address(pg_pool, address=gone, tokens={"sms": done.tokens[gone]})

    back = SmscSimulator(SmscConfig(name="opA", port=port))
    await back.start()
    try:
        states = await wait_outcomes(
            pg_pool, alert=FRESH, total=5, states=["delivered", "cancelled"], timeout=60
        )
        assert states == {"delivered": 4, "cancelled": 1}
        assert sorted(back.messages) == sorted(n.lstrip("+") for n in kept)
        assert withdrawn("opA") - before == 1
        placeholder = erase.placeholder(done.tokens[gone], FRESH, 1)
        rows = await pg_pool.fetch(
            "SELECT address, state FROM sms_messages WHERE alert = $1", FRESH
        )
        assert {r["address"]: r["state"] for r in rows}[placeholder] == "cancelled"
    finally:
        await back.stop()
