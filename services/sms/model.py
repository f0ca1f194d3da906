"""States of a recipient and the unit of work that moves through the service."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    """State of one recipient (alert, version, address) in `sms_messages`."""

    QUEUED = "queued"  #: recorded, not yet accepted by an SMSC
    SUBMITTED = "submitted"  #: accepted by the SMSC; its message ids are recorded
    DELIVERED = "delivered"  #: a receipt said delivered
    FAILED = "failed"  #: refused for good by the SMSC, or undeliverable
    EXPIRED = "expired"  #: the alert expired before sending, or the SMSC let it expire
    CANCELLED = "cancelled"  #: the alert was cancelled before this was sent
    SUPERSEDED = "superseded"  #: a newer alert version replaced this before it was sent


#: States that end a recipient's stream work (its entry may be acknowledged).
OUTCOMES = frozenset(State) - {State.QUEUED}


@dataclass(slots=True, eq=False)
class Entry:
    """One stream entry being worked on: acknowledged once `remaining` reaches 0."""

    entry_id: str
    alert: str
    version: int
    expires: float
    remaining: int = 0


@dataclass(slots=True, eq=False)
class Job:
    """One recipient to submit, with its retry state."""

    entry: Entry
    address: str
    operator: str
    text: str
    sender: str
    segments: int
    attempts: int = 0
    #: Message ids accepted so far, per segment ('' where not yet accepted).
    message_ids: list[str] = field(default_factory=list)
    #: Concatenation reference of the first attempt, reused when resubmitting missing segments.
    reference: int | None = None
    #: Segments still to send (None: all).
    missing: frozenset[int] | None = None
    #: Monotonic time before which it must not be resubmitted.
    not_before: float = 0.0
    #: Bind that carried the accepted submission, and when it was sent (Unix time).
    bind: str = ""
    submitted_at: float = 0.0
    #: Why it failed (SMPP status, `expired`, `invalid number`).
    error: str = ""
    #: Whether it holds a slot of the durability window (released once its state is written).
    holds_slot: bool = False
