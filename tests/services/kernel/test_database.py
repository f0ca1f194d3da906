"""The services' PostgreSQL pool against a real server: no reset query, a transaction still ends."""

from __future__ import annotations

from services.kernel.database import create_pool


async def test_a_release_sends_no_reset_query(pg_dsn: str) -> None:
    pool = await create_pool(pg_dsn, max_size=1)
    try:
        async with pool.acquire() as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            # Session state no service sets; here only to show that nothing reset it.
            await conn.execute("SET application_name = 'left-behind'")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == backend
            assert await conn.fetchval("SHOW application_name") == "left-behind"
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(pg_dsn: str) -> None:
    pool = await create_pool(pg_dsn, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE kept (n int)")
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("INSERT INTO kept VALUES (1)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM kept") == 0
    finally:
        await pool.close()
