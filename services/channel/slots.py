"""A counting semaphore cheaper than asyncio.Semaphore for one acquire/release per message."""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    """`n` slots; `acquire` waits for one, `release` hands it to the oldest waiter (FIFO)."""

    def __init__(self, n: int) -> None:
        self.size = n
        self.free = n
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def used(self) -> int:
        """Slots held now."""
        return self.size - self.free

    async def acquire(self) -> None:
        """Take a slot, waiting for one if none is free."""
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over just as the waiter was cancelled: pass it on
            raise

    def release(self) -> None:
        """Give a slot back: to the oldest live waiter, else to the free count."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1
