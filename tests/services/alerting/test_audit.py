"""The audit log: every action chained; edits refused, and detected when forced."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting import audit
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
