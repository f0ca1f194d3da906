"""The services' Redis connection: a command's write timed so that a cancellation is never lost.

redis-py times the write of every command with `asyncio.wait_for(write, socket_timeout)`. On
Python 3.11 `wait_for` swallows a cancellation that arrives once the write has finished but
before the waiting task resumed: it returns the write's result instead of raising (CPython
gh-86296, fixed in 3.12 by building wait_for on asyncio.timeout). The cancelled task goes on as
if nothing happened, so a loop that calls Redis until it is cancelled (a stream consumer's
control-key refresh, a heartbeat) never ends, and whoever awaits it (a TaskGroup, a graceful
shutdown) waits for ever. Measured: most cancellations of a task in `GET` were lost. The same
write under `asyncio.timeout`, which counts cancellations, keeps them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import TimeoutError as RedisTimeoutError


class CancelSafeWrites(AbstractConnection):
    """Mixed into a redis-py connection class: command writes timed by `asyncio.timeout`."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        """Write `command` within `socket_timeout`, as redis-py does, minus `wait_for`."""
        timeout = self.socket_timeout
        if not timeout:
            await super().send_packed_command(command, check_health=check_health)
            return
        # Without a socket timeout redis-py writes directly (its other branch); a connection
        # serves one command at a time, so nobody else reads the attribute meanwhile.
        self.socket_timeout = None
        try:
            async with asyncio.timeout(timeout):
                await super().send_packed_command(command, check_health=check_health)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


def cancel_safe(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """`connection_class` (TCP, TLS or Unix socket) with cancel-safe writes."""
    if issubclass(connection_class, CancelSafeWrites):
        return connection_class
    return type(f"CancelSafe{connection_class.__name__}", (CancelSafeWrites, connection_class), {})


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client of the Redis at `url` (redis://, rediss://, unix://) whose cancellations hold."""
    pool = ConnectionPool.from_url(url, **options)
    pool.connection_class = cancel_safe(pool.connection_class)
    return aioredis.Redis.from_pool(pool)
