"""SMS API batches: their stream entries, and what those carry besides the numbers kept in
PostgreSQL (`sms_api_batches`, migrations/0080_sms_api_batches.sql), so that a repair can write
them again after Redis lost its data (services/sms/repair.py, docs/sms.md).

The send (services/sms/api.py) records the batch's row in the transaction that queues its
recipients, and writes the entries before that transaction commits; a batch's row goes a day
after its expiry (`forget_expired`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence

import asyncpg
import redis.asyncio as aioredis
from asyncpg.pool import PoolConnectionProxy

from services.channel import codec, keys
from services.channel.control import API_PREFIX
from services.kernel.errors import DATABASE_UNAVAILABLE
from services.sms import keys as sms_keys
from services.sms.channel import NAME

logger = logging.getLogger(__name__)

#: API traffic goes after every alert: the bulk lane, with tests and exercises.
STREAM = keys.stream(NAME, codec.Priority.BULK)
#: The one language of an API batch's text.
LANGUAGE = "en"
#: Seconds a batch's row is kept after its expiry: a repair within that long still records its
#: unsent recipients `expired` (later, they stay `queued`: nothing of them is sent either way).
KEEP_AFTER_EXPIRY_S = 24 * 3600.0

_RECORD = """
INSERT INTO sms_api_batches AS b (batch_id, sender, text, expires_at, entity)
VALUES ($1, $2, $3, to_timestamp($4), $5)
ON CONFLICT (batch_id) DO UPDATE
SET sender = EXCLUDED.sender, text = EXCLUDED.text, expires_at = EXCLUDED.expires_at,
    entity = EXCLUDED.entity, created_at = now()
"""

_FORGET = "DELETE FROM sms_api_batches WHERE expires_at < now() - make_interval(secs => $1)"


def header(*, batch_id: str, sender: str, text: str, expires: float, entity: str) -> codec.Header:
    """The header of every entry of an API batch."""
    return codec.Header(
        alert=batch_id,
        version=1,
        kind="general",
        expires=expires,
        sender=sender,
        texts={LANGUAGE: text},
        entity=entity,
    )


def entity_of(caller: str) -> str:
    """The caller's share of the bulk lane: the API's callers share it fairly, each as one."""
    return f"{API_PREFIX}{caller}"


async def record(
    conn: asyncpg.Connection | PoolConnectionProxy, head: codec.Header, *, text: str
) -> None:
    """Keep what the batch's entries carry besides the numbers (in the send's transaction)."""
    await conn.execute(_RECORD, head.alert, head.sender, text, head.expires, head.entity)


async def enqueue(
    redis: aioredis.Redis, head: codec.Header, numbers: Sequence[str], *, prefix: str = ""
) -> None:
    """XADD the entries of `numbers` onto the bulk lane, in one pipeline.

    The batch's `written` key comes first: a Redis that lost its data between the two lacks it
    and the repair writes the entries again (the channel drops the recipients it recorded); the
    other order could leave the key without the entries, and the batch never repaired.
    """
    ttl_s = max(1, math.ceil(head.expires - time.time()))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(sms_keys.api_batch_written(head.alert), "1", ex=ttl_s)
        for fields in codec.entries(head, [(n, LANGUAGE) for n in numbers], prefix=prefix):
            pipe.xadd(STREAM, fields)  # type: ignore[arg-type]
        await pipe.execute()


async def forget_expired(pool: asyncpg.Pool, *, keep_s: float = KEEP_AFTER_EXPIRY_S) -> int:
    """Delete the rows of batches expired more than `keep_s` ago; how many."""
    status = await pool.execute(_FORGET, float(keep_s))
    return int(status.rsplit(" ", 1)[-1])


async def run_retention(
    pool: asyncpg.Pool, *, interval_s: float, keep_s: float = KEEP_AFTER_EXPIRY_S
) -> None:
    """Forget expired batches every `interval_s` seconds, for the life of the process."""
    while True:
        try:
            forgotten = await forget_expired(pool, keep_s=keep_s)
            if forgotten:
                logger.info("retention: forgot %d expired SMS API batches", forgotten)
        except DATABASE_UNAVAILABLE as exc:
            logger.warning("retention of SMS API batches: will retry: %r", exc)
        await asyncio.sleep(interval_s)
