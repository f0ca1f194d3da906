"""A channel's API batches after Redis lost its data (restarted empty, flushed, failed over to an
empty replica; issue 16): their unread stream entries are written again from PostgreSQL.

An API batch's recipients are `queued` in `<channel>_messages` and what its entries carry besides
the numbers is in `<channel>_api_batches`, both in the send's transaction
(services/channel/apibatches.py); the numbers reach the workers only through the stream entries
written before it commits. A Redis that lost those before a worker read them would leave the
recipients `queued` for ever. Alerts are repaired by alerting (services/alerting/dispatch.py,
`repair_lost_redis`); API batches, which alerting knows nothing of, here, in the same way:

- the channel service's own marker (`ApiBatches.intact_key`) absent means Redis lost its data;
  every process of the service looks at start-up and every `api_repair_interval_s` (one EXISTS);
- one process repairs, under a SET NX lock with a TTL renewed after each batch;
- every batch not expired with recipients still `queued` whose entries this Redis lacks (its
  `written` key, set with them, is absent) gets entries for those recipients only, on the
  channel's lane; the consumer sends only rows still `queued`, so a recipient delivered before
  is not sent again, and one a worker of this process still holds is not sent twice;
- an expired batch's queued recipients are recorded `expired`, and a recipient erased meanwhile
  (a removal renamed its row) `cancelled`, as the consumer would, with the progress counters;
- the marker is set last: a repair cut short (the process killed, PostgreSQL away) runs again,
  and skips the batches it already wrote (their `written` key).

Each marker is its channel service's alone: alerting's REDIS_MARKER is set by alerting's repair
once its own work is restored, and no repair reads another's marker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from services.channel import store
from services.channel.apibatches import ApiBatches
from services.channel.model import State
from services.kernel.errors import DATABASE_UNAVAILABLE
from services.kernel.tasks import raise_if_cancelling

logger = logging.getLogger(__name__)

#: Seconds the repair lock lives unless renewed (it is, after each batch): how long a repair cut
#: short keeps the other processes from starting it again.
LOCK_TTL_S = 60.0

#: The error of a recipient recorded unsent, as the consumer writes it.
_ERRORS = {State.EXPIRED: "expired before it could be sent", State.CANCELLED: "recipient removed"}


@dataclass(frozen=True, slots=True)
class Repaired:
    """What one repair did."""

    #: Batches whose entries were written again, and their recipients.
    batches: int = 0
    recipients: int = 0
    #: Recipients of expired batches recorded `expired`.
    expired: int = 0
    #: Recipients erased meanwhile, recorded `cancelled`.
    removed: int = 0


class ApiRepair:
    """Writes the lost stream entries of a channel's API batches again, once per Redis data loss."""

    def __init__(
        self,
        batches: ApiBatches,
        *,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        lock_ttl_s: float = LOCK_TTL_S,
    ) -> None:
        self._batches = batches
        self._pool = pool
        self._redis = redis
        self._lock_ttl_s = lock_ttl_s

    @property
    def channel(self) -> str:
        """The channel whose API batches this repairs."""
        return self._batches.channel

    async def run_once(self) -> Repaired | None:
        """Repair if Redis lost its data; None when it did not, or another process repairs."""
        spec = self._batches
        if await self._redis.exists(spec.intact_key):
            return None
        lock = Lock(
            self._redis, spec.lock_key, timeout=self._lock_ttl_s, blocking=False, thread_local=False
        )
        if not await lock.acquire():
            return None  # another process repairs; the marker tells when it is done
        try:
            if await self._redis.exists(spec.intact_key):
                return None  # repaired by another process between the two looks
            done = await self._repair(lock)
            # Last: a Redis that lost its data again meanwhile lost the lock too (raises).
            await lock.reacquire()
            await self._redis.set(spec.intact_key, "1")
        finally:
            try:
                await lock.release()
            except (LockError, RedisError) as exc:
                logger.warning("the %s API repair lock was not released: %r", spec.channel, exc)
        if done.batches or done.expired or done.removed:
            # Counts only: batch ids name callers' keys, and numbers are personal data.
            logger.error(
                "Redis lost its data: wrote the stream entries of %d %s API batches again"
                " (%d recipients still queued); %d recipients of expired batches recorded"
                " expired, %d removed ones cancelled",
                done.batches,
                spec.channel,
                done.recipients,
                done.expired,
                done.removed,
            )
        else:
            logger.info(
                "Redis lacked the %s API marker (new, or lost its data): nothing waited",
                spec.channel,
            )
        return done

    async def _repair(self, lock: Lock) -> Repaired:
        spec = self._batches
        requeued = recipients = expired = removed = 0
        for batch in await self._pool.fetch(spec.pending_sql):
            batch_id = batch["batch_id"]
            now = time.time()
            if now >= batch["expires"]:
                rows = await self._pool.fetch(spec.queued_sql, batch_id)
                expired += await self._final(batch_id, rows, State.EXPIRED, now)
            elif not await self._redis.exists(spec.written_key(batch_id)):
                rows = await self._pool.fetch(spec.queued_sql, batch_id)
                gone = [r for r in rows if r["erased"]]
                if gone:
                    removed += await self._final(batch_id, gone, State.CANCELLED, now)
                numbers = [r["address"] for r in rows if not r["erased"]]
                if numbers:
                    head = spec.header_of(batch)
                    await spec.enqueue(self._redis, head, numbers, prefix=f"repair-{now:.0f}-")
                    requeued += 1
                    recipients += len(numbers)
                    spec.batches_requeued.inc()
                    spec.recipients_requeued.inc(len(numbers))
            # Still ours, for another LOCK_TTL_S (LockNotOwnedError: it lapsed, and another
            # process may be repairing: stop, leaving the marker unset).
            await lock.reacquire()
        return Repaired(requeued, recipients, expired, removed)

    async def _final(
        self, batch_id: str, rows: list[asyncpg.Record], state: State, now: float
    ) -> int:
        """Record `rows` in `state` unsent, as the consumer would (counters moved); how many."""
        if not rows:
            return 0
        error = _ERRORS[state]
        w = store.Writes.empty()
        for r in rows:
            w.fin_alert.append(batch_id)
            w.fin_version.append(1)
            w.fin_address.append(r["address"])
            w.fin_operator.append(r["operator"])
            w.fin_segments.append(r["segments"])
            w.fin_state.append(state.value)
            w.fin_error.append(error)
            w.fin_attempts.append(r["attempts"])
            w.fin_at.append(now)
        async with self._pool.acquire() as conn:
            await store.write(conn, self._batches.tables, w)
        if state is State.EXPIRED:
            for operator, n in Counter(r["operator"] for r in rows).items():
                self._batches.count_expired(operator, n)
        return len(rows)


#: Redis or PostgreSQL away, or the lock lapsed: the next look repairs (the marker is unset).
_TRANSIENT: tuple[type[Exception], ...] = (RedisError, *DATABASE_UNAVAILABLE)


async def run_repair(repair: ApiRepair, *, interval_s: float) -> None:
    """At start-up, then every `interval_s` seconds: repair if Redis lost its data."""
    while True:
        try:
            await repair.run_once()
        except _TRANSIENT as exc:
            raise_if_cancelling()
            logger.warning(
                "repairing %s API batches after a Redis loss failed, retrying: %r",
                repair.channel,
                exc,
            )
        raise_if_cancelling()
        await asyncio.sleep(interval_s)
