"""Rate-limiter fixtures: a Redis whose memory is warm, and a Redis the test may restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from ratelimit import keys
from stack.embedded import ManagedProcess, start_redis


async def warm(client: aioredis.Redis) -> None:
    """Make Redis look as if it had run the limiter for an hour, so untouched buckets are full."""
    seconds, micros = await client.time()
    await client.hset(keys.META, keys.META_EPOCH, str((seconds - 3600) * 1_000_000 + micros))


class RestartableRedis:
    """A private redis-server on one fixed loopback port, which a test stops and starts again."""

    def __init__(self) -> None:
        self._server: ManagedProcess = start_redis(data_dir=None)
        self.url = self._server.url
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def stop(self) -> None:
        """Stop the server (its memory is lost: no persistence)."""
        self._server.stop()

    def start(self) -> None:
        """Start a fresh server on the same port."""
        self._server = start_redis(data_dir=None, port=self.port)


@pytest.fixture
def restartable_redis() -> Iterator[RestartableRedis]:
    """A Redis of this test's own that it may restart."""
    server = RestartableRedis()
    try:
        yield server
    finally:
        server.stop()
