"""The services' Redis client never loses a cancellation (redis-py's wait_for on Python 3.11)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

from services.kernel.redis_client import CancelSafeWrites, cancel_safe, connect

#: Cancellations per test: with redis-py's own connection most of them were lost (measured).
ROUNDS = 300


async def _until_cancelled(call: Callable[[], Awaitable[None]], lost: list[int]) -> None:
    """Call Redis in a loop; note it when a cancellation requested meanwhile did not arrive."""
    task = asyncio.current_task()
    assert task is not None
    while True:
        await asyncio.sleep(0)
        before = task.cancelling()
        await call()
        if task.cancelling() > before:
            lost.append(1)
            return


@pytest.mark.parametrize("command", ["get", "pipeline"])
async def test_a_task_calling_redis_is_always_cancelled(redis_url: str, command: str) -> None:
    redis = connect(redis_url, socket_timeout=5, socket_connect_timeout=2, retry_on_timeout=True)
    rng = random.Random(7)

    async def get() -> None:
        await redis.get("tocsin:test:key")

    async def pipeline() -> None:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.get("tocsin:test:a")
            pipe.get("tocsin:test:b")
            await pipe.execute()

    lost: list[int] = []
    try:
        for _ in range(ROUNDS):
            tasks = [
                asyncio.create_task(_until_cancelled(get if command == "get" else pipeline, lost))
                for _ in range(3)
            ]
            await asyncio.sleep(rng.random() * 0.003)
            for task in tasks:
                task.cancel()
            async with asyncio.timeout(10):
                results = await asyncio.gather(*tasks, return_exceptions=True)
            assert lost == []
            assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert await redis.ping()  # the connections are still usable
    finally:
        await redis.aclose()


async def test_every_kind_of_connection_gets_the_safe_writes() -> None:
    for kind in (Connection, SSLConnection, UnixDomainSocketConnection):
        safe = cancel_safe(kind)
        assert issubclass(safe, CancelSafeWrites)
        assert issubclass(safe, kind)
        assert cancel_safe(safe) is safe
    for url, kind in (
        ("unix:///nonexistent.sock", UnixDomainSocketConnection),
        ("rediss://127.0.0.1:1", SSLConnection),
    ):
        client = connect(url)
        used = client.connection_pool.connection_class
        assert issubclass(used, CancelSafeWrites)
        assert issubclass(used, kind)
        await client.aclose()
