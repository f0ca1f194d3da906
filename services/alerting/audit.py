"""The append-only audit log: each entry chained to the previous one by HMAC-SHA-256.

The chain's key (TOCSIN_AUDIT_KEY) is kept in the secret store, never in the database: whoever
can write PostgreSQL cannot rewrite the chain consistently. Without a key (development) the
chain is plain SHA-256. Every field is bounded and free of NUL before it is written, so no
caller can fill the disk or make the insert fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.alerting.metrics import AUDIT_BATCHES
from services.kernel.errors import DATABASE_UNAVAILABLE

logger = logging.getLogger(__name__)

#: prev_hash of the first entry.
GENESIS = "0" * 64


@dataclass(frozen=True)
class Draft:
    """What a caller asks to audit (who, what, on what, from where, with what result); the
    writer gives it its place in the chain."""

    user_id: int | None
    username: str
    entity_id: int | None
    action: str
    target: str
    peer: str
    result: str
    detail: str = ""


@dataclass(frozen=True)
class _Place:
    """An entry's place in the chain: its number and when it was written."""

    seq: int
    at: datetime


@dataclass(frozen=True)
class Entry(Draft, _Place):
    """One audited action as written: a draft in its place. Fields in the table's order: `seq`,
    `at`, then the draft's (a dataclass takes its bases' fields from the last base on)."""


@dataclass(frozen=True)
class Verdict:
    """Outcome of walking the chain."""

    ok: bool
    entries: int
    first_broken_seq: int = 0
    reason: str = ""


def canonical(entry: Entry) -> bytes:
    """Canonical JSON of an entry: sorted keys, no spaces, UTC time with microseconds."""
    doc: dict[str, Any] = {
        "seq": entry.seq,
        "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "user_id": entry.user_id,
        "username": entry.username,
        "entity_id": entry.entity_id,
        "action": entry.action,
        "target": entry.target,
        "peer": entry.peer,
        "result": entry.result,
        "detail": entry.detail,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, entry: Entry, key: bytes = b"") -> str:
    """HMAC-SHA-256 under `key` (SHA-256 without one) over the previous hash and the entry's
    canonical JSON, as hex."""
    data = prev_hash.encode("ascii") + canonical(entry)
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


#: Longest stored value of each text field (longer ones are cut, marked with an ellipsis).
LIMITS = {"username": 64, "action": 64, "target": 200, "peer": 100, "result": 32, "detail": 2000}


def bounded(value: str, field: str) -> str:
    """A field's value as stored: NUL replaced, cut to its limit."""
    limit = LIMITS[field]
    value = value.replace("\x00", "\ufffd")
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"


#: Where the chain ends: the last entry's seq and hash ((0, GENESIS) for an empty log).
Tail = tuple[int, str]

#: Times a batch is chained again after other writers took the places it was about to use.
MAX_ATTEMPTS = 100

#: The batch, inserted only if the chain still ends where the writer thinks ($13: its last seq);
#: answers how many rows went in and where the chain ended when the statement began.
_INSERT = (
    "WITH tail AS (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1),"
    " ins AS (INSERT INTO audit_log (seq, at, user_id, username, entity_id, action, target, peer,"
    " result, detail, prev_hash, hash) SELECT * FROM unnest($1::bigint[], $2::timestamptz[],"
    " $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[],"
    " $10::text[], $11::text[], $12::text[])"
    " WHERE coalesce((SELECT seq FROM tail), 0) = $13::bigint RETURNING 1)"
    " SELECT (SELECT count(*) FROM ins) AS written, (SELECT seq FROM tail) AS seq,"
    " (SELECT hash FROM tail) AS hash"
)


async def read_tail(pool: asyncpg.Pool) -> Tail:
    """The end of the chain as PostgreSQL has it now."""
    last = await pool.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    return (0, GENESIS) if last is None else (last["seq"], last["hash"])


def _chained(
    drafts: Sequence[Draft], tail: Tail, key: bytes = b""
) -> tuple[list[Entry], list[list[Any]]]:
    """The drafts as entries after `tail`, and the insert's twelve columns."""
    seq, prev = tail
    # Microseconds: what timestamptz keeps, so the stored entry hashes the same when re-read.
    at = datetime.now(UTC)
    entries: list[Entry] = []
    columns: list[list[Any]] = [[] for _ in range(12)]
    for d in drafts:
        seq += 1
        entry = Entry(
            seq,
            at,
            d.user_id,
            bounded(d.username, "username"),
            d.entity_id,
            bounded(d.action, "action"),
            bounded(d.target, "target"),
            bounded(d.peer, "peer"),
            bounded(d.result, "result"),
            bounded(d.detail, "detail"),
        )
        digest = chain_hash(prev, entry, key)
        row = (
            seq,
            at,
            entry.user_id,
            entry.username,
            entry.entity_id,
            entry.action,
            entry.target,
            entry.peer,
            entry.result,
            entry.detail,
            prev,
            digest,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
        entries.append(entry)
        prev = digest
    return entries, columns


async def append_after(
    pool: asyncpg.Pool, drafts: Sequence[Draft], tail: Tail | None, *, key: bytes = b""
) -> tuple[list[Entry], Tail]:
    """Append entries in order at the end of the chain; return them and the new end.

    One statement, no lock: the entries are chained after `tail` (the end this writer last saw,
    read first if None) and inserted only if the chain still ends there. If another writer (a
    replica, the CLI) appended meanwhile, nothing is written and the statement answers the new
    end, after which the entries are chained again: two round trips instead of one. A writer
    whose insert meets one in flight is refused by the primary key on seq and reads the end
    afresh. The chain stays exact across processes.
    """
    for _ in range(MAX_ATTEMPTS):
        if tail is None:
            tail = await read_tail(pool)
        entries, columns = _chained(drafts, tail, key)
        try:
            row = await pool.fetchrow(_INSERT, *columns, tail[0])
        except asyncpg.UniqueViolationError:
            AUDIT_BATCHES.labels("raced").inc()
            tail = None  # an insert in flight took the same places: read the end afresh
            continue
        assert row is not None
        if row["written"] == 0:
            AUDIT_BATCHES.labels("raced").inc()
            tail = (0, GENESIS) if row["seq"] is None else (row["seq"], row["hash"])
            continue
        AUDIT_BATCHES.labels("written").inc()
        return entries, (entries[-1].seq, columns[11][-1])
    raise RuntimeError(f"audit log: {MAX_ATTEMPTS} appends in a row lost the race to other writers")


async def append_many(
    pool: asyncpg.Pool, drafts: Sequence[Draft], *, key: bytes = b""
) -> list[Entry]:
    """Append entries in order at the end of the chain."""
    entries, _ = await append_after(pool, drafts, None, key=key)
    return entries


async def append(
    pool: asyncpg.Pool,
    *,
    user_id: int | None,
    username: str,
    entity_id: int | None,
    action: str,
    target: str,
    peer: str,
    result: str,
    detail: str = "",
    key: bytes = b"",
) -> Entry:
    """Append one entry at the end of the chain."""
    draft = Draft(user_id, username, entity_id, action, target, peer, result, detail)
    (entry,) = await append_many(pool, [draft], key=key)
    return entry


#: Seconds an entry written behind its answer (`Writer.append_behind`) may wait to share a batch.
BEHIND_LINGER_S = 0.05
#: Entries written behind that may wait at once; past this, a call waits for its own entry again.
MAX_BEHIND = 10_000
#: Seconds between two tries while PostgreSQL cannot take the entries written behind.
BEHIND_RETRY_S = 0.5
#: Seconds `drain` keeps trying to write what is still pending when the service stops.
DRAIN_S = 5.0


class Writer:
    """Appends the entries of concurrent calls in batches: one transaction for many entries.

    `append` returns once its entry is committed. `append_behind` returns at once: the entry
    joins the next batch, written within `linger_s` (sooner when a caller waits on the batch),
    and retried while PostgreSQL is unreachable; it is for the outcome of a call that changed
    nothing (a read), whose answer need not wait for its trace (docs/security.md). While a batch is
    being written, new entries gather; the next batch takes them all (up to `max_batch`). The
    chain stays exact: one batch at a time in this process, and the primary key on `seq` orders
    batches across processes (`append_after`).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch: int = 500,
        key: bytes = b"",
        linger_s: float = BEHIND_LINGER_S,
    ) -> None:
        self._pool = pool
        self._key = key
        self._max_batch = max_batch
        self._linger_s = linger_s
        #: Drafts in order, with the future of the caller waiting on each (None: written behind).
        self._pending: list[tuple[Draft, asyncio.Future[Entry] | None]] = []
        self._behind = 0
        #: Set when a caller waits on the pending entries: the linger ends at once.
        self._waited = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        #: The end of the chain after this writer's last batch (None: read it first).
        self._tail: Tail | None = None

    @property
    def behind(self) -> int:
        """Entries written behind their answer that are not committed yet."""
        return self._behind

    async def append(self, draft: Draft) -> Entry:
        """Append one entry; return once it is committed."""
        done: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._pending.append((draft, done))
        self._waited.set()
        self._start()
        # Not shielded: a caller that hangs up cancels only its own wait; its entry stays in the
        # batch, and `_settle` skips a future that is already done.
        return await done

    async def append_behind(self, draft: Draft) -> None:
        """Append one entry without waiting for its commit (past MAX_BEHIND waiting ones, wait)."""
        if self._behind >= MAX_BEHIND:
            await self.append(draft)
            return
        self._pending.append((draft, None))
        self._behind += 1
        self._start()

    def _start(self) -> None:
        if self._flusher is None:
            # A task of its own: a caller that hangs up must not cancel the others' batch. It
            # ends when nothing is pending, so no task outlives the work.
            self._flusher = asyncio.create_task(self._flush(), name="audit-writer")

    async def drain(self) -> None:
        """Write what is pending (the service stops); give up after DRAIN_S, saying how much."""
        self._linger_s = 0.0  # from now on, every entry is written at once
        flusher = self._flusher
        if flusher is None:
            return
        self._waited.set()
        try:
            await asyncio.wait_for(asyncio.shield(flusher), DRAIN_S)
        except TimeoutError:
            logger.error("audit: %d entries written behind could not be written", self._behind)
            flusher.cancel()

    async def _flush(self) -> None:
        try:
            while self._pending:
                if not self._waited.is_set():
                    # Only entries written behind: let more join them, unless a caller waits.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._waited.wait(), self._linger_s)
                self._waited.clear()
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                if any(done is not None for _, done in self._pending):
                    self._waited.set()  # the next batch has a caller waiting too
                await self._write(batch)
        finally:
            self._flusher = None

    async def _write(self, batch: list[tuple[Draft, asyncio.Future[Entry] | None]]) -> None:
        try:
            entries, self._tail = await append_after(
                self._pool, [d for d, _ in batch], self._tail, key=self._key
            )
        except Exception as exc:  # noqa: BLE001 - sorted below; every failure reaches its caller
            if not _unreachable(exc):
                await self._refused(batch, exc)
                return
            self._tail = None
            behind = [(d, done) for d, done in batch if done is None]
            for _, done in batch:
                if done is not None:
                    _settle(done, exc)
            if behind:
                # Answered already: kept, in order, until PostgreSQL takes them.
                AUDIT_BATCHES.labels("retried").inc()
                logger.warning("audit: %d entries wait for PostgreSQL: %r", len(behind), exc)
                self._pending[:0] = behind
                await asyncio.sleep(BEHIND_RETRY_S)
            return
        for (_, done), entry in zip(batch, entries, strict=True):
            if done is None:
                self._behind -= 1
            else:
                _settle(done, entry)

    async def _refused(
        self, batch: list[tuple[Draft, asyncio.Future[Entry] | None]], exc: Exception
    ) -> None:
        """PostgreSQL refused the batch: find the entry it refuses, alone; the others are written.
        Not swallowed: a caller waiting on the refused entry raises it; one written behind is
        counted and logged (it cannot be retried into acceptance)."""
        if len(batch) > 1:
            for one in batch:
                await self._write([one])
            return
        draft, done = batch[0]
        if done is not None:
            _settle(done, exc)
            return
        self._behind -= 1
        AUDIT_BATCHES.labels("refused").inc()
        logger.error("audit: entry %s %s refused: %r", draft.action, draft.result, exc)


def _unreachable(exc: Exception) -> bool:
    """Whether `exc` says PostgreSQL could not be reached (worth trying again), rather than that
    it refused what was sent."""
    if isinstance(exc, asyncpg.PostgresError):
        # Class 08: connection exception; 57P: the server shutting down or starting.
        return str(exc.sqlstate or "").startswith(("08", "57P"))
    return isinstance(exc, DATABASE_UNAVAILABLE)


def _settle(done: asyncio.Future[Entry], outcome: Entry | Exception) -> None:
    if done.done():
        return
    if isinstance(outcome, Exception):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)


async def verify(pool: asyncpg.Pool, *, batch: int = 5000, key: bytes = b"") -> Verdict:
    """Walk the chain from the first entry; name the first entry that does not fit."""
    prev, expected_seq, count = GENESIS, 1, 0
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        cursor = conn.cursor("SELECT * FROM audit_log ORDER BY seq", prefetch=batch)
        async for row in cursor:
            entry = Entry(
                row["seq"],
                row["at"],
                row["user_id"],
                row["username"],
                row["entity_id"],
                row["action"],
                row["target"],
                row["peer"],
                row["result"],
                row["detail"],
            )
            if entry.seq != expected_seq:
                return Verdict(False, count, expected_seq, f"entry {expected_seq} is missing")
            if row["prev_hash"] != prev:
                return Verdict(
                    False, count, entry.seq, "prev_hash does not match the previous entry's hash"
                )
            if not hmac.compare_digest(chain_hash(prev, entry, key), row["hash"]):
                return Verdict(
                    False, count, entry.seq, "entry was altered: its hash does not match"
                )
            prev, expected_seq, count = row["hash"], expected_seq + 1, count + 1
    return Verdict(True, count)
