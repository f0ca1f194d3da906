"""Personal data in delivery records of every channel: kept for the retention period, then erased.

After `keep` a delivery row keeps what statistics and billing need (alert, version, operator,
segments, state, times) and its phone number is replaced by an opaque token unique to the row
(the primary key needs one); the SMSC message ids of the row, useless once receipts stopped,
are deleted. A citizen's removal erases their number at once, whatever the row's age: each row
is renamed to its placeholder (services/channel/erase.py, `placeholder`), computed from the
removal's random token, so that a worker that still holds work for the number records its late
outcome on that same row; the row's message ids lead to the placeholder too (a receipt still
on its way finds the row). The removal holds each channel's erasure lock
(store.erase_lock) while it renames, so a worker's write of outcomes is wholly before it or
wholly after, and after it the worker knows the tombstone (docs/security.md).
The SQL is in this module alone (migrations 0021 and 0060 add `erased_at` and its index to the
SMS, voice and e-mail tables); each channel service runs the retention of its own table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.channel import store
from services.channel.erase import new_token
from services.channel.settings import ChannelSettings
from services.kernel.errors import DATABASE_UNAVAILABLE

logger = logging.getLogger(__name__)

#: Rows erased per statement (short transactions; the task loops until none is left).
BATCH = 5000

#: The channels whose delivery records hold a phone number or an e-mail address.
CHANNELS = ("sms", "voice", "email")

#: The oldest rows still holding a number, their message ids deleted, the number replaced. The
#: references are found from the rows' `message_ids`, by primary key, as a removal finds them
#: (`_ERASE_ADDRESS`): the references' key does not serve (alert, version, address), and a
#: search by those would read the whole references table for each batch.
_ERASE_OLD = """
WITH old AS (
    SELECT alert, version, address, message_ids FROM {ch}_messages
    WHERE erased_at IS NULL AND created_at < now() - $1::interval
    ORDER BY created_at LIMIT $2
    FOR UPDATE SKIP LOCKED
), ids AS (
    DELETE FROM {ch}_message_ids i
    USING (SELECT alert, version, address, unnest(message_ids) AS mid FROM old) AS r
    WHERE i.message_id = r.mid
      AND i.alert = r.alert AND i.version = r.version AND i.address = r.address
)
UPDATE {ch}_messages m
SET address = 'erased:' || md5(m.alert || ':' || m.version || ':' || m.address || random()),
    erased_at = now()
FROM old
WHERE m.alert = old.alert AND m.version = old.version AND m.address = old.address
"""

#: erase.placeholder in SQL: the erased address of the row (alert, version) under token $2.
_PLACEHOLDER = (
    "'erased:' || encode(sha256(convert_to($2 || ':' || alert || ':' || version, 'UTF8')), 'hex')"
)

#: Every row of one number ($1), whatever its age, renamed to its placeholder under token $2;
#: its message ids follow it. Both by primary key (the address leads the rows' key, the message
#: id the references'): a reference naming the number is always in its row's `message_ids`
#: (store._SUBMITTED writes references only for the rows it moves), so no table is read whole
#: while the removal holds the channel's erasure lock and delivery waits.
_ERASE_ADDRESS = f"""
WITH ids AS (
    UPDATE {{ch}}_message_ids i SET address = {_PLACEHOLDER}
    FROM (SELECT unnest(m.message_ids) AS mid FROM {{ch}}_messages m WHERE m.address = $1) AS r
    WHERE i.message_id = r.mid AND i.address = $1
)
UPDATE {{ch}}_messages SET address = {_PLACEHOLDER}, erased_at = now() WHERE address = $1
"""


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


def _sql(template: str, channel: str, *, known: Iterable[str] = CHANNELS) -> str:
    if channel not in known or not channel.isidentifier():
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
    conn: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy,
    *,
    address: str,
    tokens: Mapping[str, str] | None = None,
    channels: Sequence[str] = CHANNELS,
) -> int:
    """Erase one number or e-mail address from every channel's delivery records (a citizen or
    group member removed), under the erasure token of each channel's tombstone (`tokens`,
    from erase.erase_contact; a channel without one gets a fresh token); rows erased."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired:
            return await erase_address(acquired, address=address, tokens=tokens, channels=channels)
    tokens = tokens or {}
    erased = 0
    async with conn.transaction():
        # In a fixed order, so that two removals never wait for each other's locks.
        for ch in sorted(channels):
            sql = _sql(_ERASE_ADDRESS, ch, known=channels)
            await conn.execute(store.ERASE_LOCK, store.erase_lock(ch))
            erased += _count(await conn.execute(sql, address, tokens.get(ch) or new_token()))
    return erased


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
