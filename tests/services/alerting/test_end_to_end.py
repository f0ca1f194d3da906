"""End to end through gRPC only: alerting, targeting and SMS services, SMSC simulators.

The SMS service and the simulators come from the SMS tests' fixtures; targeting serves its real
servicer; alerting serves through the kernel with its own `build`, as `python -m` would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from tocsin.alerting.v1 import alerting_pb2 as pb
from tocsin.targeting.v1 import targeting_pb2 as tpb
from tocsin.targeting.v1 import targeting_pb2_grpc

from services.alerting import admin
from services.alerting.__main__ import build
from services.alerting.settings import Settings
from services.kernel import load_settings, serve
from services.targeting.servicer import TargetingServicer
from stack.embedded import free_port
from tests.services.alerting.conftest import (
    JWT_KEY,
    PASSWORD,
    TERRITORY,
    ZONE_INSIDE,
    Client,
    login,
    spec,
)
from tests.services.sms.conftest import StartSms, StartSmscs, smscs, start_sms

__all__ = ["smscs", "start_sms"]

#: Registered citizens in the zone: their phones in opA's range (+32470...).
CITIZENS = 12


@pytest.fixture
async def targeting_addr(pg_pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """The real targeting servicer on a loopback port."""
    server = grpc.aio.server()
    targeting_pb2_grpc.add_TargetingServicer_to_server(
        TargetingServicer(pool=pg_pool, redis=redis_client, batch_size=5), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def serve_alerting(settings: Settings) -> tuple[asyncio.Task[None], str]:
    """The alerting service through the kernel, as its process runs it; task and target."""
    ready = asyncio.Event()
    port: list[int] = []

    async def capture(kernel: Any) -> None:
        await build(kernel)
        port.append(kernel.server.add_insecure_port("127.0.0.1:0"))

    task = asyncio.create_task(
        serve(name="alerting", settings=settings, build=capture, ready=ready)
    )
    async with asyncio.timeout(20):
        done, _ = await asyncio.wait(
            [task, asyncio.ensure_future(ready.wait())], return_when=asyncio.FIRST_COMPLETED
        )
    if task in done:
        task.result()
    return task, f"127.0.0.1:{port[0]}"


async def test_an_alert_reaches_registered_phones_and_is_charged(
    pg_dsn: str,
    pg_pool: asyncpg.Pool,
    redis_url: str,
    targeting_addr: str,
    smscs: StartSmscs,
    start_sms: StartSms,
) -> None:
    simulators = await smscs(keep_texts=True)
    sms_port = free_port()
    await start_sms(simulators, grpc_port=sms_port)
    settings = load_settings(
        Settings,
        DATABASE_URL=pg_dsn,
        REDIS_URL=redis_url,
        jwt_key=JWT_KEY,
        grpc_port=0,
        metrics_port=0,
        targeting_addr=targeting_addr,
        sms_addr=f"127.0.0.1:{sms_port}",
        settle_interval_s=0.2,
        watch_interval_s=0.1,
        health_interval_s=0.2,
        log_level="WARNING",
    )
    await admin.bootstrap_admin(pg_pool, username="admin", password=PASSWORD)
    task, target = await serve_alerting(settings)
    channel = grpc.aio.insecure_channel(target)
    targeting_channel = grpc.aio.insecure_channel(targeting_addr)
    try:
        root = await login(channel, "admin")
        gent = await root.admin.CreateEntity(
            pb.CreateEntityRequest(
                name="Stad Gent", type=1, territory_kind="municipality", territory_geojson=TERRITORY
            ),
            metadata=root.metadata,
        )
        await root.admin.AddPrepaidPackage(
            pb.AddPrepaidPackageRequest(entity_id=gent.id, units=50_000), metadata=root.metadata
        )
        await root.admin.CreateUser(
            pb.CreateUserRequest(
                username="mayor.gent", password=PASSWORD, entity_id=gent.id, role=pb.ROLE_ISSUER
            ),
            metadata=root.metadata,
        )
        mayor: Client = await login(channel, "mayor.gent")

        portal = targeting_pb2_grpc.TargetingStub(targeting_channel)
        for i in range(CITIZENS):
            await portal.RegisterSubscriber(
                tpb.RegisterSubscriberRequest(
                    subscriber=tpb.Subscriber(
                        phone=f"+32470{i:06d}",
                        language="nl",
                        channels=[tpb.CHANNEL_SMS],
                        addresses=[
                            tpb.Address(
                                kind=tpb.ADDRESS_KIND_HOME, lon=3.705 + i * 0.001, lat=51.055
                            )
                        ],
                    )
                )
            )

        draft = await mayor.alerts.CreateAlert(
            pb.CreateAlertRequest(
                idempotency_key="e2e-test-0001",
                spec=spec(
                    kind=pb.ALERT_KIND_TEST,
                    zone=ZONE_INSIDE,
                    channels=(pb.CHANNEL_SMS,),
                    languages=("nl",),
                ),
            ),
            metadata=mayor.metadata,
        )
        preview = await mayor.alerts.PreviewAlert(
            pb.PreviewAlertRequest(alert_id=draft.id), metadata=mayor.metadata
        )
        assert sum(a.recipients for a in preview.audiences) == CITIZENS
        assert preview.estimated_units == CITIZENS

        sent = await mayor.alerts.SendAlert(
            pb.SendAlertRequest(alert_id=draft.id), metadata=mayor.metadata
        )
        assert sent.state == pb.ALERT_STATE_SENT
        async with asyncio.timeout(60):
            seen = [
                p
                async for p in mayor.alerts.WatchAlert(
                    pb.WatchAlertRequest(alert_id=draft.id), metadata=mayor.metadata
                )
            ]
        assert seen[-1].state == pb.ALERT_STATE_COMPLETE
        final = await mayor.alerts.GetAlert(
            pb.GetAlertRequest(alert_id=draft.id), metadata=mayor.metadata
        )
        sms_progress = {c.channel: c for c in final.progress}[pb.CHANNEL_SMS]
        assert sms_progress.targeted == CITIZENS
        assert sms_progress.delivered == CITIZENS
        assert sms_progress.units == CITIZENS
        assert (final.units_prepaid, final.units_postpaid) == (CITIZENS, 0)

        texts = [t for sim in simulators.by_name.values() for ts in sim.texts.values() for t in ts]
        assert len(texts) == CITIZENS
        assert all(t.startswith("TEST - Chemische wolk") for t in texts)

        report = await mayor.admin.GetUsageReport(
            pb.GetUsageReportRequest(entity_id=gent.id, month=datetime.now(UTC).strftime("%Y-%m")),
            metadata=mayor.metadata,
        )
        assert report.units_prepaid == CITIZENS
        assert report.prepaid_units_left == 50_000 - CITIZENS
        assert dict(report.alerts_by_kind) == {"test": 1}
    finally:
        await channel.close()
        await targeting_channel.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
