"""An operator's link limit counts submit_sm PDUs: texts of several segments take one token per
segment, so the SMSC never sees more PDUs in a second than the operator's bucket allows."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from gateways.smpp.gsm import encode_text
from tests.services.sms.conftest import StartSms, StartSmscs, add_work, numbers, wait_outcomes

ALERT = "5a0c1e9e-0000-4000-8000-0000000000a1"
#: The operator's agreed rate in submit_sm per second; the lease tiles with no burst above it.
RATE = 100
RULES = f"""
lease = 10
headroom = 0.0
[bucket."sms:global"]
rate = 1_000_000
capacity = 100_000
[bucket."sms:op:*"]
rate = {RATE}
capacity = 10
"""
#: French with curly apostrophes and accents: UCS-2, two segments of 67 characters.
TWO = (
    "Incendie chimique au port : restez à l\u2019intérieur, fermez portes et fenêtres,"
    " écoutez la radio."
)
#: Three GSM 7-bit segments of 153 characters.
THREE = ("Chemical fire at the port: stay inside, close doors and windows. " * 6)[:400]


async def test_multi_segment_texts_never_exceed_the_operators_pdu_rate(
    smscs: StartSmscs,
    start_sms: StartSms,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    assert len(encode_text(TWO, reference=1).parts) == 2
    assert len(encode_text(THREE, reference=1).parts) == 3
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    # The simulator answers "throttled" to any submit_sm above the rate in one second.
    sims = await smscs(("opA",), max_rate=RATE)
    await start_sms(sims, smsc=sims.spec, routes="opA=32", ratelimit_rules=rules)
    two, three = numbers(90, start=0), numbers(40, start=1000)
    await add_work(redis_client, alert=ALERT, numbers=two, text=TWO)
    await add_work(redis_client, alert=ALERT, numbers=three, text=THREE)

    await wait_outcomes(
        pg_pool, alert=ALERT, total=len(two) + len(three), states=["delivered"], timeout=30
    )

    sim = sims.by_name["opA"]
    pdus = 2 * len(two) + 3 * len(three)
    assert sum(sim.per_second.values()) == pdus
    # Every whole second at the SMSC held at most the agreed rate of PDUs, and none was throttled.
    assert max(sim.per_second.values()) <= RATE, dict(sim.per_second)
    assert sim.statuses.get(0x58, 0) == 0
    # The limiter paced them: 300 PDUs at 100/s take about three seconds, not one and a half.
    assert len(sim.per_second) >= pdus // RATE
