"""The Redis driver: runs `script.lua` by EVALSHA, loading it again when Redis answers NOSCRIPT."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ratelimit import keys, metrics
from ratelimit.config import Rules
from ratelimit.model import Answer, BucketSpec

SCRIPT = resources.files(__package__).joinpath("script.lua").read_text(encoding="utf-8")
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()

#: Failures that mean "Redis cannot be used now" (down, restarting, loading, failing over).
#: Anything else (a script error, a bad reply) is a bug and propagates.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError, TimeoutError)


class RedisUnavailableError(Exception):
    """Redis could not be reached or could not take writes within the time allowed."""


def _micros(seconds: float) -> str:
    return str(round(seconds * 1e6))


class ScriptDriver:
    """Runs the limiter script on one Redis (or Redis Cluster slot), bounded in time."""

    def __init__(self, redis: Redis, *, timeout: float = 0.25) -> None:
        self.redis = redis
        #: Longest one call may take before it counts as Redis being unreachable (seconds).
        self.timeout = timeout
        #: Acquire calls made (answered or not), for benchmarks and tests.
        self.acquire_calls = 0

    @contextlib.asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        """Bound a call in time and turn "Redis cannot be used now" into RedisUnavailableError."""
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except UNREACHABLE as exc:
            raise RedisUnavailableError(f"{type(exc).__name__}: {exc}") from exc

    async def _run(self, keys_: Sequence[str], args: Sequence[str]) -> list[Any]:
        try:
            async with self._bounded():
                try:
                    reply = await self.redis.evalsha(SCRIPT_SHA, len(keys_), *keys_, *args)
                except NoScriptError:
                    await self.redis.script_load(SCRIPT)
                    reply = await self.redis.evalsha(SCRIPT_SHA, len(keys_), *keys_, *args)
        except RedisUnavailableError:
            metrics.REDIS_CALLS.labels(result="error").inc()
            raise
        metrics.REDIS_CALLS.labels(result="ok").inc()
        return list(reply)

    async def acquire(
        self,
        specs: Sequence[BucketSpec],
        n: int,
        *,
        max_wait: float,
        debts: Mapping[str, float] | None = None,
    ) -> Answer:
        """Take `n` tokens from every bucket or none; see script.lua for the rules."""
        debts = debts or {}
        self.acquire_calls += 1
        args = ["acquire", str(n), _micros(max_wait)]
        for spec in specs:
            args += [repr(spec.rate), str(spec.capacity), repr(float(debts.get(spec.name, 0.0)))]
        args.append(str(keys.BUCKET_TTL_MARGIN_MS))
        reply = await self._run([keys.META, *(keys.bucket(s.name) for s in specs)], args)
        granted, wait_us, limiting, version, now_us = (int(x) for x in reply)
        return Answer(
            granted=granted == 1,
            wait=wait_us / 1e6,
            limiting=specs[limiting - 1].name if limiting else None,
            rules_version=version,
            clock=now_us / 1e6,
        )

    async def heartbeat(self, replica: str, *, ttl: float, group: str = "") -> tuple[int, int]:
        """Mark `replica` alive in its group; return (live replicas, published rules version)."""
        reply = await self._run(
            [keys.META, keys.replicas_key(group)], ["heartbeat", replica, _micros(ttl)]
        )
        return int(reply[0]), int(reply[1])

    async def leave(self, replica: str, *, group: str = "") -> None:
        """Take `replica` out of its group's live set at a clean shutdown."""
        async with self._bounded():
            await self.redis.zrem(keys.replicas_key(group), replica)

    async def published_rules(self) -> str | None:
        """Return the rules text published in Redis, or None when the file's rules apply."""
        async with self._bounded():
            text = await self.redis.get(keys.RULES)
        if text is None:
            return None
        return text.decode() if isinstance(text, bytes) else str(text)


def _new_version() -> str:
    # Random, not a counter: a Redis that restarted counts from 0 again, and a limiter that slept
    # through the restart would take a new counter value for the one it already has.
    return str(secrets.randbits(52) or 1)


async def publish_rules(redis: Redis, text: str, *, source: str = "<published>") -> Rules:
    """Validate rules and publish them to every limiter on this Redis, from its next lease on."""
    rules = Rules.from_toml(text, source=source)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.RULES, text)
        pipe.hset(keys.META, keys.META_RULES_VERSION, _new_version())
        await pipe.execute()
    return rules


async def withdraw_rules(redis: Redis) -> None:
    """Withdraw published rules: every limiter goes back to the rules it started with."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.RULES)
        pipe.hset(keys.META, keys.META_RULES_VERSION, _new_version())
        await pipe.execute()
