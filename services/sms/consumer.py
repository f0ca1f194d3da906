"""The SMS stream consumer: reads work in batches, records recipients as queued, hands them to
the operators' dispatchers, and acknowledges an entry once every recipient's outcome is durable.

Entries of a consumer that died are claimed with XAUTOCLAIM once idle for `claim_idle_s`; a live
consumer keeps the entries it is still working on (retries can take long) fresh with XCLAIM, so
they are never claimed from under it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from services.kernel import keys as shared
from services.kernel.metrics import STREAM_LAG, STREAM_LENGTH, STREAM_PENDING
from services.kernel.streams import GroupLag, trim_processed
from services.sms import metrics, store
from services.sms.control import ControlCache
from services.sms.dispatch import OperatorDispatcher
from services.sms.model import Entry, Job, State
from services.sms.recorder import Recorder
from services.sms.routing import Router, is_e164
from services.sms.slots import Slots

logger = logging.getLogger(__name__)

#: Language whose text is used when the recipient's own is missing from an entry.
FALLBACK_LANGUAGE = "en"


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """How the consumer reads and claims (from Settings)."""

    stream: str
    group: str
    consumer: str
    read_count: int
    read_block_ms: int
    max_in_flight: int
    claim_idle_s: float
    claim_count: int
    control_refresh_s: float
    default_sender: str


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class StreamConsumer:
    """Consumes the SMS stream for one process."""

    def __init__(
        self,
        *,
        config: ConsumerConfig,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        router: Router,
        dispatchers: Mapping[str, OperatorDispatcher],
        recorder: Recorder,
        control: ControlCache,
        segment_count: Callable[[str], int],
        durability: Slots,
    ) -> None:
        self.cfg = config
        self._redis = redis
        self._pool = pool
        self._router = router
        self._dispatchers = dispatchers
        self._recorder = recorder
        self._control = control
        self._segments = segment_count
        self._segments_cache: dict[str, int] = {}
        self._slots = durability
        #: Entries read and not yet acknowledged, by id.
        self.entries: dict[str, Entry] = {}
        #: Recipients read and without a durable outcome.
        self.in_flight = 0
        self._room = asyncio.Event()
        self._acks: list[str] = []
        self._ack_wake = asyncio.Event()
        self._reading = True
        self.idle = asyncio.Event()
        self.idle.set()
        self._lag = GroupLag(redis, config.stream)
        recorder.on_durable = self._durable

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if missing."""
        try:
            await self._redis.xgroup_create(self.cfg.stream, self.cfg.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        """Read, claim, refresh, acknowledge, until cancelled."""
        await self.ensure_group()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._read_loop(), name="sms-read")
            group.create_task(self._claim_loop(), name="sms-claim")
            group.create_task(self._ack_loop(), name="sms-ack")
            group.create_task(self._control_loop(), name="sms-control")
            group.create_task(self._gauge_loop(), name="sms-stream-gauges")

    def stop_reading(self) -> None:
        """Stop taking new work (graceful shutdown); work in hand goes on."""
        self._reading = False
        self._room.set()

    # -- reading ------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        own = await self._redis.xreadgroup(
            self.cfg.group, self.cfg.consumer, {self.cfg.stream: "0"}, count=10_000
        )
        await self._take(own)
        while self._reading:
            if self.in_flight >= self.cfg.max_in_flight:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                reply = await self._redis.xreadgroup(
                    self.cfg.group,
                    self.cfg.consumer,
                    {self.cfg.stream: ">"},
                    count=self.cfg.read_count,
                    block=self.cfg.read_block_ms,
                )
            except (RedisError, OSError) as exc:
                logger.warning("reading the SMS stream failed, retrying: %r", exc)
                await asyncio.sleep(0.5)
                continue
            if self._reading:
                await self._take(reply)

    async def _claim_loop(self) -> None:
        idle_ms = int(self.cfg.claim_idle_s * 1000)
        # Often enough that handed-back entries (idle at once) wait little; cheap either way.
        interval = max(0.05, min(self.cfg.claim_idle_s / 3, 5.0))
        while True:
            await asyncio.sleep(interval)
            try:
                if self.entries:
                    # Keep our own work fresh so nobody claims it while retries run.
                    ids: list[Any] = list(self.entries)
                    for i in range(0, len(ids), 1000):
                        await self._redis.xclaim(
                            self.cfg.stream,
                            self.cfg.group,
                            self.cfg.consumer,
                            0,
                            ids[i : i + 1000],
                            justid=True,
                        )
                if not self._reading or self.in_flight >= self.cfg.max_in_flight:
                    continue
                start = "0-0"
                while True:
                    # Redis 6.2 answers [next, entries], Redis 7 adds the deleted ids.
                    reply = await self._redis.xautoclaim(
                        self.cfg.stream,
                        self.cfg.group,
                        self.cfg.consumer,
                        idle_ms,
                        start_id=start,
                        count=self.cfg.claim_count,
                    )
                    nxt, claimed = reply[0], reply[1]
                    if claimed:
                        logger.info("claimed %d abandoned SMS entries", len(claimed))
                        await self._take([[self.cfg.stream, claimed]])
                    start = _text(nxt)
                    if start == "0-0" or self.in_flight >= self.cfg.max_in_flight:
                        break
            except (RedisError, OSError) as exc:
                logger.warning("claiming SMS entries failed, retrying: %r", exc)

    async def _take(self, reply: Any) -> None:
        """Turn stream entries into jobs: queued rows first, then the dispatchers."""
        batch: list[tuple[Entry, list[Job]]] = []
        for _stream, items in reply or ():
            for raw_id, fields in items:
                entry_id = _text(raw_id)
                if entry_id in self.entries or fields is None:
                    if fields is None:  # deleted from the stream while pending
                        self._acks.append(entry_id)
                    continue
                parsed = self._parse(entry_id, fields)
                if parsed is None:
                    self._acks.append(entry_id)
                    self._ack_wake.set()
                    continue
                batch.append(parsed)
        if not batch:
            return
        try:
            await self._control.refresh({e.alert for e, _ in batch} | self._alerts_in_flight())
        except (RedisError, OSError) as exc:
            # Work goes on with what was last read; senders check again before each submission.
            logger.warning("reading alert control keys failed: %r", exc)
        to_queue: list[Job] = []
        for entry, jobs in batch:
            self.entries[entry.entry_id] = entry
            entry.remaining = len(jobs)
            self.in_flight += len(jobs)
            self.idle.clear()
            verdict = self._control.verdict(entry.alert, entry.version)
            for job in jobs:
                if verdict is not None:
                    self._recorder.final(job, verdict)
                elif job.error:
                    metrics.FAILED.labels(job.operator, "permanent").inc()
                    self._recorder.final(job, State.FAILED)
                elif time.time() >= entry.expires:
                    job.error = "expired before it could be sent"
                    metrics.FAILED.labels(job.operator, "expired").inc()
                    self._recorder.final(job, State.EXPIRED)
                else:
                    to_queue.append(job)
            if not jobs:
                self._finish(entry)
        if to_queue:
            await self._queue(to_queue)

    async def _queue(self, jobs: list[Job]) -> None:
        while True:
            try:
                send = await store.queue(
                    self._pool,
                    alerts=[j.entry.alert for j in jobs],
                    versions=[j.entry.version for j in jobs],
                    addresses=[j.address for j in jobs],
                    operators=[j.operator for j in jobs],
                    segments=[j.segments for j in jobs],
                )
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("queueing SMS recipients failed, retrying: %r", exc)
                await asyncio.sleep(0.5)
        per_operator: dict[str, list[Job]] = {}
        done: list[Job] = []
        for job in jobs:
            key = (job.entry.alert, job.entry.version, job.address)
            if key in send:
                send.discard(key)  # a second copy in this read waits for nothing
                per_operator.setdefault(job.operator, []).append(job)
            else:
                done.append(job)  # already has an outcome from an earlier attempt
        for operator, part in per_operator.items():
            self._dispatchers[operator].put(part)
        if done:
            self._durable(done)

    def _parse(self, entry_id: str, fields: Mapping[Any, Any]) -> tuple[Entry, list[Job]] | None:
        f = {_text(k): _text(v) for k, v in fields.items()}
        try:
            entry = Entry(entry_id, f["alert"], int(f["version"]), float(f["expires"]))
            texts = json.loads(f["texts"])
            recipients = json.loads(f["to"])
            if not isinstance(texts, dict) or not texts or not isinstance(recipients, list):
                raise ValueError("texts must be a non-empty object and to an array")
        except (KeyError, ValueError, TypeError) as exc:
            logger.error("SMS entry %s is malformed and is dropped: %r", entry_id, exc)
            return None
        sender = f.get("sender") or self.cfg.default_sender
        fallback = texts.get(FALLBACK_LANGUAGE) or next(iter(texts.values()))
        jobs: list[Job] = []
        seen: set[str] = set()
        for item in recipients:
            address, language = (item[0], item[1]) if isinstance(item, list) else (item, "")
            address = str(address)
            if address in seen:
                continue
            seen.add(address)
            text = str(texts.get(language) or fallback)
            segments = self._segments_cache.get(text)
            if segments is None:
                segments = self._segments(text)
                if len(self._segments_cache) < 1000:
                    self._segments_cache[text] = segments
            valid = is_e164(address)
            operator = self._router.route(address) if valid else self._router.default
            job = Job(entry, address, operator, text, sender, segments)
            if not valid:
                job.error = "invalid number"
            jobs.append(job)
        return entry, jobs

    # -- outcomes -----------------------------------------------------------------------------
    def _durable(self, jobs: list[Job]) -> None:
        """Jobs whose outcome is written: free their slots, acknowledge finished entries."""
        for job in jobs:
            if job.holds_slot:
                job.holds_slot = False
                self._slots.release()
            entry = job.entry
            entry.remaining -= 1
            if entry.remaining == 0:
                self._finish(entry)
        self.in_flight -= len(jobs)
        if self.in_flight < self.cfg.max_in_flight:
            self._room.set()

    def _finish(self, entry: Entry) -> None:
        self.entries.pop(entry.entry_id, None)
        self._acks.append(entry.entry_id)
        self._ack_wake.set()
        if not self.entries:
            self.idle.set()

    async def _ack_loop(self) -> None:
        while True:
            await self._ack_wake.wait()
            self._ack_wake.clear()
            ids, self._acks = self._acks, []
            if not ids:
                continue
            try:
                await self._redis.xack(self.cfg.stream, self.cfg.group, *ids)
            except (RedisError, OSError) as exc:
                logger.warning("acknowledging SMS entries failed, retrying: %r", exc)
                self._acks.extend(ids)
                await asyncio.sleep(0.5)
                self._ack_wake.set()

    async def hand_back(self) -> int:
        """Mark the entries still in hand as idle for `claim_idle_s`: claimable by others now."""
        ids: list[Any] = list(self.entries)
        for i in range(0, len(ids), 1000):
            await self._redis.xclaim(
                self.cfg.stream,
                self.cfg.group,
                self.cfg.consumer,
                0,
                ids[i : i + 1000],
                idle=int(self.cfg.claim_idle_s * 1000),
                justid=True,
            )
        self.entries.clear()
        return len(ids)

    async def flush_acks(self) -> None:
        """Acknowledge what is finished now (shutdown)."""
        ids, self._acks = self._acks, []
        if ids:
            await self._redis.xack(self.cfg.stream, self.cfg.group, *ids)

    # -- control keys and gauges ----------------------------------------------------------------
    def _alerts_in_flight(self) -> set[str]:
        return {e.alert for e in self.entries.values()}

    async def _control_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.control_refresh_s)
            if not self.entries:
                continue
            try:
                await self._control.refresh(self._alerts_in_flight())
            except (RedisError, OSError) as exc:
                logger.warning("reading alert control keys failed: %r", exc)

    async def _gauge_loop(self) -> None:
        stream, group = self.cfg.stream, self.cfg.group
        while True:
            try:
                length = await self._redis.xlen(stream)
                groups = await self._redis.xinfo_groups(stream)
            except (RedisError, OSError) as exc:
                logger.debug("stream gauges not read: %r", exc)
            else:
                STREAM_LENGTH.labels(stream).set(length)
                for g in groups:
                    if _text(g.get("name")) == group:
                        STREAM_PENDING.labels(stream, group).set(int(g.get("pending") or 0))
                        await self._set_lag(g)
                await self._trim(groups)
            await asyncio.sleep(2.0)

    async def _trim(self, groups: Sequence[Mapping[str, Any]]) -> None:
        """Drop the entries every group has processed: the stream must not grow for ever."""
        try:
            await trim_processed(self._redis, self.cfg.stream, groups)
        except (RedisError, OSError) as exc:
            logger.debug("stream not trimmed: %r", exc)

    async def _set_lag(self, group_info: Mapping[str, Any]) -> None:
        """Redis' own `lag` (7+), else counted in Redis a little at a time (GroupLag)."""
        try:
            lag = await self._lag.measure(group_info)
        except (RedisError, OSError) as exc:
            logger.debug("stream lag not read: %r", exc)
            return
        if lag is not None:
            STREAM_LAG.labels(self.cfg.stream, self.cfg.group).set(lag)


def consumer_config(*, consumer: str, settings: Any) -> ConsumerConfig:
    """The consumer's part of the settings."""
    return ConsumerConfig(
        stream=shared.SMS_STREAM,
        group=shared.SMS_GROUP,
        consumer=consumer,
        read_count=settings.read_count,
        read_block_ms=settings.read_block_ms,
        max_in_flight=settings.max_in_flight,
        claim_idle_s=settings.claim_idle_s,
        claim_count=settings.claim_count,
        control_refresh_s=settings.control_refresh_s,
        default_sender=settings.default_sender,
    )
