"""What a channel supplies to the worker: how to make a job of a recipient, how to deliver it,
and how to sort the answer (docs/channel.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

from services.channel.codec import Header
from services.channel.model import Entry, Job, State


class Sorted(StrEnum):
    """What an operator's answer means for the job."""

    DONE = "done"  #: the operator took it: record `Answer.state` (submitted or delivered)
    AGAIN = "again"  #: resubmit first, now (throttled, connection lost); never dropped
    LATER = "later"  #: temporary failure: resubmit after a backoff, until the entry expires
    FAILED = "failed"  #: refused for good: record failed with `Answer.error`, never retried


@dataclass(frozen=True, slots=True)
class Answer:
    """The sorted answer of one delivery."""

    sorted: Sorted
    #: State recorded when DONE: SUBMITTED when a receipt follows, else DELIVERED.
    state: State = State.SUBMITTED
    #: Why it failed (operator status), recorded with FAILED or when retries run out.
    error: str = ""


J = TypeVar("J", bound=Job)


class Channel(Protocol[J]):
    """A channel as the worker sees it; `J` is its job type (a `Job`, perhaps subclassed)."""

    @property
    def name(self) -> str:
        """The channel's name: its stream, group, tables and metrics label derive from it."""
        ...

    def lanes(self) -> Mapping[str, int]:
        """Routes (operators, trunks, relays) and how many deliveries each runs at once."""
        ...

    def job(self, entry: Entry, header: Header, address: str, language: str) -> J:
        """The job of one recipient: route, text, units; `error` set if it cannot be sent."""
        ...

    async def deliver(self, job: J) -> Answer:
        """Deliver one recipient and sort the operator's answer; never raises for an answer."""
        ...

    def gave_up(self, job: J, reason: str) -> None:
        """The worker ended a job without the operator: `invalid`, `expired` or `temporary`
        (retries ran out). For the channel's own metrics; the outcome is recorded anyway."""
        ...
