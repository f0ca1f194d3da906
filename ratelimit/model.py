"""What a bucket is asked for and what an acquire answers, shared by the Redis and local buckets."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """One bucket of a request, with the limit in force for it now."""

    #: Bucket name, e.g. `sms:op:proximus`.
    name: str
    #: Tokens added per second.
    rate: float
    #: Most tokens the bucket holds.
    capacity: int


@dataclass(frozen=True, slots=True)
class Answer:
    """The outcome of one acquire over several buckets."""

    #: Whether all tokens were taken from every bucket (else none were).
    granted: bool
    #: Seconds: until the lease may start (granted), or until asking again is worth it (refused).
    wait: float
    #: The bucket that made the caller wait, if any.
    limiting: str | None
    #: Version of the rules published in Redis (0: none), or None from the local fallback.
    rules_version: int | None = None
    #: Redis' clock (seconds) at the moment the script answered; None from the local fallback.
    clock: float | None = None
