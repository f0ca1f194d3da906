"""The running SMS service's stream upkeep: tocsin_stream_lag on Redis 6.2, and trimming."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from services.kernel import keys
from tests.services.sms.conftest import StartSms, StartSmscs, add_work, numbers

LABELS = {"stream": keys.SMS_STREAM, "group": keys.SMS_GROUP}


async def wait_lag(wanted: float, *, timeout: float = 10) -> None:
    """Wait until the gauge reads `wanted` (the service sets it every 2 s)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                if REGISTRY.get_sample_value("tocsin_stream_lag", LABELS) == wanted:
                    return
                await asyncio.sleep(0.1)  # polling a gauge: there is nothing to await on
    except TimeoutError:
        seen = REGISTRY.get_sample_value("tocsin_stream_lag", LABELS)
        raise AssertionError(f"tocsin_stream_lag is {seen}, not {wanted}") from None


async def test_the_service_reports_entries_its_group_has_not_taken(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis
) -> None:
    # The SMSC throttles every submit and one recipient fills the service: it takes one entry
    # and waits (a hung SMSC would be left and bound again every few seconds, issue 16).
    sims = await smscs(("opA",), max_rate=0)
    await start_sms(sims, smsc=sims.spec, routes="opA=32", read_count=1, max_in_flight=1)
    await add_work(redis_client, alert="lag", numbers=numbers(12), per_entry=1)
    await wait_lag(11)
    await add_work(redis_client, alert="lag", numbers=numbers(5, start=12), per_entry=1)
    await wait_lag(16)
    (group,) = await redis_client.xinfo_groups(keys.SMS_STREAM)
    assert group["pending"] == 1


async def test_the_service_trims_the_entries_it_has_processed(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis
) -> None:
    # 250 entries of one recipient each: Redis trims whole nodes of 100 entries.
    sims = await smscs(("opA",))
    await start_sms(sims, smsc=sims.spec, routes="opA=32")
    await add_work(redis_client, alert="trim", numbers=numbers(250), per_entry=1)
    try:
        async with asyncio.timeout(30):
            while True:
                if await redis_client.xlen(keys.SMS_STREAM) <= 150:
                    break
                await asyncio.sleep(0.2)  # the service trims every 2 s: nothing to await on
    except TimeoutError:
        length = await redis_client.xlen(keys.SMS_STREAM)
        raise AssertionError(f"the stream still holds {length} of 250 entries") from None
    # What is never trimmed (unread, pending, the last delivered): tests/services/kernel.
