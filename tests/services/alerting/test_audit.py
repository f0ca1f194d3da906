"""The audit log: every action chained; edits refused, and detected when forced."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import grpc
import pytest
from prometheus_client import REGISTRY
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting import audit
from stack.embedded import start_postgres
from stack.migrate import apply_migrations
from tests.services.alerting.conftest import AUDIT_KEY, Harness, spec


async def verify(harness: Harness) -> pb.VerifyAuditResponse:
    """VerifyAudit as the admin."""
    return await harness.admin.admin.VerifyAudit(
        pb.VerifyAuditRequest(), metadata=harness.admin.metadata
    )


async def test_audit_chain_detects_an_edited_entry(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    await client.alerts.CreateAlert(
        pb.CreateAlertRequest(idempotency_key="key-00000001", spec=spec()),
        metadata=client.metadata,
    )
    verdict = await verify(harness)
    assert verdict.ok
    entries = await harness.pool.fetch("SELECT seq, action, result FROM audit_log ORDER BY seq")
    steps = [(r["action"], r["result"]) for r in entries]
    assert steps[:7] == [
        ("Login", "OK"),
        ("CreateEntity", "STARTED"),  # the intent, written before the entity exists
        ("CreateEntity", "OK"),
        ("CreateUser", "STARTED"),
        ("CreateUser", "OK"),
        ("Login", "OK"),
        ("CreateAlert", "OK"),
    ]
    assert verdict.entries == len(entries) - 1  # VerifyAudit itself is audited after

    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await harness.pool.execute("UPDATE audit_log SET result = 'OK' WHERE seq = 2")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await harness.pool.execute("DELETE FROM audit_log WHERE seq = 2")

    # A superuser may switch the trigger off; the chain still tells.
    async with harness.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete")
        await conn.execute("UPDATE audit_log SET username = 'someone-else' WHERE seq = 3")
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete")
    verdict = await verify(harness)
    assert not verdict.ok
    assert verdict.first_broken_seq == 3
    assert "altered" in verdict.reason
    assert (await audit.verify(harness.pool, key=AUDIT_KEY)).first_broken_seq == 3


async def test_audit_chain_detects_a_removed_entry(harness: Harness) -> None:
    await harness.entity("Stad Gent")
    async with harness.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete")
        await conn.execute("DELETE FROM audit_log WHERE seq = 1")
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete")
    verdict = await audit.verify(harness.pool, key=AUDIT_KEY)
    assert not verdict.ok
    assert verdict.first_broken_seq == 1


async def test_a_chain_rewritten_without_the_key_is_detected(harness: Harness) -> None:
    await harness.entity("Stad Gent")
    rows = await harness.pool.fetch("SELECT * FROM audit_log ORDER BY seq")
    # Whoever writes the database recomputes every hash after an edit, but without the key.
    prev = audit.GENESIS
    async with harness.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete")
        for row in rows:
            fields = {k: row[k] for k in audit.LIMITS}
            if row["seq"] == 2:
                fields["username"] = "someone-else"
            entry = audit.Entry(
                row["seq"], row["at"], row["user_id"], entity_id=row["entity_id"], **fields
            )
            digest = audit.chain_hash(prev, entry)
            await conn.execute(
                "UPDATE audit_log SET username = $2, prev_hash = $3, hash = $4 WHERE seq = $1",
                row["seq"],
                fields["username"],
                prev,
                digest,
            )
            prev = digest
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete")
    verdict = await audit.verify(harness.pool, key=AUDIT_KEY)
    assert (verdict.ok, verdict.first_broken_seq) == (False, 1)


async def test_anonymous_refusals_cannot_fill_the_audit_log(harness: Harness) -> None:
    before = await harness.pool.fetchval("SELECT count(*) FROM audit_log")
    for i in range(60):
        with pytest.raises(grpc.aio.AioRpcError):
            await harness.admin.alerts.ListAlerts(
                pb.ListAlertsRequest(), metadata=(("authorization", f"Bearer forged-{i}"),)
            )
    written = await harness.pool.fetch(
        "SELECT username, target, detail FROM audit_log WHERE seq > $1", before
    )
    assert 0 < len(written) < 60
    long_name = "x" * 5000
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.admin.auth.Login(pb.LoginRequest(username="ab", password=long_name))
    stored = await harness.pool.fetch("SELECT target, detail FROM audit_log")
    assert max(len(r["target"]) for r in stored) <= audit.LIMITS["target"]
    assert max(len(r["detail"]) for r in stored) <= audit.LIMITS["detail"]


def _retried() -> float:
    return REGISTRY.get_sample_value("tocsin_audit_batches_total", {"outcome": "retried"}) or 0.0


def _draft(i: int, action: str = "GetAlert") -> audit.Draft:
    return audit.Draft(7, "mayor.gent", 1, action, f"target-{i}", "ipv4:127.0.0.1:1", "OK")


async def _actions(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT action, target FROM audit_log ORDER BY seq")
    return [f"{r['action']}:{r['target']}" for r in rows]


async def test_an_entry_written_behind_waits_for_the_next_batch_in_its_place(
    pg_pool: asyncpg.Pool,
) -> None:
    writer = audit.Writer(pg_pool, key=AUDIT_KEY, linger_s=30.0)
    await writer.append_behind(_draft(1))
    await writer.append_behind(_draft(2))
    # Returned at once: nothing committed yet, both held for the batch (a 30 s linger here).
    assert await _actions(pg_pool) == []
    assert writer.behind == 2
    # A caller that waits on its own entry takes them along, in the order they came.
    await writer.append(_draft(3, "SendAlert"))
    assert await _actions(pg_pool) == [
        "GetAlert:target-1",
        "GetAlert:target-2",
        "SendAlert:target-3",
    ]
    assert writer.behind == 0
    # What is still behind when the service stops is written by drain, at once.
    await writer.append_behind(_draft(4))
    await writer.drain()
    assert (await _actions(pg_pool))[-1] == "GetAlert:target-4"
    assert (await audit.verify(pg_pool, key=AUDIT_KEY)).ok


async def test_entries_written_behind_outlive_a_postgresql_restart(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    server = await asyncio.to_thread(start_postgres, data_dir=data, fast_unsafe=True)
    port = urlsplit(server.url).port
    try:
        await asyncio.to_thread(apply_migrations, server.url)
        pool = await asyncpg.create_pool(server.url, min_size=0, max_size=2)
        writer = audit.Writer(pool, key=AUDIT_KEY, linger_s=0.0)
        await writer.append(_draft(0, "Login"))
        await asyncio.to_thread(server.stop)
        retried = _retried()
        for i in range(1, 4):
            await writer.append_behind(_draft(i))
        # Refused while PostgreSQL is down, and kept: the calls were answered already.
        for _ in range(200):
            if _retried() > retried:
                break
            await asyncio.sleep(0.05)
        assert _retried() > retried
        assert writer.behind == 3
        server = await asyncio.to_thread(start_postgres, data_dir=data, port=port, fast_unsafe=True)
        await writer.drain()
        assert writer.behind == 0
        assert await _actions(pool) == ["Login:target-0"] + [
            f"GetAlert:target-{i}" for i in range(1, 4)
        ]
        assert (await audit.verify(pool, key=AUDIT_KEY)).ok
        await pool.close()
    finally:
        await asyncio.to_thread(server.stop)
