"""SMS API batches survive a Redis that lost its data (FLUSHALL) before the workers read their
stream entries: the SMS service writes the entries again from PostgreSQL, for the recipients
still queued only, at start-up or as soon as it notices the loss (issue 16)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from tocsin.sms.v1 import sms_pb2

from gateways.smpp import segment_count
from services.channel import codec, keys
from services.kernel import keys as shared_keys
from services.kernel.redis_client import connect as connect_redis
from services.sms import batches as api_batches
from services.sms import keys as sms_keys
from services.sms.api import SmsApi
from services.sms.repair import ApiRepair, Repaired
from services.sms.routing import Router
from stack.embedded import ManagedProcess
from tests.services.channel import work
from tests.services.sms.conftest import StartSms, StartSmscs, numbers, wait_outcomes


def requeued() -> tuple[float, float]:
    """tocsin_sms_api_batches_requeued_total and tocsin_sms_api_recipients_requeued_total."""
    batches = REGISTRY.get_sample_value("tocsin_sms_api_batches_requeued_total") or 0.0
    recipients = REGISTRY.get_sample_value("tocsin_sms_api_recipients_requeued_total") or 0.0
    return batches, recipients


def api(pool: asyncpg.Pool, redis: aioredis.Redis) -> SmsApi:
    """The SMS API's domain calls on their own: batches accepted while no SMS worker runs."""
    router = Router(
        routes=[("opA", ("3247",)), ("opB", ("3249",)), ("opC", ("3248",))], default="opA"
    )
    return SmsApi(
        pool=pool,
        redis=redis,
        router=router,
        segment_count=segment_count,
        default_sender="BE-Alert",
    )


def unused_port() -> int:
    """A loopback port nobody listens on (an SMSC that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def queued(pool: asyncpg.Pool, batch_id: str) -> int:
    """Recipients of the batch still queued."""
    n: int = await pool.fetchval(
        "SELECT count(*) FROM sms_messages WHERE alert = $1 AND state = 'queued'", batch_id
    )
    return n


async def test_a_batch_accepted_before_redis_lost_its_data_is_delivered_once_each(
    smscs: StartSmscs,
    start_sms: StartSms,
    pg_pool: asyncpg.Pool,
    private_redis: ManagedProcess,
) -> None:
    sims = await smscs()
    redis = connect_redis(private_redis.url)
    try:
        lost_numbers, after_numbers = numbers(90), numbers(30, start=500)
        before = requeued()
        # Accepted (rows queued, entries on the stream) while no SMS worker runs.
        lost = await api(pg_pool, redis).send(
            key="lost", to=lost_numbers, text="Exercise: ignore.", sender="", ttl_s=600, field="to"
        )
        await redis.flushall()  # the entries, the group, everything: gone before anyone read them
        # Accepted after the loss: its entries are in this Redis, the repair leaves it alone.
        after = await api(pg_pool, redis).send(
            key="after", to=after_numbers, text="Exercise 2.", sender="", ttl_s=600, field="to"
        )

        await start_sms(sims, REDIS_URL=private_redis.url)

        await wait_outcomes(pg_pool, alert=lost.batch_id, total=90, states=["delivered"])
        await wait_outcomes(pg_pool, alert=after.batch_id, total=30, states=["delivered"])
        assert sims.messages() == dict.fromkeys(lost_numbers + after_numbers, 1)
        batches, recipients = requeued()
        assert (batches - before[0], recipients - before[1]) == (1, 90)
        # Each sent with its own text and sender, as first accepted.
        counts = await work.counters(pg_pool, channel="sms", alert=lost.batch_id)
        assert counts == {"delivered": (90, 90)}
        # The SMS service's marker is its own: alerting's repair still runs on this Redis.
        assert await redis.exists("tocsin:sms:redis:intact")
        assert not await redis.exists(shared_keys.REDIS_MARKER)
    finally:
        await redis.aclose()


async def test_a_partly_delivered_batch_is_completed_without_a_second_message(
    smscs: StartSmscs,
    start_sms: StartSms,
    pg_pool: asyncpg.Pool,
    private_redis: ManagedProcess,
) -> None:
    sims = await smscs()
    # opC's SMSC is down for the first process: its recipients stay queued.
    spec = ",".join(
        f"{name}=127.0.0.1:{unused_port() if name == 'opC' else sim.port}"
        for name, sim in sims.by_name.items()
    )
    first = await start_sms(sims, REDIS_URL=private_redis.url, smsc=spec, consumer="first")
    to = numbers(60)  # 20 per operator
    sent = await first.stub.SendBatch(
        sms_pb2.SendBatchRequest(idempotency_key="partly", to=to, text="Drill: ignore this.")
    )
    await wait_outcomes(pg_pool, alert=sent.batch_id, total=40, states=["delivered"])
    first.task.cancel()  # stops: hands its entry back to the group, opC's recipients unsent
    with contextlib.suppress(asyncio.CancelledError):
        await first.task

    # A second process that would claim the handed-back entry only after an hour.
    await start_sms(
        sims,
        REDIS_URL=private_redis.url,
        consumer="second",
        claim_idle_s=3600,
        api_repair_interval_s=0.2,
    )
    await asyncio.sleep(1.0)
    assert await queued(pg_pool, sent.batch_id) == 20  # waiting on the stream entry
    before = requeued()
    redis = connect_redis(private_redis.url)
    try:
        await redis.flushall()  # lost while the service runs: it notices and repairs
    finally:
        await redis.aclose()

    await wait_outcomes(pg_pool, alert=sent.batch_id, total=60, states=["delivered"])
    assert sims.messages() == dict.fromkeys(to, 1)
    batches, recipients = requeued()
    assert (batches - before[0], recipients - before[1]) == (1, 20)


async def test_an_expired_batch_whose_entries_were_lost_is_recorded_expired_unsent(
    smscs: StartSmscs,
    start_sms: StartSms,
    pg_pool: asyncpg.Pool,
    private_redis: ManagedProcess,
) -> None:
    sims = await smscs()
    redis = connect_redis(private_redis.url)
    try:
        lost = await api(pg_pool, redis).send(
            key="late", to=numbers(12), text="Too late.", sender="", ttl_s=1, field="to"
        )
        await redis.flushall()
        await asyncio.sleep(1.2)  # the batch expires meanwhile

        await start_sms(sims, REDIS_URL=private_redis.url)

        states = await wait_outcomes(
            pg_pool, alert=lost.batch_id, total=12, states=["expired"], timeout=20
        )
        assert states == {"expired": 12}
        assert sims.messages() == {}
        counts = await work.counters(pg_pool, channel="sms", alert=lost.batch_id)
        assert counts == {"expired": (12, 0)}
    finally:
        await redis.aclose()


async def test_the_repair_runs_once_over_processes_and_again_after_one_cut_short(
    pg_pool: asyncpg.Pool, private_redis: ManagedProcess
) -> None:
    redis = connect_redis(private_redis.url)
    bulk = keys.stream("sms", codec.Priority.BULK)
    try:
        sms = api(pg_pool, redis)
        await sms.send(key="one", to=numbers(600), text="One.", sender="", ttl_s=600, field="to")
        await sms.send(
            key="two", to=numbers(10, start=1000), text="Two.", sender="", ttl_s=600, field="to"
        )
        await redis.flushall()
        first, second = (ApiRepair(pool=pg_pool, redis=redis) for _ in range(2))
        # A process that died while repairing still holds the lock, for a moment.
        await redis.set(sms_keys.API_REPAIR_LOCK, "dead", px=300)

        assert await first.run_once() is None
        assert not await redis.exists(sms_keys.API_INTACT)
        await asyncio.sleep(0.4)  # its lock lapses: the repair it left unfinished runs again
        done = await asyncio.gather(first.run_once(), second.run_once())

        assert sorted(done, key=lambda d: d is None) == [Repaired(2, 610, 0, 0), None]
        assert await redis.xlen(bulk) == 3  # 500 + 100 numbers, then 10: written once
        assert await redis.exists(sms_keys.API_INTACT)
        assert not await redis.exists(sms_keys.API_REPAIR_LOCK)
        # A repair cut short after its writes, before its marker, writes nothing twice.
        await redis.delete(sms_keys.API_INTACT)
        assert await first.run_once() == Repaired()
        assert await redis.xlen(bulk) == 3
    finally:
        await redis.aclose()


async def test_a_batch_keeps_no_number_and_is_forgotten_a_day_after_it_expired(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    sent = await api(pg_pool, redis_client).send(
        key="kept", to=numbers(3), text="Kept.", sender="POLICE", ttl_s=1, field="to"
    )

    row = await pg_pool.fetchrow("SELECT * FROM sms_api_batches WHERE batch_id = $1", sent.batch_id)
    assert row is not None
    assert (row["sender"], row["text"], row["entity"]) == ("POLICE", "Kept.", "api:")
    assert not any(n in str(v) for n in numbers(3) for v in dict(row).values())
    await asyncio.sleep(1.1)  # expired, but not a day ago
    assert await api_batches.BATCHES.forget_expired(pg_pool) == 0
    assert await api_batches.BATCHES.forget_expired(pg_pool, keep_s=0) == 1
    assert await pg_pool.fetchval("SELECT count(*) FROM sms_api_batches") == 0
