"""Personal data in delivery records of every channel: kept for the retention period, then erased.

After `keep` a delivery row keeps what statistics and billing need (alert, version, operator,
segments, state, times) and its phone number is replaced by an opaque token unique to the row
(the primary key needs one); the SMSC message ids of the row, useless once receipts stopped,
are deleted. A citizen's removal erases their number at once, whatever the row's age.
The SQL is in this module alone (migrations 0021 and 0060 add `erased_at` and its index to the
SMS, voice and e-mail tables); each channel service runs the retention of its own table.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.channel.settings import ChannelSettings
from services.kernel.errors import DATABASE_UNAVAILABLE

logger = logging.getLogger(__name__)

#: Rows erased per statement (short transactions; the task loops until none is left).
BATCH = 5000

#: The channels whose delivery records hold a phone number or an e-mail address.
CHANNELS = ("sms", "voice", "email")

#: The oldest rows still holding a number, their message ids deleted, the number replaced.
_ERASE_OLD = """
WITH old AS (
    SELECT alert, version, address FROM {ch}_messages
    WHERE erased_at IS NULL AND created_at < now() - $1::interval
    ORDER BY created_at LIMIT $2
    FOR UPDATE SKIP LOCKED
), ids AS (
    DELETE FROM {ch}_message_ids i USING old
    WHERE i.alert = old.alert AND i.version = old.version AND i.address = old.address
)
UPDATE {ch}_messages m
SET address = 'erased:' || md5(m.alert || ':' || m.version || ':' || m.address || random()),
    erased_at = now()
FROM old
WHERE m.alert = old.alert AND m.version = old.version AND m.address = old.address
"""

#: Every row of one number, whatever its age.
_ERASE_ADDRESS = """
WITH ids AS (
    DELETE FROM {ch}_message_ids WHERE address = $1
)
UPDATE {ch}_messages
SET address = 'erased:' || md5(alert || ':' || version || ':' || address || random()),
    erased_at = now()
WHERE address = $1
"""


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


def _sql(template: str, channel: str) -> str:
    if channel not in CHANNELS:
        raise ValueError(f"no delivery records for channel {channel!r}")
    return template.replace("{ch}", channel)


async def erase_older_than(pool: asyncpg.Pool, *, keep: timedelta, channel: str = "sms") -> int:
    """Erase the addresses of `channel`'s rows older than `keep`; how many rows were erased."""
    total, sql = 0, _sql(_ERASE_OLD, channel)
    while True:
        status = await pool.execute(sql, keep, BATCH)
        erased = _count(status)
        total += erased
        if erased < BATCH:
            return total


async def erase_address(
    conn: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy, *, address: str
) -> int:
    """Erase one number or e-mail address from every channel's delivery records (a citizen or
    group member removed); rows erased."""
    return sum([_count(await conn.execute(_sql(_ERASE_ADDRESS, ch), address)) for ch in CHANNELS])


async def run_retention(pool: asyncpg.Pool, settings: ChannelSettings, *, channel: str) -> None:
    """Erase `channel`'s expired addresses every `retention_interval_s` seconds, for the life of
    the process."""
    keep, interval_s = timedelta(days=settings.retention_days), settings.retention_interval_s
    while True:
        try:
            erased = await erase_older_than(pool, keep=keep, channel=channel)
            if erased:
                logger.info(
                    "retention: erased the addresses of %d %s delivery records", erased, channel
                )
        except DATABASE_UNAVAILABLE as exc:
            logger.warning("retention: will retry: %r", exc)
        await asyncio.sleep(interval_s)
