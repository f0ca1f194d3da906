"""A load generator: one process, many sender tasks, leasing from one bucket and pacing sends.

Used by the accuracy test and by `bench/ratelimit.py`, each running several of these processes
against one Redis. Prints one JSON object on stdout: lease grants (wall time, tokens), the wall time
of every send, how many acquire calls went to Redis and how many tokens they were granted.

    python -m ratelimit.loadgen --redis redis://127.0.0.1:6379/0 --start-at 1700000000.0 \
        --duration 10 --tasks 16 --rate 741 --capacity 100 --lease 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from ratelimit.config import Rule, Rules
from ratelimit.limiter import Limiter, LimiterSettings

#: The bucket the generator leases from.
BUCKET = "bench:global"


@dataclass
class Tally:
    """What one process was granted and sent."""

    #: (wall time the lease could start, tokens) per lease.
    grants: list[tuple[float, int]] = field(default_factory=list)
    #: Wall time of every send.
    sends: list[float] = field(default_factory=list)
    #: Leases granted by the local fallback.
    fallback_leases: int = 0


async def _sender(limiter: Limiter, tally: Tally, *, lease_size: int) -> None:
    while True:
        lease = await limiter.lease([BUCKET], lease_size)
        tally.grants.append((time.time(), lease.granted))
        if limiter.in_fallback:
            tally.fallback_leases += 1
        async for _ in lease.paced():
            tally.sends.append(time.time())


async def run(
    *,
    url: str,
    start_at: float,
    duration: float,
    tasks: int,
    rate: float,
    capacity: int,
    lease_size: int,
) -> dict[str, object]:
    """Run `tasks` senders from `start_at` for `duration` seconds; return the tally as JSON data."""
    rules = Rules((Rule(BUCKET, rate, capacity),), lease=lease_size, source="loadgen")
    client = aioredis.Redis.from_url(url)
    tally = Tally()
    try:
        async with Limiter.from_rules(client, rules, settings=LimiterSettings()) as limiter:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            # At the end every sender stops where it is: no Redis call is made after the end, and
            # a lease reserved before it but starting after it counts as granted, not as used.
            with contextlib.suppress(TimeoutError):
                async with (
                    asyncio.timeout(start_at + duration - time.time()),
                    asyncio.TaskGroup() as group,
                ):
                    for _ in range(tasks):
                        group.create_task(_sender(limiter, tally, lease_size=lease_size))
            calls = limiter.driver.acquire_calls
    finally:
        await client.aclose()
    reserved = REGISTRY.get_sample_value(
        "tocsin_ratelimit_tokens_granted_total", {"bucket": BUCKET}
    )
    return {
        "grants": tally.grants,
        "sends": tally.sends,
        "acquire_calls": calls,
        "tokens_granted": reserved or 0.0,
        "fallback_leases": tally.fallback_leases,
    }


def max_window(times: Sequence[float], width: float = 1.0) -> int:
    """The most events in any window of `width` seconds (sliding: each window ends at an event)."""
    ordered = sorted(times)
    most = 0
    first = 0
    for i, t in enumerate(ordered):
        while ordered[first] <= t - width:
            first += 1
        most = max(most, i - first + 1)
    return most


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the tally."""
    parser = argparse.ArgumentParser(prog="python -m ratelimit.loadgen", description=__doc__)
    parser.add_argument("--redis", required=True, help="redis:// URL on 127.0.0.1")
    parser.add_argument("--start-at", type=float, required=True, help="wall time to start")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--tasks", type=int, default=16, help="sender tasks")
    parser.add_argument("--rate", type=float, default=741.0, help="bucket rate, tokens/s")
    parser.add_argument("--capacity", type=int, default=100, help="bucket capacity")
    parser.add_argument("--lease", type=int, default=50, help="tokens per lease")
    args = parser.parse_args(argv)
    result = asyncio.run(
        run(
            url=args.redis,
            start_at=args.start_at,
            duration=args.duration,
            tasks=args.tasks,
            rate=args.rate,
            capacity=args.capacity,
            lease_size=args.lease,
        )
    )
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
