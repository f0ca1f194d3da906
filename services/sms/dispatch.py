"""Submission to one operator: senders submit over the least loaded bind, which takes a token
before each segment's submit_sm, and sort the answer into submitted, retry later, or failed.

A job holds a slot of the durability window from just before its submission until its state is
written: so at most that many messages are at an SMSC without a durable trace, which bounds what
a crash can make us send twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

from services.sms import metrics
from services.sms.model import Job, State
from services.sms.ports import Bind, Outcome, Submission, SubmitAnswer
from services.sms.recorder import Recorder
from services.sms.slots import Slots
from services.sms.tokens import OperatorPacer

logger = logging.getLogger(__name__)


class OperatorDispatcher:
    """Sends one operator's jobs with as many senders as its binds have window."""

    def __init__(
        self,
        *,
        operator: str,
        binds: Sequence[Bind],
        pacer: OperatorPacer,
        recorder: Recorder,
        durability: Slots,
        verdict: Callable[[str, int], State | None],
        retry_min_s: float,
        retry_max_s: float,
    ) -> None:
        if not binds:
            raise ValueError(f"operator {operator} has no binds")
        self.operator = operator
        self.binds = list(binds)
        self._pacer = pacer
        self._recorder = recorder
        self._slots = durability
        self._verdict = verdict
        self._retry_min = retry_min_s
        self._retry_max = retry_max_s
        self._queue: deque[Job] = deque()
        self._ready = asyncio.Event()
        # Label children looked up once: labels() per message costs more than the increment.
        self._submitted = {b.name: metrics.SUBMITTED.labels(operator, b.name) for b in binds}
        self._throttled = {b.name: metrics.THROTTLED.labels(operator, b.name) for b in binds}
        self._segments = metrics.SEGMENTS.labels(operator)
        #: Jobs waiting for a retry timer.
        self.waiting = 0

    @property
    def senders(self) -> int:
        """Concurrent submissions: the sum of the binds' windows."""
        return sum(b.window for b in self.binds)

    def put(self, jobs: Sequence[Job]) -> None:
        """Queue jobs for submission."""
        self._queue.extend(jobs)
        self._ready.set()

    def _again(self, job: Job, *, first: bool = False) -> None:
        if first:
            self._queue.appendleft(job)
        else:
            self._queue.append(job)
        self._ready.set()

    def _later(self, job: Job, delay: float) -> None:
        self.waiting += 1

        def wake() -> None:
            self.waiting -= 1
            self._again(job)

        asyncio.get_running_loop().call_later(delay, wake)

    async def run(self) -> None:
        """Run the senders until cancelled."""
        async with asyncio.TaskGroup() as group:
            for i in range(self.senders):
                group.create_task(self._sender(), name=f"sms-{self.operator}-{i}")

    async def _next(self) -> Job:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def _pick(self) -> Bind:
        best: Bind | None = None
        load = 0.0
        for bind in self.binds:
            if bind.is_bound:
                mine = bind.outstanding / bind.window
                if best is None or mine < load:
                    best, load = bind, mine
        return best or self.binds[0]

    async def _sender(self) -> None:
        while True:
            job = await self._next()
            if self._settled_without_sending(job):
                continue
            await self._slots.acquire()
            try:
                bind = self._pick()
                if job.missing is None:
                    job.attempts += 1
                sent_at = time.time()
                answer = await bind.submit(
                    Submission(
                        destination=job.address,
                        source=job.sender,
                        text=job.text,
                        reference=job.reference,
                        segments=job.missing,
                        # One token per submit_sm: the bind takes it before writing each segment.
                        pace=self._pacer.take,
                    )
                )
            except BaseException:
                self._slots.release()
                raise
            self._handle(job, bind, answer, sent_at)

    def _settled_without_sending(self, job: Job) -> bool:
        verdict = self._verdict(job.entry.alert, job.entry.version)
        if verdict is not None:
            self._recorder.final(job, verdict)
            return True
        if time.time() >= job.entry.expires:
            job.error = job.error or "expired before it could be sent"
            metrics.FAILED.labels(self.operator, "expired").inc()
            self._recorder.final(job, State.EXPIRED)
            return True
        return False

    def _merge(self, job: Job, answer: SubmitAnswer) -> None:
        if not job.message_ids:
            job.message_ids = list(answer.message_ids)
        else:
            for i, mid in enumerate(answer.message_ids):
                if mid and i < len(job.message_ids):
                    job.message_ids[i] = mid
        job.reference = answer.reference

    def _handle(self, job: Job, bind: Bind, answer: SubmitAnswer, sent_at: float) -> None:
        outcome = answer.outcome
        self._merge(job, answer)
        if outcome is Outcome.ACCEPTED:
            job.bind = bind.name
            job.submitted_at = sent_at
            job.holds_slot = True
            job.missing = None
            self._pacer.accepted()
            self._submitted[bind.name].inc()
            self._segments.inc(job.segments)
            self._recorder.submitted(job)
            return
        self._slots.release()
        if answer.missing and len(answer.missing) < len(answer.message_ids):
            job.missing = answer.missing
        status = f"0x{answer.command_status & 0xFFFFFFFF:02x}" if answer.command_status >= 0 else ""
        if outcome is Outcome.THROTTLED:
            self._throttled[bind.name].inc()
            self._pacer.throttled()
            self._again(job, first=True)
        elif outcome is Outcome.BIND_LOST:
            self._again(job, first=True)
        elif outcome is Outcome.PERMANENT:
            job.error = status
            metrics.FAILED.labels(self.operator, "permanent").inc()
            self._recorder.final(job, State.FAILED)
        else:
            job.error = status
            delay = min(self._retry_max, self._retry_min * 2 ** max(job.attempts - 1, 0))
            if time.time() + delay >= job.entry.expires:
                metrics.FAILED.labels(self.operator, "temporary").inc()
                self._recorder.final(job, State.FAILED)
            else:
                self._later(job, delay)
