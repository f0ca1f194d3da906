"""PostgreSQL pools as the services use them: no reset query on every release."""

from __future__ import annotations

import asyncpg


async def keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset: nothing beyond asyncpg's own rollback of an open transaction.

    No service keeps session state on a pooled connection (no LISTEN left behind, no SET
    outside a transaction, no session advisory lock, no cursor outside a transaction), so the
    default reset query (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`)
    would only cost a round trip, and PostgreSQL's work on it, on every release: about an
    eighth of the alerting service's CPU under load, and 3 % of the SMS service's. A LISTEN
    belongs on a connection held for as long as it listens (`alerting.counters`), or on a pool
    of its own that keeps asyncpg's reset (`capfeed`).
    """


async def create_pool(dsn: str, *, max_size: int, keep_idle: bool = False) -> asyncpg.Pool:
    """A pool of at most `max_size` connections, opened on demand, without the reset query.

    `keep_idle`: never close a connection for being idle (asyncpg re-arms its inactivity timer
    on every release, a timer per query); for a service whose pool is busy all the time.
    """
    return await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=max_size,
        reset=keep_session,
        # asyncpg's default: a connection idle for 5 minutes is closed.
        max_inactive_connection_lifetime=0 if keep_idle else 300.0,
    )
