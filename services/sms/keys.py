"""Redis keys and lease times of the SMS service (shared keys are in services/kernel/keys.py)."""

from __future__ import annotations

PREFIX = "tocsin:sms"

#: Seconds an SMPP session's lease lives unless renewed (TOCSIN_SMPP_SESSION_LEASE_S's default).
SESSION_LEASE_S = 30.0


def operator_sessions(operator: str) -> str:
    """Sorted set of the SMPP sessions open to `operator`, scored by when their lease lapses."""
    return f"{PREFIX}:operator:{{{operator}}}:sessions"


def operator_sessions_since(operator: str) -> str:
    """Redis time since which this Redis has held `operator`'s session leases (no expiry)."""
    return f"{PREFIX}:operator:{{{operator}}}:since"


#: Set by the SMS service once this Redis holds the stream entries of every live SMS API batch
#: (services/sms/repair.py): a Redis that lost its data lacks it, and the service then writes
#: the entries again from PostgreSQL. Its own, beside alerting's REDIS_MARKER
#: (services/kernel/keys.py): each repair checks and sets only its own marker, so neither one's
#: run makes the other skip.
API_INTACT = f"{PREFIX}:redis:intact"
#: Held (SET NX, with a TTL, renewed per batch) by the one process repairing the API batches.
API_REPAIR_LOCK = f"{PREFIX}:redis:repairing"


def api_batch_written(batch_id: str) -> str:
    """Set, until the batch expires, in the pipeline that writes the API batch's stream entries
    and before them: this Redis holds them, a repair leaves the batch alone."""
    return f"{PREFIX}:api-batch:{batch_id}:written"
