"""What the e-mail service reports: per alert version, recipients per outcome."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from services.kernel.errors import InvalidArgument


class Outcome(StrEnum):
    """A recipient's outcome as the e-mail channel names it."""

    QUEUED = "queued"  #: recorded, not yet accepted by the relay
    ACCEPTED = "accepted"  #: the relay took it (row state `submitted`)
    BOUNCED = "bounced"  #: taken, then a DSN failed it (state `failed` with a reference)
    FAILED = "failed"  #: refused by the relay, invalid, or 4xx until expiry
    EXPIRED = "expired"  #: the alert expired before it went
    CANCELLED = "cancelled"  #: the alert was cancelled before it went
    SUPERSEDED = "superseded"  #: a newer version replaced it before it went


# A failed row that had been accepted (it has the reference its bounce found) bounced.
_COUNTS = """
SELECT version,
       CASE WHEN state = 'submitted' THEN 'accepted'
            WHEN state = 'delivered' THEN 'accepted'
            WHEN state = 'failed' AND cardinality(message_ids) > 0 THEN 'bounced'
            ELSE state END AS outcome,
       count(*) AS n
  FROM email_messages
 WHERE alert = $1 AND version > 0 AND ($2::int IS NULL OR version = $2)  -- the alert's index
 GROUP BY 1, 2
"""


@dataclass(frozen=True, slots=True)
class Progress:
    """Recipients per outcome of one alert version."""

    version: int
    counts: dict[Outcome, int]

    @property
    def total(self) -> int:
        """Recipients of the version."""
        return sum(self.counts.values())


async def alert_progress(pool: asyncpg.Pool, *, alert: str, version: int) -> list[Progress]:
    """Counts per outcome, per version of an alert (version 0: every version)."""
    if not alert:
        raise InvalidArgument("alert_id", "must not be empty")
    if version < 0:
        raise InvalidArgument("version", "must be 0 (every version) or more")
    rows = await pool.fetch(_COUNTS, alert, version or None)
    found: dict[int, dict[Outcome, int]] = {}
    for r in rows:
        found.setdefault(r["version"], {})[Outcome(r["outcome"])] = int(r["n"])
    return [Progress(v, counts) for v, counts in sorted(found.items())]
