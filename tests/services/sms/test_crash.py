"""SMS service processes: kill -9 mid-send and a claiming successor; worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import asyncpg
import psutil
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2

from services.kernel import keys
from tests.services.kernel.conftest import ServiceProcess
from tests.services.sms.conftest import (
    ROUTES,
    WIDE_OPEN_RULES,
    StartSmscs,
    add_work,
    numbers,
    wait_acknowledged,
    wait_outcomes,
    watch_until,
)

ALERT = "c4a5h000-0000-4000-8000-00000000dead"
TOTAL = 20_000
BINDS, WINDOW = 2, 50


async def test_a_killed_process_leaves_nobody_out_and_duplicates_within_its_window(
    smscs: StartSmscs,
    start_service: Any,
    pg_dsn: str,
    redis_url: str,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
    record_property: Any,
) -> None:
    sims = await smscs(receipt_delay_s=0.2)
    env = {
        "TOCSIN_SMSC": sims.spec,
        "TOCSIN_ROUTES": ROUTES,
        "TOCSIN_RATELIMIT_RULES": str(WIDE_OPEN_RULES),
        "TOCSIN_BINDS_PER_OPERATOR": str(BINDS),
        "TOCSIN_WINDOW": str(WINDOW),
        "TOCSIN_CLAIM_IDLE_S": "2",
        "TOCSIN_LOG_LEVEL": "WARNING",
    }
    first: ServiceProcess = start_service("sms", database_url=pg_dsn, redis_url=redis_url, **env)
    await watch_until(first.target, health_pb2.HealthCheckResponse.SERVING)
    dest = numbers(TOTAL)
    await add_work(redis_client, alert=ALERT, numbers=dest)
    opa = sims.by_name["opA"]
    await opa.wait_for(lambda: sum(opa.messages.values()) >= TOTAL // 12, timeout=60)

    os.kill(first.popen.pid, signal.SIGKILL)
    first.popen.wait(10)
    sent_before = sum(sims.messages().values())
    second: ServiceProcess = start_service("sms", database_url=pg_dsn, redis_url=redis_url, **env)
    await watch_until(second.target, health_pb2.HealthCheckResponse.SERVING)
    counts = await wait_outcomes(
        pg_pool, alert=ALERT, total=TOTAL, states=["delivered"], timeout=90
    )
    await wait_acknowledged(redis_client)

    got = sims.messages()
    missing = [d for d in dest if got.get(d, 0) == 0]
    duplicates = sum(n - 1 for n in got.values())
    window_of_dead_binds = len(sims.by_name) * BINDS * WINDOW
    record_property("duplicates", duplicates)
    print(
        f"\ncrash test: {TOTAL} numbers, {sent_before} sent before kill -9, "
        f"{duplicates} duplicates (bound {window_of_dead_binds})"
    )
    assert 0 < sent_before < TOTAL
    assert counts == {"delivered": TOTAL}
    assert missing == []
    assert set(got) == set(dest)
    assert duplicates <= window_of_dead_binds


async def test_worker_processes_share_the_group_and_stop_with_the_first(
    smscs: StartSmscs,
    start_service: Any,
    pg_dsn: str,
    redis_url: str,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    sims = await smscs()
    service: ServiceProcess = start_service(
        "sms",
        database_url=pg_dsn,
        redis_url=redis_url,
        TOCSIN_SMSC=sims.spec,
        TOCSIN_ROUTES=ROUTES,
        TOCSIN_RATELIMIT_RULES=str(WIDE_OPEN_RULES),
        TOCSIN_WORKERS="2",
        TOCSIN_READ_COUNT="1",
        TOCSIN_LOG_LEVEL="WARNING",
        # Metrics on free ports: a worker exports on the first's port + 1, which a busy machine
        # may have given to some other socket (the worker then exits at start).
        TOCSIN_METRICS_PORT="0",
    )
    await watch_until(service.target, health_pb2.HealthCheckResponse.SERVING)
    workers = psutil.Process(service.popen.pid).children()
    # The worker starts after the first process serves: work added before it reads could all go
    # to the first. A consumer joins the group with its first read, even of nothing.
    async with asyncio.timeout(30):
        while True:
            if len(await redis_client.xinfo_consumers(keys.SMS_STREAM, keys.SMS_GROUP)) >= 2:
                break
            await asyncio.sleep(0.1)  # polling Redis: there is nothing to await on
    dest = numbers(6000)
    await add_work(redis_client, alert=ALERT, numbers=dest, per_entry=100)

    await wait_outcomes(pg_pool, alert=ALERT, total=len(dest), states=["delivered"])

    consumers = await redis_client.xinfo_consumers(keys.SMS_STREAM, keys.SMS_GROUP)
    assert len(workers) == 1
    assert len(consumers) == 2
    assert sims.messages() == dict.fromkeys(dest, 1)
    service.popen.terminate()
    # Waited for in a thread: the simulators live on this event loop and answer the unbinds.
    assert await asyncio.to_thread(service.popen.wait, 30) == 0
    assert (await asyncio.to_thread(psutil.wait_procs, workers, timeout=30))[1] == []


async def test_sigterm_hands_unfinished_work_back_without_waiting_for_the_claim_idle_time(
    smscs: StartSmscs,
    start_service: Any,
    pg_dsn: str,
    redis_url: str,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    sims = await smscs(("opA",), submit_latency_s=0.002)
    env = {
        "TOCSIN_SMSC": sims.spec,
        "TOCSIN_ROUTES": "opA=32",
        "TOCSIN_RATELIMIT_RULES": str(WIDE_OPEN_RULES),
        "TOCSIN_WINDOW": str(WINDOW),
        "TOCSIN_CLAIM_IDLE_S": "60",
        "TOCSIN_SHUTDOWN_GRACE_S": "0.2",
        "TOCSIN_LOG_LEVEL": "WARNING",
    }
    stopping: ServiceProcess = start_service("sms", database_url=pg_dsn, redis_url=redis_url, **env)
    await watch_until(stopping.target, health_pb2.HealthCheckResponse.SERVING)
    dest = numbers(10_000)
    await add_work(redis_client, alert=ALERT, numbers=dest)
    opa = sims.by_name["opA"]
    await opa.wait_for(lambda: sum(opa.messages.values()) >= 1000, timeout=60)
    staying: ServiceProcess = start_service("sms", database_url=pg_dsn, redis_url=redis_url, **env)
    await watch_until(staying.target, health_pb2.HealthCheckResponse.SERVING)

    stopping.popen.terminate()
    assert await asyncio.to_thread(stopping.popen.wait, 30) == 0
    # Well under the 60 s claim idle time: the entries were handed back, not left to go stale.
    counts = await wait_outcomes(
        pg_pool, alert=ALERT, total=len(dest), states=["delivered"], timeout=45
    )

    got = sims.messages()
    assert counts == {"delivered": len(dest)}
    assert set(got) == set(dest)
    assert sum(got.values()) - len(dest) <= BINDS * WINDOW
