"""The stream consumer of a channel: reads work in batches, records recipients as queued, hands
them to the routes' lanes, and acknowledges an entry once every recipient's outcome is durable.

Entries of a consumer that died are claimed with XAUTOCLAIM once idle for `claim_idle_s`; a live
consumer keeps the entries it is still working on (retries can take long) fresh with XCLAIM, so
they are never claimed from under it.

A channel has one stream per lane (codec.Priority: emergency, general, bulk), each read by its own
loop with its own in-flight budget (`max_in_flight` recipients): a lane that is full stops only
its own reading, so 200,000 queued test messages never keep an emergency's entry unread, and the
routes' senders take the most urgent lane's jobs first (lanes.FairQueue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from services.channel import codec, erase, keys, metrics, store
from services.channel.codec import PRIORITIES, Priority
from services.channel.control import ControlCache
from services.channel.erase import Tombstones
from services.channel.lanes import Lane
from services.channel.model import Entry, Job, State
from services.channel.ports import Channel, J
from services.channel.recorder import Recorder
from services.channel.slots import Slots
from services.kernel.errors import DATABASE_UNAVAILABLE
from services.kernel.metrics import STREAM_LAG, STREAM_LENGTH, STREAM_PENDING
from services.kernel.streams import GroupLag, trim_processed
from services.kernel.tasks import raise_if_cancelling

logger = logging.getLogger(__name__)

#: Recipients of routes that are down may hold up to this many times the in-flight limit.
PARKED_FACTOR = 10
#: Seconds between looks at the routes while the in-flight limit holds reading back.
PARKED_RECHECK_S = 0.5
#: Seconds a route counts as wanting work after it was last given some (its share of the limit).
FED_S = 10.0
#: After Redis was away, claim rounds left to every consumer to make its own entries fresh before
#: this one claims any: their idle time counted the outage too, live consumers' included.
CLAIM_GRACE_ROUNDS = 3
#: Redis or PostgreSQL away, or too slow (TimeoutError is an OSError): a retry outlives it.
STORES_AWAY: tuple[type[Exception], ...] = (RedisError, *DATABASE_UNAVAILABLE)
#: Seconds between two heartbeats of the event loop (a plain timer: no Redis, no PostgreSQL).
HEARTBEAT_S = 0.1
#: A gap between heartbeats this share of `claim_idle_s` means the process did not run (a frozen
#: VM, SIGSTOP, swapping): another consumer may have claimed its entries and taken their
#: recipients over meanwhile (a claim needs five sixths of it at least: entries are touched every
#: sixth). Nothing more is delivered until the fence has looked (`StreamConsumer._fence`).
STALL_SHARE = 0.5
#: Once its entries are fresh again, how long the fence waits before it reads the rows: a consumer
#: that claimed some just before has taken their recipients over by then.
FENCE_SETTLE_S = 0.2
#: While Redis or PostgreSQL does not answer, the fence looks again this often, and says so once
#: in this many failures.
FENCE_RETRY_S = 0.5
FENCE_LOG_EVERY = 20


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """How the consumer reads and claims (from Settings)."""

    #: The channel's stream of each lane (keys.stream(channel, priority)).
    streams: Mapping[Priority, str]
    group: str
    consumer: str
    read_count: int
    read_block_ms: int
    max_in_flight: int
    claim_idle_s: float
    claim_count: int
    control_refresh_s: float


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class _LaneStream:
    """One lane's stream as this consumer reads it: its in-flight count and budget."""

    def __init__(self, priority: Priority, stream: str, redis: aioredis.Redis) -> None:
        self.priority = priority
        self.rank = priority.rank
        self.stream = stream
        #: Recipients of this lane read and without a durable outcome.
        self.in_flight = 0
        #: Set when the lane's in-flight count falls below the limit.
        self.room = asyncio.Event()
        #: Entry ids finished and not yet acknowledged.
        self.acks: list[str] = []
        self.lag = GroupLag(redis, stream)


class StreamConsumer(Generic[J]):
    """Consumes one channel's stream for one process."""

    def __init__(
        self,
        *,
        config: ConsumerConfig,
        channel: Channel[J],
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        lanes: Mapping[str, Lane[J]],
        recorder: Recorder,
        control: ControlCache,
        durability: Slots,
        tombstones: Tombstones | None = None,
    ) -> None:
        self.cfg = config
        self._channel = channel
        self._name = channel.name
        self._tables = store.Tables.of(channel.name)
        self._dead = keys.dead_letters(channel.name)
        self._redis = redis
        self._pool = pool
        self._lanes = lanes
        self._recorder = recorder
        self._control = control
        self._slots = durability
        self._in_flight_gauge = metrics.IN_FLIGHT.labels(channel.name)
        metrics.DEAD_LETTERS.labels(channel.name)  # a zero sample until one comes
        #: Entries read and not yet acknowledged, by (lane rank, id).
        self.entries: dict[tuple[int, str], Entry] = {}
        #: Recipients read and without a durable outcome, every lane.
        self.in_flight = 0
        #: The lanes' streams, most urgent first.
        self.lanes = [_LaneStream(p, config.streams[p], redis) for p in PRIORITIES]
        self._ack_wake = asyncio.Event()
        self._reading = True
        self.idle = asyncio.Event()
        self.idle.set()
        #: When each route was last given work (monotonic), for its share of the limit.
        self._fed: dict[str, float] = {}
        #: Recipients read and without a durable outcome, per (lane rank, route).
        self._held: dict[tuple[int, str], int] = {}
        #: The recipients this process holds (queued in a lane, with a sender, waiting to retry)
        #: until their outcome is durable, by (alert, version, address). A recipient queued again
        #: meanwhile (its alert resolved again: a resumed send, Redis's data lost and repaired)
        #: finds its row still `queued` and would be sent a second time; it is not.
        self._holding: dict[tuple[str, int, str], Job] = {}
        #: The channel's consumers alive at the last control refresh (erase.live_consumers):
        #: a queued recipient one of them holds is left to it (store.queue).
        self._live: list[str] = []
        #: Addresses erased (a citizen removed) while entries holding them were pending.
        self._tombstones = Tombstones(redis, channel.name) if tombstones is None else tombstones
        recorder.on_durable = self._durable
        #: When the event loop last ran the heartbeat (monotonic), and the gap that is a stall.
        self._beat = time.monotonic()
        self._stall_s = max(config.claim_idle_s * STALL_SHARE, 10 * HEARTBEAT_S)
        #: When the last touch that made every held entry fresh in Redis began (monotonic): the
        #: entries held cannot be claimed before `claim_idle_s` after it.
        self._fresh_at = self._beat
        self._fence_task: asyncio.Task[None] | None = None
        for lane in lanes.values():
            lane.fence = self.fence
            lane.abandon = self._abandon

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) of every lane if missing."""
        for lane in self.lanes:
            try:
                await self._redis.xgroup_create(lane.stream, self.cfg.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def run(self) -> None:
        """Read, claim, refresh, acknowledge, until cancelled."""
        await self.ensure_group()
        # Known to removals before the first read: one answered from now on waits for this
        # consumer to have its tombstone (entries taken later are checked as they are taken).
        await self._tombstones.check()
        await self._tombstones.report(self.cfg.consumer, every_s=self.cfg.control_refresh_s)
        self._live = await erase.live_consumers(self._redis, channel=self._name)
        async with asyncio.TaskGroup() as group:
            name = self._name
            for lane in self.lanes:
                group.create_task(self._read_loop(lane), name=f"{name}-read-{lane.priority}")
            group.create_task(self._claim_loop(), name=f"{name}-claim")
            group.create_task(self._touch_loop(), name=f"{name}-touch")
            group.create_task(self._heartbeat_loop(), name=f"{name}-heartbeat")
            group.create_task(self._ack_loop(), name=f"{name}-ack")
            group.create_task(self._control_loop(), name=f"{name}-control")
            group.create_task(self._gauge_loop(), name=f"{name}-stream-gauges")

    # -- a lost group (faults, issue 16) --------------------------------------------------------
    async def _group_lost(self, exc: BaseException) -> bool:
        """Whether `exc` says the group is gone (NOGROUP: Redis lost its data); recreate it.

        Retrying NOGROUP forever would stop the channel silently. The group is created again
        (with the stream, MKSTREAM) from the stream's start, so that whatever the stream still
        holds is read; a recipient whose outcome PostgreSQL already has is not sent again.
        """
        if not isinstance(exc, ResponseError) or "NOGROUP" not in str(exc):
            return False
        logger.error(
            "the %s consumer group %s is gone (Redis lost its data?): creating it again",
            self._name,
            self.cfg.group,
        )
        metrics.GROUP_LOST.labels(self._name).inc()
        metrics.GROUP_MISSING.labels(self._name).set(1)
        try:
            await self.ensure_group()
        except (RedisError, OSError) as again:
            logger.warning("creating the %s group failed, retrying: %r", self._name, again)
            await asyncio.sleep(0.5)
        else:
            metrics.GROUP_MISSING.labels(self._name).set(0)
        return True

    # -- end a lost group ---------------------------------------------------------------------

    # -- one route down or slow does not stop the reading (faults, issue 16) -------------------
    def _full(self, lane: _LaneStream) -> bool:
        """Whether the in-flight limit holds the lane's reading back.

        Not counted (for a channel with `route_up`): the lane's work for routes that are down,
        which waits durably queued; and, of a route that has had work lately, what the lane holds
        for it beyond its share of the limit (its senders' share among such routes): a slow route
        (an SMSC throttling) would otherwise fill the limit with its backlog while the others
        drain theirs and starve. Everything still counts up to PARKED_FACTOR times the limit
        (memory).
        """
        limit = self.cfg.max_in_flight
        if lane.in_flight < limit:
            return False
        route_up = getattr(self._channel, "route_up", None)
        if route_up is None or self.in_flight >= PARKED_FACTOR * limit:
            return True
        now, rank = time.monotonic(), lane.rank
        held, excess, wanting = self._held, 0, []
        for route in self._lanes:
            if not route_up(route):
                excess += held.get((rank, route), 0)
            elif now - self._fed.get(route, 0.0) < FED_S:
                wanting.append(route)
        senders = sum(self._lanes[route].senders for route in wanting)
        for route in wanting:
            share = limit * self._lanes[route].senders // senders
            excess += max(0, held.get((rank, route), 0) - share)
        return lane.in_flight - excess >= limit

    # -- end one route down ---------------------------------------------------------------------

    def stop_reading(self) -> None:
        """Stop taking new work (graceful shutdown); work in hand goes on."""
        self._reading = False
        for lane in self.lanes:
            lane.room.set()

    # -- reading ------------------------------------------------------------------------------
    async def _read_loop(self, lane: _LaneStream) -> None:
        own = await self._redis.xreadgroup(
            self.cfg.group, self.cfg.consumer, {lane.stream: "0"}, count=10_000
        )
        await self._take(own, lane)
        while self._reading:
            raise_if_cancelling()
            if self._full(lane):
                lane.room.clear()
                # Looked at again now and then: a route may go down (or up) meanwhile.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.room.wait(), PARKED_RECHECK_S)
                continue
            try:
                reply = await self._redis.xreadgroup(
                    self.cfg.group,
                    self.cfg.consumer,
                    {lane.stream: ">"},
                    count=self.cfg.read_count,
                    block=self.cfg.read_block_ms,
                )
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                if await self._group_lost(exc):
                    continue
                logger.warning("reading the %s stream failed, retrying: %r", lane.stream, exc)
                await asyncio.sleep(0.5)
                continue
            if self._reading:
                await self._take(reply, lane)

    async def _claim_loop(self) -> None:
        idle_ms = int(self.cfg.claim_idle_s * 1000)
        # Often enough that handed-back entries (idle at once) wait little; cheap either way.
        interval = max(0.05, min(self.cfg.claim_idle_s / 3, 5.0))
        away, claim_from = False, 0.0
        while True:
            raise_if_cancelling()
            await asyncio.sleep(interval)
            try:
                if away:
                    # Redis answers again. A live consumer's entries look as idle as a dead
                    # one's (the outage counted): claimed now, their recipients would be taken
                    # over while it still sends them. It touches them within a round.
                    await self._redis.ping()
                    away, claim_from = False, time.monotonic() + CLAIM_GRACE_ROUNDS * interval
                if time.monotonic() >= claim_from:
                    for lane in self.lanes:
                        await self._claim(lane, idle_ms)
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                away = True
                logger.warning("claiming %s entries failed, retrying: %r", self._name, exc)

    async def _touch_loop(self) -> None:
        """Keep the entries held fresh in Redis, so that nobody claims them while retries run:
        twice as often as claims are looked for, apart from them (a long claim round does not
        hold it back). The lease to deliver them (`_fresh_at`) runs from the last touch."""
        every = max(0.05, min(self.cfg.claim_idle_s / 6, 2.5))
        while True:
            raise_if_cancelling()
            await asyncio.sleep(every)
            try:
                await self._refresh()
            except (RedisError, OSError):
                raise_if_cancelling()  # the claim and read loops say so; the lease runs out

    async def _claim(self, lane: _LaneStream, idle_ms: int) -> None:
        """Claim the lane's entries that a dead consumer left, while the lane has room."""
        start = "0-0"
        while self._reading and lane.in_flight < self.cfg.max_in_flight:
            # Redis 6.2 answers [next, entries], Redis 7 adds the deleted ids.
            reply = await self._redis.xautoclaim(
                lane.stream,
                self.cfg.group,
                self.cfg.consumer,
                idle_ms,
                start_id=start,
                count=self.cfg.claim_count,
            )
            nxt, claimed = reply[0], reply[1]
            if claimed:
                logger.info("claimed %d abandoned entries of %s", len(claimed), lane.stream)
                # Entries their consumer stopped keeping fresh: it is gone (or stalled past
                # claim_idle_s), so the recipients it held are taken over whatever it reported.
                await self._take([[lane.stream, claimed]], lane, takeover=True)
            start = _text(nxt)
            if start == "0-0":
                return

    async def _take(self, reply: Any, lane: _LaneStream, *, takeover: bool = False) -> None:
        """Turn one lane's stream entries into jobs: queued rows first, then the routes."""
        read_at = time.monotonic()  # when Redis delivered them, or a little later
        batch: list[tuple[Entry, list[J]]] = []
        for _stream, items in reply or ():
            for raw_id, fields in items:
                entry_id = _text(raw_id)
                if (lane.rank, entry_id) in self.entries or fields is None:
                    if fields is None:  # deleted from the stream while pending
                        lane.acks.append(entry_id)
                    continue
                parsed = await self._parse(entry_id, fields, lane)
                if parsed is not None:
                    batch.append(parsed)
        if not batch:
            return
        try:
            await self._control.refresh({e.alert for e, _ in batch} | self._alerts_in_flight())
        except (RedisError, OSError) as exc:
            # Work goes on with what was last read; senders check again before each delivery.
            logger.warning("reading alert control keys failed: %r", exc)
        try:
            await self._tombstones.check()
        except (RedisError, OSError) as exc:
            # Senders and the recorder look again before they deliver or write.
            logger.warning("reading erased addresses failed: %r", exc)
        to_queue: list[J] = []
        channel, now = self._channel, time.time()
        if not self.entries:  # none held: these are the freshest, and the oldest
            self._fresh_at = read_at
        for entry, jobs in batch:
            self.entries[entry.rank, entry.entry_id] = entry
            entry.remaining = len(jobs)
            self.in_flight += len(jobs)
            lane.in_flight += len(jobs)
            held, rank = self._held, lane.rank
            for job in jobs:
                held[rank, job.route] = held.get((rank, job.route), 0) + 1
            self.idle.clear()
            verdict = self._control.verdict(entry.alert, entry.version)
            for job in jobs:
                if self._tombstones.erased(job.address):
                    # Removed while this entry was pending: never sent; the recorder writes it
                    # under its placeholder, counted as cancelled so the alert's counts close.
                    job.error = "recipient removed"
                    self._recorder.final(job, State.CANCELLED)
                elif verdict is not None:
                    self._recorder.final(job, verdict)
                elif job.error:
                    channel.gave_up(job, "invalid")
                    self._recorder.final(job, State.FAILED)
                elif now >= entry.expires:
                    job.error = "expired before it could be sent"
                    channel.gave_up(job, "expired")
                    self._recorder.final(job, State.EXPIRED)
                else:
                    to_queue.append(job)
            if not jobs:
                self._finish(entry)
        self._in_flight_gauge.set(self.in_flight)
        if to_queue:
            await self._queue(to_queue, takeover=takeover)

    async def _queue(self, jobs: list[J], *, takeover: bool = False) -> None:
        live = () if takeover else self._live
        # Held here as the statement starts: not to send, whatever it answers. The first copy's
        # outcome may become durable (and leave `_holding`) while the statement is on its way
        # back; it found the row still queued and answers 'to send' for a recipient just sent.
        held = {
            key
            for j in jobs
            if (key := (j.entry.alert, j.entry.version, j.address)) in self._holding
        }
        send = await self._queue_rows(jobs, live)
        send -= held
        if live and len(send) + len(held) < len(jobs):
            # Some are not to send: done already, or held by a consumer alive at the last
            # refresh. Asked again now, without any that went since (Redis lost its data, or a
            # consumer stopped): nobody is left to one that will never send them.
            try:
                fresh = await erase.live_consumers(self._redis, channel=self._name)
            except (RedisError, OSError) as exc:
                logger.warning("reading the live %s consumers failed: %r", self._name, exc)
                fresh = list(live)
            if not set(live) <= set(fresh):
                self._live = fresh
                again = [
                    j
                    for j in jobs
                    if (key := (j.entry.alert, j.entry.version, j.address)) not in send
                    and key not in held
                ]
                send |= await self._queue_rows(again, fresh) - held
        self._hand_to_lanes(jobs, send)

    async def _queue_rows(self, jobs: list[J], live: Sequence[str]) -> set[tuple[str, int, str]]:
        """Queue the jobs' rows as held by this consumer; the keys of those to send."""
        while True:
            try:
                return await store.queue(
                    self._pool,
                    self._tables,
                    alerts=[j.entry.alert for j in jobs],
                    versions=[j.entry.version for j in jobs],
                    addresses=[j.address for j in jobs],
                    operators=[j.route for j in jobs],
                    segments=[j.units for j in jobs],
                    holder=self.cfg.consumer,
                    live=live,
                )
            except DATABASE_UNAVAILABLE as exc:
                raise_if_cancelling()
                logger.warning("queueing %s recipients failed, retrying: %r", self._name, exc)
                await asyncio.sleep(0.5)

    def holds(self, alert: str, version: int, address: str) -> bool:
        """Whether this process holds the recipient's work: its outcome is not durable yet."""
        return (alert, version, address) in self._holding

    async def leave(self) -> None:
        """This consumer stops (after handing its work back): say so to the others."""
        await self._tombstones.leave(self.cfg.consumer)

    def _hand_to_lanes(self, jobs: list[J], send: set[tuple[str, int, str]]) -> None:
        per_route: dict[str, list[J]] = {}
        done: list[Job] = []
        holding = self._holding
        for job in jobs:
            key = (job.entry.alert, job.entry.version, job.address)
            if key in send and key not in holding:
                send.discard(key)  # a second copy in this read waits for nothing
                job.held_as = key
                holding[key] = job
                per_route.setdefault(job.route, []).append(job)
            else:
                # Already has an outcome from an earlier attempt, or this process (or another
                # live one) holds it from an earlier entry: that copy's entry stays pending until
                # its outcome is durable, so this one may be acknowledged now.
                done.append(job)
        fed = time.monotonic()
        for route, part in per_route.items():
            self._lanes[route].put(part)
            self._fed[route] = fed
        if done:
            self._durable(done)

    async def _parse(
        self, entry_id: str, fields: Mapping[Any, Any], lane: _LaneStream
    ) -> tuple[Entry, list[J]] | None:
        """The entry's jobs; a malformed entry goes to the dead letters (None)."""
        try:
            work = codec.decode(fields)
            header = work.header
            entry = Entry(
                entry_id,
                header.alert,
                header.version,
                header.expires,
                rank=lane.rank,
                owner=header.entity or header.alert,
            )
            job = self._channel.job
            jobs = [job(entry, header, address, language) for address, language in work.to]
        except (codec.MalformedEntry, ValueError) as exc:
            await self._dead_letter(entry_id, fields, exc, lane)
            return None
        return entry, jobs

    async def _dead_letter(
        self, entry_id: str, fields: Mapping[Any, Any], exc: Exception, lane: _LaneStream
    ) -> None:
        """Move a malformed entry to the dead-letter stream and acknowledge it.

        If Redis fails meanwhile the entry stays pending, and is claimed and tried again later.
        """
        logger.error(
            "%s entry %s is malformed, moved to %s: %s", lane.stream, entry_id, self._dead, exc
        )
        dead: dict[Any, Any] = {_text(k): v for k, v in fields.items()}
        dead.update({"dead_id": entry_id, "dead_error": str(exc), "dead_at": repr(time.time())})
        dead["dead_stream"] = lane.stream
        try:
            await self._redis.xadd(
                self._dead, dead, maxlen=keys.DEAD_LETTER_MAXLEN, approximate=True
            )
        except (RedisError, OSError) as dead_exc:
            logger.warning("dead letter %s not written, retried later: %r", entry_id, dead_exc)
            return
        metrics.DEAD_LETTERS.labels(self._name).inc()
        lane.acks.append(entry_id)
        self._ack_wake.set()

    # -- outcomes -----------------------------------------------------------------------------
    def _durable(self, jobs: list[Job]) -> None:
        """Jobs whose outcome is written: free their slots, acknowledge finished entries."""
        held, lanes, holding = self._held, self.lanes, self._holding
        for job in jobs:
            if job.held_as is not None:
                holding.pop(job.held_as, None)
                job.held_as = None
            key = (job.entry.rank, job.route)
            held[key] = held.get(key, 0) - 1
            if job.holds_slot:
                job.holds_slot = False
                self._slots.release()
            entry = job.entry
            lanes[entry.rank].in_flight -= 1
            entry.remaining -= 1
            if entry.remaining == 0:
                self._finish(entry)
        self.in_flight -= len(jobs)
        self._in_flight_gauge.set(self.in_flight)
        for lane in lanes:
            if lane.in_flight < self.cfg.max_in_flight:
                lane.room.set()

    def _finish(self, entry: Entry) -> None:
        self.entries.pop((entry.rank, entry.entry_id), None)
        if not entry.lost:  # a lost one is another consumer's now: its acknowledgement
            self.lanes[entry.rank].acks.append(entry.entry_id)
            self._ack_wake.set()
        if not self.entries:
            self.idle.set()

    async def _ack_loop(self) -> None:
        while True:
            raise_if_cancelling()
            await self._ack_wake.wait()
            self._ack_wake.clear()
            for lane in self.lanes:
                ids, lane.acks = lane.acks, []
                if not ids:
                    continue
                try:
                    await self._redis.xack(lane.stream, self.cfg.group, *ids)
                except (RedisError, OSError) as exc:
                    raise_if_cancelling()
                    logger.warning("acknowledging in %s failed, retrying: %r", lane.stream, exc)
                    lane.acks.extend(ids)
                    await asyncio.sleep(0.5)
                    self._ack_wake.set()

    async def _touch(self, held: list[tuple[int, str]], *, idle_ms: int | None) -> None:
        """XCLAIM our own entries, setting their idle time (None: now), a thousand at a time."""
        for lane in self.lanes:
            ids: list[Any] = [entry_id for rank, entry_id in held if rank == lane.rank]
            for i in range(0, len(ids), 1000):
                await self._redis.xclaim(
                    lane.stream,
                    self.cfg.group,
                    self.cfg.consumer,
                    0,
                    ids[i : i + 1000],
                    idle=idle_ms,
                    justid=True,
                )

    async def _refresh(self) -> None:
        """Touch every entry held; the lease to deliver them runs from when this began."""
        began = time.monotonic()
        await self._touch(list(self.entries), idle_ms=None)
        self._fresh_at = began

    async def hand_back(self) -> int:
        """Mark the entries still in hand as idle for `claim_idle_s`: claimable by others now."""
        held = list(self.entries)
        await self._touch(held, idle_ms=int(self.cfg.claim_idle_s * 1000))
        self.entries.clear()
        return len(held)

    async def flush_acks(self) -> None:
        """Acknowledge what is finished now (shutdown)."""
        for lane in self.lanes:
            ids, lane.acks = lane.acks, []
            if ids:
                await self._redis.xack(lane.stream, self.cfg.group, *ids)

    # -- a stalled process (issue 16) -----------------------------------------------------------
    def fence(self) -> Awaitable[None] | None:
        """None: deliver. Otherwise the process was stalled (STALL_SHARE): await the returned
        look at what other consumers took over meanwhile, then check `job.abandoned`."""
        task = self._fence_if_stalled()
        return None if task is None else asyncio.shield(task)

    def _fence_if_stalled(self) -> asyncio.Task[None] | None:
        """The fence under way, or started now if the heartbeat's gap says a stall; else None."""
        task = self._fence_task
        if task is not None and not task.done():
            return task
        now = time.monotonic()
        gap = now - self._beat
        unrenewed = now - self._fresh_at if self.entries else 0.0
        if gap > self._stall_s:
            logger.warning(
                "the %s consumer did not run for %.1f s (claim_idle_s %.1f): looking for work"
                " other consumers took over before delivering more",
                self._name,
                gap,
                self.cfg.claim_idle_s,
            )
            metrics.STALLS.labels(self._name).inc()
        elif unrenewed > self._stall_s:
            # Cut off from Redis (an outage, or a partition while the others still reach it):
            # its entries may be claimed once idle for claim_idle_s, and their recipients sent
            # by another consumer. Nothing more is delivered until Redis says which are ours.
            logger.warning(
                "the %s consumer could not keep its entries fresh in Redis for %.1f s"
                " (claim_idle_s %.1f): delivering nothing more until it can look for work other"
                " consumers took over",
                self._name,
                unrenewed,
                self.cfg.claim_idle_s,
            )
            metrics.LAPSES.labels(self._name).inc()
        else:
            return None
        task = self._fence_task = asyncio.create_task(self._fence(), name=f"{self._name}-fence")
        return task

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            self._fence_if_stalled()  # a stall is seen here even before any sender runs
            self._beat = time.monotonic()

    async def _fence(self) -> None:
        """After a stall: entries another consumer claimed are no longer ours (neither touched nor
        acknowledged here), ours are made fresh at once, and recipients whose row names another
        holder (or has an outcome) are abandoned: their new holder sends and records them."""
        failures = 0
        while True:
            try:
                abandoned = await self._look_for_takeovers()
                break
            except STORES_AWAY as exc:
                raise_if_cancelling()
                if failures % FENCE_LOG_EVERY == 0:  # a long outage: a line every 10 s
                    logger.warning(
                        "looking for %s work taken over failed (%d times), retrying: %r",
                        self._name,
                        failures + 1,
                        exc,
                    )
                failures += 1
                await asyncio.sleep(FENCE_RETRY_S)
        if abandoned:
            logger.warning(
                "%d %s recipients were taken over by another consumer while this one was stalled:"
                " left to it",
                abandoned,
                self._name,
            )

    async def _look_for_takeovers(self) -> int:
        me = self.cfg.consumer
        for lane in self.lanes:
            ids = [entry_id for rank, entry_id in self.entries if rank == lane.rank]
            if not ids:
                continue
            pending = await self._redis.xpending_range(
                lane.stream,
                self.cfg.group,
                min="-",
                max="+",
                count=len(ids) + 10_000,
                consumername=me,
            )
            mine = {_text(p["message_id"]) for p in pending}
            for entry_id in ids:
                if entry_id not in mine:
                    # Claimed by another consumer (or gone with Redis's data): not ours to touch.
                    self.entries[lane.rank, entry_id].lost = True
                    del self.entries[lane.rank, entry_id]
        await self._refresh()
        await self._tombstones.report(me, every_s=self.cfg.control_refresh_s)
        await asyncio.sleep(FENCE_SETTLE_S)
        erased = self._tombstones.erased
        # An erased recipient's row was renamed: the lane records it under its placeholder.
        held = [key for key in self._holding if not erased(key[2])]
        kept = await store.still_held(self._pool, self._tables, held, holder=me)
        abandoned = 0
        for key in held:
            job = self._holding.get(key)  # None: its outcome became durable meanwhile
            if key not in kept and job is not None:
                job.abandoned = True
                abandoned += 1
        return abandoned

    def _abandon(self, job: Job) -> None:
        """A job taken over by another consumer: dropped here, unsent and unrecorded."""
        self._durable([job])

    # -- control keys and gauges ----------------------------------------------------------------
    def _alerts_in_flight(self) -> set[str]:
        return {e.alert for e in self.entries.values()}

    async def _control_loop(self) -> None:
        every = self.cfg.control_refresh_s
        while True:
            raise_if_cancelling()
            await asyncio.sleep(every)
            try:
                if self.entries:
                    await self._control.refresh(self._alerts_in_flight())
                # Removals too, held work or not: a sender checks them before each delivery,
                # and a removal is answered once every live consumer says it has them.
                await self._tombstones.check()
                await self._tombstones.report(self.cfg.consumer, every_s=every)
                self._live = await erase.live_consumers(self._redis, channel=self._name)
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                logger.warning("reading alert control keys failed: %r", exc)

    async def _gauge_loop(self) -> None:
        while True:
            raise_if_cancelling()
            for lane in self.lanes:
                await self._gauge(lane)
            await asyncio.sleep(2.0)

    async def _gauge(self, lane: _LaneStream) -> None:
        """The lane stream's length, pending and lag gauges; then trim what it processed."""
        stream, group = lane.stream, self.cfg.group
        try:
            length = await self._redis.xlen(stream)
            groups = await self._redis.xinfo_groups(stream)
        except (RedisError, OSError) as exc:
            logger.debug("stream gauges not read: %r", exc)
            return
        STREAM_LENGTH.labels(stream).set(length)
        for g in groups:
            if _text(g.get("name")) == group:
                STREAM_PENDING.labels(stream, group).set(int(g.get("pending") or 0))
                await self._set_lag(lane, g)
        await self._trim(stream, groups)

    async def _trim(self, stream: str, groups: Sequence[Mapping[str, Any]]) -> None:
        """Drop the entries every group has processed: the stream must not grow for ever."""
        try:
            await trim_processed(self._redis, stream, groups)
        except (RedisError, OSError) as exc:
            logger.debug("stream not trimmed: %r", exc)

    async def _set_lag(self, lane: _LaneStream, group_info: Mapping[str, Any]) -> None:
        """Redis' own `lag` (7+), else counted in Redis a little at a time (GroupLag)."""
        try:
            lag = await lane.lag.measure(group_info)
        except (RedisError, OSError) as exc:
            logger.debug("stream lag not read: %r", exc)
            return
        if lag is not None:
            STREAM_LAG.labels(lane.stream, self.cfg.group).set(lag)
