"""The SMS job: a channel job with what resubmitting part of a long text needs."""

from __future__ import annotations

from dataclasses import dataclass

from services.channel.model import Job, State

__all__ = ["SmsJob", "State"]


@dataclass(slots=True, eq=False)
class SmsJob(Job):
    """One number to submit: `units` are its segments, `refs` its message ids per segment
    ('' where not yet accepted), `route` its operator and `via` the bind that carried it."""

    #: Concatenation reference of the first attempt, reused when resubmitting missing segments.
    reference: int | None = None
    #: Segments still to send (None: all).
    missing: frozenset[int] | None = None
