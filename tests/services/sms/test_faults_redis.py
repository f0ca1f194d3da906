"""A Redis that lost its data (FLUSHALL mid-run): the SMS consumer finds its group gone, creates
it again and goes on, instead of retrying NOGROUP forever (issue 16)."""

from __future__ import annotations

import asyncpg
from prometheus_client import REGISTRY

from services.kernel.redis_client import connect as connect_redis
from stack.embedded import ManagedProcess
from tests.services.sms.conftest import StartSms, StartSmscs, add_work, numbers, wait_outcomes

BEFORE = "5a0c1e9e-0000-4000-8000-0000000006b1"
AFTER = "5a0c1e9e-0000-4000-8000-0000000006b2"


def group_lost() -> float:
    """tocsin_channel_group_lost_total of SMS."""
    value = REGISTRY.get_sample_value("tocsin_channel_group_lost_total", {"channel": "sms"})
    return value or 0.0


async def test_the_consumer_group_lost_with_redis_data_is_recreated_and_work_resumes(
    smscs: StartSmscs,
    start_sms: StartSms,
    pg_pool: asyncpg.Pool,
    private_redis: ManagedProcess,
) -> None:
    sims = await smscs()
    await start_sms(sims, REDIS_URL=private_redis.url)
    redis = connect_redis(private_redis.url)
    try:
        first = numbers(30)
        await add_work(redis, alert=BEFORE, numbers=first)
        await wait_outcomes(pg_pool, alert=BEFORE, total=len(first), states=["delivered"])
        lost = group_lost()

        await redis.flushall()  # the stream, its group, the control keys: all gone
        then = numbers(30, start=500)
        await add_work(redis, alert=AFTER, numbers=then)  # XADD makes a stream without a group

        states = await wait_outcomes(
            pg_pool, alert=AFTER, total=len(then), states=["delivered"], timeout=60
        )
        assert states == {"delivered": len(then)}
        assert group_lost() > lost
        # Health shows the group missing only until it exists again.
        missing = REGISTRY.get_sample_value("tocsin_channel_group_missing", {"channel": "sms"})
        assert missing == 0.0
        # Nothing of the first alert went out twice.
        assert sum(sims.messages().values()) == len(first) + len(then)
    finally:
        await redis.aclose()
