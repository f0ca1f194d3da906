"""Redis keys of the voice service (shared keys are in services/kernel/keys.py)."""

from __future__ import annotations

PREFIX = "tocsin:voice"


def trunk_channels(trunk: str) -> str:
    """Sorted set of calls holding a channel of `trunk`, scored by when their lease lapses."""
    return f"{PREFIX}:trunk:{{{trunk}}}:channels"


def cps_bucket(trunk: str) -> str:
    """Rate-limit bucket of new calls per second on `trunk` (ratelimit/default_rules.toml)."""
    return f"voice:trunk:{trunk}"


def batch(key: str) -> str:
    """PlaceCalls batch of an idempotency key: its alert id and size."""
    return f"{PREFIX}:batch:{{{key}}}"
