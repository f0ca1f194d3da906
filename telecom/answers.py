"""What an operator's platform (CBC, LB-SMS) answered, sorted by what the caller does next.

The gateways sort each platform's HTTP answer into an outcome (gateways/cbc, gateways/lbsms); the
cell broadcast service acts on it through its ports (services/cellbroadcast/ports.py). Neither may
import the other, so the vocabulary they share is defined here, once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    """An answer sorted by what it means for the request."""

    #: Taken (201 on create, 200 on delete).
    ACCEPTED = "accepted"
    #: Refused for good: the request is wrong (400 with a text); retrying changes nothing.
    REFUSED = "refused"
    #: The message or request is unknown (404 on delete): nothing left to withdraw.
    UNKNOWN = "unknown"
    #: Already there (409 on create): ours if our records say so, else the identifier is busy.
    CONFLICT = "conflict"
    #: No answer, an error of the platform (5xx) or an unexpected status: retried with backoff.
    FAILED = "failed"


@dataclass(frozen=True)
class Answer:
    """One answer: its outcome, HTTP status (0: none came) and the text that came with it."""

    outcome: Outcome
    status: int
    text: str = ""
    #: Phones the platform reached (location-based SMS only).
    phones: int | None = None
