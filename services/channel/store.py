"""PostgreSQL access of the channel worker: every write is one statement over arrays (no row loops).

Every channel has two tables of one shape (migrations/0003_sms.sql, 0010_channel.sql):
`<channel>_messages`, one row per recipient of an alert version, and `<channel>_message_ids`,
the operator's references that lead a late answer (receipt) back to its row. Columns keep the
names SMS gave them: `operator` is the route, `segments` the units, `message_ids` the references,
`bind` the connection that carried the delivery.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.channel.model import State

# Recipients to send: rows new to this call, plus rows still queued from an earlier attempt
# (a re-delivered or claimed entry, or an API batch) that no other live consumer holds ($6: this
# consumer, $7: the live ones): a copy queued again while another process still holds the
# recipient (a resumed send, Redis's data lost and re-derived) is left to that process, and is
# taken over once it is gone. DO UPDATE, not DO NOTHING: it waits for a concurrent writer of the
# row and then sees its committed state.
_QUEUE = """
INSERT INTO {messages} AS m (alert, version, address, operator, segments, holder)
SELECT DISTINCT ON (alert, version, address) alert, version, address, operator, segments,
       nullif($6, '')
FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[])
    AS u(alert, version, address, operator, segments)
ON CONFLICT (alert, version, address) DO UPDATE SET holder = EXCLUDED.holder
WHERE m.state = 'queued'
  AND (m.holder IS NULL OR m.holder = EXCLUDED.holder OR m.holder <> ALL($7::text[]))
RETURNING alert, version, address
"""

# Of the recipients a consumer holds, those still queued and held by it: the others were taken
# over by another consumer (or reached an outcome) while it was stalled (Consumer._fence).
_STILL_HELD = """
SELECT m.alert, m.version, m.address
FROM unnest($1::text[], $2::int[], $3::text[]) AS u(alert, version, address)
JOIN {messages} m ON m.alert = u.alert AND m.version = u.version AND m.address = u.address
WHERE m.state = 'queued' AND m.holder = $4
"""

# Submissions, and the operator's references that lead a late answer to the row, in one
# statement. A submission whose answer the recorder already holds (a receipt that came before
# the write) is written in its final state at once (`state`, `error`, `done`): one update of the
# row instead of two. References are written only for the rows the statement moves out of
# `queued`, from what the update returns (no second pass over the arrays, no join), so every
# reference that names an address is in that row's `message_ids` (a removal finds them there,
# retention._ERASE_ADDRESS); the copy a stalled consumer submitted after another took its work
# over leaves none: its receipt finds no row and changes nothing. Answers the progress moves per
# alert version and state reached.
_SUBMITTED = """
WITH upd AS (
    UPDATE {messages} m
    SET state = u.state, message_ids = string_to_array(u.ids, ' '), bind = u.bind,
        attempts = u.attempts, submitted_at = to_timestamp(u.at), error = nullif(u.error, ''),
        done_at = to_timestamp(nullif(u.done, 0))
    FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::int[],
                $7::float8[], $8::text[], $9::text[], $10::float8[], $11::text[])
        AS u(alert, version, address, ids, bind, attempts, at, state, error, done, operator)
    WHERE m.alert = u.alert AND m.version = u.version AND m.address = u.address
      AND m.state = 'queued'
    RETURNING m.alert, m.version, m.address, m.state, m.segments, m.message_ids,
              u.operator AS route
), ids AS (
    INSERT INTO {ids} (operator, message_id, alert, version, address)
    SELECT upd.route, mid, upd.alert, upd.version, upd.address
    FROM upd, unnest(upd.message_ids) AS mid
    WHERE mid <> ''
    ON CONFLICT (operator, message_id) DO UPDATE
    SET alert = EXCLUDED.alert, version = EXCLUDED.version, address = EXCLUDED.address
)
SELECT alert, version, NULL::text AS old, state, count(*) AS n, sum(segments) AS units
FROM upd GROUP BY alert, version, state
"""

# Outcomes reached without a receipt (failed, expired, cancelled, superseded, or delivered at
# once); never overwrites a row that already left `queued`. The units are the job's as it ended
# (a call is 1 unit once answered, though queued with 0). Answers the progress moves: a
# recipient delivered at once reached an operator, so its units count.
_FINAL = """
WITH ins AS (
    INSERT INTO {messages} AS m
        (alert, version, address, operator, segments, state, error, attempts, done_at)
    SELECT alert, version, address, operator, segments, state, nullif(error, ''), attempts,
           to_timestamp(at)
    FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[],
                $7::text[], $8::int[], $9::float8[])
        AS u(alert, version, address, operator, segments, state, error, attempts, at)
    ON CONFLICT (alert, version, address) DO UPDATE
    SET state = EXCLUDED.state, segments = EXCLUDED.segments, error = EXCLUDED.error,
        attempts = EXCLUDED.attempts, done_at = EXCLUDED.done_at
    WHERE m.state = 'queued'
    RETURNING m.alert, m.version, m.state, m.segments
)
SELECT alert, version, NULL::text AS old, state, count(*) AS n,
       coalesce(sum(segments) FILTER (WHERE state IN ('submitted', 'delivered')), 0) AS units
FROM ins GROUP BY alert, version, state
"""

# Receipts. Returns few rows whatever the batch size: one (kind 0) with the 1-based positions of
# the receipts that found no row, one per (operator, new state) (kind 1) with the seconds from
# submission to receipt of each row changed, and one per (alert, version, old, new state)
# (kind 2) with the progress moves. Each receipt finds its reference by index: the LATERAL ..
# LIMIT 1 keeps the planner from hashing the whole references table, which it prefers while the
# table is small (that scan was most of PostgreSQL's CPU per SMS). The first answer of a
# submitted row (`sent`) and a failure of another segment of a delivered text (`late`, the only
# overwrite of `delivered`) are two updates whose conditions on the row's state say its old
# state, so no second read of the row is needed for the progress moves; they never meet on one
# row (a row is either submitted or delivered when the statement starts), and a row a
# concurrent writer changed is left to that writer's change.
_RECEIPTS = """
WITH r AS (
    SELECT u.idx, u.state, u.error, u.at, f.alert, f.version, f.address
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[])
        WITH ORDINALITY AS u(operator, mid, state, error, at, idx)
    LEFT JOIN LATERAL (
        SELECT i.alert, i.version, i.address FROM {ids} i
        WHERE i.operator = u.operator AND i.message_id = u.mid
        LIMIT 1
    ) AS f ON true
), sent AS (
    UPDATE {messages} m
    SET state = r.state, error = nullif(r.error, ''), done_at = to_timestamp(r.at)
    FROM r
    WHERE m.alert = r.alert AND m.version = r.version AND m.address = r.address
      AND r.state <> '' AND m.state = 'submitted'
    RETURNING m.operator, m.alert, m.version, 'submitted'::text AS old, m.state, m.segments,
              r.at - date_part('epoch', m.submitted_at) AS latency
), late AS (
    UPDATE {messages} m
    SET state = r.state, error = nullif(r.error, ''), done_at = to_timestamp(r.at)
    FROM r
    WHERE m.alert = r.alert AND m.version = r.version AND m.address = r.address
      AND r.state NOT IN ('', 'delivered') AND m.state = 'delivered'
    RETURNING m.operator, m.alert, m.version, 'delivered'::text AS old, m.state, m.segments,
              r.at - date_part('epoch', m.submitted_at) AS latency
), upd AS (
    SELECT * FROM sent UNION ALL SELECT * FROM late
)
SELECT 0 AS kind, NULL::text AS operator, NULL::text AS state,
       array_agg(r.idx::int) AS unmatched, NULL::float8[] AS latencies,
       NULL::text AS alert, NULL::int AS version, NULL::text AS old, NULL::bigint AS n,
       NULL::bigint AS units
FROM r WHERE r.alert IS NULL
UNION ALL
SELECT 1, operator, state, NULL, array_agg(latency), NULL, NULL, NULL, NULL, NULL
FROM upd GROUP BY operator, state
UNION ALL
SELECT 2, NULL, state, NULL, NULL, alert, version, old, count(*), sum(segments)
FROM upd GROUP BY alert, version, old, state
"""

# Progress moves, summed per (alert, version, state), in key order so that two writers lock the
# counter rows in the same order; then one notification per alert, sent at commit.
_PROGRESS = """
WITH moved AS (
    INSERT INTO channel_progress AS p (alert, version, channel, state, recipients, units)
    SELECT alert, version, $1, state, sum(n), sum(units)
    FROM unnest($2::text[], $3::int[], $4::text[], $5::bigint[], $6::bigint[])
        AS u(alert, version, state, n, units)
    GROUP BY alert, version, state
    ORDER BY alert, version, state
    ON CONFLICT (alert, version, channel, state) DO UPDATE
    SET recipients = p.recipients + EXCLUDED.recipients, units = p.units + EXCLUDED.units
    RETURNING alert
)
SELECT pg_notify($7, alert) FROM (SELECT DISTINCT alert FROM moved) AS a
"""
#: The PostgreSQL notification channel of progress moves; the payload is the alert id.
PROGRESS_CHANNEL = "tocsin_progress"


# Units count once the recipient reached an operator, whatever came after. `version > 0` (always
# true) lets PostgreSQL use the index of one alert's rows, partial on it so that the writes by
# primary key never pick it (migrations/0110_message_keys.sql).
_COUNTS = """
SELECT version, state, count(*) AS n,
       sum(segments) FILTER (WHERE state IN ('submitted', 'delivered')
                                OR (state IN ('failed', 'expired')
                                    AND submitted_at IS NOT NULL)) AS units
FROM {messages}
WHERE alert = $1 AND version > 0 AND ($2::int IS NULL OR version = $2)
GROUP BY version, state
ORDER BY version
"""

_MESSAGE = """
SELECT alert, version, address, operator, segments, state, error, attempts
FROM {messages} WHERE alert = $1 AND address = $2
ORDER BY version DESC LIMIT 1
"""


# A removal's erasure and the recorder's writes, ordered (docs/security.md): the removal holds
# the channel's erasure lock while it renames the number's rows; each write of outcomes holds
# it shared from its first statement, and only then reads the tombstones. So a write is wholly
# before the renaming (which then finds its rows), or starts after it, knowing the tombstone.
#: Taken by a removal, per channel, before renaming the rows (services/channel/retention.py).
ERASE_LOCK = "SELECT pg_advisory_xact_lock($1)"
_BEGIN = "BEGIN; SELECT pg_advisory_xact_lock_shared({lock})"


def erase_lock(channel: str) -> int:
    """The advisory lock key of `channel`'s erasures (a signed 64-bit integer)."""
    return int.from_bytes(
        hashlib.sha256(f"tocsin.erase.{channel}".encode()).digest()[:8], "big", signed=True
    )


# A recipient erased while this worker held its work: the row under its clear address (queued
# after the erasure renamed it: the queue statement runs outside the lock) goes to its
# placeholder ($4); a copy queued twice beside an already renamed row is dropped first. By
# primary key, and only for the rare jobs of a tombstoned address.
_UNQUEUE_ERASED = """
DELETE FROM {messages} c
USING unnest($1::text[], $2::int[], $3::text[], $4::text[]) AS u(alert, version, address, p)
WHERE c.alert = u.alert AND c.version = u.version AND c.address = u.address
  AND c.state = 'queued'
  AND EXISTS (SELECT 1 FROM {messages} r
              WHERE r.alert = u.alert AND r.version = u.version AND r.address = u.p)
"""
_RENAME_ERASED = """
UPDATE {messages} m SET address = u.p, erased_at = now()
FROM unnest($1::text[], $2::int[], $3::text[], $4::text[]) AS u(alert, version, address, p)
WHERE m.alert = u.alert AND m.version = u.version AND m.address = u.address
  AND NOT EXISTS (SELECT 1 FROM {messages} r
                  WHERE r.alert = u.alert AND r.version = u.version AND r.address = u.p)
"""


@dataclass(frozen=True, slots=True)
class Tables:
    """The statements of one channel's tables."""

    channel: str
    queue: str
    submitted: str
    final: str
    receipts: str
    progress: str
    counts: str
    message: str
    #: BEGIN, and the channel's erasure lock shared, in one round trip.
    begin: str
    unqueue_erased: str
    rename_erased: str
    still_held: str

    @classmethod
    def of(cls, channel: str) -> Tables:
        """The statements over `<channel>_messages` and `<channel>_message_ids`."""
        if not channel.isidentifier() or not channel.islower():
            raise ValueError(f"channel name {channel!r} must be a lower-case identifier")
        names = {"messages": f"{channel}_messages", "ids": f"{channel}_message_ids"}
        return cls(
            channel=channel,
            queue=_QUEUE.format(**names),
            submitted=_SUBMITTED.format(**names),
            final=_FINAL.format(**names),
            receipts=_RECEIPTS.format(**names),
            progress=_PROGRESS,
            counts=_COUNTS.format(**names),
            message=_MESSAGE.format(**names),
            begin=_BEGIN.format(lock=erase_lock(channel)),
            unqueue_erased=_UNQUEUE_ERASED.format(**names),
            rename_erased=_RENAME_ERASED.format(**names),
            still_held=_STILL_HELD.format(**names),
        )


@dataclass(frozen=True, slots=True)
class ReceiptResult:
    """What applying a batch of receipts did."""

    #: 0-based positions of the receipts that found no row.
    unmatched: list[int]
    #: (operator, new state) -> seconds from submission to receipt, per row changed.
    changed: dict[tuple[str, str], list[float]]


async def queue(
    conn: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy,
    tables: Tables,
    *,
    alerts: Sequence[str],
    versions: Sequence[int],
    addresses: Sequence[str],
    operators: Sequence[str],
    segments: Sequence[int],
    holder: str = "",
    live: Sequence[str] = (),
) -> set[tuple[str, int, str]]:
    """Record recipients as queued, held by consumer `holder` ('': none yet, an API batch);
    return those to send: new, or still queued from before and not held by another of the
    `live` consumers."""
    rows = await conn.fetch(
        tables.queue, alerts, versions, addresses, operators, segments, holder, list(live)
    )
    return {(r[0], r[1], r[2]) for r in rows}


async def still_held(
    conn: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy,
    tables: Tables,
    keys: Sequence[tuple[str, int, str]],
    *,
    holder: str,
) -> set[tuple[str, int, str]]:
    """Of `keys` (alert, version, address), those still queued and held by `holder`."""
    rows = await conn.fetch(
        tables.still_held,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        holder,
    )
    return {(r[0], r[1], r[2]) for r in rows}


@dataclass(slots=True)
class Writes:
    """State changes to write in one transaction, as columns."""

    sub_alert: list[str]
    sub_version: list[int]
    sub_address: list[str]
    sub_operator: list[str]
    sub_ids: list[str]
    sub_bind: list[str]
    sub_attempts: list[int]
    sub_at: list[float]
    #: The state a submission is written in: `submitted`, or the answer already in hand.
    sub_state: list[str]
    sub_error: list[str]
    #: When that answer came (Unix time), 0 for none.
    sub_done: list[float]
    fin_alert: list[str]
    fin_version: list[int]
    fin_address: list[str]
    fin_operator: list[str]
    fin_segments: list[int]
    fin_state: list[str]
    fin_error: list[str]
    fin_attempts: list[int]
    fin_at: list[float]
    rc_operator: list[str]
    rc_mid: list[str]
    rc_state: list[str]
    rc_error: list[str]
    rc_at: list[float]
    #: Recipients erased while in hand: (alert, version, clear address) -> placeholder, whose
    #: row the erasure may have missed (queued after it).
    er_alert: list[str]
    er_version: list[int]
    er_address: list[str]
    er_placeholder: list[str]

    @classmethod
    def empty(cls) -> Writes:
        """No changes."""
        return cls(*([] for _ in range(29)))


class _Moves:
    """Progress moves of one transaction, as columns of (alert, version, state, n, units)."""

    def __init__(self) -> None:
        self.alert: list[str] = []
        self.version: list[int] = []
        self.state: list[str] = []
        self.n: list[int] = []
        self.units: list[int] = []

    def add(self, rows: Iterable[asyncpg.Record]) -> None:
        """Moves as the statements answer them: `old` loses what `state` gains (None: queued)."""
        for r in rows:
            n, units = int(r["n"]), int(r["units"] or 0)
            self._one(r["alert"], r["version"], r["state"], n, units)
            if r["old"] is not None:
                self._one(r["alert"], r["version"], r["old"], -n, -units)

    def _one(self, alert: str, version: int, state: str, n: int, units: int) -> None:
        self.alert.append(alert)
        self.version.append(version)
        self.state.append(state)
        self.n.append(n)
        self.units.append(units)


async def write(
    conn: asyncpg.Connection | PoolConnectionProxy,
    tables: Tables,
    w: Writes,
    *,
    prepare: Callable[[Writes], Awaitable[None]] | None = None,
) -> ReceiptResult:
    """Write submissions, final states and receipts in one transaction, in that order, and the
    progress counters they move; watchers are notified at commit. `prepare` runs once the
    channel's erasure lock is held, before anything is written (the recorder puts erased
    recipients under their placeholders there)."""
    await conn.execute(tables.begin)
    try:
        rows = await _write_in_transaction(conn, tables, w, prepare)
        await conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            if not conn.is_closed():
                await conn.execute("ROLLBACK")
        raise
    unmatched: list[int] = []
    changed: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r["kind"] == 0:
            unmatched = [i - 1 for i in r["unmatched"] or ()]
        elif r["kind"] == 1:
            changed[(r["operator"], r["state"])] = list(r["latencies"])
    return ReceiptResult(unmatched, changed)


async def _write_in_transaction(
    conn: asyncpg.Connection | PoolConnectionProxy,
    tables: Tables,
    w: Writes,
    prepare: Callable[[Writes], Awaitable[None]] | None,
) -> list[asyncpg.Record]:
    moves = _Moves()
    rows: list[asyncpg.Record] = []
    if prepare is not None:
        await prepare(w)
    if w.er_alert:
        erased = (w.er_alert, w.er_version, w.er_address, w.er_placeholder)
        await conn.execute(tables.unqueue_erased, *erased)
        await conn.execute(tables.rename_erased, *erased)
    if w.sub_alert:
        moves.add(
            await conn.fetch(
                tables.submitted,
                w.sub_alert,
                w.sub_version,
                w.sub_address,
                w.sub_ids,
                w.sub_bind,
                w.sub_attempts,
                w.sub_at,
                w.sub_state,
                w.sub_error,
                w.sub_done,
                w.sub_operator,
            )
        )
    if w.fin_alert:
        moves.add(
            await conn.fetch(
                tables.final,
                w.fin_alert,
                w.fin_version,
                w.fin_address,
                w.fin_operator,
                w.fin_segments,
                w.fin_state,
                w.fin_error,
                w.fin_attempts,
                w.fin_at,
            )
        )
    if w.rc_mid:
        rows = await conn.fetch(
            tables.receipts, w.rc_operator, w.rc_mid, w.rc_state, w.rc_error, w.rc_at
        )
        moves.add(r for r in rows if r["kind"] == 2)
    if moves.alert:
        await conn.execute(
            tables.progress,
            tables.channel,
            moves.alert,
            moves.version,
            moves.state,
            moves.n,
            moves.units,
            PROGRESS_CHANNEL,
        )
    return rows


async def counts(
    pool: asyncpg.Pool, tables: Tables, *, alert: str, version: int | None
) -> dict[int, tuple[dict[State, int], int]]:
    """Per version: recipients per state, and units handed to operators."""
    rows = await pool.fetch(tables.counts, alert, version)
    out: dict[int, tuple[dict[State, int], int]] = {}
    for r in rows:
        per_state, units = out.get(r["version"], ({}, 0))
        per_state[State(r["state"])] = int(r["n"])
        out[r["version"]] = (per_state, units + int(r["units"] or 0))
    return out


async def message(
    pool: asyncpg.Pool, tables: Tables, *, alert: str, address: str
) -> asyncpg.Record | None:
    """The newest version's row of one recipient, or None."""
    row: asyncpg.Record | None = await pool.fetchrow(tables.message, alert, address)
    return row
