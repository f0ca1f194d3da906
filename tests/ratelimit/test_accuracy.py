"""Four processes of sixteen senders each against one 741/s bucket, on the real Redis."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from ratelimit.loadgen import max_window
from tests.ratelimit.conftest import warm

RATE = 741.0
CAPACITY = 100
LEASE = 50
DURATION = 10.0
PROCESSES = 4
TASKS = 16


@dataclass(frozen=True)
class Tally:
    """One load-generator process' report."""

    grants: list[tuple[float, int]]
    sends: list[float]
    calls: int
    reserved: float
    fallback_leases: int


async def _loadgen(url: str, start_at: float) -> Tally:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ratelimit.loadgen",
        "--redis",
        url,
        "--start-at",
        repr(start_at),
        "--duration",
        str(DURATION),
        "--tasks",
        str(TASKS),
        "--rate",
        str(RATE),
        "--capacity",
        str(CAPACITY),
        "--lease",
        str(LEASE),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    data = json.loads(out)
    return Tally(
        grants=[(float(t), int(n)) for t, n in data["grants"]],
        sends=[float(t) for t in data["sends"]],
        calls=int(data["acquire_calls"]),
        reserved=float(data["tokens_granted"]),
        fallback_leases=int(data["fallback_leases"]),
    )


async def test_four_processes_share_one_bucket_exactly(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    await warm(redis_client)
    start_at = time.time() + 3.0
    async with asyncio.timeout(60):
        results = await asyncio.gather(*(_loadgen(redis_url, start_at) for _ in range(PROCESSES)))
    grants = [g for r in results for g in r.grants]
    granted = sum(n for _, n in grants)
    calls = sum(r.calls for r in results)
    sends = [t for r in results for t in r.sends]
    theoretical = CAPACITY + RATE * DURATION

    assert all(start_at <= t < start_at + DURATION for t, _ in grants)
    assert granted <= theoretical
    assert granted >= 0.99 * theoretical
    # Throttled from the first lease on: one Redis call per lease of 50 tokens at most (counting the
    # last leases, reserved before the end and starting after it).
    reserved = sum(r.reserved for r in results)
    assert calls <= reserved / LEASE
    assert max_window(sends) <= RATE + CAPACITY
    assert sum(r.fallback_leases for r in results) == 0
