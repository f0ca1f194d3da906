"""Buffers state changes and delivery receipts and writes them to PostgreSQL in batches.

A receipt may arrive before the submission it reports on is durable (the SMSC sends it before our
side has handled the submit_sm_resp, or before the next write): it then finds no row, stays
buffered and is tried again after later writes until it matches or `receipt_hold_s` passes. The
SMSC gets its deliver_sm_resp only once the receipt is applied, so a crash loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.sms import metrics, store
from services.sms.model import Job, State
from services.sms.ports import Receipt

logger = logging.getLogger(__name__)

#: Receipt stat -> recipient state ('' : intermediate, consumed without a change).
RECEIPT_STATES = {
    "DELIVRD": State.DELIVERED.value,
    "ACCEPTD": State.DELIVERED.value,
    "EXPIRED": State.EXPIRED.value,
    "UNDELIV": State.FAILED.value,
    "REJECTD": State.FAILED.value,
    "DELETED": State.FAILED.value,
    "UNKNOWN": State.FAILED.value,
    "ENROUTE": "",
}
#: Seconds between retries of every unmatched receipt.
UNMATCHED_RETRY_S = 0.5
#: Receipts unmatched for less than this are tried again with every write of submissions.
YOUNG_S = 2.0


#: Receipt stat -> (recipient state, error) as written; filled as stats are met (a handful).
_ROWS: dict[str, tuple[str, str]] = {}


def _row(stat: str) -> tuple[str, str]:
    """The recipient state and error a receipt stat writes (looked up once per stat)."""
    row = _ROWS.get(stat)
    if row is None:
        text = str(stat)
        upper = text.upper()
        error = "" if upper in ("DELIVRD", "ACCEPTD") else text
        row = (RECEIPT_STATES.get(upper, State.FAILED.value), error)
        if len(_ROWS) < 256:
            _ROWS[stat] = row
    return row


class ReceiptDropped(Exception):
    """A receipt found no row within the hold time; the SMSC is answered with an error."""


@dataclass(slots=True, eq=False)
class _Receipt:
    operator: str
    message_id: str
    row: tuple[str, str]  # recipient state and error this receipt writes
    at: float
    seen: float
    done: asyncio.Future[None]


class Recorder:
    """Batched writer of submissions, final states and receipts."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        write_batch: int,
        write_interval_s: float,
        receipt_hold_s: float,
    ) -> None:
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

    @property
    def backlog(self) -> int:
        """Changes waiting to be written."""
        return len(self._submitted) + len(self._final) + len(self._receipts)

    def submitted(self, job: Job) -> None:
        """Record that the SMSC accepted every segment of the job."""
        self._submitted.append(job)
        self._wake.set()

    def final(self, job: Job, state: State) -> None:
        """Record an outcome reached without a receipt (failed, expired, cancelled...)."""
        self._final.append((job, state))
        self._wake.set()

    def receipt(self, operator: str, receipt: Receipt) -> asyncio.Future[None]:
        """Take a delivery receipt; the future is done once it is durable (then the SMSC gets its
        resp). A plain future, not a coroutine: the gateway then needs no task per receipt."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._receipts.append(
            _Receipt(operator, receipt.message_id, _row(receipt.state), time.time(), 0.0, fut)
        )
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
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("writing SMS states failed, retrying: %r", exc)
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
        w = store.Writes.empty()
        for job in sub:
            e = job.entry
            w.sub_alert.append(e.alert)
            w.sub_version.append(e.version)
            w.sub_address.append(job.address)
            w.sub_operator.append(job.operator)
            w.sub_ids.append(" ".join(job.message_ids))
            w.sub_bind.append(job.bind)
            w.sub_attempts.append(job.attempts)
            w.sub_at.append(job.submitted_at)
        wall = time.time()
        for job, state in fin:
            e = job.entry
            w.fin_alert.append(e.alert)
            w.fin_version.append(e.version)
            w.fin_address.append(job.address)
            w.fin_operator.append(job.operator)
            w.fin_segments.append(job.segments)
            w.fin_state.append(state.value)
            w.fin_error.append(job.error)
            w.fin_attempts.append(job.attempts)
            w.fin_at.append(wall)
        tried = rc + old
        for r in tried:
            w.rc_operator.append(r.operator)
            w.rc_mid.append(r.message_id)
            w.rc_state.append(r.row[0])
            w.rc_error.append(r.row[1])
            w.rc_at.append(r.at)
        try:
            result = await self._write(w)
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
        for (operator, new_state), latencies in result.changed.items():
            if new_state == State.DELIVERED:
                metrics.DELIVERED.labels(operator).inc(len(latencies))
                histogram = metrics.RECEIPT_LATENCY.labels(operator)
                for latency in latencies:
                    histogram.observe(max(latency, 0.0))
            elif new_state == State.FAILED:
                metrics.FAILED.labels(operator, "permanent").inc(len(latencies))
            elif new_state == State.EXPIRED:
                metrics.FAILED.labels(operator, "expired").inc(len(latencies))
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

    async def _write(self, w: store.Writes) -> store.ReceiptResult:
        """Write on a connection kept for the recorder (a pool release costs a reset query)."""
        if self._conn is None:
            self._conn = await self._pool.acquire()
        try:
            return await store.write(self._conn, w)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn, self._conn = self._conn, None
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
                logger.warning("receipt %s/%s found no message: dropped", r.operator, r.message_id)
                if not r.done.done():
                    r.done.set_exception(ReceiptDropped(r.message_id))
            else:
                keep.append(r)
        self._unmatched = keep
