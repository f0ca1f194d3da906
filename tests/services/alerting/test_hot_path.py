"""What the hot path shares between calls: checked tokens, audit batches, preview counts."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc
import pytest
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting import audit
from services.alerting.alerts import Alerts
from services.alerting.auth import Claims, Principal, load_principal
from services.alerting.gate import Gate
from services.kernel.errors import Unauthenticated
from tests.services.alerting.conftest import (
    AUDIT_KEY,
    ENABLED_CHANNELS,
    ISSUER,
    JWT_KEY,
    UNITS,
    FakeBroadcasts,
    FakeTargeting,
    Harness,
    spec,
)


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


def _alerts(harness: Harness, targeting: FakeTargeting, clock: Clock) -> Alerts:
    """Alerts over the harness' database, with previews shared for 2 s on `clock`."""
    return Alerts(
        pool=harness.pool,
        redis=harness.redis,
        targeting=targeting,
        broadcasts=FakeBroadcasts(),
        enabled_channels=ENABLED_CHANNELS,
        units=UNITS,
        preview_cache_s=2.0,
        clock=clock,
    )


async def _user_id(harness: Harness, entity_id: int) -> int:
    users = await harness.admin.admin.ListUsers(
        pb.ListUsersRequest(entity_id=entity_id), metadata=harness.admin.metadata
    )
    return users.users[0].id


async def test_a_disabled_accounts_cached_token_stops_within_the_cache_time(
    harness: Harness,
) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    clock = Clock(now=time.time())
    gate = Gate(
        pool=harness.pool, jwt_key=JWT_KEY, token_issuer=ISSUER, auth_cache_s=1.0, clock=clock
    )
    who = await gate.authenticate(client.metadata)
    # Disabled straight in PostgreSQL, as another replica's DisableUser would.
    await harness.pool.execute("UPDATE users SET disabled = true WHERE id = $1", who.user_id)
    clock.now += 0.5
    assert await gate.authenticate(client.metadata) == who
    clock.now += 0.5
    with pytest.raises(Unauthenticated, match="disabled"):
        await gate.authenticate(client.metadata)


async def test_disable_user_stops_a_token_used_a_moment_ago_at_once(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    await client.alerts.ListAlerts(pb.ListAlertsRequest(), metadata=client.metadata)
    await harness.admin.admin.DisableUser(
        pb.DisableUserRequest(user_id=await _user_id(harness, gent.id)),
        metadata=harness.admin.metadata,
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.alerts.ListAlerts(pb.ListAlertsRequest(), metadata=client.metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_bad_token_is_never_cached(harness: Harness) -> None:
    gate = Gate(pool=harness.pool, jwt_key=JWT_KEY, token_issuer=ISSUER, auth_cache_s=1.0)
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="invalid token"):
            await gate.authenticate((("authorization", "Bearer not.a.token"),))


async def test_concurrent_calls_are_audited_in_batches_on_an_exact_chain(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    before = await harness.pool.fetchval("SELECT count(*) FROM audit_log")

    async def refused_get() -> None:
        with pytest.raises(grpc.aio.AioRpcError):
            await client.alerts.GetAlert(
                pb.GetAlertRequest(alert_id="not-an-id"), metadata=client.metadata
            )

    async def listed() -> None:
        await client.alerts.ListAlerts(pb.ListAlertsRequest(), metadata=client.metadata)

    await asyncio.gather(*(f() for _ in range(30) for f in (refused_get, listed)))
    query = "SELECT seq, at, action, result FROM audit_log WHERE seq > $1 ORDER BY seq"
    rows = await harness.pool.fetch(query, before)
    # The refusals were committed before their answers; the lists' entries follow within the
    # writer's linger (written behind: a read changed nothing).
    assert sum(r["result"] == "INVALID_ARGUMENT" for r in rows) == 30
    for _ in range(100):
        if len(rows) == 60:
            break
        await asyncio.sleep(0.05)
        rows = await harness.pool.fetch(query, before)
    assert len(rows) == 60
    assert sorted(r["result"] for r in rows) == ["INVALID_ARGUMENT"] * 30 + ["OK"] * 30
    # Entries of one batch share their time: fewer times than entries means batches of many.
    assert len({r["at"] for r in rows}) < len(rows)
    verdict = await harness.admin.admin.VerifyAudit(
        pb.VerifyAuditRequest(), metadata=harness.admin.metadata
    )
    assert verdict.ok


async def test_batches_and_single_appends_of_another_process_interleave_exactly(
    harness: Harness,
) -> None:
    writer = audit.Writer(harness.pool, max_batch=7, key=AUDIT_KEY)
    drafts = [audit.Draft(None, "", None, "Test", f"t{i}", "test", "OK") for i in range(40)]
    others = [
        audit.append(
            harness.pool,
            user_id=None,
            username="",
            entity_id=None,
            action="Other",
            target=f"o{i}",
            peer="cli",
            result="OK",
            key=AUDIT_KEY,
        )
        for i in range(10)
    ]
    written = await asyncio.gather(*(writer.append(d) for d in drafts), *others)
    assert len({e.seq for e in written}) == 50
    assert [e.target for e in written[:40]] == [d.target for d in drafts]
    verdict = await audit.verify(harness.pool, key=AUDIT_KEY)
    assert verdict.ok, verdict.reason


async def test_preview_counts_are_shared_for_the_cache_time_and_per_entity(
    harness: Harness,
) -> None:
    gent = await harness.entity("Stad Gent")
    other = await harness.entity("Gemeente Merelbeke")
    gent_client = await harness.issuer(gent.id, "mayor.gent")
    other_client = await harness.issuer(other.id, "mayor.merelbeke")
    created = [
        await c.alerts.CreateAlert(
            pb.CreateAlertRequest(idempotency_key=f"key-0000000{i}", spec=spec()),
            metadata=c.metadata,
        )
        for i, c in enumerate((gent_client, gent_client, other_client))
    ]
    targeting, clock = FakeTargeting(), Clock()
    alerts = _alerts(harness, targeting, clock)
    gent_issuer: Principal = await load_principal(
        harness.pool, claims=Claims(await _user_id(harness, gent.id), 0, 0)
    )
    other_issuer = await load_principal(
        harness.pool, claims=Claims(await _user_id(harness, other.id), 0, 0)
    )

    first = await alerts.preview(principal=gent_issuer, alert_id=created[0].id)
    # Another draft of the same entity asking the same: shared.
    assert await alerts.preview(principal=gent_issuer, alert_id=created[1].id) == first
    assert targeting.previewed == [gent.id]
    # The same request from another entity is never answered from Gent's counts.
    await alerts.preview(principal=other_issuer, alert_id=created[2].id)
    assert targeting.previewed == [gent.id, other.id]
    clock.now += 2.0
    await alerts.preview(principal=gent_issuer, alert_id=created[0].id)
    assert targeting.previewed == [gent.id, other.id, gent.id]


async def test_previews_that_miss_together_share_one_targeting_call(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    created = await client.alerts.CreateAlert(
        pb.CreateAlertRequest(idempotency_key="key-00000001", spec=spec()),
        metadata=client.metadata,
    )
    release = asyncio.Event()
    targeting = FakeTargeting(preview_hold=release)
    clock = Clock()
    alerts = _alerts(harness, targeting, clock)
    issuer = await load_principal(
        harness.pool, claims=Claims(await _user_id(harness, gent.id), 0, 0)
    )
    previews = [
        asyncio.create_task(alerts.preview(principal=issuer, alert_id=created.id)) for _ in range(6)
    ]
    # Every preview reads its alert, then asks targeting or joins the call in flight.
    await asyncio.sleep(0.5)
    release.set()
    answers = await asyncio.gather(*previews)
    assert targeting.previewed == [gent.id]
    assert all(a == answers[0] for a in answers)
    # Nothing is left in flight: the next miss after the cache time asks targeting again.
    clock.now += 3.0
    await alerts.preview(principal=issuer, alert_id=created.id)
    assert targeting.previewed == [gent.id, gent.id]


async def test_two_writers_taking_turns_chain_after_each_other(harness: Harness) -> None:
    from prometheus_client import REGISTRY

    def raced() -> float:
        value = REGISTRY.get_sample_value("tocsin_audit_batches_total", {"outcome": "raced"})
        return value or 0.0

    # Two processes' writers: each remembers the end it wrote, which the other then moves.
    first = audit.Writer(harness.pool, key=AUDIT_KEY)
    second = audit.Writer(harness.pool, key=AUDIT_KEY)
    before = raced()
    written = []
    for i in range(5):
        for writer in (first, second):
            draft = audit.Draft(None, "", None, "Test", f"turn{i}", "test", "OK")
            written.append(await writer.append(draft))
    seqs = [e.seq for e in written]
    assert seqs == list(range(seqs[0], seqs[0] + 10))
    # Every turn after each writer's first found the end moved, and chained again after it.
    assert raced() - before == 8
    verdict = await audit.verify(harness.pool, key=AUDIT_KEY)
    assert verdict.ok, verdict.reason
