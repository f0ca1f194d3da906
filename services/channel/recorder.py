"""Buffers recipients' outcomes and operators' receipts and writes them to PostgreSQL in batches.

One transaction per batch writes submissions (with the operator's references), final states and
receipts; only after its commit are the jobs reported durable (`on_durable`), which frees their
durability slots and lets the worker acknowledge their entries.

A receipt may arrive before the submission it reports on is durable (an SMSC sends it before our
side has handled the submit_sm_resp, or before the next write): it then finds no row, stays
buffered and is tried again after later writes until it matches or `receipt_hold_s` passes. The
operator is answered only once the receipt is applied (the returned future), so a crash loses none.

A recipient whose address was erased (a citizen removed) while the worker held its work is
recorded under its placeholder (erase.Tombstones), read once the write holds the channel's
erasure lock: its outcome lands on the row the removal renamed, never under the number.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from redis.exceptions import RedisError

from services.channel import metrics, store
from services.channel.erase import Tombstones
from services.channel.model import Job, State
from services.kernel.errors import DATABASE_UNAVAILABLE

logger = logging.getLogger(__name__)

#: Failures of a write that the recorder retries on a new connection.
_DB_ERRORS = DATABASE_UNAVAILABLE
#: Seconds between retries of every unmatched receipt.
UNMATCHED_RETRY_S = 0.5
#: Receipts unmatched for less than this are tried again with every write of submissions.
YOUNG_S = 2.0
#: A write waits at most this long for the tombstones' version (Redis slow or away: it goes on
#: with the tombstones last read), and after such a failure does not ask for this many seconds.
TOMBSTONES_WAIT_S = 0.25
TOMBSTONES_BACKOFF_S = 1.0


class ReceiptDropped(Exception):
    """A receipt found no row within the hold time; the operator is answered with an error."""


@dataclass(slots=True, eq=False)
class _Receipt:
    route: str
    ref: str
    row: tuple[str, str]  # recipient state and error this receipt writes
    at: float
    seen: float
    done: asyncio.Future[None]


class Recorder:
    """Batched writer of submissions, final states and receipts."""

    def __init__(
        self,
        *,
        channel: str,
        pool: asyncpg.Pool,
        write_batch: int,
        write_interval_s: float,
        receipt_hold_s: float,
    ) -> None:
        self.channel = channel
        self._tables = store.Tables.of(channel)
        self._pool = pool
        self._batch = write_batch
        self._interval = write_interval_s
        self._hold = receipt_hold_s
        self._submitted: list[Job] = []
        self._final: list[tuple[Job, State]] = []
        self._receipts: list[_Receipt] = []
        self._unmatched: list[_Receipt] = []
        self._unmatched_tried = 0.0
        self._expiry_checked = 0.0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._conn: PoolConnectionProxy | None = None
        #: Called with the jobs whose outcome became durable, after each write.
        self.on_durable: Callable[[list[Job]], None] = lambda jobs: None
        #: Called after each write with the rows a receipt changed: route, new state, and the
        #: seconds from submission to receipt of each (the channel's own metrics).
        self.on_receipts: Callable[[str, State, list[float]], None] = lambda r, s, t: None
        self._outcomes = metrics.OUTCOMES
        self._latency = metrics.RECEIPT_LATENCY
        #: The channel's tombstones (set by the worker; None: nobody is ever erased here).
        self.tombstones: Tombstones | None = None
        self._tombstones_failed = -TOMBSTONES_BACKOFF_S

    @property
    def backlog(self) -> int:
        """Changes waiting to be written."""
        return len(self._submitted) + len(self._final) + len(self._receipts)

    def submitted(self, job: Job) -> None:
        """Record that the operator took the job (its references in `job.refs`)."""
        self._submitted.append(job)
        self._wake.set()

    def final(self, job: Job, state: State) -> None:
        """Record an outcome reached without a receipt (failed, expired, cancelled...)."""
        self._final.append((job, state))
        self._wake.set()

    def receipt(self, route: str, ref: str, row: tuple[str, str]) -> asyncio.Future[None]:
        """Take an operator's late answer about reference `ref`: `row` is the state it writes
        ('' : none, consumed without a change) and the error. The future is done once it is
        durable (then the operator gets its answer). A plain future, not a coroutine: the
        gateway then needs no task per receipt."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._receipts.append(_Receipt(route, ref, row, time.time(), 0.0, fut))
        self._wake.set()
        return fut

    async def run(self) -> None:
        """Write forever: as soon as something waits, after gathering for `write_interval_s`."""
        try:
            await self._loop()
        finally:
            await self.close()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.backlog:
                self._wake.clear()
                timeout = UNMATCHED_RETRY_S if self._unmatched else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            if self.backlog < self._batch:
                await asyncio.sleep(self._interval)
            try:
                await self.flush_once()
            except _DB_ERRORS as exc:
                logger.warning("writing %s states failed, retrying: %r", self.channel, exc)
                await asyncio.sleep(0.5)
            if self._unmatched and loop.time() - self._expiry_checked > 1.0:
                self._expiry_checked = loop.time()
                self._expire_unmatched()

    async def drain(self) -> None:
        """Write until nothing is buffered (shutdown)."""
        while self.backlog:
            await self.flush_once()
        await self.close()

    async def flush_once(self) -> None:
        """Write one batch of whatever is buffered."""
        async with self._lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        n = self._batch
        sub, fin, rc = self._submitted[:n], self._final[:n], self._receipts[:n]
        now = asyncio.get_running_loop().time()
        old = self._take_unmatched(now, n, with_submissions=bool(sub))
        if not (sub or fin or rc or old):
            return
        tried = rc + old
        # A receipt for a one-reference submission of this batch is written with it: the row
        # goes from queued to its answer in one update, and the receipt needs no lookup.
        answered: dict[int, _Receipt] = {}
        if sub and tried:
            pending = {
                (job.route, job.refs[0]): i
                for i, job in enumerate(sub)
                if job.refs is not None and len(job.refs) == 1
            }
            rest: list[_Receipt] = []
            for r in tried:
                i = pending.pop((r.route, r.ref), None) if r.row[0] else None
                if i is None:
                    rest.append(r)
                else:
                    answered[i] = r
            tried = rest
        w = store.Writes.empty()
        submitted = State.SUBMITTED.value
        for i, job in enumerate(sub):
            e = job.entry
            w.sub_alert.append(e.alert)
            w.sub_version.append(e.version)
            w.sub_address.append(job.address)
            w.sub_operator.append(job.route)
            w.sub_ids.append(" ".join(job.refs or ()))
            w.sub_bind.append(job.via)
            w.sub_attempts.append(job.attempts)
            w.sub_at.append(job.submitted_at)
            answer = answered.get(i)
            if answer is None:
                w.sub_state.append(submitted)
                w.sub_error.append("")
                w.sub_done.append(0.0)
            else:
                w.sub_state.append(answer.row[0])
                w.sub_error.append(answer.row[1])
                w.sub_done.append(answer.at)
        wall = time.time()
        for job, state in fin:
            e = job.entry
            w.fin_alert.append(e.alert)
            w.fin_version.append(e.version)
            w.fin_address.append(job.address)
            w.fin_operator.append(job.route)
            w.fin_segments.append(job.units)
            w.fin_state.append(state.value)
            w.fin_error.append(job.error)
            w.fin_attempts.append(job.attempts)
            w.fin_at.append(wall)
        for r in tried:
            w.rc_operator.append(r.route)
            w.rc_mid.append(r.ref)
            w.rc_state.append(r.row[0])
            w.rc_error.append(r.row[1])
            w.rc_at.append(r.at)
        try:
            result = await self._write(w, self._erased_to_placeholders(sub, fin))
        except BaseException:
            self._unmatched[:0] = old
            raise
        del self._submitted[: len(sub)]
        del self._final[: len(fin)]
        del self._receipts[: len(rc)]
        missed = set(result.unmatched)
        for i, r in enumerate(tried):
            if i in missed:
                r.seen = r.seen or now
                self._unmatched.append(r)
            elif not r.done.done():
                r.done.set_result(None)
        changed = result.changed
        for i, r in answered.items():
            changed.setdefault((r.route, r.row[0]), []).append(r.at - sub[i].submitted_at)
            if not r.done.done():
                r.done.set_result(None)
        for (route, new_state), latencies in changed.items():
            state = State(new_state)
            self._outcomes.labels(self.channel, route, state.value).inc(len(latencies))
            if state is State.DELIVERED:
                histogram = self._latency.labels(self.channel, route)
                for latency in latencies:
                    histogram.observe(max(latency, 0.0))
            self.on_receipts(route, state, latencies)
        if sub:
            for route, n in _per_route(sub).items():
                self._outcomes.labels(self.channel, route, State.SUBMITTED.value).inc(n)
        for (route, reached), n in _per_route_state(fin).items():
            self._outcomes.labels(self.channel, route, reached).inc(n)
        if sub or fin:
            self.on_durable([*sub, *(job for job, _ in fin)])

    def _take_unmatched(self, now: float, n: int, *, with_submissions: bool) -> list[_Receipt]:
        """Unmatched receipts to try again now: all of them every UNMATCHED_RETRY_S, and those
        missed in the last YOUNG_S with every write of submissions (their row may be in it)."""
        periodic = now - self._unmatched_tried >= UNMATCHED_RETRY_S
        if not self._unmatched or not (periodic or with_submissions):
            return []
        if periodic:
            self._unmatched_tried = now
        old: list[_Receipt] = []
        keep: list[_Receipt] = []
        for r in self._unmatched:
            if len(old) < n and (periodic or now - r.seen < YOUNG_S):
                old.append(r)
            else:
                keep.append(r)
        self._unmatched = keep
        return old

    def _erased_to_placeholders(
        self, sub: list[Job], fin: list[tuple[Job, State]]
    ) -> Callable[[store.Writes], Awaitable[None]] | None:
        """What puts the erased recipients of a batch under their placeholders, once the write
        holds the erasure lock: the tombstones read again if an erasure happened meanwhile."""
        tombstones = self.tombstones
        if tombstones is None:
            return None

        async def prepare(w: store.Writes) -> None:
            await self._check(tombstones)
            if not tombstones:
                return
            for addresses, jobs in ((w.sub_address, sub), (w.fin_address, (j for j, _ in fin))):
                for i, job in enumerate(jobs):
                    e = job.entry
                    erased = tombstones.placeholder(job.address, e.alert, e.version)
                    if erased is not None:
                        addresses[i] = erased
                        w.er_alert.append(e.alert)
                        w.er_version.append(e.version)
                        w.er_address.append(job.address)
                        w.er_placeholder.append(erased)

        return prepare

    async def _check(self, tombstones: Tombstones) -> None:
        """Read the tombstones again if an erasure happened; with Redis slow or away, go on
        with those last read (a removal needs Redis first, for its tombstone)."""
        now = time.monotonic()
        if now - self._tombstones_failed < TOMBSTONES_BACKOFF_S:
            return
        try:
            async with asyncio.timeout(TOMBSTONES_WAIT_S):
                await tombstones.check()
        except (RedisError, OSError, TimeoutError) as exc:
            self._tombstones_failed = now
            logger.warning("reading the %s tombstones failed: %r", self.channel, exc)

    async def _write(
        self, w: store.Writes, prepare: Callable[[store.Writes], Awaitable[None]] | None = None
    ) -> store.ReceiptResult:
        """Write on a connection kept for the recorder (a pool release costs a reset query)."""
        if self._conn is None:
            self._conn = await self._pool.acquire()
        try:
            return await store.write(self._conn, self._tables, w, prepare=prepare)
        except _DB_ERRORS:
            # Never reuse it: a server that went away mid-statement (a restart) can leave the
            # connection waiting for an answer that never comes, and the next BEGIN fails.
            conn, self._conn = self._conn, None
            with contextlib.suppress(asyncpg.InterfaceError):  # the pool took it back already
                conn.terminate()
                await self._pool.release(conn)
            raise

    async def close(self) -> None:
        """Give the recorder's connection back to the pool."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._pool.release(conn, timeout=2)

    def _expire_unmatched(self) -> None:
        now = asyncio.get_running_loop().time()
        keep: list[_Receipt] = []
        for r in self._unmatched:
            if now - r.seen > self._hold:
                # A receipt whose id the operator writes differently: its route is the operator.
                logger.warning(
                    "%s receipt of operator %s, id %r, found no message: dropped",
                    self.channel,
                    r.route,
                    r.ref,
                )
                metrics.RECEIPTS_UNMATCHED.labels(self.channel, r.route).inc()
                if not r.done.done():
                    r.done.set_exception(ReceiptDropped(r.ref))
            else:
                keep.append(r)
        self._unmatched = keep


def _per_route(jobs: list[Job]) -> dict[str, int]:
    out: dict[str, int] = {}
    for job in jobs:
        out[job.route] = out.get(job.route, 0) + 1
    return out


def _per_route_state(final: list[tuple[Job, State]]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for job, state in final:
        key = (job.route, state.value)
        out[key] = out.get(key, 0) + 1
    return out
