"""A load generator: one process, many sender tasks, leasing from one bucket and pacing sends.

The accuracy test and `python -m bench.ratelimit` each run several of these processes against one
Redis (`spawn`). A process prints one JSON report on stdout: lease grants (wall time, tokens), the
wall time of every send, how many acquire calls went to Redis and how many tokens they were granted.

    python -m bench.loadgen --redis redis://127.0.0.1:6379/0 \
        --load '{"duration": 10, "tasks": 16, "rate": 741}'    # then "ready"; send a start time
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from ratelimit import keys
from ratelimit.config import Rule, Rules
from ratelimit.limiter import Limiter
from services.kernel.redis_client import connect as connect_redis

#: The bucket the generator leases from.
BUCKET = "bench:global"


@dataclass(frozen=True, slots=True)
class Load:
    """What every process of one run does."""

    #: Seconds the senders run.
    duration: float = 10.0
    #: Sender tasks per process.
    tasks: int = 16
    #: Bucket rate, tokens per second.
    rate: float = 741.0
    #: Bucket capacity.
    capacity: int = 100
    #: Tokens per lease.
    lease: int = 50
    #: The rules' headroom: 0 here, so that what is granted compares with the bucket's own rate.
    headroom: float = 0.0


@dataclass
class Report:
    """What one process was granted and sent."""

    #: (wall time the lease could start, tokens) per lease.
    grants: list[tuple[float, int]] = field(default_factory=list)
    #: Wall time of every send.
    sends: list[float] = field(default_factory=list)
    #: Acquire calls made to Redis.
    calls: int = 0
    #: Tokens granted by those calls, including leases reserved to start after the end.
    reserved: float = 0.0
    #: Acquire calls Redis refused (the bucket's wait past max_wait; the caller slept on the
    #: retry-after it was given, then asked again).
    refused: int = 0
    #: Leases granted by the local fallback.
    fallback_leases: int = 0
    #: Wall time at which the senders started.
    start_at: float = 0.0

    @classmethod
    def from_json(cls, data: Any) -> Report:
        """Read a report printed by a load-generator process."""
        return cls(
            grants=[(float(t), int(n)) for t, n in data["grants"]],
            sends=[float(t) for t in data["sends"]],
            calls=int(data["calls"]),
            reserved=float(data["reserved"]),
            refused=int(data.get("refused", 0)),
            fallback_leases=int(data["fallback_leases"]),
            start_at=float(data["start_at"]),
        )


async def warm(client: aioredis.Redis) -> None:
    """Make Redis look as if it had run the limiter for an hour, so untouched buckets are full."""
    seconds, micros = await client.time()
    await client.hset(keys.META, keys.META_EPOCH, str((seconds - 3600) * 1_000_000 + micros))


async def _sender(limiter: Limiter, report: Report, *, lease_size: int) -> None:
    while True:
        lease = await limiter.lease([BUCKET], lease_size)
        report.grants.append((time.time(), lease.granted))
        if limiter.in_fallback:
            report.fallback_leases += 1
        async for _ in lease.paced():
            report.sends.append(time.time())


async def run(url: str, load: Load) -> Report:
    """Run the senders of one process and return what they were granted and sent.

    Prints `ready` once connected, then reads the wall time to start at from stdin, so that every
    process of a run starts at once however long each took to start.
    """
    rules = Rules(
        (Rule(BUCKET, load.rate, load.capacity),),
        lease=load.lease,
        headroom=load.headroom,
        source="loadgen",
    )
    client = connect_redis(url)
    report = Report()
    try:
        async with Limiter.from_rules(client, rules) as limiter:
            print("ready", flush=True)
            report.start_at = float(await asyncio.to_thread(sys.stdin.readline))
            await asyncio.sleep(max(0.0, report.start_at - time.time()))
            # At the end every sender stops where it is: no Redis call is made after the end, and
            # a lease reserved before it but starting after it counts as granted, not as used.
            with contextlib.suppress(TimeoutError):
                async with (
                    asyncio.timeout(report.start_at + load.duration - time.time()),
                    asyncio.TaskGroup() as group,
                ):
                    for _ in range(load.tasks):
                        group.create_task(_sender(limiter, report, lease_size=load.lease))
            report.calls = limiter.driver.acquire_calls
    finally:
        await client.aclose()
    sample = REGISTRY.get_sample_value("tocsin_ratelimit_tokens_granted_total", {"bucket": BUCKET})
    report.reserved = sample or 0.0
    refused = REGISTRY.get_sample_value("tocsin_ratelimit_refusals_total", {"bucket": BUCKET})
    report.refused = int(refused or 0)
    return report


async def spawn(url: str, load: Load, *, processes: int, lead: float = 0.5) -> list[Report]:
    """Run `processes` load-generator processes, start them together once all are ready (plus
    `lead` seconds), and collect their reports."""
    command = [sys.executable, "-m", "bench.loadgen", "--redis", url]
    command += ["--load", json.dumps(asdict(load))]
    pipe = asyncio.subprocess.PIPE
    procs = [
        await asyncio.create_subprocess_exec(*command, stdin=pipe, stdout=pipe)
        for _ in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if (await proc.stdout.readline()).strip() != b"ready":
                raise RuntimeError("a load generator failed to start")
        start_at = time.time() + lead
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start_at!r}\n".encode())
            await proc.stdin.drain()
            proc.stdin.close()
        outputs = await asyncio.gather(*(proc.communicate() for proc in procs))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    if any(proc.returncode != 0 for proc in procs):
        raise RuntimeError(f"a load generator failed: {[p.returncode for p in procs]}")
    return [Report.from_json(json.loads(out)) for out, _ in outputs]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the report."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--redis", required=True, help="redis:// URL on 127.0.0.1")
    parser.add_argument("--load", required=True, help="the Load, as a JSON object")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.redis, Load(**json.loads(args.load))))
    json.dump(asdict(report), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
