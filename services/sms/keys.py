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
