"""Errors of the SIP gateway and the outcome of a call attempt, sorted by what a dialer must do."""

from __future__ import annotations

from enum import StrEnum


class SipError(Exception):
    """Any failure of the SIP gateway."""


class SipParseError(SipError):
    """A datagram is not a SIP message we can read; it is dropped and counted, never answered."""


class CallOutcome(StrEnum):
    """How one call attempt ended, in the terms a dialer acts on."""

    ANSWERED = "answered"  #: 2xx: the message was played (see CallResult.heard_fully)
    BUSY = "busy"  #: 486, 600: try again after a delay
    NO_ANSWER = "no_answer"  #: ring timeout (we sent CANCEL), 480, 408: try again after a delay
    REJECTED = "rejected"  #: 404, 484, 604 and other permanent 3xx/4xx/6xx: never retry
    TRUNK_TROUBLE = "trunk_trouble"  #: 5xx or no answer at all (timer B): retry later/elsewhere
    ABANDONED = "abandoned"  #: the caller gave up before an answer (alert cancelled)


BUSY_STATUSES = frozenset({486, 600})
NO_ANSWER_STATUSES = frozenset({408, 480, 487})


def classify_status(status: int) -> CallOutcome:
    """Sort a final INVITE status into a call outcome."""
    if 200 <= status < 300:
        return CallOutcome.ANSWERED
    if status in BUSY_STATUSES:
        return CallOutcome.BUSY
    if status in NO_ANSWER_STATUSES:
        return CallOutcome.NO_ANSWER
    if 500 <= status < 600:
        return CallOutcome.TRUNK_TROUBLE
    return CallOutcome.REJECTED
