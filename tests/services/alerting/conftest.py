"""The alerting service in-process, on this test's PostgreSQL and Redis, with fake peers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp
from tocsin.alerting.v1 import alerting_pb2 as pb
from tocsin.alerting.v1 import alerting_pb2_grpc

from gateways.smpp import segment_count
from services.alerting import admin, auth, progress
from services.alerting.alerts import Alerts
from services.alerting.auth import LoginGuard
from services.alerting.gate import Gate
from services.alerting.model import Channel
from services.alerting.ports import (
    AudienceCount,
    AudiencePreview,
    BroadcastContent,
    Broadcasts,
    Deliveries,
    OperatorAck,
    OperatorStatus,
    Sent,
    Targeting,
)
from services.alerting.servicer import add_servicers
from services.channel.units import Units
from services.kernel.errors import ServiceError
from services.kernel.interceptors import ErrorInterceptor
from services.kernel.tasks import cancel_and_wait

JWT_KEY = "test-signing-key-of-at-least-32-characters"
#: Key of the audit chain in these tests (the service has it from its secret store).
AUDIT_KEY = b"audit-chain-key-of-the-tests-0123456789"
ISSUER = "tocsin-alerting"
PASSWORD = "correct horse battery"
#: Failed logins before a user name is locked out, in these tests.
LOGIN_MAX_FAILURES = 3


def square(lon: float, lat: float, size: float) -> str:
    """A GeoJSON square polygon with its south-west corner at (lon, lat)."""
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return json.dumps({"type": "Polygon", "coordinates": [ring]})


#: Territory of the test municipality (around Gent), a zone inside it and one outside (Brussels).
TERRITORY = square(3.60, 51.00, 0.20)
ZONE_INSIDE = square(3.70, 51.05, 0.02)
ZONE_OUTSIDE = square(4.30, 50.80, 0.05)


@dataclass
class ResolveCall:
    """What the alerting service asked targeting to resolve."""

    kwargs: dict[str, Any]


@dataclass
class FakeTargeting:
    """Targeting with fixed audiences: recipients per channel and language."""

    audience: dict[Channel, dict[str, int]] = field(
        default_factory=lambda: {Channel.SMS: {"nl": 10, "fr": 5}, Channel.EMAIL: {"nl": 4}}
    )
    #: Cells covering any zone, per operator.
    cell_ids: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"opA": ("a1", "a2", "a3", "a4"), "opB": ("b1", "b2", "b3")}
    )
    resolved: list[ResolveCall] = field(default_factory=list)
    #: Entity of every Preview asked, in order.
    previewed: list[int] = field(default_factory=list)
    #: When set, Resolve waits for it (a slow resolution of a large zone).
    hold: asyncio.Event | None = None
    #: When set, Preview waits for it before it answers (a slow targeting).
    preview_hold: asyncio.Event | None = None

    async def preview(
        self,
        *,
        entity_id: int,
        zone_geojson: str,
        group_ids: tuple[int, ...],
        channels: tuple[Channel, ...],
        texts: dict[str, str],
    ) -> AudiencePreview:
        self.previewed.append(entity_id)
        audiences = [
            AudienceCount(c, lang, n)
            for c in channels
            for lang, n in self.audience.get(c, {}).items()
        ]
        units = UNITS.audience(
            {(a.channel.value, a.language): a.recipients for a in audiences}, texts
        )
        if self.preview_hold is not None:
            await self.preview_hold.wait()
        return AudiencePreview(tuple(audiences), units)

    async def cells(self, *, entity_id: int, zone_geojson: str) -> dict[str, tuple[str, ...]]:
        return self.cell_ids

    async def resolve(self, **kwargs: Any) -> dict[Channel, int]:
        self.resolved.append(ResolveCall(kwargs))
        if self.hold is not None:
            await self.hold.wait()
        return {c: sum(self.audience.get(c, {}).values()) for c in kwargs["channels"]}


@dataclass
class FakeBroadcasts:
    """The cell broadcast service: records requests; refuses as told."""

    broadcasts: list[dict[str, Any]] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    #: Operators that refuse.
    refusing: frozenset[str] = frozenset()
    #: Raised by every call when set (e.g. the service is not built yet).
    error: ServiceError | None = None
    #: What `status` reports (WatchAlert's operators).
    statuses: tuple[OperatorStatus, ...] = ()

    async def broadcast(
        self,
        *,
        alert_id: str,
        cap_xml: str,
        cells: dict[str, tuple[str, ...]],
        location_based_sms: bool,
        content: BroadcastContent,
    ) -> tuple[OperatorAck, ...]:
        if self.error is not None:
            raise self.error
        self.broadcasts.append(
            {
                "alert_id": alert_id,
                "cap_xml": cap_xml,
                "cells": cells,
                "lb_sms": location_based_sms,
                "content": content,
            }
        )
        return tuple(OperatorAck(op, op not in self.refusing, "refused") for op in cells)

    async def withdraw(self, *, alert_id: str) -> tuple[OperatorAck, ...]:
        if self.error is not None:
            raise self.error
        self.withdrawn.append(alert_id)
        return (OperatorAck("opA", True),)

    async def status(self, *, alert_id: str) -> tuple[OperatorStatus, ...]:
        if self.error is not None:
            raise self.error
        return self.statuses


#: Units as every service counts them, over the SMPP gateway's segmentation.
UNITS = Units(segment_count)
#: Channels of the in-process harness: every one but voice (not deployed, for the refusal test).
ENABLED_CHANNELS = frozenset(Channel) - {Channel.VOICE}


@dataclass
class FakeDeliveries:
    """Channel reports set by the test."""

    reports: dict[str, dict[Channel, Sent]] = field(default_factory=dict)
    #: Reported for alerts without a report of their own.
    default: dict[Channel, Sent] = field(default_factory=dict)
    #: Raised instead of reporting when set (the SMS service is down).
    error: ServiceError | None = None

    async def sent(self, *, alert_id: str) -> dict[Channel, Sent]:
        if self.error is not None:
            raise self.error
        return self.reports.get(alert_id, self.default)

    async def progressed(self) -> set[str]:
        """Never: the test harness's settler settles every live alert every few ms instead."""
        await asyncio.Event().wait()
        return set()

    async def changed(self, *, alert_id: str, timeout: float) -> None:
        """After `timeout`: nothing notifies a fake."""
        await asyncio.sleep(timeout)


def bearer(token: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying a token."""
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Client:
    """Stubs of the three services, logged in as one user."""

    auth: alerting_pb2_grpc.AuthServiceAsyncStub
    alerts: alerting_pb2_grpc.AlertingServiceAsyncStub
    admin: alerting_pb2_grpc.AdminServiceAsyncStub
    metadata: tuple[tuple[str, str]]


def stubs(channel: grpc.aio.Channel, token: str) -> Client:
    """Stubs calling with `token`."""
    return Client(
        alerting_pb2_grpc.AuthServiceStub(channel),
        alerting_pb2_grpc.AlertingServiceStub(channel),
        alerting_pb2_grpc.AdminServiceStub(channel),
        bearer(token),
    )


async def login(channel: grpc.aio.Channel, username: str, password: str = PASSWORD) -> Client:
    """Log in and return stubs for that user."""
    auth = alerting_pb2_grpc.AuthServiceStub(channel)
    reply = await auth.Login(pb.LoginRequest(username=username, password=password))
    return stubs(channel, reply.token)


@dataclass
class Harness:
    """The service under test with its fakes and stores."""

    channel: grpc.aio.Channel
    pool: asyncpg.Pool
    redis: aioredis.Redis
    targeting: FakeTargeting
    broadcasts: FakeBroadcasts
    deliveries: FakeDeliveries
    alerts: Alerts
    admin: Client
    #: gRPC target of the service.
    target: str

    async def login(self, username: str, password: str = PASSWORD) -> Client:
        """Log in and return stubs for that user."""
        return await login(self.channel, username, password)

    async def entity(
        self, name: str, *, type: int = 1, territory: str = TERRITORY, postpaid: bool = False
    ) -> pb.Entity:
        """Create an entity through AdminService."""
        return await self.admin.admin.CreateEntity(
            pb.CreateEntityRequest(
                name=name,
                type=type,
                territory_kind="municipality" if territory else "",
                territory_geojson=territory,
                postpaid=postpaid,
            ),
            metadata=self.admin.metadata,
        )

    async def issuer(self, entity_id: int, username: str) -> Client:
        """Create an issuer of the entity and log in as them."""
        await self.admin.admin.CreateUser(
            pb.CreateUserRequest(
                username=username, password=PASSWORD, entity_id=entity_id, role=pb.ROLE_ISSUER
            ),
            metadata=self.admin.metadata,
        )
        return await self.login(username)

    async def group(self, entity_id: int, name: str) -> int:
        """Create a group with one member; return its id."""
        group = await self.admin.admin.CreateGroup(
            pb.CreateGroupRequest(entity_id=entity_id, name=name), metadata=self.admin.metadata
        )
        await self.admin.admin.AddGroupMember(
            pb.AddGroupMemberRequest(
                group_id=group.id,
                name="Crisis coordinator",
                phone="+32470000001",
                language="nl",
                channels=[pb.CHANNEL_SMS],
            ),
            metadata=self.admin.metadata,
        )
        return group.id


def expires_in(hours: float = 2) -> Timestamp:
    """A Timestamp `hours` from now."""
    ts = Timestamp()
    ts.FromDatetime(datetime.now(UTC) + timedelta(hours=hours))
    return ts


def spec(
    *,
    kind: pb.AlertKind = pb.ALERT_KIND_EMERGENCY,
    zone: str = ZONE_INSIDE,
    groups: tuple[int, ...] = (),
    channels: tuple[pb.Channel, ...] = (pb.CHANNEL_SMS, pb.CHANNEL_EMAIL),
    headline: str = "Chemische wolk boven Gent",
    languages: tuple[str, ...] = ("nl", "en"),
) -> pb.AlertSpec:
    """An alert spec with sensible defaults."""
    return pb.AlertSpec(
        kind=kind,
        category="CBRNE",
        urgency="Immediate",
        severity="Severe",
        certainty="Observed",
        infos=[
            pb.Info(
                language=lang,
                event="Chemical release",
                headline=f"{headline} ({lang})",
                instruction="Stay inside, close doors and windows.",
            )
            for lang in languages
        ],
        zone_geojson=zone,
        area_description="Gent - Rabot",
        group_ids=list(groups),
        channels=list(channels),
        expires=expires_in(),
    )


@pytest.fixture
async def harness(pg_pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[Harness]:
    """The alerting servicers in-process with a bootstrapped admin logged in."""
    # A cheaper scrypt than production's 2^17 (test_auth.py proves that cost and its upgrade):
    # these tests create and log in many users on a shared two-core machine.
    auth.use_cost(14)
    targeting, broadcasts, deliveries = FakeTargeting(), FakeBroadcasts(), FakeDeliveries()
    ports: tuple[Targeting, Broadcasts, Deliveries] = (targeting, broadcasts, deliveries)
    gate = Gate(
        pool=pg_pool,
        jwt_key=JWT_KEY,
        token_issuer=ISSUER,
        audit_key=AUDIT_KEY,
        anonymous_audit_per_s=5,
    )
    server = grpc.aio.server(interceptors=[ErrorInterceptor(service="alerting")])
    alerts = Alerts(
        pool=pg_pool,
        redis=redis_client,
        targeting=ports[0],
        broadcasts=ports[1],
        enabled_channels=ENABLED_CHANNELS,
        units=UNITS,
    )
    add_servicers(
        server,
        pool=pg_pool,
        alerts=alerts,
        deliveries=ports[2],
        gate=gate,
        guard=LoginGuard(redis=redis_client, max_failures=LOGIN_MAX_FAILURES, window_s=60),
        token_ttl_s=600,
        watch_interval_s=0.05,
        broadcasts=ports[1],
        redis=redis_client,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    # The settler folds the fakes' reports into the alerts, as in the service (stale sends are
    # resumed by the tests themselves).
    settler = asyncio.create_task(
        progress.run_settler(
            pg_pool,
            deliveries=deliveries,
            dispatcher=alerts.dispatcher,
            interval=0.02,
            stale_after=timedelta(days=365),
        )
    )
    await admin.bootstrap_admin(pg_pool, username="admin", password=PASSWORD)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        admin_client = await login(channel, "admin")
        yield Harness(
            channel,
            pg_pool,
            redis_client,
            targeting,
            broadcasts,
            deliveries,
            alerts,
            admin_client,
            f"127.0.0.1:{port}",
        )
    finally:
        assert not await cancel_and_wait([settler], timeout_s=30)
        await channel.close()
        await server.stop(None)
        await gate.drain()  # reads' entries are written behind their answers
        await alerts.dispatcher.drain()
