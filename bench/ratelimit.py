"""Rate-limiter benchmark: accuracy against one shared bucket, Redis calls and acquire overhead.

    python -m bench.ratelimit [--redis URL] [--seconds 10] [--processes 4] [--tasks 16]

Without --redis it starts a private redis-server on 127.0.0.1 (the stack's embedded one) and stops
it at the end. Prints the figures and writes them to bench/results/ratelimit.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from pathlib import Path

from bench.loadgen import Load, spawn, warm
from bench.windows import busiest_window
from ratelimit.config import Rule, Rules
from ratelimit.limiter import Limiter
from services.kernel.redis_client import connect as connect_redis
from stack.supervisor import Supervisor

RESULTS = Path(__file__).resolve().parent / "results" / "ratelimit.json"


async def accuracy(url: str, load: Load, *, processes: int) -> dict[str, float]:
    """Run the load generators; compare what they were granted with what the bucket allows."""
    client = connect_redis(url)
    try:
        await client.flushdb()
        await warm(client)
    finally:
        await client.aclose()
    reports = await spawn(url, load, processes=processes)
    granted = sum(n for r in reports for _, n in r.grants)
    theoretical = load.capacity + load.rate * (1 - load.headroom) * load.duration
    window = busiest_window([t for r in reports for t in r.sends])
    reserved = sum(r.reserved for r in reports)
    return {
        "granted": granted,
        "theoretical": theoretical,
        "accuracy": granted / theoretical,
        "max_window": window,
        "max_window_excess": max(0.0, window - (load.rate + load.capacity)),
        # Whole messages: a one-second window holding more than floor(rate) is above the rate.
        "max_window_above_rate": max(0, window - math.floor(load.rate)),
        "redis_calls": sum(r.calls for r in reports),
        "redis_calls_per_token": sum(r.calls for r in reports) / reserved if reserved else 0.0,
    }


async def overhead(url: str, *, leases: int, lease: int) -> dict[str, float]:
    """Time acquire calls on a bucket that never throttles: the limiter's own cost per token."""
    client = connect_redis(url)
    rules = Rules((Rule("bench:free", 1e9, 1_000_000),), lease=lease, source="bench")
    try:
        limiter = Limiter.from_rules(client, rules)
        await limiter.lease(["bench:free"])  # loads the script, opens the connection
        started = time.perf_counter()
        for _ in range(leases):
            await limiter.lease(["bench:free"])
        elapsed = time.perf_counter() - started
    finally:
        await client.aclose()
    return {
        "us_per_lease": elapsed / leases * 1e6,
        "us_per_token": elapsed / (leases * lease) * 1e6,
    }


async def bench(args: argparse.Namespace, url: str) -> dict[str, object]:
    """Run both parts and return the figures with the parameters that produced them."""
    load = Load(
        duration=args.seconds,
        tasks=args.tasks,
        rate=args.rate,
        capacity=args.capacity,
        lease=args.lease,
        headroom=args.headroom,
    )
    figures: dict[str, object] = {
        "processes": args.processes,
        "tasks": args.tasks,
        "seconds": args.seconds,
        "rate": args.rate,
        "capacity": args.capacity,
        "lease": args.lease,
        "headroom": args.headroom,
    }
    figures.update(await accuracy(url, load, processes=args.processes))
    figures.update(await overhead(url, leases=args.overhead_leases, lease=args.lease))
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the figures, write the results file."""
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit", description=__doc__)
    parser.add_argument("--redis", help="redis:// URL on 127.0.0.1 (default: a private server)")
    parser.add_argument("--seconds", type=float, default=10.0, help="accuracy run length")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=16, help="sender tasks per process")
    parser.add_argument("--rate", type=float, default=741.0, help="tokens per second")
    parser.add_argument("--capacity", type=int, default=100)
    parser.add_argument("--lease", type=int, default=50, help="tokens per lease")
    parser.add_argument(
        "--headroom", type=float, default=0.0, help="fraction below the rate the limiter paces at"
    )
    parser.add_argument("--overhead-leases", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file")
    args = parser.parse_args(argv)
    with Supervisor() as supervisor:
        url = supervisor.redis(data_dir=None, external=args.redis)
        figures = asyncio.run(bench(args, url))
    print(f"accuracy (granted / theoretical)  {figures['accuracy']:.4f}")
    print(f"  granted {figures['granted']} of {figures['theoretical']:.0f}")
    print(f"worst 1 s window above rate+cap   {figures['max_window_excess']:.0f}")
    print(f"worst 1 s window above the rate   {figures['max_window_above_rate']:.0f}")
    print(f"Redis calls per token             {figures['redis_calls_per_token']:.4f}")
    print(f"acquire overhead, us per token    {figures['us_per_token']:.2f}")
    print(f"acquire overhead, us per lease    {figures['us_per_lease']:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
