"""Bulk load of a synthetic population, cells per operator, and an empty zone."""

from __future__ import annotations

import time

import asyncpg
import pytest
import redis.asyncio as aioredis

from bench.load import PopulationConflict, load_population
from services.targeting.cells import cells_for_zone
from services.targeting.counts import counts_complete, rebuild_counts
from services.targeting.cover import COUNT_RESOLUTIONS
from services.targeting.model import ALL_CHANNELS, Channel
from services.targeting.preview import EXACT_BELOW_KM2, preview
from services.targeting.resolve import AlertMessage, Progress, resolve
from services.targeting.zones import Zone, circle
from tests.services.targeting.conftest import add_subscriber, stream_recipients


async def _resolve_all(
    pool: asyncpg.Pool, redis: aioredis.Redis, *, zone: Zone, alert: str
) -> Progress:
    """Resolve the zone on every channel; the last progress message."""
    message = AlertMessage(
        alert=alert,
        version=1,
        kind="test",
        expires=time.time() + 60,
        sender="BE-Alert",
        texts={"en": "TEST"},
    )
    progress = [
        p
        async for p in resolve(
            pool=pool,
            redis=redis,
            message=message,
            channels=frozenset(ALL_CHANNELS),
            zone=zone,
            group_ids=[],
            batch_size=100,
        )
    ]
    return progress[-1]


async def test_a_population_loads_once_and_resolves_like_it_previews(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    async with pg_pool.acquire() as conn:
        assert await load_population(conn=conn, seed=5, subscribers=3_000)
        assert not await load_population(conn=conn, seed=5, subscribers=3_000)
        assert await conn.fetchval("SELECT count(*) FROM subscribers") == 3_000
        loaded = sorted(map(tuple, await conn.fetch("SELECT * FROM cell_counts")))
        await rebuild_counts(conn=conn)
        assert sorted(map(tuple, await conn.fetch("SELECT * FROM cell_counts"))) == loaded
    zone = circle(lon=4.3517, lat=50.8503, radius_m=1_500)
    counted = await preview(pool=pg_pool, zone=zone, group_ids=[])
    assert counted.exact
    last = await _resolve_all(pg_pool, redis_client, zone=zone, alert="a")
    sent = await stream_recipients(redis_client, Channel.EMAIL.stream)
    assert len(sent) == len({a for a, _ in sent}) == last.counts.total(Channel.EMAIL)
    # Preview counts subscribers, Resolve destinations: they differ only by shared phones.
    for channel in ALL_CHANNELS:
        assert 0.95 * counted.counts.total(channel) <= last.counts.total(channel)
        assert last.counts.total(channel) <= counted.counts.total(channel)
    assert counted.counts.total(Channel.SMS) > 50


async def test_counts_lacking_a_resolution_are_rebuilt_without_a_reload(
    pg_pool: asyncpg.Pool,
) -> None:
    async with pg_pool.acquire() as conn:
        await load_population(conn=conn, seed=5, subscribers=3_000)
        full = sorted(map(tuple, await conn.fetch("SELECT * FROM cell_counts")))
        finest = max(COUNT_RESOLUTIONS)
        await conn.execute("DELETE FROM cell_counts WHERE (cell >> 52) & 15 = $1", finest)
        assert not await counts_complete(conn=conn)
        assert not await load_population(conn=conn, seed=5, subscribers=3_000)
        assert await counts_complete(conn=conn)
        assert sorted(map(tuple, await conn.fetch("SELECT * FROM cell_counts"))) == full


async def test_a_large_zone_previews_an_upper_bound_of_what_resolve_sends(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    async with pg_pool.acquire() as conn:
        await load_population(conn=conn, seed=5, subscribers=3_000)
    zone = circle(lon=4.3517, lat=50.8503, radius_m=4_000)
    assert zone.area_km2 >= EXACT_BELOW_KM2
    counted = await preview(pool=pg_pool, zone=zone, group_ids=[])
    assert not counted.exact
    last = await _resolve_all(pg_pool, redis_client, zone=zone, alert="b")
    for channel in ALL_CHANNELS:
        sent = last.counts.total(channel)
        assert sent <= counted.counts.total(channel) <= 1.3 * sent
    assert last.counts.total(Channel.SMS) > 100


async def test_a_load_refuses_to_wipe_registered_citizens(pg_pool: asyncpg.Pool) -> None:
    await add_subscriber(pg_pool, points=[(4.35, 50.85)])
    async with pg_pool.acquire() as conn:
        with pytest.raises(PopulationConflict):
            await load_population(conn=conn, seed=1, subscribers=100)


async def test_cells_whose_coverage_reaches_the_zone_are_listed(pg_pool: asyncpg.Pool) -> None:
    await pg_pool.executemany(
        "INSERT INTO cell_sites VALUES ($1, $2, $3, $4, $5)",
        [
            ("proximus", "in", 4.3517, 50.8503, 500.0),
            ("orange", "reaching", 4.3517, 50.8503 + 0.02, 1_500.0),  # 2.2 km north, 1.5 km reach
            ("orange", "short", 4.3517, 50.8503 + 0.03, 1_500.0),  # 3.3 km north
            ("base", "far", 5.5, 50.5, 5_000.0),
        ],
    )
    found = await cells_for_zone(pool=pg_pool, zone=circle(lon=4.3517, lat=50.8503, radius_m=1_000))
    assert found == {"proximus": ["in"], "orange": ["reaching"]}


async def test_a_zone_without_anyone_enqueues_nothing(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    await add_subscriber(pg_pool, points=[(4.35, 50.85)])
    message = AlertMessage(
        alert="a",
        version=1,
        kind="test",
        expires=time.time() + 60,
        sender="BE-Alert",
        texts={"nl": "TEST"},
    )
    progress = [
        p
        async for p in resolve(
            pool=pg_pool,
            redis=redis_client,
            message=message,
            channels=frozenset(ALL_CHANNELS),
            zone=circle(lon=5.5, lat=50.2, radius_m=200),
            group_ids=[],
            batch_size=100,
        )
    ]
    assert len(progress) == 1
    assert progress[0].done
    assert progress[0].batches == 0
    assert await redis_client.exists(Channel.SMS.stream) == 0
