"""Liveness says only that the process is alive; readiness ("") follows the stores (issue 16)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kernel.health import LIVENESS
from stack.embedded import ManagedProcess
from tests.services.kernel.conftest import ServiceProcess, watch_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def check(target: str, service: str) -> int:
    """One Check of `service` on the health service at `target`."""
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
    return int(reply.status)


async def test_liveness_stays_serving_while_redis_is_down_and_readiness_does_not(
    voice_service: ServiceProcess, private_redis: ManagedProcess
) -> None:
    assert await check(voice_service.target, LIVENESS) == SERVING
    private_redis.stop()
    await watch_until(voice_service.target, NOT_SERVING)
    assert await check(voice_service.target, "") == NOT_SERVING
    assert await check(voice_service.target, LIVENESS) == SERVING
