"""Personal data in delivery records: kept for the retention period, then erased.

After `keep` a delivery row keeps what statistics and billing need (alert, version, operator,
segments, state, times) and its phone number is replaced by an opaque token unique to the row
(the primary key needs one); the SMSC message ids of the row, useless once receipts stopped,
are deleted. A citizen's removal erases their number at once, whatever the row's age.
The SQL is in this module alone (migration 0021 adds `erased_at` and its index).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import asyncpg
from asyncpg.pool import PoolConnectionProxy

logger = logging.getLogger(__name__)

#: Rows erased per statement (short transactions; the task loops until none is left).
BATCH = 5000

#: The oldest rows still holding a number, their message ids deleted, the number replaced.
_ERASE_OLD = """
WITH old AS (
    SELECT alert, version, address FROM sms_messages
    WHERE erased_at IS NULL AND created_at < now() - $1::interval
    ORDER BY created_at LIMIT $2
    FOR UPDATE SKIP LOCKED
), ids AS (
    DELETE FROM sms_message_ids i USING old
    WHERE i.alert = old.alert AND i.version = old.version AND i.address = old.address
)
UPDATE sms_messages m
SET address = 'erased:' || md5(m.alert || ':' || m.version || ':' || m.address || random()),
    erased_at = now()
FROM old
WHERE m.alert = old.alert AND m.version = old.version AND m.address = old.address
"""

#: Every row of one number, whatever its age.
_ERASE_ADDRESS = """
WITH ids AS (
    DELETE FROM sms_message_ids WHERE address = $1
)
UPDATE sms_messages
SET address = 'erased:' || md5(alert || ':' || version || ':' || address || random()),
    erased_at = now()
WHERE address = $1
"""


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def erase_older_than(pool: asyncpg.Pool, *, keep: timedelta) -> int:
    """Erase the numbers of rows older than `keep`; how many rows were erased."""
    total = 0
    while True:
        status = await pool.execute(_ERASE_OLD, keep, BATCH)
        erased = _count(status)
        total += erased
        if erased < BATCH:
            return total


async def erase_address(
    conn: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy, *, address: str
) -> int:
    """Erase one number from every delivery record (a citizen removed); rows erased."""
    return _count(await conn.execute(_ERASE_ADDRESS, address))


async def run_retention(pool: asyncpg.Pool, *, keep: timedelta, interval_s: float) -> None:
    """Erase expired numbers every `interval_s` seconds, for the life of the process."""
    while True:
        try:
            erased = await erase_older_than(pool, keep=keep)
            if erased:
                logger.info("retention: erased the numbers of %d delivery records", erased)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            logger.warning("retention: will retry: %r", exc)
        await asyncio.sleep(interval_s)
