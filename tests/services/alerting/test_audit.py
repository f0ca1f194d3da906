"""The audit log: every action chained; edits refused, and detected when forced."""

from __future__ import annotations

import asyncpg
import pytest
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting import audit
from tests.services.alerting.conftest import Harness, spec


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
    actions = [r["action"] for r in entries]
    assert actions[:5] == ["Login", "CreateEntity", "CreateUser", "Login", "CreateAlert"]
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
    assert (await audit.verify(harness.pool)).first_broken_seq == 3


async def test_audit_chain_detects_a_removed_entry(harness: Harness) -> None:
    await harness.entity("Stad Gent")
    async with harness.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete")
        await conn.execute("DELETE FROM audit_log WHERE seq = 1")
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete")
    verdict = await audit.verify(harness.pool)
    assert not verdict.ok
    assert verdict.first_broken_seq == 1
