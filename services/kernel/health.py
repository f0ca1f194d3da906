"""Health that tells the truth: SERVING only while PostgreSQL and Redis answer."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import redis.asyncio as aioredis
from grpc_health.v1 import health, health_pb2

from services.kernel.errors import DATABASE_UNAVAILABLE
from services.kernel.metrics import DEPENDENCY_UP, SERVING

logger = logging.getLogger(__name__)

#: Health service name that says only that the process is alive: SERVING from the first probe on,
#: answered by the event loop itself (a stuck loop answers nothing), whatever the stores say and
#: during a graceful shutdown too. The chart's liveness probe asks it; readiness asks "".
LIVENESS = "liveness"

_DOWN: tuple[type[Exception], ...] = (*DATABASE_UNAVAILABLE, TimeoutError)


async def probe_postgres(pool: asyncpg.Pool, *, timeout: float) -> bool:
    """Whether PostgreSQL answers a trivial query within `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await pool.fetchval("SELECT 1")
    except _DOWN as exc:
        logger.debug("postgres probe failed: %r", exc)
        return False
    return True


async def probe_redis(client: aioredis.Redis, *, timeout: float) -> bool:
    """Whether Redis answers PING within `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await client.ping()
    except (OSError, aioredis.RedisError, TimeoutError) as exc:
        logger.debug("redis probe failed: %r", exc)
        return False
    return True


class HealthReporter:
    """Keeps the gRPC health service in step with the service's dependencies."""

    def __init__(
        self,
        *,
        service: str,
        grpc_service_names: list[str],
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        timeout: float,
    ) -> None:
        self.servicer = health.aio.HealthServicer()
        self._service = service
        self._names = ["", *grpc_service_names]
        self._pool = pool
        self._redis = redis
        self._timeout = timeout
        self._serving: bool | None = None
        self._stopping = False
        self._alive = False

    async def check_once(self) -> bool:
        """Probe both stores, publish the result, and return whether the service is serving."""
        if not self._alive:
            self._alive = True
            await self.servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        pg_ok, redis_ok = await asyncio.gather(
            probe_postgres(self._pool, timeout=self._timeout),
            probe_redis(self._redis, timeout=self._timeout),
        )
        DEPENDENCY_UP.labels(self._service, "postgres").set(1 if pg_ok else 0)
        DEPENDENCY_UP.labels(self._service, "redis").set(1 if redis_ok else 0)
        await self._publish(pg_ok and redis_ok and not self._stopping)
        if not pg_ok or not redis_ok:
            down = [name for name, ok in (("postgres", pg_ok), ("redis", redis_ok)) if not ok]
            if self._serving is False:
                logger.debug("still not serving: %s down", ", ".join(down))
        return bool(self._serving)

    async def _publish(self, serving: bool) -> None:
        if serving == self._serving:
            return
        if self._serving is not None:
            logger.warning("health: %s", "SERVING" if serving else "NOT_SERVING")
        self._serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        # The gauge first: whoever sees the new status on the health service finds it in /metrics.
        SERVING.labels(self._service).set(1 if serving else 0)
        for name in self._names:
            await self.servicer.set(name, status)

    async def run(self, *, interval: float) -> None:
        """Probe forever, every `interval` seconds."""
        while True:
            await self.check_once()
            await asyncio.sleep(interval)

    async def stop_serving(self) -> None:
        """Enter graceful shutdown: NOT_SERVING from now on, whatever the probes say."""
        self._stopping = True
        await self._publish(False)
