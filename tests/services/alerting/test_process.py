"""`python -m services.alerting` starts from the environment and reports SERVING."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2

from tests.services.alerting.conftest import JWT_KEY
from tests.services.kernel.conftest import ServiceProcess, start_service, watch_until

__all__ = ["start_service"]


async def test_the_process_serves(start_service: object, pg_dsn: str, redis_url: str) -> None:
    service: ServiceProcess = start_service(  # type: ignore[operator]
        "alerting", database_url=pg_dsn, redis_url=redis_url, TOCSIN_JWT_KEY=JWT_KEY
    )
    await watch_until(service.target, health_pb2.HealthCheckResponse.SERVING)
    assert service.popen.poll() is None


async def test_without_a_signing_key_it_refuses_to_start(
    start_service: object, pg_dsn: str, redis_url: str
) -> None:
    service: ServiceProcess = start_service(  # type: ignore[operator]
        "alerting", database_url=pg_dsn, redis_url=redis_url
    )
    assert await asyncio.to_thread(service.popen.wait, 30) == 2
    assert "TOCSIN_JWT_KEY is not set" in service.output()
