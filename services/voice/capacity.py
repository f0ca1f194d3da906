"""A trunk's capacity held across every replica: channels as Redis leases, calls per second as
rate-limit tokens. Neither limit is ever exceeded, whatever the number of replicas."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from services.voice import keys, metrics
from services.voice.ports import TokenLease, TokenSource

#: Take a channel if fewer than ARGV[1] are held; a lease lapses after ARGV[3] seconds on Redis'
#: clock, so a replica killed mid-call gives its channels back without anyone's help.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[1]) then return -held end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000))
return held + 1
"""

#: How long a caller waits before asking again for a channel of a full trunk (seconds, jittered).
POLL_S = 0.02


class TrunkChannels:
    """Concurrent calls per trunk, counted in Redis for all replicas."""

    def __init__(self, redis: aioredis.Redis, *, limits: dict[str, int]) -> None:
        self._redis = redis
        self._limits = limits
        self._acquire = redis.register_script(_ACQUIRE)

    @contextlib.asynccontextmanager
    async def hold(self, trunk: str, *, lease_s: float) -> AsyncIterator[None]:
        """Hold one channel of `trunk` for the duration of the block (at most `lease_s`)."""
        key = keys.trunk_channels(trunk)
        member = secrets.token_hex(8)
        while True:
            held = int(await self._acquire(keys=[key], args=[self._limits[trunk], member, lease_s]))
            metrics.TRUNK_CHANNELS.labels(trunk=trunk).set(abs(held))
            if held > 0:
                break
            await asyncio.sleep(POLL_S * (0.5 + random.random()))
        metrics.CHANNELS_IN_USE.labels(trunk=trunk).inc()
        try:
            yield
        finally:
            metrics.CHANNELS_IN_USE.labels(trunk=trunk).dec()
            await asyncio.shield(self._redis.zrem(key, member))


class CallPacer:
    """New calls per second per trunk, one rate-limit token per INVITE, shared by all replicas."""

    def __init__(self, source: TokenSource) -> None:
        self._source = source
        self._leases: dict[str, TokenLease] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def take(self, trunk: str) -> None:
        """Wait for the trunk's next call slot."""
        lock = self._locks.setdefault(trunk, asyncio.Lock())
        while True:
            lease = self._leases.get(trunk)
            if lease is None or lease.remaining <= 0:
                async with lock:
                    lease = self._leases.get(trunk)
                    if lease is None or lease.remaining <= 0:
                        lease = await self._source.lease([keys.cps_bucket(trunk)])
                        self._leases[trunk] = lease
            if lease.remaining > 0 and await lease.take():
                return
