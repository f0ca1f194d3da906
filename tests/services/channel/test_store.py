"""The worker's statements on a real PostgreSQL: states, references and progress counters."""

from __future__ import annotations

import time

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.channel import store

TABLES = store.Tables.of("voice")


def _submission(
    w: store.Writes, address: str, ref: str, *, answer: tuple[str, str, float] | None = None
) -> None:
    w.sub_alert.append("a-1")
    w.sub_version.append(1)
    w.sub_address.append(address)
    w.sub_operator.append("trunk")
    w.sub_ids.append(ref)
    w.sub_bind.append("trunk-0")
    w.sub_attempts.append(1)
    w.sub_at.append(time.time())
    state, error, done = answer or ("submitted", "", 0.0)
    w.sub_state.append(state)
    w.sub_error.append(error)
    w.sub_done.append(done)


def _receipt(w: store.Writes, ref: str, state: str, error: str = "") -> None:
    w.rc_operator.append("trunk")
    w.rc_mid.append(ref)
    w.rc_state.append(state)
    w.rc_error.append(error)
    w.rc_at.append(time.time())


async def _queued_by(
    conn: PoolConnectionProxy, holder: str, live: list[str], *addresses: str, units: int = 1
) -> set[str]:
    """The addresses that consumer `holder` ('': none, an API batch) is told to send, with
    `live` consumers alive."""
    n = len(addresses)
    send = await store.queue(
        conn,
        TABLES,
        alerts=["a-1"] * n,
        versions=[1] * n,
        addresses=list(addresses),
        operators=["trunk"] * n,
        segments=[units] * n,
        holder=holder,
        live=live,
    )
    return {address for _, _, address in send}


async def _queue(conn: PoolConnectionProxy, *addresses: str, units: int = 0) -> None:
    send = await _queued_by(conn, "", [], *addresses, units=units)
    assert send == set(addresses)


async def _progress(conn: PoolConnectionProxy) -> dict[str, tuple[int, int]]:
    rows = await conn.fetch(
        "SELECT state, recipients, units FROM channel_progress WHERE channel = 'voice'"
    )
    return {r["state"]: (r["recipients"], r["units"]) for r in rows if r["recipients"]}


async def test_a_final_state_writes_the_units_the_job_ended_with(pg_pool: asyncpg.Pool) -> None:
    async with pg_pool.acquire() as conn:
        await _queue(conn, "+3212", units=0)  # a call costs nothing until it is answered
        w = store.Writes.empty()
        w.fin_alert.append("a-1")
        w.fin_version.append(1)
        w.fin_address.append("+3212")
        w.fin_operator.append("trunk")
        w.fin_segments.append(1)
        w.fin_state.append("delivered")
        w.fin_error.append("")
        w.fin_attempts.append(1)
        w.fin_at.append(time.time())
        await store.write(conn, TABLES, w)
        row = await conn.fetchrow("SELECT state, segments FROM voice_messages")
        assert row is not None
        assert (row["state"], row["segments"]) == ("delivered", 1)
        assert await _progress(conn) == {"delivered": (1, 1)}


async def test_a_submission_with_its_answer_in_hand_is_written_final_at_once(
    pg_pool: asyncpg.Pool,
) -> None:
    async with pg_pool.acquire() as conn:
        await _queue(conn, "+3201", "+3202", units=1)
        w = store.Writes.empty()
        _submission(w, "+3201", "r1", answer=("failed", "UNDELIV", time.time()))
        _submission(w, "+3202", "r2")
        result = await store.write(conn, TABLES, w)
        assert result.unmatched == []
        rows = await conn.fetch(
            "SELECT address, state, error, message_ids, done_at IS NOT NULL AS done"
            " FROM voice_messages ORDER BY address"
        )
        assert [tuple(r) for r in rows] == [
            ("+3201", "failed", "UNDELIV", ["r1"], True),
            ("+3202", "submitted", None, ["r2"], False),
        ]
        assert await _progress(conn) == {"failed": (1, 1), "submitted": (1, 1)}
        # Both references are kept: a receipt sent again finds its row and changes nothing.
        w = store.Writes.empty()
        _receipt(w, "r1", "failed", "UNDELIV")
        _receipt(w, "r2", "delivered")
        _receipt(w, "nobody", "delivered")
        result = await store.write(conn, TABLES, w)
        assert result.unmatched == [2]
        assert list(result.changed) == [("trunk", "delivered")]
        assert await _progress(conn) == {"failed": (1, 1), "delivered": (1, 1)}


async def test_a_submission_of_a_row_another_consumer_finished_leaves_no_reference(
    pg_pool: asyncpg.Pool,
) -> None:
    async with pg_pool.acquire() as conn:
        await _queue(conn, "+3204", units=1)
        w = store.Writes.empty()
        _submission(w, "+3204", "first")
        _receipt(w, "first", "delivered")
        await store.write(conn, TABLES, w)
        # A consumer that stalled while another took its work over submits the copy it held.
        w = store.Writes.empty()
        _submission(w, "+3204", "copy")
        await store.write(conn, TABLES, w)
        refs = await conn.fetch("SELECT message_id, address FROM voice_message_ids")
        assert [tuple(r) for r in refs] == [("first", "+3204")]
        # The copy's failure answer finds no row: the delivered outcome stands.
        w = store.Writes.empty()
        _receipt(w, "copy", "failed", "UNDELIV")
        result = await store.write(conn, TABLES, w)
        assert result.unmatched == [0]
        row = await conn.fetchrow("SELECT state, message_ids FROM voice_messages")
        assert row is not None
        assert (row["state"], row["message_ids"]) == ("delivered", ["first"])


async def test_a_failed_segment_overwrites_delivered_and_moves_the_counters(
    pg_pool: asyncpg.Pool,
) -> None:
    async with pg_pool.acquire() as conn:
        await _queue(conn, "+3203", units=2)
        w = store.Writes.empty()
        _submission(w, "+3203", "s1 s2")
        _receipt(w, "s1", "delivered")
        await store.write(conn, TABLES, w)
        assert await _progress(conn) == {"delivered": (1, 2)}
        w = store.Writes.empty()
        _receipt(w, "s2", "failed", "UNDELIV")
        _receipt(w, "s1", "delivered")  # sent again: a delivered row stays as it is
        result = await store.write(conn, TABLES, w)
        assert result.unmatched == []
        assert list(result.changed) == [("trunk", "failed")]
        row = await conn.fetchrow("SELECT state, error FROM voice_messages")
        assert row is not None
        assert tuple(row) == ("failed", "UNDELIV")
        assert await _progress(conn) == {"failed": (1, 2)}


async def test_a_queued_recipient_held_by_a_live_consumer_is_not_sent_by_another(
    pg_pool: asyncpg.Pool,
) -> None:
    async with pg_pool.acquire() as conn:
        # An API batch: queued before any consumer holds it; the first consumer takes it.
        assert await _queued_by(conn, "", [], "+3201", "+3202") == {"+3201", "+3202"}
        assert await _queued_by(conn, "A", ["A", "B"], "+3201", "+3202") == {"+3201", "+3202"}
        # A copy queued again (a resumed send) read by B while A, alive, holds both: left to A.
        assert await _queued_by(conn, "B", ["A", "B"], "+3201", "+3202", "+3203") == {"+3203"}
        # A itself, reading a copy of its own (its in-memory holding then drops it), or after
        # a restart under the same name: told to send.
        assert await _queued_by(conn, "A", ["A", "B"], "+3201") == {"+3201"}
        # A gone (no longer reporting): B takes its recipients over, and then holds them.
        assert await _queued_by(conn, "B", ["B"], "+3201", "+3202") == {"+3201", "+3202"}
        assert await _queued_by(conn, "A", ["A", "B"], "+3201", "+3202") == set()
        holders = await conn.fetch("SELECT address, holder FROM voice_messages ORDER BY address")
        assert [(r["address"], r["holder"]) for r in holders] == [
            ("+3201", "B"),
            ("+3202", "B"),
            ("+3203", "B"),
        ]
        # A recipient with an outcome is never sent again, whoever asks.
        await conn.execute("UPDATE voice_messages SET state = 'submitted' WHERE address = '+3201'")
        assert await _queued_by(conn, "B", ["B"], "+3201") == set()
