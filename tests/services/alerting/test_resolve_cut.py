"""A Resolve cut by targeting going away (its process restarting) is tried again by alerting:
the send completes by itself, and every phone gets one message.

Targeting here is its real servicer on a fixed loopback port; its first incarnation stops
streaming after its first batch, as a process killed mid-resolve would, and is then stopped
(its connections closed) and served again on the same port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from tocsin.alerting.v1 import alerting_pb2 as pb
from tocsin.targeting.v1 import targeting_pb2 as tpb
from tocsin.targeting.v1 import targeting_pb2_grpc

from services.targeting.servicer import TargetingServicer
from stack.embedded import free_port
from tests.services.alerting.conftest import UNITS
from tests.services.alerting.test_end_to_end import (
    Platform,
    delivered_once,
    platform,
    serve_here,
    sms_only,
    smscs,
    start_sms,
)

__all__ = ["platform", "serve_here", "smscs", "start_sms"]


class CutAfterFirstBatch(TargetingServicer):
    """The real servicer, which hangs after its first progress message until stopped."""

    def __init__(self, *, cut: asyncio.Event, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._cut = cut

    async def Resolve(
        self, request: tpb.ResolveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[tpb.ResolveProgress]:
        async for progress in super().Resolve(request, context):
            yield progress
            self._cut.set()
            await asyncio.Event().wait()  # until the server stops


@dataclass
class Targeting:
    """Targeting on one port, which can be served again there."""

    pool: asyncpg.Pool
    redis: aioredis.Redis
    port: int = field(default_factory=free_port)
    cut: asyncio.Event = field(default_factory=asyncio.Event)
    server: grpc.aio.Server | None = None

    async def serve(self, *, cut_after_first_batch: bool) -> None:
        self.server = grpc.aio.server()
        kwargs = {"pool": self.pool, "redis": self.redis, "batch_size": 5, "units": UNITS}
        servicer = (
            CutAfterFirstBatch(cut=self.cut, **kwargs)
            if cut_after_first_batch
            else TargetingServicer(**kwargs)  # type: ignore[arg-type]
        )
        targeting_pb2_grpc.add_TargetingServicer_to_server(servicer, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)
            self.server = None


@pytest.fixture
async def restartable(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> AsyncIterator[Targeting]:
    targeting = Targeting(pg_pool, redis_client)
    await targeting.serve(cut_after_first_batch=True)
    try:
        yield targeting
    finally:
        await targeting.stop()


@pytest.fixture
def targeting_addr(restartable: Targeting) -> str:
    """The platform's targeting: the restartable one."""
    return f"127.0.0.1:{restartable.port}"


async def test_a_resolve_cut_by_a_targeting_restart_is_tried_again_and_the_send_completes(
    platform: Platform, restartable: Targeting, pg_pool: asyncpg.Pool
) -> None:
    mayor = platform.mayor
    draft = await platform.create(sms_only(pb.ALERT_KIND_EMERGENCY))
    sending = asyncio.ensure_future(
        mayor.alerts.SendAlert(pb.SendAlertRequest(alert_id=draft.id), metadata=mayor.metadata)
    )
    async with asyncio.timeout(20):
        await restartable.cut.wait()
    # Targeting goes away with the first batch of 5 queued and the rest not, and comes back.
    await restartable.stop()
    await asyncio.sleep(0.5)
    assert not sending.done()
    await restartable.serve(cut_after_first_batch=False)

    async with asyncio.timeout(30):
        sent = await sending
    await platform.sms()

    assert sent.state == pb.ALERT_STATE_SENT
    # The first batch, queued by both resolutions, reached its phones once.
    await delivered_once(platform, pg_pool, draft.id)
