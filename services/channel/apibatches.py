"""A channel's API batches (the SMS and voice APIs): what their stream entries carry besides the
numbers, kept in PostgreSQL (`<channel>_api_batches`) in the transaction that queues the
recipients, so that the repair (services/channel/apirepair.py) can write the entries again after
Redis lost its data (issue 16; docs/sms.md and docs/voice.md, "Faults").

Each channel names its table, lane, keys and counters once, in an `ApiBatches`
(services/sms/batches.py, services/voice/batches.py). The API records the batch's row in the
transaction that queues its recipients and writes the entries before that transaction commits;
a batch's row goes a day after its expiry (`forget_expired`). No phone number is kept here: those
are the batch's rows in `<channel>_messages`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence

import asyncpg
import redis.asyncio as aioredis
from asyncpg.pool import PoolConnectionProxy
from prometheus_client import Counter

from services.channel import codec, keys, store
from services.kernel.errors import DATABASE_UNAVAILABLE

logger = logging.getLogger(__name__)

#: Seconds a batch's row is kept after its expiry: a repair within that long still records its
#: unsent recipients `expired` (later, they stay `queued`: nothing of them is sent either way).
KEEP_AFTER_EXPIRY_S = 24 * 3600.0
#: The kind of every API batch: what the API sends is neither a test nor an exercise.
KIND = "general"


def header(
    *, batch_id: str, sender: str, text: str, language: str, expires: float, entity: str = ""
) -> codec.Header:
    """The header of every entry of an API batch: one text, in one language."""
    return codec.Header(
        alert=batch_id,
        version=1,
        kind=KIND,
        expires=expires,
        sender=sender,
        texts={language: text},
        entity=entity,
    )


def _text_of(head: codec.Header) -> tuple[str, str]:
    """The one (language, text) of an API batch's header."""
    if len(head.texts) != 1:
        raise ValueError(f"an API batch has one text, not {len(head.texts)}")
    ((language, text),) = head.texts.items()
    return language, text


class ApiBatches:
    """One channel's API batches: where they are kept, where their entries go, what counts the
    repair's work."""

    def __init__(
        self,
        *,
        channel: str,
        lane: codec.Priority,
        intact_key: str,
        lock_key: str,
        written_key: Callable[[str], str],
        language: str,
        batches_requeued: Counter,
        recipients_requeued: Counter,
        count_expired: Callable[[str, int], None],
    ) -> None:
        #: The channel (`sms`, `voice`): `<channel>_api_batches` and `<channel>_messages`.
        self.channel = channel
        #: The channel's statements over its messages (the repair's final states).
        self.tables = store.Tables.of(channel)
        #: The stream of the lane the entries go to.
        self.stream = keys.stream(channel, lane)
        #: Set once this Redis holds the entries of every live batch (the channel service's own
        #: marker: a Redis that lost its data lacks it).
        self.intact_key = intact_key
        #: Held (SET NX, TTL renewed per batch) by the one process repairing.
        self.lock_key = lock_key
        #: A batch's key, set with its entries and before them, until the batch expires.
        self.written_key = written_key
        #: The one language of every batch (SMS: 'en'); '': each batch's own, in the table's
        #: `language` column.
        self.language = language
        #: Batches whose entries were written again, and their recipients.
        self.batches_requeued = batches_requeued
        self.recipients_requeued = recipients_requeued
        #: Counts `n` recipients of a route recorded expired unsent, in the channel's metrics
        #: (as its `gave_up(job, "expired")` would).
        self.count_expired = count_expired
        table = f"{channel}_api_batches"
        own = "" if language else ", language"
        own_value = "" if language else ", $6"
        own_set = "" if language else ", language = EXCLUDED.language"
        self.record_sql = f"""
            INSERT INTO {table} AS b (batch_id, sender, text, expires_at, entity{own})
            VALUES ($1, $2, $3, to_timestamp($4), $5{own_value})
            ON CONFLICT (batch_id) DO UPDATE
            SET sender = EXCLUDED.sender, text = EXCLUDED.text, expires_at = EXCLUDED.expires_at,
                entity = EXCLUDED.entity{own_set}, created_at = now()
            """
        self.forget_sql = (
            f"DELETE FROM {table} WHERE expires_at < now() - make_interval(secs => $1)"
        )
        #: Batches with a recipient still `queued`, oldest first.
        self.pending_sql = f"""
            SELECT batch_id, sender, text, extract(epoch FROM expires_at)::float8 AS expires,
                   entity{own}
            FROM {table} b
            WHERE EXISTS (SELECT 1 FROM {channel}_messages m
                          WHERE m.alert = b.batch_id AND m.version = 1 AND m.state = 'queued')
            ORDER BY created_at, batch_id
            """
        #: A batch's recipients still `queued`; erased: a removal renamed the row.
        self.queued_sql = f"""
            SELECT address, operator, segments, attempts, erased_at IS NOT NULL AS erased
            FROM {channel}_messages
            WHERE alert = $1 AND version = 1 AND state = 'queued'
            """

    def header_of(self, row: asyncpg.Record) -> codec.Header:
        """The header of a batch's entries, from its row (`pending_sql`)."""
        return header(
            batch_id=row["batch_id"],
            sender=row["sender"],
            text=row["text"],
            language=self.language or row["language"],
            expires=row["expires"],
            entity=row["entity"],
        )

    async def record(
        self, conn: asyncpg.Connection | PoolConnectionProxy, head: codec.Header
    ) -> None:
        """Keep what the batch's entries carry besides the numbers (in the send's transaction)."""
        language, text = _text_of(head)
        args: list[object] = [head.alert, head.sender, text, head.expires, head.entity]
        if self.language:
            if language != self.language:
                raise ValueError(f"{self.channel} API batches are in {self.language!r} only")
        else:
            args.append(language)
        await conn.execute(self.record_sql, *args)

    async def enqueue(
        self, redis: aioredis.Redis, head: codec.Header, numbers: Sequence[str], *, prefix: str = ""
    ) -> None:
        """XADD the entries of `numbers` onto the channel's lane, in one pipeline.

        The batch's `written` key comes first: a Redis that lost its data between the two lacks
        it and the repair writes the entries again (the channel drops the recipients it
        recorded); the other order could leave the key without the entries, and the batch never
        repaired.
        """
        language, _ = _text_of(head)
        ttl_s = max(1, math.ceil(head.expires - time.time()))
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(self.written_key(head.alert), "1", ex=ttl_s)
            for fields in codec.entries(head, [(n, language) for n in numbers], prefix=prefix):
                pipe.xadd(self.stream, fields)  # type: ignore[arg-type]
            await pipe.execute()

    async def forget_expired(
        self, pool: asyncpg.Pool, *, keep_s: float = KEEP_AFTER_EXPIRY_S
    ) -> int:
        """Delete the rows of batches expired more than `keep_s` ago; how many."""
        status = await pool.execute(self.forget_sql, float(keep_s))
        return int(status.rsplit(" ", 1)[-1])

    async def run_retention(
        self, pool: asyncpg.Pool, *, interval_s: float, keep_s: float = KEEP_AFTER_EXPIRY_S
    ) -> None:
        """Forget expired batches every `interval_s` seconds, for the life of the process."""
        while True:
            try:
                forgotten = await self.forget_expired(pool, keep_s=keep_s)
                if forgotten:
                    logger.info(
                        "retention: forgot %d expired %s API batches", forgotten, self.channel
                    )
            except DATABASE_UNAVAILABLE as exc:
                logger.warning("retention of %s API batches: will retry: %r", self.channel, exc)
            await asyncio.sleep(interval_s)
