"""End to end through gRPC only: alerting, targeting and SMS services, SMSC simulators.

The SMS service and the simulators come from the SMS tests' fixtures; targeting serves its real
servicer; alerting serves through the kernel with its own `build`, as `python -m` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
from services.channel import codec
from services.channel import keys as channel_keys
from services.kernel import keys as shared_keys
from services.kernel import load_settings, serve
from services.targeting.servicer import TargetingServicer
from stack.embedded import free_port
from tests.services.alerting.conftest import (
    JWT_KEY,
    PASSWORD,
    TERRITORY,
    UNITS,
    ZONE_INSIDE,
    Client,
    login,
    spec,
)
from tests.services.channel import work as channel_work
from tests.services.sms.conftest import (
    Smscs,
    StartSms,
    StartSmscs,
    serve_here,
    smscs,
    start_sms,
)

__all__ = ["serve_here", "smscs", "start_sms"]

#: Registered citizens in the zone: their phones in opA's range (+32470...).
CITIZENS = 12


@pytest.fixture
async def targeting_addr(pg_pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """The real targeting servicer on a loopback port."""
    server = grpc.aio.server()
    targeting_pb2_grpc.add_TargetingServicer_to_server(
        TargetingServicer(pool=pg_pool, redis=redis_client, batch_size=5, units=UNITS), server
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


@dataclass
class Platform:
    """The three services, Gent with its registered citizens, and its mayor logged in."""

    mayor: Client
    entity_id: int
    smscs: Smscs
    start_sms: StartSms
    sms_port: int

    async def sms(self) -> None:
        """Start the SMS service: from now on the work streams are consumed."""
        await self.start_sms(self.smscs, grpc_port=self.sms_port)

    async def create(self, alert_spec: pb.AlertSpec) -> pb.Alert:
        """CreateAlert as the mayor."""
        return await self.mayor.alerts.CreateAlert(
            pb.CreateAlertRequest(idempotency_key=f"e2e-{uuid.uuid4()}", spec=alert_spec),
            metadata=self.mayor.metadata,
        )

    async def watch(self, alert_id: str) -> list[pb.AlertProgress]:
        """Every WatchAlert message until the last."""
        async with asyncio.timeout(60):
            return [
                p
                async for p in self.mayor.alerts.WatchAlert(
                    pb.WatchAlertRequest(alert_id=alert_id), metadata=self.mayor.metadata
                )
            ]

    def texts(self) -> dict[str, list[str]]:
        """Texts each phone received, over every simulator."""
        out: dict[str, list[str]] = {}
        for sim in self.smscs.by_name.values():
            for dest, texts in sim.texts.items():
                out.setdefault(dest, []).extend(texts)
        return out


@pytest.fixture
async def platform(
    pg_dsn: str,
    pg_pool: asyncpg.Pool,
    redis_url: str,
    targeting_addr: str,
    smscs: StartSmscs,
    start_sms: StartSms,
) -> AsyncIterator[Platform]:
    """Alerting and targeting serving, the SMS service ready to start, Gent seeded via gRPC."""
    simulators = await smscs(keep_texts=True)
    sms_port = free_port()
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
        # Peers here are bare servicers on plaintext ports; tests/stack and tests/security run
        # the whole stack with mutual TLS.
        insecure_dev=True,
        enabled_channels="sms,email",
    )
    # The documented bootstrap path: the first admin straight into PostgreSQL.
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
        portal = targeting_pb2_grpc.TargetingStub(targeting_channel)
        for i in range(CITIZENS):
            await portal.RegisterSubscriber(
                tpb.RegisterSubscriberRequest(
                    subscriber=tpb.Subscriber(
                        phone=f"+32470{i:06d}",
                        email=f"citizen{i}@gent.example",
                        language="nl",
                        channels=[tpb.CHANNEL_SMS, tpb.CHANNEL_EMAIL],
                        addresses=[
                            tpb.Address(
                                kind=tpb.ADDRESS_KIND_HOME, lon=3.705 + i * 0.001, lat=51.055
                            )
                        ],
                    )
                )
            )
        yield Platform(await login(channel, "mayor.gent"), gent.id, simulators, start_sms, sms_port)
    finally:
        await channel.close()
        await targeting_channel.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def sms_only(kind: pb.AlertKind = pb.ALERT_KIND_TEST) -> pb.AlertSpec:
    """A Dutch SMS alert to the zone."""
    return spec(kind=kind, zone=ZONE_INSIDE, channels=(pb.CHANNEL_SMS,), languages=("nl",))


async def test_an_alert_reaches_registered_phones_and_is_charged(platform: Platform) -> None:
    await platform.sms()
    mayor = platform.mayor
    draft = await platform.create(sms_only())
    preview = await mayor.alerts.PreviewAlert(
        pb.PreviewAlertRequest(alert_id=draft.id), metadata=mayor.metadata
    )
    assert sum(a.recipients for a in preview.audiences) == CITIZENS
    assert preview.estimated_units == CITIZENS

    sent = await mayor.alerts.SendAlert(
        pb.SendAlertRequest(alert_id=draft.id), metadata=mayor.metadata
    )
    assert sent.state == pb.ALERT_STATE_SENT
    seen = await platform.watch(draft.id)
    assert seen[-1].state == pb.ALERT_STATE_COMPLETE
    assert seen[-1].final
    final = await mayor.alerts.GetAlert(
        pb.GetAlertRequest(alert_id=draft.id), metadata=mayor.metadata
    )
    sms_progress = {c.channel: c for c in final.progress}[pb.CHANNEL_SMS]
    assert sms_progress.targeted == CITIZENS
    assert sms_progress.delivered == CITIZENS
    assert sms_progress.units == CITIZENS
    assert (final.units_prepaid, final.units_postpaid) == (CITIZENS, 0)

    texts = platform.texts()
    assert len(texts) == CITIZENS
    assert all(
        t == ["TEST - Chemische wolk boven Gent (nl) Stay inside, close doors and windows."]
        for t in texts.values()
    )

    report = await mayor.admin.GetUsageReport(
        pb.GetUsageReportRequest(
            entity_id=platform.entity_id, month=datetime.now(UTC).strftime("%Y-%m")
        ),
        metadata=mayor.metadata,
    )
    assert report.units_prepaid == CITIZENS
    assert report.prepaid_units_left == 50_000 - CITIZENS
    assert dict(report.alerts_by_kind) == {"test": 1}


async def test_cancel_drops_what_no_operator_has_yet(platform: Platform) -> None:
    mayor = platform.mayor
    draft = await platform.create(sms_only(pb.ALERT_KIND_EMERGENCY))
    await mayor.alerts.SendAlert(pb.SendAlertRequest(alert_id=draft.id), metadata=mayor.metadata)
    # Everything is on the SMS stream, nothing handed to an operator yet: cancel, then consume.
    await mayor.alerts.CancelAlert(
        pb.CancelAlertRequest(alert_id=draft.id), metadata=mayor.metadata
    )
    await platform.sms()
    seen = await platform.watch(draft.id)
    last = seen[-1]
    assert last.state == pb.ALERT_STATE_CANCELLED
    assert last.final
    sms = {c.channel: c for c in last.channels}[pb.CHANNEL_SMS]
    assert (sms.targeted, sms.dropped, sms.submitted, sms.queued) == (CITIZENS, CITIZENS, 0, 0)
    assert last.units == 0
    assert platform.texts() == {}


async def test_update_reaches_the_same_phones_once_with_the_new_text(platform: Platform) -> None:
    mayor = platform.mayor
    draft = await platform.create(sms_only(pb.ALERT_KIND_EMERGENCY))
    await mayor.alerts.SendAlert(pb.SendAlertRequest(alert_id=draft.id), metadata=mayor.metadata)
    updated = await mayor.alerts.UpdateAlert(
        pb.UpdateAlertRequest(
            alert_id=draft.id,
            base_version=1,
            infos=[pb.Info(language="nl", event="Chemical release", headline="Gevaar geweken")],
        ),
        metadata=mayor.metadata,
    )
    assert updated.version == 2
    await platform.sms()
    seen = await platform.watch(draft.id)
    assert seen[-1].state == pb.ALERT_STATE_COMPLETE
    sms = {c.channel: c for c in seen[-1].channels}[pb.CHANNEL_SMS]
    # Version 1 was superseded before it was sent; version 2 reached the same phones.
    assert (sms.targeted, sms.delivered, sms.dropped) == (2 * CITIZENS, CITIZENS, CITIZENS)
    texts = platform.texts()
    assert sorted(texts) == sorted(f"32470{i:06d}" for i in range(CITIZENS))
    assert all(t == ["Gevaar geweken"] for t in texts.values())


async def delivered_once(platform: Platform, pg_pool: asyncpg.Pool, alert_id: str) -> None:
    """Every citizen's SMS recorded delivered, and each phone got exactly one text."""
    counts = await channel_work.wait_states(
        pg_pool, channel="sms", alert=alert_id, total=CITIZENS, states=["delivered"]
    )
    assert counts == {"delivered": CITIZENS}
    texts = platform.texts()
    assert sorted(texts) == sorted(f"32470{i:06d}" for i in range(CITIZENS))
    assert all(len(t) == 1 for t in texts.values())


def sms_and_email() -> pb.AlertSpec:
    """A Dutch emergency alert to the zone by SMS and e-mail."""
    return spec(
        kind=pb.ALERT_KIND_EMERGENCY,
        zone=ZONE_INSIDE,
        channels=(pb.CHANNEL_SMS, pb.CHANNEL_EMAIL),
        languages=("nl",),
    )


async def send_that_stops_part_way(platform: Platform, redis: aioredis.Redis, alert_id: str) -> int:
    """SendAlert while the e-mail lane's stream cannot be written (a key of another type in its
    place): targeting's first write queues the SMS batches and fails on the e-mail ones. The SMS
    recipients queued."""
    blocked = channel_keys.stream("email", codec.Priority.EMERGENCY)
    await redis.set(blocked, "not a stream")
    mayor = platform.mayor
    with pytest.raises(grpc.aio.AioRpcError):
        await mayor.alerts.SendAlert(
            pb.SendAlertRequest(alert_id=alert_id), metadata=mayor.metadata
        )
    await redis.delete(blocked)
    sms = channel_keys.stream("sms", codec.Priority.EMERGENCY)
    entries: Any = await redis.xrange(sms)
    return sum(len(codec.decode(fields).to) for _, fields in entries)


async def test_a_send_stopped_part_way_is_resumable_and_not_a_draft(
    platform: Platform, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    mayor = platform.mayor
    draft = await platform.create(sms_and_email())
    queued = await send_that_stops_part_way(platform, redis_client, draft.id)
    stopped = await mayor.alerts.GetAlert(
        pb.GetAlertRequest(alert_id=draft.id), metadata=mayor.metadata
    )
    assert 0 < queued < CITIZENS
    # Never back to draft (its texts could be edited under the messages already queued).
    assert stopped.state == pb.ALERT_STATE_SENDING

    resumed = await mayor.alerts.SendAlert(
        pb.SendAlertRequest(alert_id=draft.id), metadata=mayor.metadata
    )
    await platform.sms()

    assert resumed.state == pb.ALERT_STATE_SENT
    # The e-mail recipients wait for an e-mail service this platform does not run.
    # Each phone once: the recipients queued before the failure are not sent twice.
    await delivered_once(platform, pg_pool, draft.id)
    email = channel_keys.stream("email", codec.Priority.EMERGENCY)
    assert await redis_client.xlen(email) > 0


async def test_a_send_stopped_part_way_is_cancelled_and_nothing_queued_goes_out(
    platform: Platform, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    mayor = platform.mayor
    draft = await platform.create(sms_and_email())
    queued = await send_that_stops_part_way(platform, redis_client, draft.id)

    cancelled = await mayor.alerts.CancelAlert(
        pb.CancelAlertRequest(alert_id=draft.id), metadata=mayor.metadata
    )
    await platform.sms()

    assert cancelled.state == pb.ALERT_STATE_CANCELLED
    assert await redis_client.get(shared_keys.alert_cancelled(draft.id)) == b"1"
    counts = await channel_work.wait_states(
        pg_pool, channel="sms", alert=draft.id, total=queued, states=["cancelled"]
    )
    assert counts == {"cancelled": queued}
    assert platform.texts() == {}


async def test_cancelling_a_draft_sets_the_cancel_key(
    platform: Platform, redis_client: aioredis.Redis
) -> None:
    mayor = platform.mayor
    draft = await platform.create(sms_only())

    await mayor.alerts.CancelAlert(
        pb.CancelAlertRequest(alert_id=draft.id), metadata=mayor.metadata
    )

    assert await redis_client.get(shared_keys.alert_cancelled(draft.id)) == b"1"


async def wait_for_repair(redis: aioredis.Redis) -> None:
    """Until the settler (every 0.2 s here) has noticed the lost data and repaired it."""
    async with asyncio.timeout(30):
        while not await redis.exists(shared_keys.REDIS_MARKER):  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.05)


async def test_work_lost_with_redis_data_is_resolved_again_from_postgresql(
    platform: Platform, redis_client: aioredis.Redis
) -> None:
    mayor = platform.mayor
    sent = await platform.create(sms_only(pb.ALERT_KIND_EMERGENCY))
    await mayor.alerts.SendAlert(pb.SendAlertRequest(alert_id=sent.id), metadata=mayor.metadata)
    cancelled = await platform.create(sms_only(pb.ALERT_KIND_EMERGENCY))
    await mayor.alerts.SendAlert(
        pb.SendAlertRequest(alert_id=cancelled.id), metadata=mayor.metadata
    )
    await mayor.alerts.CancelAlert(
        pb.CancelAlertRequest(alert_id=cancelled.id), metadata=mayor.metadata
    )
    await wait_for_repair(redis_client)  # the first check, on this test's fresh Redis
    stream = channel_keys.stream("sms", codec.Priority.EMERGENCY)
    assert await redis_client.xlen(stream) > 0

    # Redis restarted empty before any SMS service read the stream: the work and the control
    # keys are gone.
    await redis_client.flushdb()
    await wait_for_repair(redis_client)

    assert await redis_client.get(shared_keys.alert_cancelled(cancelled.id)) == b"1"
    assert await redis_client.get(shared_keys.alert_version(sent.id)) == b"1"
    await platform.sms()
    seen = await platform.watch(sent.id)
    assert seen[-1].state == pb.ALERT_STATE_COMPLETE
    texts = platform.texts()
    # Every phone reached once, by the sent alert only: the cancelled one stays cancelled.
    assert sorted(texts) == sorted(f"32470{i:06d}" for i in range(CITIZENS))
    assert all(len(t) == 1 for t in texts.values())
