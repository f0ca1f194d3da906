"""Delivery records keep a number for the retention period only; a removal erases it at once."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from services.channel.retention import _ERASE_OLD, _sql, erase_address, erase_older_than

OLD, NEW, GONE = "+32470000001", "+32470000002", "+32470000003"


async def _rows(pool: asyncpg.Pool) -> None:
    await pool.execute(
        """
        INSERT INTO sms_messages
            (alert, version, address, operator, segments, state, created_at, message_ids)
        VALUES ('a1', 1, $1, 'proximus', 2, 'delivered', now() - interval '40 days', '{m1}'),
               ('a1', 1, $3, 'orange', 1, 'failed', now() - interval '40 days', '{}'),
               ('a2', 1, $2, 'proximus', 1, 'delivered', now(), '{}'),
               ('a2', 1, $3, 'orange', 1, 'submitted', now(), '{m2}')
        """,
        OLD,
        NEW,
        GONE,
    )
    await pool.execute(
        "INSERT INTO sms_message_ids VALUES ('proximus', 'm1', 'a1', 1, $1),"
        " ('orange', 'm2', 'a2', 1, $2)",
        OLD,
        GONE,
    )


async def test_old_numbers_are_erased_keeping_what_billing_needs(pg_pool: asyncpg.Pool) -> None:
    await _rows(pg_pool)
    assert await erase_older_than(pg_pool, keep=timedelta(days=30)) == 2
    rows = await pg_pool.fetch(
        "SELECT alert, address, operator, segments, state, erased_at IS NOT NULL AS erased"
        " FROM sms_messages ORDER BY alert, operator"
    )
    kept = {(r["alert"], r["operator"], r["segments"], r["state"]) for r in rows}
    assert kept == {
        ("a1", "proximus", 2, "delivered"),
        ("a1", "orange", 1, "failed"),
        ("a2", "proximus", 1, "delivered"),
        ("a2", "orange", 1, "submitted"),
    }
    addresses = [r["address"] for r in rows if r["alert"] == "a1"]
    assert all(a.startswith("erased:") for a in addresses)
    assert OLD not in str(await pg_pool.fetch("SELECT * FROM sms_message_ids"))
    assert await erase_older_than(pg_pool, keep=timedelta(days=30)) == 0


async def test_a_removed_citizens_number_is_erased_at_once(pg_pool: asyncpg.Pool) -> None:
    await _rows(pg_pool)
    assert await erase_address(pg_pool, address=GONE) == 2
    dump = str(await pg_pool.fetch("SELECT * FROM sms_messages")) + str(
        await pg_pool.fetch("SELECT * FROM sms_message_ids")
    )
    assert GONE not in dump
    assert NEW in dump
    # The reference follows its row to the placeholder: a late receipt still finds the row.
    (ref,) = await pg_pool.fetch("SELECT address FROM sms_message_ids WHERE message_id = 'm2'")
    (row,) = await pg_pool.fetch("SELECT address FROM sms_messages WHERE 'm2' = ANY(message_ids)")
    assert ref["address"] == row["address"]
    assert row["address"].startswith("erased:")


async def test_voice_and_email_records_are_erased_too(pg_pool: asyncpg.Pool) -> None:
    mail = "gone@gent.example"
    for table, address in (("voice_messages", GONE), ("email_messages", mail)):
        await pg_pool.execute(
            f"INSERT INTO {table} (alert, version, address, operator, segments, state, created_at)"
            " VALUES ('a1', 1, $1, 'trunk', 1, 'delivered', now() - interval '40 days'),"
            " ('a2', 1, $2, 'trunk', 1, 'delivered', now())",
            address,
            NEW,
        )
    # Age: each channel's own retention task.
    assert await erase_older_than(pg_pool, keep=timedelta(days=30), channel="voice") == 1
    assert await erase_older_than(pg_pool, keep=timedelta(days=30), channel="email") == 1
    voice = await pg_pool.fetch("SELECT address FROM voice_messages ORDER BY alert")
    assert voice[0]["address"].startswith("erased:")
    assert voice[1]["address"] == NEW
    # A removal: every channel at once, the e-mail address as the number.
    assert await erase_address(pg_pool, address=NEW) == 2
    dump = str(await pg_pool.fetch("SELECT * FROM voice_messages")) + str(
        await pg_pool.fetch("SELECT * FROM email_messages")
    )
    assert NEW not in dump
    assert mail not in dump


async def test_age_erasure_deletes_its_rows_references_by_their_key(pg_pool: asyncpg.Pool) -> None:
    await _rows(pg_pool)
    # The same SMSC id from another operator names a recent row: not the old row's reference.
    await pg_pool.execute("INSERT INTO sms_message_ids VALUES ('orange', 'm1', 'a2', 1, $1)", NEW)
    # Enough references that reading them all would be the plan's choice if the key did not serve.
    await pg_pool.execute(
        "INSERT INTO sms_message_ids SELECT 'base', 'x' || g, 'a9', 1, '+3247' || g"
        " FROM generate_series(1, 20000) AS g"
    )
    await pg_pool.execute("ANALYZE sms_message_ids")
    await pg_pool.execute("ANALYZE sms_messages")
    sql = _sql(_ERASE_OLD, "sms").replace("$1::interval", "'30 days'::interval")
    plan = "\n".join(r[0] for r in await pg_pool.fetch("EXPLAIN " + sql.replace("$2", "5000")))
    assert "Seq Scan on sms_message_ids" not in plan, plan
    assert await erase_older_than(pg_pool, keep=timedelta(days=30)) == 2
    refs = await pg_pool.fetch("SELECT operator, message_id, address FROM sms_message_ids")
    assert {(r[0], r[1], r[2]) for r in refs if r[0] != "base"} == {
        ("orange", "m1", NEW),
        ("orange", "m2", GONE),
    }
    assert sum(r[0] == "base" for r in refs) == 20000
