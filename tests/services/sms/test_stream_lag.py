"""The running SMS service sets tocsin_stream_lag on the embedded Redis 6.2 (no XINFO `lag`)."""

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
    # The SMSC never answers and one recipient fills the service: it takes one entry and waits.
    sims = await smscs(("opA",), hang=True)
    await start_sms(sims, smsc=sims.spec, routes="opA=32", read_count=1, max_in_flight=1)
    await add_work(redis_client, alert="lag", numbers=numbers(12), per_entry=1)
    await wait_lag(11)
    await add_work(redis_client, alert="lag", numbers=numbers(5, start=12), per_entry=1)
    await wait_lag(16)
    (group,) = await redis_client.xinfo_groups(keys.SMS_STREAM)
    assert group["pending"] == 1
