"""The local fallback: per-process buckets used while Redis cannot be reached.

Each local bucket runs at the bucket's rate divided by the replicas known from Redis' heartbeat set
(remembered from the last success), holds that share of the capacity and starts empty, so that all
replicas together stay within the agreed rate while they cannot coordinate. The same algorithm as
script.lua, on this process' monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ratelimit.model import Answer, BucketSpec


class LocalBuckets:
    """Token buckets in this process, one share of each shared bucket."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: bucket -> (tokens, time of last change)
        self._state: dict[str, tuple[float, float]] = {}
        #: bucket -> tokens granted since Redis last failed to answer (owed to Redis on recovery)
        self._granted: dict[str, float] = {}

    @property
    def buckets(self) -> set[str]:
        """Names of the buckets this fallback has served."""
        return set(self._state)

    def acquire(
        self, specs: Sequence[BucketSpec], n: int, *, max_wait: float, replicas: int
    ) -> Answer:
        """Take `n` tokens from every local bucket or none, as script.lua does in Redis."""
        now = self._clock()
        levels: list[float] = []
        wait = 0.0
        limiting: str | None = None
        for spec in specs:
            rate = spec.rate / replicas
            tokens, ts = self._state.get(spec.name, (0.0, now))
            level = min(spec.capacity / replicas, tokens + rate * max(0.0, now - ts))
            levels.append(level)
            if level < n and (n - level) / rate > wait:
                wait = (n - level) / rate
                limiting = spec.name
        if wait > max_wait:
            return Answer(granted=False, wait=wait - max_wait, limiting=limiting)
        for spec, level in zip(specs, levels, strict=True):
            self._state[spec.name] = (level - n, now)
            self._granted[spec.name] = self._granted.get(spec.name, 0.0) + n
        return Answer(granted=True, wait=wait, limiting=limiting)

    def redis_failed(self) -> None:
        """Redis failed to answer just now: what was granted before cannot be in its new state."""
        self._granted.clear()

    def drain(self) -> dict[str, float]:
        """Redis answers again: return the tokens owed to it and forget the local buckets."""
        owed = self._granted
        self._granted = {}
        self._state.clear()
        return owed

    def owed(self) -> dict[str, float]:
        """Tokens granted locally since Redis last failed to answer, per bucket."""
        return dict(self._granted)
