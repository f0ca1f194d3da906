"""States of a recipient, the stream entry in hand and the unit of work of every channel."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    """State of one recipient (alert, version, address) in a channel's messages table."""

    QUEUED = "queued"  #: recorded, not yet handed to an operator
    SUBMITTED = "submitted"  #: accepted by the operator; its answer (receipt) may follow
    DELIVERED = "delivered"  #: the operator said delivered (receipt, answered call, relay 250)
    FAILED = "failed"  #: refused for good, or undeliverable
    EXPIRED = "expired"  #: the alert expired before sending, or the operator let it expire
    CANCELLED = "cancelled"  #: the alert was cancelled before this was sent
    SUPERSEDED = "superseded"  #: a newer alert version replaced this before it was sent


#: States that end a recipient's stream work (its entry may be acknowledged).
OUTCOMES = frozenset(State) - {State.QUEUED}
#: States in which a recipient has reached an operator: its units are charged.
HANDED_OVER = frozenset({State.SUBMITTED, State.DELIVERED})


@dataclass(slots=True, eq=False)
class Entry:
    """One stream entry being worked on: acknowledged once `remaining` reaches 0."""

    entry_id: str
    alert: str
    version: int
    expires: float
    remaining: int = 0
    #: Rank of its lane (codec.Priority.rank: 0 is the most urgent), from the stream it was on.
    rank: int = 1
    #: Whose work it is within its lane (the entity, else the alert): senders take turns.
    owner: str = ""
    #: Claimed by another consumer while this process was stalled: never acknowledged here.
    lost: bool = False


@dataclass(slots=True, eq=False)
class Job:
    """One recipient to deliver, with its retry state. Channels may subclass it (slots)."""

    entry: Entry
    address: str
    #: Operator, trunk or relay the recipient goes through (a metrics label, a column).
    route: str
    text: str
    sender: str
    #: Communication units this recipient costs once handed over (SMS segments, 1 per answered
    #: call, 0 for e-mail); a channel may set it when it sorts the answer.
    units: int
    attempts: int = 0
    #: The operator's references (SMS: one message id per segment) that receipts name.
    refs: list[str] | None = None
    #: Connection that carried the accepted delivery (bind, trunk), and when (Unix time).
    via: str = ""
    submitted_at: float = 0.0
    #: Why it failed (operator status, `expired`, `invalid address`).
    error: str = ""
    #: Whether it holds a slot of the durability window (released once its state is written).
    holds_slot: bool = False
    #: (alert, version, address) under which this process holds it from its queueing until its
    #: outcome is durable (Consumer._holding); None for a copy that was not queued.
    held_as: tuple[str, int, str] | None = None
    #: Taken over by another consumer while this process was stalled: dropped unsent and
    #: unrecorded (the other consumer sends and records it).
    abandoned: bool = False
