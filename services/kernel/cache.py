"""One small in-process cache with a time to live, for every service.

Values read often and changed rarely (an entity, a checked token, a preview's audience, an alert's
progress) are kept for a few seconds. `get_or_load` also makes concurrent callers of one key share
one load: the first caller's load runs as a task of its own, so that a caller going away does not
cancel it for the others, and a load that fails is not kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Entries that expire `ttl_s` after they were stored (0: nothing is kept)."""

    def __init__(
        self,
        *,
        ttl_s: float,
        max_entries: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 0 or max_entries < 1:
            raise ValueError("ttl_s must be 0 or more and max_entries 1 or more")
        self.ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        #: key -> (until when, on `clock`; value)
        self._entries: dict[K, tuple[float, V]] = {}
        #: key -> the load in flight for it (get_or_load)
        self._loading: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The value stored for `key` if it has not expired, else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() < entry[0]:
            return entry[1]
        del self._entries[key]
        return None

    def put(self, key: K, value: V, *, until: float | None = None) -> None:
        """Keep `value` for `ttl_s`, or until `until` (on the cache's clock) if that is sooner."""
        now = self._clock()
        expires = now + self.ttl_s if until is None else min(now + self.ttl_s, until)
        if expires <= now:
            return
        if key not in self._entries and len(self._entries) >= self._max:
            self._prune(now)
        self._entries[key] = (expires, value)

    def forget(self, key: K) -> None:
        """Drop the value of `key`, if any."""
        self._entries.pop(key, None)

    def forget_if(self, stale: Callable[[V], bool]) -> None:
        """Drop every value for which `stale(value)` is true."""
        for key in [k for k, (_, v) in self._entries.items() if stale(v)]:
            del self._entries[key]

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The value of `key`: kept, or being loaded by another caller, or loaded now."""
        found = self.get(key)
        if found is not None:
            return found
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(key, load))
            task.add_done_callback(_retrieve)
            self._loading[key] = task
        return await asyncio.shield(task)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await load()
        finally:
            self._loading.pop(key, None)
        self.put(key, value)
        return value

    def _prune(self, now: float) -> None:
        """Make room: drop the expired entries, or every entry if none had expired."""
        live = {k: e for k, e in self._entries.items() if now < e[0]}
        self._entries = live if len(live) < self._max else {}


def _retrieve(task: asyncio.Task[object]) -> None:
    """Mark a shared load's outcome as seen: its callers may all have gone away."""
    if not task.cancelled():
        task.exception()
