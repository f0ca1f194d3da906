"""The cost ledger: prepaid first, an emergency goes postpaid, others are refused or postpaid."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from prometheus_client import REGISTRY
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting import progress
from services.alerting.model import Channel
from services.alerting.ports import Sent
from tests.services.alerting.conftest import Client, Harness, spec


async def create_and_send(client: Client, alert_spec: pb.AlertSpec, key: str) -> pb.Alert:
    """Create a draft and send it."""
    alert = await client.alerts.CreateAlert(
        pb.CreateAlertRequest(idempotency_key=key, spec=alert_spec), metadata=client.metadata
    )
    return await client.alerts.SendAlert(
        pb.SendAlertRequest(alert_id=alert.id), metadata=client.metadata
    )


async def watch_to_end(client: Client, alert_id: str) -> pb.AlertProgress:
    """The last WatchAlert message."""
    seen = [
        p
        async for p in client.alerts.WatchAlert(
            pb.WatchAlertRequest(alert_id=alert_id), metadata=client.metadata
        )
    ]
    return seen[-1]


async def test_emergency_exhausts_prepaid_then_goes_postpaid(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    admin = harness.admin
    topped = await admin.admin.AddPrepaidPackage(
        pb.AddPrepaidPackageRequest(entity_id=gent.id, units=50_000), metadata=admin.metadata
    )
    assert topped.prepaid_units == 50_000
    client = await harness.issuer(gent.id, "mayor.gent")
    harness.targeting.audience = {Channel.SMS: {"nl": 60_000}}
    draft = await client.alerts.CreateAlert(
        pb.CreateAlertRequest(
            idempotency_key="emergency-1", spec=spec(channels=(pb.CHANNEL_SMS,), languages=("nl",))
        ),
        metadata=client.metadata,
    )
    preview = await client.alerts.PreviewAlert(
        pb.PreviewAlertRequest(alert_id=draft.id), metadata=client.metadata
    )
    assert (preview.units_from_prepaid, preview.units_postpaid) == (50_000, 10_000)
    assert not preview.would_be_refused
    sent = await client.alerts.SendAlert(
        pb.SendAlertRequest(alert_id=draft.id), metadata=client.metadata
    )
    assert sent.state == pb.ALERT_STATE_SENT
    harness.deliveries.reports[draft.id] = {
        Channel.SMS: Sent(submitted=60_000, delivered=60_000, units=60_000)
    }
    last = await watch_to_end(client, draft.id)
    assert last.state == pb.ALERT_STATE_COMPLETE
    assert last.units == 60_000
    final = await client.alerts.GetAlert(
        pb.GetAlertRequest(alert_id=draft.id), metadata=client.metadata
    )
    assert (final.units_prepaid, final.units_postpaid) == (50_000, 10_000)
    # Watching again charges nothing twice.
    await watch_to_end(client, draft.id)
    month = datetime.now(UTC).strftime("%Y-%m")
    report = await client.admin.GetUsageReport(
        pb.GetUsageReportRequest(entity_id=gent.id, month=month), metadata=client.metadata
    )
    lines = {line.item: (line.quantity, line.amount_cents) for line in report.lines}
    assert lines == {
        "activation": (1, 20_000),
        "subscription": (1, 78_888),
        "package": (50_000, 275_000),
        "units_prepaid": (50_000, 0),
        "units_postpaid": (10_000, 55_000),  # 10,000 x EUR 0.055
    }
    assert report.total_cents == 20_000 + 78_888 + 275_000 + 55_000
    assert (report.units_prepaid, report.units_postpaid) == (50_000, 10_000)
    assert report.prepaid_units_left == 0
    assert report.alerts_sent == 1
    assert dict(report.alerts_by_kind) == {"emergency": 1}


async def test_non_emergency_without_prepaid_is_refused_unless_postpaid(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    admin = harness.admin
    await admin.admin.AddPrepaidPackage(
        pb.AddPrepaidPackageRequest(entity_id=gent.id, units=50_000), metadata=admin.metadata
    )
    client = await harness.issuer(gent.id, "mayor.gent")
    harness.targeting.audience = {Channel.SMS: {"nl": 50_001}}
    general = spec(
        kind=pb.ALERT_KIND_GENERAL_INTEREST, channels=(pb.CHANNEL_SMS,), languages=("nl",)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create_and_send(client, general, "general-1")
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "short of 1 units" in (info.value.details() or "")
    draft_id = (
        (await client.alerts.ListAlerts(pb.ListAlertsRequest(), metadata=client.metadata))
        .alerts[0]
        .id
    )
    preview = await client.alerts.PreviewAlert(
        pb.PreviewAlertRequest(alert_id=draft_id), metadata=client.metadata
    )
    assert preview.would_be_refused
    assert harness.targeting.resolved == []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.admin.AddPrepaidPackage(
            pb.AddPrepaidPackageRequest(entity_id=gent.id, units=12_345), metadata=admin.metadata
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await admin.admin.SetBilling(
        pb.SetBillingRequest(entity_id=gent.id, postpaid=True), metadata=admin.metadata
    )
    sent = await client.alerts.SendAlert(
        pb.SendAlertRequest(alert_id=draft_id), metadata=client.metadata
    )
    assert sent.state == pb.ALERT_STATE_SENT


async def test_live_alerts_are_charged_and_expired_without_a_watcher(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent", postpaid=True)
    client = await harness.issuer(gent.id, "mayor.gent")
    one = await create_and_send(client, spec(channels=(pb.CHANNEL_SMS,)), "live-0001")
    two = await create_and_send(client, spec(channels=(pb.CHANNEL_SMS,)), "live-0002")
    harness.deliveries.reports[one.id] = {Channel.SMS: Sent(submitted=15, delivered=9, units=30)}
    await harness.pool.execute(
        "UPDATE alerts SET expires_at = now() - interval '1 minute' WHERE id = $1::uuid", two.id
    )
    await progress.settle_live(harness.pool, deliveries=harness.deliveries)
    first = await client.alerts.GetAlert(
        pb.GetAlertRequest(alert_id=one.id), metadata=client.metadata
    )
    assert first.state == pb.ALERT_STATE_SENT
    assert first.units_postpaid == 30
    second = await client.alerts.GetAlert(
        pb.GetAlertRequest(alert_id=two.id), metadata=client.metadata
    )
    assert second.state == pb.ALERT_STATE_EXPIRED
    assert REGISTRY.get_sample_value("tocsin_alerts_live", {"kind": "emergency"}) == 1
    # Late units of the expired alert are still charged.
    harness.deliveries.reports[two.id] = {Channel.SMS: Sent(submitted=2, delivered=2, units=2)}
    await progress.settle_live(harness.pool, deliveries=harness.deliveries)
    second = await client.alerts.GetAlert(
        pb.GetAlertRequest(alert_id=two.id), metadata=client.metadata
    )
    assert second.units_postpaid == 2
