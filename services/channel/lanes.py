"""Delivery to one route: senders take jobs in turn, deliver them through the channel, and act on
the sorted answer: record it, resubmit first, retry after a backoff, or record the failure.

A job holds a slot of the durability window from just before its delivery until its state is
written: so at most that many recipients are at an operator without a durable trace, which bounds
what a crash can make us send twice.

Senders take the most urgent lane's work first (an emergency before general interest before tests,
exercises and API traffic) and, within a lane, take turns between the owners (issuing entities)
of the work, so that one municipality's large alert does not hold back another's (`FairQueue`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Generic

from services.channel.codec import PRIORITIES
from services.channel.model import State
from services.channel.ports import Channel, J, Sorted
from services.channel.recorder import Recorder
from services.channel.slots import Slots
from services.kernel.tasks import raise_if_cancelling


class FairQueue(Generic[J]):
    """Jobs by lane rank (`entry.rank`, most urgent first), and within a lane one job of each
    owner (`entry.owner`) in turn; a job resubmitted `first` is its owner's next."""

    def __init__(self) -> None:
        #: Per rank: owner -> their jobs, in turn order (the owner served last is last).
        self._ranks: list[dict[str, deque[J]]] = [{} for _ in PRIORITIES]
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def push(self, job: J, *, first: bool = False) -> None:
        """Queue one job (`first`: before its owner's others)."""
        owners = self._ranks[job.entry.rank]
        jobs = owners.get(job.entry.owner)
        if jobs is None:
            jobs = owners[job.entry.owner] = deque()
        if first:
            jobs.appendleft(job)
        else:
            jobs.append(job)
        self._len += 1

    def extend(self, jobs: Iterable[J]) -> None:
        """Queue jobs in their order."""
        for job in jobs:
            self.push(job)

    def pop(self) -> J:
        """The next job: the most urgent lane's, its next owner's (IndexError if none)."""
        for owners in self._ranks:
            if owners:
                owner = next(iter(owners))
                jobs = owners.pop(owner)
                job = jobs.popleft()
                if jobs:
                    owners[owner] = jobs  # back in line, behind the other owners
                self._len -= 1
                return job
        raise IndexError("pop from an empty FairQueue")

    def more_urgent_than(self, rank: int) -> bool:
        """Whether a job of a lane more urgent than `rank` is queued."""
        return any(self._ranks[r] for r in range(rank))


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
        erased: Callable[[str], bool] = lambda address: False,
    ) -> None:
        if senders < 1:
            raise ValueError(f"route {route} needs at least one sender")
        self.route = route
        self.senders = senders
        self._channel = channel
        self._recorder = recorder
        self._slots = durability
        self._verdict = verdict
        #: Whether an address was erased (a citizen removed) since its work was taken.
        self._erased = erased
        self._retry_min = retry_min_s
        self._retry_max = retry_max_s
        self._queue: FairQueue[J] = FairQueue()
        #: Set by the consumer: before each delivery, None, or what to await first (the process
        #: was stalled: work may have been taken over, `job.abandoned`); and how to drop such a job.
        self.fence: Callable[[], Awaitable[None] | None] = _no_fence
        self.abandon: Callable[[J], None] = lambda job: None
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
        self._queue.push(job, first=first)
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
        return self._queue.pop()

    async def _slot_for(self, job: J) -> J | None:
        """Take a durability slot for `job`; if more urgent work came while it waited for the
        slot, that work takes it (`job` goes back to the head of its owner's turn). None: what
        remained was settled (cancelled, expired) meanwhile, and the slot is given back."""
        await self._slots.acquire()
        if not self._queue.more_urgent_than(job.entry.rank):
            return job
        self._queue.push(job, first=True)
        while self._queue:
            job = self._queue.pop()
            if not self._settled_without_sending(job):
                return job
        self._slots.release()
        return None

    async def _sender(self) -> None:
        channel, slots = self._channel, self._slots
        while True:
            # A cancellation swallowed inside `deliver` (a Redis call of the pacing): stop.
            raise_if_cancelling()
            job = await self._next()
            if self._settled_without_sending(job):
                continue
            taken = await self._slot_for(job)
            if taken is None:
                continue
            job = taken
            fence = self.fence()
            if fence is not None:
                await fence
            if job.abandoned or self._erased_now(job):  # taken over, or removed, meanwhile
                slots.release()
                if job.abandoned:
                    self.abandon(job)
                continue
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

    def _erased_now(self, job: J) -> bool:
        """Whether the job's address was erased: then it is recorded cancelled (under its
        placeholder, by the recorder), never sent."""
        if not self._erased(job.address):
            return False
        job.error = "recipient removed"
        self._recorder.final(job, State.CANCELLED)
        return True

    def _settled_without_sending(self, job: J) -> bool:
        if job.abandoned:
            self.abandon(job)
            return True
        if self._erased_now(job):
            return True
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


def _no_fence() -> Awaitable[None] | None:
    return None
