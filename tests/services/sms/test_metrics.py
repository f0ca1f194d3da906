"""The SMS service exports every metric docs/metrics.md names for it, with live values."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import REGISTRY, generate_latest

from tests.services.sms.conftest import StartSms, StartSmscs, add_work, numbers, wait_outcomes

METRICS_DOC = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"


def documented(section: str) -> list[str]:
    """Metric names of one section of docs/metrics.md."""
    text = METRICS_DOC.read_text(encoding="utf-8")
    part = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(tocsin_[a-z_]+)`", part, flags=re.MULTILINE)


async def test_documented_sms_and_stream_metrics_are_exported(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sims = await smscs(("opA",))
    await start_sms(sims, smsc=sims.spec, routes="opA=32", metrics_port=0)
    await add_work(redis_client, alert="metrics", numbers=[*numbers(20), "+0000"])
    await wait_outcomes(pg_pool, alert="metrics", total=21, states=["delivered", "failed"])

    text = generate_latest(REGISTRY).decode()

    names = documented("SMS service") + documented("Streams")
    assert len(names) == 15
    for name in names:
        assert f"# TYPE {name} " in text, name
    for sample in (
        'tocsin_sms_submitted_total{bind="opA-0",operator="opA"}',
        'tocsin_sms_segments_total{operator="opA"}',
        'tocsin_sms_delivered_total{operator="opA"}',
        'tocsin_sms_failed_total{operator="opA",reason="permanent"}',
        'tocsin_smpp_bind_up{bind="opA-1",operator="opA"} 1.0',
        'tocsin_sms_receipt_latency_seconds_count{operator="opA"}',
        'tocsin_stream_length{stream="tocsin:stream:sms"}',
    ):
        assert sample in text, sample
