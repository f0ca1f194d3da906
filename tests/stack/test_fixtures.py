"""The fixtures really give a migrated PostgreSQL database and a clean Redis."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import psycopg
import redis.asyncio as aioredis

from stack.embedded import start_postgres


async def test_each_test_gets_a_migrated_database(pg_pool: asyncpg.Pool) -> None:
    tables = await pg_pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert "idempotency_keys" in {row["tablename"] for row in tables}
    await pg_pool.execute(
        "INSERT INTO idempotency_keys (scope, key, response) VALUES ('t', 'k', '')"
    )


async def test_databases_are_not_shared_between_tests(pg_pool: asyncpg.Pool) -> None:
    assert await pg_pool.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_redis_is_flushed_per_test(redis_client: aioredis.Redis) -> None:
    assert await redis_client.dbsize() == 0
    await redis_client.set("left-behind", "1")


def test_embedded_postgres_restarts_on_its_own_data(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    first = start_postgres(data_dir=data, fast_unsafe=True)
    try:
        with psycopg.connect(first.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
    finally:
        first.stop()
    second = start_postgres(data_dir=data, fast_unsafe=True)
    try:
        with psycopg.connect(second.url) as conn:
            row = conn.execute("SELECT v FROM kept").fetchone()
        assert row == (42,)
    finally:
        second.stop()
