"""What an operator's platform answered, sorted by what the caller does next."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    """An answer sorted by what it means for the request."""

    #: Taken (201 on create, 200 on delete).
    ACCEPTED = "accepted"
    #: Refused for good: the request is wrong (400 with a text); retrying changes nothing.
    REFUSED = "refused"
    #: The message identifier is unknown (404 on delete): nothing left to withdraw.
    UNKNOWN = "unknown"
    #: The message identifier is already active (409 on create).
    CONFLICT = "conflict"
    #: No answer, an error of the platform (5xx) or an unexpected status: try again later.
    FAILED = "failed"


@dataclass(frozen=True)
class Answer:
    """One answer: its outcome, HTTP status (0: none came) and the text that came with it."""

    outcome: Outcome
    status: int
    text: str = ""
    #: Phones the platform reached (location-based SMS only).
    phones: int | None = None
