"""Delivery to one route: senders take jobs in turn, deliver them through the channel, and act on
the sorted answer: record it, resubmit first, retry after a backoff, or record the failure.

A job holds a slot of the durability window from just before its delivery until its state is
written: so at most that many recipients are at an operator without a durable trace, which bounds
what a crash can make us send twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic

from services.channel.model import State
from services.channel.ports import Channel, J, Sorted
from services.channel.recorder import Recorder
from services.channel.slots import Slots


class Lane(Generic[J]):
    """One route's jobs, delivered by `senders` concurrent senders."""

    def __init__(
        self,
        *,
        channel: Channel[J],
        route: str,
        senders: int,
        recorder: Recorder,
        durability: Slots,
        verdict: Callable[[str, int], State | None],
        retry_min_s: float,
        retry_max_s: float,
    ) -> None:
        if senders < 1:
            raise ValueError(f"route {route} needs at least one sender")
        self.route = route
        self.senders = senders
        self._channel = channel
        self._recorder = recorder
        self._slots = durability
        self._verdict = verdict
        self._retry_min = retry_min_s
        self._retry_max = retry_max_s
        self._queue: deque[J] = deque()
        self._ready = asyncio.Event()
        #: Jobs waiting for a retry timer.
        self.waiting = 0

    @property
    def pending(self) -> int:
        """Jobs of this route in this process at most: queued, waiting to retry, with senders."""
        return len(self._queue) + self.waiting + self.senders

    def put(self, jobs: Sequence[J]) -> None:
        """Queue jobs for delivery."""
        self._queue.extend(jobs)
        self._ready.set()

    def _again(self, job: J, *, first: bool = False) -> None:
        if first:
            self._queue.appendleft(job)
        else:
            self._queue.append(job)
        self._ready.set()

    def _later(self, job: J, delay: float) -> None:
        self.waiting += 1

        def wake() -> None:
            self.waiting -= 1
            self._again(job)

        asyncio.get_running_loop().call_later(delay, wake)

    async def run(self) -> None:
        """Run the senders until cancelled."""
        async with asyncio.TaskGroup() as group:
            for i in range(self.senders):
                group.create_task(self._sender(), name=f"{self._channel.name}-{self.route}-{i}")

    async def _next(self) -> J:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    async def _sender(self) -> None:
        channel, slots = self._channel, self._slots
        while True:
            job = await self._next()
            if self._settled_without_sending(job):
                continue
            await slots.acquire()
            sent_at = time.time()
            try:
                answer = await channel.deliver(job)
            except BaseException:
                slots.release()
                raise
            kind = answer.sorted
            if kind is Sorted.DONE:
                job.submitted_at = sent_at
                job.holds_slot = True
                if answer.state is State.SUBMITTED:
                    self._recorder.submitted(job)
                else:
                    self._recorder.final(job, answer.state)
                continue
            slots.release()
            if kind is Sorted.AGAIN:
                self._again(job, first=True)
            elif kind is Sorted.FAILED:
                job.error = answer.error
                self._recorder.final(job, State.FAILED)
            else:
                job.error = answer.error
                delay = min(self._retry_max, self._retry_min * 2 ** max(job.attempts - 1, 0))
                if time.time() + delay >= job.entry.expires:
                    channel.gave_up(job, "temporary")
                    self._recorder.final(job, State.FAILED)
                else:
                    self._later(job, delay)

    def _settled_without_sending(self, job: J) -> bool:
        verdict = self._verdict(job.entry.alert, job.entry.version)
        if verdict is not None:
            self._recorder.final(job, verdict)
            return True
        if time.time() >= job.entry.expires:
            job.error = job.error or "expired before it could be sent"
            self._channel.gave_up(job, "expired")
            self._recorder.final(job, State.EXPIRED)
            return True
        return False
