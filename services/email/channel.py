"""E-mail as a channel of the worker: recipients of one (alert, version, language) gathered into
SMTP transactions of up to `batch` recipients, each recipient's answer sorted on its own.

The worker delivers one recipient at a time (`deliver`); here those calls wait together for a
transaction: when `batch` recipients of the same message are waiting, or `linger_s` after the
first, the transaction goes. The message itself is built (and DKIM-signed) once per alert
version and language.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.channel.codec import Header
from services.channel.model import Entry, Job, State
from services.channel.ports import Answer, Sorted
from services.email import metrics
from services.email.letters import Letter
from services.email.ports import Composer, Relay, RelayReply, ReturnPath

logger = logging.getLogger(__name__)

#: The channel's name: stream `tocsin:stream:email`, group `email`, tables `email_messages`, ...
NAME = "email"
#: A plausible address: one @, no spaces or angle brackets, a dot in the domain.
ADDRESS = re.compile(r"^[^\s@<>()\[\],;:\"]{1,64}@[A-Za-z0-9.-]{1,252}\.[A-Za-z0-9-]{2,63}$")
#: Messages kept built (one per alert version and language in flight).
_MAX_MESSAGES = 256

#: (alert, version, language): the recipients of one message.
Key = tuple[str, int, str]


def reference(tag: str, address: str) -> str:
    """The reference a bounce finds its recipient by: the transaction's tag and the address."""
    return f"{tag}/{address.lower()}"


@dataclass(slots=True, eq=False)
class EmailJob(Job):
    """One recipient, with the language its message is in."""

    language: str = ""


@dataclass(slots=True)
class _Waiting:
    jobs: list[tuple[EmailJob, asyncio.Future[Answer]]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class EmailChannel:
    """The e-mail channel: one relay is its route; a transaction carries up to `batch`."""

    name = NAME

    def __init__(
        self,
        *,
        relay: Relay,
        compose: Composer,
        return_path: ReturnPath,
        letter: Callable[[str, int, str, str], Awaitable[Letter]],
        current: Callable[[str, int], Awaitable[bool]],
        accepted: Callable[[str, str], None],
        route: str,
        connections: int,
        batch: int,
        linger_s: float,
        message_domain: str,
        default_sender: str,
    ) -> None:
        self._relay = relay
        self._compose = compose
        self._return_path = return_path
        self._letter = letter
        self._current = current
        self._accepted = accepted
        self.route = route
        self._connections = connections
        self._batch = batch
        self._linger = linger_s
        self._domain = message_domain
        self._default_sender = default_sender
        self._waiting: dict[Key, _Waiting] = {}
        self._messages: dict[Key, asyncio.Future[bytes]] = {}
        self._transactions: set[asyncio.Task[None]] = set()
        self._outcomes = {d: metrics.RECIPIENTS.labels(route, d) for d in metrics.DISPOSITIONS}
        self._sizes = metrics.TRANSACTION_SIZE.labels(route)

    def lanes(self) -> dict[str, int]:
        """One route; enough senders to fill every connection's transaction twice over."""
        return {self.route: self._connections * self._batch * 2}

    def job(self, entry: Entry, header: Header, address: str, language: str) -> EmailJob:
        """The job of one address; an implausible address fails unsent."""
        job = EmailJob(
            entry,
            address,
            self.route,
            header.text_for(language),
            header.sender or self._default_sender,
            0,
            language=language,
        )
        if not ADDRESS.match(address):
            job.error = "invalid address"
        return job

    def gave_up(self, job: EmailJob, reason: str) -> None:
        """Counted: invalid, expired, or 4xx answers until the alert expired."""
        metrics.GAVE_UP.labels(self.route, reason).inc()

    async def deliver(self, job: EmailJob) -> Answer:
        """Wait for this recipient's transaction and return its answer."""
        key = (job.entry.alert, job.entry.version, job.language)
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = _Waiting()
            waiting.timer = asyncio.get_running_loop().call_later(self._linger, self._go, key)
        waiting.jobs.append((job, fut))
        if len(waiting.jobs) >= self._batch:
            self._go(key)
        try:
            answer = await fut
        except asyncio.CancelledError:
            # The worker stops (drain): a recipient not yet in a transaction leaves it.
            still = self._waiting.get(key)
            if still is not None:
                still.jobs = [(j, f) for j, f in still.jobs if j is not job]
            raise
        if answer.sorted is Sorted.DONE and job.refs:
            # The worker records the job `submitted` (with its reference) as soon as this
            # returns; the relay's acceptance then makes it `delivered`, like a receipt, in the
            # same write. A bounce later turns `delivered` into `failed` the same way.
            asyncio.get_running_loop().call_soon(self._accepted, self.route, job.refs[0])
        return answer

    def _go(self, key: Key) -> None:
        waiting = self._waiting.pop(key, None)
        if waiting is None or not waiting.jobs:
            return
        if waiting.timer is not None:
            waiting.timer.cancel()
        task = asyncio.create_task(self._transaction(key, waiting.jobs))
        self._transactions.add(task)
        task.add_done_callback(self._transactions.discard)

    async def _transaction(
        self, key: Key, jobs: list[tuple[EmailJob, asyncio.Future[Answer]]]
    ) -> None:
        try:
            answers = await self._send(key, [job for job, _ in jobs])
        except Exception as exc:  # the answer goes to each waiting sender: none is lost
            logger.exception("e-mail transaction of %s failed before the relay", key)
            answers = [Answer(Sorted.LATER, error=f"not sent: {exc!r}")] * len(jobs)
        for (_, fut), answer in zip(jobs, answers, strict=True):
            if not fut.done():
                fut.set_result(answer)

    async def _send(self, key: Key, jobs: Sequence[EmailJob]) -> list[Answer]:
        alert, version, _ = key
        if not await self._current(alert, version):
            # Cancelled or superseded meanwhile: not handed to the relay. The worker settles
            # these recipients (cancelled, superseded) before it would try them again.
            return [Answer(Sorted.LATER, error="withdrawn before the relay")] * len(jobs)
        message = await self._message(key, jobs[0])
        tag = secrets.token_hex(8)
        replies = await self._relay.send(
            envelope_from=self._return_path(tag),
            recipients=[job.address for job in jobs],
            message=message,
        )
        self._sizes.observe(len(jobs))
        return [self._sort(job, reply, tag) for job, reply in zip(jobs, replies, strict=True)]

    def _sort(self, job: EmailJob, reply: RelayReply, tag: str) -> Answer:
        job.attempts += 1
        disposition = reply.disposition
        self._outcomes[disposition].inc()
        if disposition == "accepted":
            job.refs = [reference(tag, job.address)]
            job.via = self.route
            return Answer(Sorted.DONE, State.SUBMITTED)
        error = f"{reply.code} {reply.text}".strip()[:200]
        if disposition == "permanent":
            return Answer(Sorted.FAILED, error=error)
        if disposition == "unknown":
            # The relay may have taken it: sending again may duplicate this transaction's
            # recipients, never lose them.
            return Answer(Sorted.AGAIN, error=error)
        return Answer(Sorted.LATER, error=error)

    async def _message(self, key: Key, job: EmailJob) -> bytes:
        fut = self._messages.get(key)
        if fut is None:
            if len(self._messages) >= _MAX_MESSAGES:
                self._messages.clear()
            fut = self._messages[key] = asyncio.ensure_future(self._build(key, job))
        try:
            return await asyncio.shield(fut)
        except Exception:
            self._messages.pop(key, None)  # a failed build is not kept
            raise

    async def _build(self, key: Key, job: EmailJob) -> bytes:
        alert, version, language = key
        letter = await self._letter(alert, version, language, job.text)
        local = re.sub(r"[^A-Za-z0-9.-]", "-", alert)
        message_id = f"<tocsin.{local}.{version}.{language}@{self._domain}>"
        # DKIM signing costs milliseconds of CPU: off the event loop, once per message.
        return await asyncio.to_thread(
            self._compose,
            subject=letter.subject,
            text=letter.text,
            language=language,
            message_id=message_id,
            date=datetime.now(UTC),
        )

    async def close(self) -> None:
        """Wait for transactions under way (their answers are recorded by the worker)."""
        if self._transactions:
            await asyncio.gather(*self._transactions, return_exceptions=True)
