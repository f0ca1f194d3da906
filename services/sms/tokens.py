"""Rate-limit tokens: a per-operator pacer over the leases of a TokenSource."""

from __future__ import annotations

import asyncio

from services.sms.ports import TokenLease, TokenSource


class OperatorPacer:
    """Hands out an operator's tokens one by one from leases; pauses after throttling answers."""

    def __init__(
        self,
        *,
        source: TokenSource,
        operator: str,
        lease_size: int,
        throttle_min_s: float,
        throttle_max_s: float,
    ) -> None:
        self._source = source
        self._buckets = ("sms:global", f"sms:op:{operator}")
        self._lease_size = lease_size
        self._lease: TokenLease | None = None
        self._lock = asyncio.Lock()
        self._min = throttle_min_s
        self._max = throttle_max_s
        self._backoff = 0.0
        self._paused_until = 0.0

    async def take(self) -> None:
        """Wait for the operator's pause to end and for a token."""
        loop = asyncio.get_running_loop()
        while True:
            pause = self._paused_until - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            lease = self._lease
            if lease is None or lease.remaining <= 0:
                async with self._lock:
                    if self._lease is None or self._lease.remaining <= 0:
                        self._lease = await self._source.lease(self._buckets, self._lease_size)
                    lease = self._lease
            # False: the lease's last slots passed while nobody took them; lease again.
            if lease.remaining > 0 and await lease.take() and self._paused_until <= loop.time():
                return

    def throttled(self) -> None:
        """The SMSC said slow down: pause the operator, twice as long as last time (capped)."""
        now = asyncio.get_running_loop().time()
        if now < self._paused_until:
            return  # answers to submissions sent before the pause began
        self._backoff = min(self._max, self._backoff * 2 if self._backoff else self._min)
        self._paused_until = now + self._backoff

    def accepted(self) -> None:
        """A submission went through: a second after a pause, backoff starts over."""
        if self._backoff and asyncio.get_running_loop().time() > self._paused_until + 1.0:
            self._backoff = 0.0
