"""Targeting benchmark: load the population, then preview and resolve zones of three sizes.

Prints progress and figures, and writes bench/results/targeting.json. Resumable: PostgreSQL
keeps its data in var/bench/targeting-pg, and a population already loaded with the same seed and
size is not loaded again. Zones are circles whose radius is searched with previews until they
hold about the target number of recipients (all channels together), scaled down with the
population when it is smaller than the design ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bench.load import load_population, migrate
from services.channel import codec
from services.kernel import keys
from services.kernel.redis_client import connect as connect_redis
from services.targeting.model import ALL_CHANNELS, Counts
from services.targeting.preview import preview
from services.targeting.resolve import AlertMessage, resolve
from services.targeting.zones import Zone, circle
from stack.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[1]
#: The design ceiling: the whole population.
CEILING = 12_000_000
#: (name, target recipients at the ceiling, centre lon, centre lat, largest radius in metres).
ZONES = (
    ("1k", 1_000, 5.7167, 50.0000, 20_000.0),  # Bastogne: a small town
    ("100k", 100_000, 4.4025, 51.2194, 30_000.0),  # Antwerpen
    ("1m", 1_000_000, 4.3517, 50.8503, 60_000.0),  # Brussel and its periphery
)
STREAMS = (keys.SMS_STREAM, keys.VOICE_STREAM, keys.EMAIL_STREAM)
TARGETS = {"preview_ms_1m": 500.0, "first_batch_ms_1m": 200.0, "enqueue_per_s": 500_000.0}


def say(message: str) -> None:
    """Progress line, flushed at once."""
    print(f"[bench-targeting {time.strftime('%H:%M:%S')}] {message}", flush=True)


def total(counts: Counts) -> int:
    """Recipients over all channels."""
    return sum(counts.total(c) for c in ALL_CHANNELS)


async def find_radius(
    pool: asyncpg.Pool, *, target: int, lon: float, lat: float, max_radius: float
) -> float:
    """A radius around (lon, lat) whose preview counts about `target` (bisection)."""
    lo, hi = 20.0, max_radius
    mid = hi
    for _ in range(18):
        mid = (lo * hi) ** 0.5
        zone = circle(lon=lon, lat=lat, radius_m=mid)
        found = total((await preview(pool=pool, zone=zone, group_ids=[])).counts)
        if abs(found - target) <= 0.03 * target:
            break
        if found < target:
            lo = mid
        else:
            hi = mid
    return mid


async def measure(
    pool: asyncpg.Pool, redis: aioredis.Redis, *, zone: Zone, runs: int
) -> dict[str, Any]:
    """Preview latency (median), then one resolve: time to first batch and throughput."""
    timings = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        result = await preview(pool=pool, zone=zone, group_ids=[])
        timings.append((time.perf_counter() - started) * 1000)
    await redis.delete(*STREAMS)
    message = AlertMessage(
        alert="00000000-0000-4000-8000-00000000bench",
        version=1,
        kind="test",
        expires=time.time() + 3600,
        sender="BE-Alert",
        texts={"nl": "TEST", "fr": "TEST", "de": "TEST", "en": "TEST"},
    )
    started = time.perf_counter()
    first_ms = None
    last = None
    async for progress in resolve(
        pool=pool,
        redis=redis,
        message=message,
        channels=frozenset(ALL_CHANNELS),
        zone=zone,
        group_ids=[],
        batch_size=codec.ENTRY_SIZE,
    ):
        if first_ms is None and progress.batches:
            first_ms = (time.perf_counter() - started) * 1000
        last = progress
    elapsed = time.perf_counter() - started
    if last is None or not last.done:
        raise RuntimeError("resolve ended without its final progress message")
    enqueued = total(last.counts)
    entries = sum([await redis.xlen(s) for s in STREAMS])
    await redis.delete(*STREAMS)
    return {
        "area_km2": round(zone.area_km2, 2),
        "preview_recipients": total(result.counts),
        "preview_exact": result.exact,
        "preview_ms": round(statistics.median(timings[1:]), 1),
        "recipients_enqueued": enqueued,
        "stream_entries": entries,
        "first_batch_ms": round(first_ms or elapsed * 1000, 1),
        "resolve_s": round(elapsed, 3),
        "enqueue_per_s": round(enqueued / elapsed) if elapsed else 0,
    }


async def run(
    *, database_url: str, redis_url: str, subscribers: int, seed: int, runs: int
) -> dict[str, Any]:
    """Load (unless loaded), then measure every zone; return the figures."""
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    redis = connect_redis(redis_url)
    try:
        async with pool.acquire() as conn:
            await load_population(conn=conn, seed=seed, subscribers=subscribers, progress=say)
            addresses = int(await conn.fetchval("SELECT count(*) FROM addresses"))
        scale = subscribers / CEILING
        results: dict[str, Any] = {
            "subscribers": subscribers,
            "addresses": addresses,
            "seed": seed,
            "zones": {},
        }
        for name, target, lon, lat, max_radius in ZONES:
            goal = max(100, round(target * scale))
            say(f"zone {name}: searching a circle with about {goal:,} recipients")
            radius = await find_radius(pool, target=goal, lon=lon, lat=lat, max_radius=max_radius)
            # Previews of large zones are an upper bound: correct the radius on what Resolve
            # actually enqueues, until within 10 % of the target.
            for _ in range(4):
                zone = circle(lon=lon, lat=lat, radius_m=radius)
                figures = await measure(pool, redis, zone=zone, runs=runs)
                enqueued = figures["recipients_enqueued"]
                if not enqueued or abs(enqueued - goal) <= 0.1 * goal:
                    break
                radius = min(max_radius, radius * (goal / enqueued) ** 0.5)
            figures["target_recipients"] = goal
            figures["radius_m"] = round(radius)
            results["zones"][name] = figures
            say(f"zone {name}: {json.dumps(figures)}")
            results[f"preview_ms_{name}"] = figures["preview_ms"]
            results[f"first_batch_ms_{name}"] = figures["first_batch_ms"]
        results["enqueue_per_s"] = results["zones"]["1m"]["enqueue_per_s"]
        results["targets"] = TARGETS
        results["meets_targets"] = (
            results["preview_ms_1m"] < TARGETS["preview_ms_1m"]
            and results["first_batch_ms_1m"] < TARGETS["first_batch_ms_1m"]
            and results["enqueue_per_s"] >= TARGETS["enqueue_per_s"]
        )
        return results
    finally:
        await redis.aclose()
        await pool.close()


def main() -> None:
    """Command line: `python -m bench.targeting [--subscribers N] [--seed S]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=CEILING)
    parser.add_argument("--seed", type=int, default=20_260_101)
    parser.add_argument("--runs", type=int, default=5, help="previews timed per zone")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "var/bench/targeting-pg")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/targeting.json")
    args = parser.parse_args()
    say(f"PostgreSQL in {args.data_dir} (kept between runs), Redis in memory")
    with Supervisor() as supervisor:
        database_url = supervisor.postgres(data_dir=args.data_dir, fast_unsafe=True)
        redis_url = supervisor.redis(data_dir=None)
        migrate(database_url)
        results = asyncio.run(
            run(
                database_url=database_url,
                redis_url=redis_url,
                subscribers=args.subscribers,
                seed=args.seed,
                runs=args.runs,
            )
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    say(f"written {args.out}")
    for key in ("subscribers", "preview_ms_1m", "first_batch_ms_1m", "enqueue_per_s"):
        say(f"{key} = {results[key]}")


if __name__ == "__main__":
    main()
