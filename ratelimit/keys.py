"""Every Redis key and TTL the rate limiter uses.

All keys carry the hash tag `{rl}`, so that on a Redis Cluster they live in one slot and one script
can change several buckets atomically.
"""

from __future__ import annotations

#: Common prefix of every rate-limiter key.
PREFIX = "tocsin:rl:{rl}:"

#: Hash per bucket: `tokens` (float, may be negative while leases are reserved ahead), `ts` (Redis
#: time in microseconds of the last change) and `exp` (microseconds; past it the state is stale and
#: the bucket counts as full). The key itself expires a little after `exp`.
BUCKET = PREFIX + "bucket:"

#: Hash of limiter-wide facts: `epoch` (Redis time in microseconds when this Redis first ran the
#: script: a bucket with no state refills from then, so a Redis that lost its memory starts every
#: bucket empty, not full) and `rules_version` (a fresh random id at every publish or withdraw;
#: absent, 0, while nothing was ever published on this Redis).
META = PREFIX + "meta"
META_EPOCH = "epoch"
META_RULES_VERSION = "rules_version"

#: String: the rules file (TOML text) published at run time; absent when the file's rules apply.
RULES = PREFIX + "rules"

#: Sorted set: replica id -> Redis time (microseconds) of its last heartbeat.
REPLICAS = PREFIX + "replicas"


def replicas_key(group: str) -> str:
    """The heartbeat set of one group of replicas (the processes that share buckets: one service).

    Limiters of other services on the same Redis (voice's calls-per-second buckets beside SMS's
    operator buckets) are not counted as replicas of each other: they never take the same bucket.
    """
    return REPLICAS if not group else f"{REPLICAS}:{group}"


#: A replica that has not sent a heartbeat for this long no longer counts.
REPLICA_TTL_SECONDS = 5.0

#: Kept past the moment a bucket would be full again, so that Redis never drops live state.
BUCKET_TTL_MARGIN_MS = 1000


def bucket(name: str) -> str:
    """Return the Redis key of the bucket called `name`."""
    return BUCKET + name
