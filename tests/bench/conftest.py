"""The benchmarks' databases carry their own migration (synthetic_populations) on top."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[2]


def run_bench(
    module: str, args: list[str], *, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <args>` in a process of its own, as `make bench-<name>` runs it: the
    embedded stores' initdb and servers are forked from it, never from a test process whose gRPC
    threads may be busy (seen: initdb failing after gRPC skipped its fork handlers)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        check=False,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
