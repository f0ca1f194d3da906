"""An operator's SMPP session limit held across every sms process: one Redis lease per session.

Before a bind connects it takes one of its operator's `max_sessions` slots, a member of a sorted
set in Redis scored by when its lease lapses (on Redis' clock). The lease is renewed while the
session is up and given back once the session is closed (after the unbind, on SIGTERM too); a
process killed outright gives its slots back when their leases lapse. So the binds of every pod,
old and new, draining or not, never pass what the operator allows.

Redis unreachable: a session already open keeps its slot, held here, and its lease is written
back as soon as Redis answers (re-added if it lapsed meanwhile); a new session, a rebind
included, waits for Redis. Nothing opens without a slot that Redis granted, and a Redis that
lost the leases grants none for half a lease time, until the open sessions have written theirs
back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.sms import keys, metrics

log = logging.getLogger(__name__)

#: Take a slot if fewer than ARGV[1] are held; a lease lapses ARGV[3] seconds later on Redis'
#: clock. Returns the slots held with this one, or minus those held when none is free. KEYS[2]
#: notes since when this Redis has known the operator's leases: one that lost them (restarted
#: empty, flushed) grants nothing for ARGV[4] seconds, long enough for every open session's
#: renewal to write its lease back first (the set looks empty meanwhile, and is not).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local since = tonumber(redis.call('GET', KEYS[2]))
if not since then
  since = now
  redis.call('SET', KEYS[2], tostring(now))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[1]) or now - since < tonumber(ARGV[4]) then return -held end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000))
return held + 1
"""

#: Push a held lease's end ARGV[2] seconds past now. Added back if it lapsed (Redis restarted
#: empty, or unreachable for longer than a lease): the session it stands for is open, and the
#: count must say so, even above the limit, so that no other bind is let in meanwhile.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('SET', KEYS[2], tostring(now), 'NX')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
return redis.call('ZCARD', KEYS[1])
"""

#: Mean pause before a waiting bind asks again for a slot, or Redis again (seconds, jittered
#: from half to one and a half times it, so that the waiting binds of many pods do not align).
POLL_S = 0.5
#: Pause before a failed renewal is tried again, at most (seconds, jittered the same way).
RENEW_RETRY_S = 1.0
#: How long giving a slot back may take before it is left to lapse (seconds).
RELEASE_TIMEOUT_S = 1.0

#: Errors of an unreachable or failing Redis: waited out, never raised to the bind.
_REDIS_DOWN = (RedisError, OSError, TimeoutError)

SessionGate = Callable[[str], AbstractAsyncContextManager[None]]


class SessionLeases:
    """The session slots of the operators that have a limit, leased in Redis."""

    def __init__(self, redis: aioredis.Redis, *, limits: Mapping[str, int], lease_s: float) -> None:
        self._redis = redis
        self._limits = dict(limits)
        self._lease_s = lease_s
        #: A Redis that lost the leases grants none for this long: a renewal (every third of a
        #: lease, retried within RENEW_RETRY_S and a half when failing) writes each back first.
        self._settle_s = lease_s / 2
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        #: Names a lease's holder in Redis (the pod), for whoever reads the set by hand.
        self._holder = socket.gethostname()
        for operator, limit in self._limits.items():
            metrics.SESSION_LIMIT.labels(operator).set(limit)
            metrics.SESSIONS_HELD.labels(operator).set(0)

    def gate(self, operator: str) -> SessionGate | None:
        """The session gate of `operator`'s binds; None when the operator sets no limit."""
        if operator not in self._limits:
            return None

        def hold(link: str) -> AbstractAsyncContextManager[None]:
            return self.hold(operator=operator, link=link)

        return hold

    @contextlib.asynccontextmanager
    async def hold(self, *, operator: str, link: str) -> AsyncIterator[None]:
        """Hold one of `operator`'s slots for the block: wait for it, renew it, give it back."""
        key = keys.operator_sessions(operator)
        member = f"{self._holder}/{link}/{secrets.token_hex(4)}"
        await self._take(operator=operator, key=key, member=member, link=link)
        metrics.SESSIONS_HELD.labels(operator).inc()
        since = keys.operator_sessions_since(operator)
        renewal = asyncio.create_task(self._keep(key=key, since=since, member=member, link=link))
        try:
            yield
        finally:
            renewal.cancel()
            metrics.SESSIONS_HELD.labels(operator).dec()
            await _uncancelled(self._give_back(key=key, member=member, link=link))

    async def _take(self, *, operator: str, key: str, member: str, link: str) -> None:
        """Wait until Redis grants `member` a slot of `operator`."""
        limit = self._limits[operator]
        full_told = down_told = False
        while True:
            try:
                held = int(
                    await self._acquire(
                        keys=[key, keys.operator_sessions_since(operator)],
                        args=[limit, member, self._lease_s, self._settle_s],
                    )
                )
            except asyncio.CancelledError:
                # The script may have run: leave no slot taken for a session never opened.
                await _uncancelled(self._give_back(key=key, member=member, link=link))
                raise
            except _REDIS_DOWN as exc:
                if not down_told:
                    down_told = True
                    log.warning(
                        "%s: Redis unreachable (%s): bind %s waits for it before it opens a"
                        " session (open sessions keep theirs)",
                        operator,
                        exc,
                        link,
                    )
            else:
                if held > 0:
                    if full_told or down_told:
                        log.info(
                            "%s: bind %s got a session slot (%d/%d)", operator, link, held, limit
                        )
                    return
                if not full_told:
                    full_told = True
                    log.warning(
                        "%s: all %d SMPP sessions the operator allows are open over every sms"
                        " process; bind %s waits for one to close",
                        operator,
                        limit,
                        link,
                    )
            await asyncio.sleep(POLL_S * (0.5 + random.random()))

    async def _keep(self, *, key: str, since: str, member: str, link: str) -> None:
        """Renew the lease every third of its life; on failure keep the slot and retry."""
        every = self._lease_s / 3
        failing = False
        while True:
            pause = min(every, RENEW_RETRY_S) if failing else every
            await asyncio.sleep(pause * (0.5 + random.random()) if failing else pause)
            try:
                await self._renew(keys=[key, since], args=[member, self._lease_s])
            except _REDIS_DOWN as exc:
                if not failing:
                    log.warning(
                        "%s: session lease not renewed (%s): the session stays open and keeps"
                        " its slot until Redis answers",
                        link,
                        exc,
                    )
                failing = True
            else:
                if failing:
                    log.info("%s: session lease renewed again", link)
                failing = False

    async def _give_back(self, *, key: str, member: str, link: str) -> None:
        """Free the slot; if Redis does not answer in time, the lease lapses by itself."""
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                await self._redis.zrem(key, member)
        except _REDIS_DOWN as exc:
            log.warning(
                "%s: session slot not given back (%s): it lapses within %.0fs",
                link,
                exc,
                self._lease_s,
            )


async def _uncancelled(step: Awaitable[None]) -> None:
    """Run `step` to its end even if the caller is cancelled meanwhile (then re-raise)."""
    task = asyncio.ensure_future(step)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
