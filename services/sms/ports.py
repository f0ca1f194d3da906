"""The small interfaces the SMS service needs from an SMPP gateway and from a rate limiter.

The concrete ones (`gateways.smpp`, `ratelimit`) are wired in `__main__` only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    """What the SMSC's answer to a submission means for the service."""

    ACCEPTED = "accepted"  #: every segment taken; receipts follow
    THROTTLED = "throttled"  #: slow down and resubmit, never drop
    TEMPORARY = "temporary"  #: resubmit later, with backoff, until the alert expires
    PERMANENT = "permanent"  #: record failed, never retry
    BIND_LOST = "bind_lost"  #: the bind dropped before an answer: resubmit
    WITHDRAWN = "withdrawn"  #: `pace` said its alert ended while it waited: nothing was sent


@dataclass(frozen=True, slots=True)
class Submission:
    """One text to one number; `segments` limits a resubmission to what is missing.

    `pace` is awaited before each submit_sm the bind writes: one rate-limit token per segment,
    since an operator's link limit counts submit_sm PDUs, not messages. When it returns False
    the bind writes nothing more of it and answers WITHDRAWN (the alert ended meanwhile).
    """

    destination: str
    source: str
    text: str
    reference: int | None = None
    segments: frozenset[int] | None = None
    pace: Callable[[], Awaitable[bool | None]] | None = None
    #: Unix time after which the operator must not deliver it (the alert's expiry): every
    #: submit_sm carries it as its validity period.
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class SubmitAnswer:
    """The gateway's answer: an outcome, the message id per segment ('' if not accepted)."""

    outcome: Outcome
    message_ids: list[str]
    command_status: int
    reference: int
    missing: frozenset[int]


class Receipt(Protocol):
    """A delivery receipt as the gateway hands it over."""

    @property
    def message_id(self) -> str: ...

    @property
    def state(self) -> str: ...


#: Called by a bind for each receipt; the SMSC gets its deliver_sm_resp once the result is done.
ReceiptSink = Callable[[str, Receipt], Awaitable[None]]


class Bind(Protocol):
    """One SMPP bind of an operator."""

    @property
    def name(self) -> str: ...

    @property
    def window(self) -> int: ...

    @property
    def is_bound(self) -> bool: ...

    @property
    def outstanding(self) -> int: ...

    async def submit(self, submission: Submission) -> SubmitAnswer:
        """Submit every (or every missing) segment; never raises for an SMSC answer."""
        ...


class TokenLease(Protocol):
    """Tokens granted together, handed out paced."""

    @property
    def remaining(self) -> int: ...

    async def take(self) -> bool:
        """Wait for the next token's slot: True when one message may be sent now (a late sender
        catches up as the limiter's send window allows), False when the lease's last slots passed
        unused where catch-up is off (docs/ratelimit.md)."""
        ...


class TokenSource(Protocol):
    """Leases of tokens over several buckets at once (`ratelimit.Limiter` fits)."""

    async def lease(self, buckets: Sequence[str], n: int | None = None) -> TokenLease:
        """Take up to `n` tokens from every bucket at once."""
        ...


SegmentCounter = Callable[[str], int]
