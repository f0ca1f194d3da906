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


#: Set by the voice service once this Redis holds the stream entries of every live voice API
#: batch (services/channel/apirepair.py): a Redis that lost its data lacks it, and the service
#: then writes the entries again from PostgreSQL. Its own, beside the SMS service's and
#: alerting's markers: each repair checks and sets only its own.
API_INTACT = f"{PREFIX}:redis:intact"
#: Held (SET NX, with a TTL, renewed per batch) by the one process repairing the API batches.
API_REPAIR_LOCK = f"{PREFIX}:redis:repairing"


def api_batch_written(batch_id: str) -> str:
    """Set, until the batch expires, in the pipeline that writes the API batch's stream entries
    and before them: this Redis holds them, a repair leaves the batch alone."""
    return f"{PREFIX}:api-batch:{batch_id}:written"
