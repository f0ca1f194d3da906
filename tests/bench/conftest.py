"""The benchmarks' databases carry their own migration (synthetic_populations) on top."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bench.load import BENCH_MIGRATIONS
from stack.migrate import apply_migrations


@pytest.fixture
async def pg_pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool on this test's database, with the benchmarks' migration applied."""
    await asyncio.to_thread(apply_migrations, pg_dsn, directory=BENCH_MIGRATIONS)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()
