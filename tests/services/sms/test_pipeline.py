"""The SMS pipeline against SMSC simulators: stream in, SMPP out, states in PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as aioredis
from tocsin.sms.v1 import sms_pb2

from services.kernel import keys
from tests.services.channel import work
from tests.services.sms.conftest import (
    Smscs,
    StartSms,
    StartSmscs,
    add_work,
    numbers,
    wait_acknowledged,
    wait_outcomes,
)

ALERT = "5a0c1e9e-0000-4000-8000-000000000001"


async def test_every_recipient_is_sent_once_routed_and_delivered(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sims = await smscs()
    service = await start_sms(sims)
    dest = [*numbers(900), "+33612345678"]  # a French number goes to the default operator
    await add_work(redis_client, alert=ALERT, numbers=dest)

    counts = await wait_outcomes(pg_pool, alert=ALERT, total=len(dest), states=["delivered"])

    assert counts == {"delivered": len(dest)}
    assert sims.messages() == dict.fromkeys(dest, 1)
    assert set(sims.by_name["opA"].messages) == {d[1:] for d in dest if d[:6] == "+32470"} | {
        "33612345678"
    }
    assert set(sims.by_name["opB"].messages) == {d[1:] for d in dest if d[:6] == "+32490"}
    ids = await pg_pool.fetchval("SELECT count(*) FROM sms_message_ids")
    assert ids == len(dest)
    progress = await service.stub.GetAlertProgress(sms_pb2.GetAlertProgressRequest(alert_id=ALERT))
    (v1,) = progress.versions
    assert v1.total == len(dest)
    assert v1.segments_submitted == len(dest)
    assert [(c.state, c.count) for c in v1.counts] == [(sms_pb2.STATE_DELIVERED, len(dest))]
    await wait_acknowledged(redis_client)


async def test_throttled_submissions_back_off_and_nothing_is_lost(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sims = await smscs(("opA",), max_rate=150)
    await start_sms(sims, smsc=sims.spec, routes="opA=32", throttle_min_s=0.1)
    dest = numbers(450)
    await add_work(redis_client, alert=ALERT, numbers=dest)

    await wait_outcomes(pg_pool, alert=ALERT, total=len(dest), states=["delivered"], timeout=30)

    sim = sims.by_name["opA"]
    throttled = sim.statuses[0x58]
    assert throttled > 0
    # It backs off: far fewer refusals than submissions (a rate-blind sender hammers on).
    assert throttled < len(dest)
    assert sims.messages() == dict.fromkeys(dest, 1)


async def test_dropped_connection_mid_window_resubmits_what_was_outstanding(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sims = await smscs(("opA",), drop_after_submits=200, submit_latency_s=0.01)
    await start_sms(sims, smsc=sims.spec, routes="opA=32", binds_per_operator=1, window=50)
    dest = numbers(600)
    await add_work(redis_client, alert=ALERT, numbers=dest)

    counts = await wait_outcomes(
        pg_pool, alert=ALERT, total=len(dest), states=["delivered"], timeout=60
    )

    assert counts == {"delivered": len(dest)}
    # The simulator counts only answered submits: every number exactly once.
    assert sims.messages() == dict.fromkeys(dest, 1)
    assert sims.by_name["opA"].binds >= 2


async def test_permanent_failures_are_recorded_and_not_retried(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sims = await smscs(("opA",), permanent_failure_share=0.3, seed=7)
    await start_sms(sims, smsc=sims.spec, routes="opA=32")
    dest = numbers(300)
    await add_work(redis_client, alert=ALERT, numbers=dest)

    counts = await wait_outcomes(
        pg_pool, alert=ALERT, total=len(dest), states=["delivered", "failed"]
    )

    sim = sims.by_name["opA"]
    assert counts["failed"] == sim.statuses[0x0B] > 0
    assert sim.submit_pdus == len(dest)  # one submit_sm each: nothing retried
    assert await work.counters(pg_pool, channel="sms", alert=ALERT) == await work.counted(
        pg_pool, channel="sms", alert=ALERT
    )
    rows = await pg_pool.fetch(
        "SELECT error, attempts FROM sms_messages WHERE alert = $1 AND state = 'failed'", ALERT
    )
    assert {(r["error"], r["attempts"]) for r in rows} == {("0x0b", 1)}


async def test_temporary_failures_are_retried_until_accepted(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sims = await smscs(("opA",), temporary_failure_share=0.3, seed=3)
    await start_sms(sims, smsc=sims.spec, routes="opA=32")
    dest = numbers(300)
    await add_work(redis_client, alert=ALERT, numbers=dest)

    await wait_outcomes(pg_pool, alert=ALERT, total=len(dest), states=["delivered"])

    assert sims.messages() == dict.fromkeys(dest, 1)
    retried = await pg_pool.fetchval(
        "SELECT count(*) FROM sms_messages WHERE alert = $1 AND attempts > 1", ALERT
    )
    assert retried == sims.by_name["opA"].statuses[0x45] > 0 or retried > 0


async def test_receipts_arriving_before_the_submit_response_are_kept_and_applied(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    # The receipt leaves at once, its submit_sm_resp 50 ms later: every receipt comes first.
    sims = await smscs(("opA",), submit_latency_s=0.05, undeliverable_share=0.2, seed=5)
    await start_sms(sims, smsc=sims.spec, routes="opA=32")
    dest = numbers(300)
    await add_work(redis_client, alert=ALERT, numbers=dest)

    counts = await wait_outcomes(
        pg_pool, alert=ALERT, total=len(dest), states=["delivered", "failed"]
    )

    sim = sims.by_name["opA"]
    assert counts == {
        "delivered": sim.receipts_sent["DELIVRD"],
        "failed": sim.receipts_sent["UNDELIV"],
    }
    errors = await pg_pool.fetchval(
        "SELECT array_agg(DISTINCT error) FROM sms_messages WHERE state = 'failed'"
    )
    assert errors == ["UNDELIV"]
    # Receipts moved the progress counters from submitted to delivered or failed, units along.
    assert await work.counters(pg_pool, channel="sms", alert=ALERT) == await work.counted(
        pg_pool, channel="sms", alert=ALERT
    )


async def test_cancelled_and_superseded_work_is_recorded_not_sent(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sims = await smscs(("opA",))
    await start_sms(sims, smsc=sims.spec, routes="opA=32")
    cancelled, updated = ALERT, "5a0c1e9e-0000-4000-8000-000000000002"
    await redis_client.set(keys.alert_cancelled(cancelled), "1")
    await redis_client.set(keys.alert_version(updated), "2")
    await add_work(redis_client, alert=cancelled, numbers=numbers(50))
    await add_work(redis_client, alert=updated, numbers=numbers(50, start=100), version=1)
    await add_work(redis_client, alert=updated, numbers=numbers(50, start=100), version=2)

    assert await wait_outcomes(pg_pool, alert=cancelled, total=50, states=["cancelled"]) == {
        "cancelled": 50
    }
    by_version = await wait_outcomes(
        pg_pool, alert=updated, total=100, states=["superseded", "delivered"]
    )
    assert by_version == {"superseded": 50, "delivered": 50}
    assert sims.messages() == dict.fromkeys(numbers(50, start=100), 1)


async def test_expired_work_is_not_sent(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sims = await smscs(("opA",))
    await start_sms(sims, smsc=sims.spec, routes="opA=32")
    await add_work(redis_client, alert=ALERT, numbers=numbers(20), ttl_s=-1)

    assert await wait_outcomes(pg_pool, alert=ALERT, total=20, states=["expired"]) == {
        "expired": 20
    }
    assert sims.messages() == {}


async def test_invalid_numbers_in_work_are_recorded_failed_not_sent(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sims = await smscs(("opA",))
    await start_sms(sims, smsc=sims.spec, routes="opA=32")
    await add_work(redis_client, alert=ALERT, numbers=["+32470000001", "0470000002", "+0470"])

    counts = await wait_outcomes(pg_pool, alert=ALERT, total=3, states=["delivered", "failed"])

    assert counts == {"delivered": 1, "failed": 2}
    assert sims.messages() == {"+32470000001": 1}
    errors = await pg_pool.fetch("SELECT DISTINCT error FROM sms_messages WHERE state = 'failed'")
    assert [r[0] for r in errors] == ["invalid number"]


async def test_long_texts_resubmit_only_their_missing_segments(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sims = await smscs(("opA",), temporary_failure_share=0.2, keep_texts=True, seed=11)
    await start_sms(sims, smsc=sims.spec, routes="opA=32")
    text = "Chemical incident near the port: stay inside, close doors and windows. " * 4
    dest = numbers(100)
    await add_work(redis_client, alert=ALERT, numbers=dest, text=text)

    await wait_outcomes(pg_pool, alert=ALERT, total=len(dest), states=["delivered"])

    sim = sims.by_name["opA"]
    assert sim.statuses[0x45] > 0
    assert sims.messages() == dict.fromkeys(dest, 1)
    assert set(sim.segments.values()) == {2}  # no segment twice: the handset sees one text
    assert all(texts == [text] for texts in sim.texts.values())
    ids = await pg_pool.fetch("SELECT message_ids FROM sms_messages WHERE alert = $1", ALERT)
    assert {len(r[0]) for r in ids} == {2}
    assert all(all(r[0]) for r in ids)


async def test_cancelling_an_alert_stops_its_retries(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sims = await smscs(("opA",), temporary_failure_share=1.0)
    await start_sms(sims, smsc=sims.spec, routes="opA=32", control_refresh_s=0.1)
    await add_work(redis_client, alert=ALERT, numbers=numbers(30))
    sim = sims.by_name["opA"]
    await sim.wait_for(lambda: sim.statuses[0x45] >= 60, timeout=10)  # retrying

    await redis_client.set(keys.alert_cancelled(ALERT), "1")

    counts = await wait_outcomes(pg_pool, alert=ALERT, total=30, states=["cancelled"])
    assert counts == {"cancelled": 30}
    assert sims.messages() == {}
    await wait_acknowledged(redis_client)


async def test_each_operator_binds_with_its_own_account(
    smscs: StartSmscs,
    start_sms: StartSms,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two operators' SMSCs, each accepting only its own account (as the chart's Secret gives).
    first = await smscs(("opA",), system_id="be-alert-a", password="pw-a")
    second = await smscs(("opB",), system_id="be-alert-b", password="pw-b")
    sims = Smscs({**first.by_name, **second.by_name})
    monkeypatch.setenv("TOCSIN_SMPP_OPA_SYSTEM_ID", "be-alert-a")
    monkeypatch.setenv("TOCSIN_SMPP_OPA_PASSWORD", "pw-a")
    monkeypatch.setenv("TOCSIN_SMPP_OPB_SYSTEM_ID", "be-alert-b")
    monkeypatch.setenv("TOCSIN_SMPP_OPB_PASSWORD", "pw-b")
    await start_sms(sims, routes="opA=3247;opB=3249")
    dest = numbers(40)[::3] + numbers(40)[1::3]  # +32470… to opA, +32490… to opB
    await add_work(redis_client, alert=ALERT, numbers=dest)

    counts = await wait_outcomes(pg_pool, alert=ALERT, total=len(dest), states=["delivered"])

    assert counts == {"delivered": len(dest)}
    assert sims.by_name["opA"].messages
    assert sims.by_name["opB"].messages
    assert sims.messages() == dict.fromkeys(dest, 1)
