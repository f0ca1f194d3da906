"""Cell broadcast and LB-SMS: requested with the CAP document, withdrawn on cancel, not blocking."""

from __future__ import annotations

import grpc
import pytest
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting import cap
from services.kernel.errors import Unimplemented
from tests.services.alerting.conftest import TERRITORY, Client, Harness, spec

PRESENCE = (pb.CHANNEL_SMS, pb.CHANNEL_CELL_BROADCAST, pb.CHANNEL_LB_SMS)


async def sent_alert(harness: Harness) -> tuple[Client, pb.Alert]:
    """An emergency on SMS, cell broadcast and LB-SMS, sent by Gent's mayor."""
    gent = await harness.entity("Stad Gent", postpaid=True)
    client = await harness.issuer(gent.id, "mayor.gent")
    draft = await client.alerts.CreateAlert(
        pb.CreateAlertRequest(idempotency_key="presence-1", spec=spec(channels=PRESENCE)),
        metadata=client.metadata,
    )
    sent = await client.alerts.SendAlert(
        pb.SendAlertRequest(alert_id=draft.id), metadata=client.metadata
    )
    return client, sent


def progress(alert: pb.Alert) -> dict[int, pb.ChannelProgress]:
    """Progress by channel."""
    return {p.channel: p for p in alert.progress}


async def test_presence_channels_are_requested_with_the_cap_document(harness: Harness) -> None:
    harness.broadcasts.refusing = frozenset({"opB"})
    client, sent = await sent_alert(harness)
    requests = harness.broadcasts.broadcasts
    assert [r["lb_sms"] for r in requests] == [False, True]
    for request in requests:
        assert request["alert_id"] == sent.id
        assert request["cells"] == harness.targeting.cell_ids
        document = cap.parse(request["cap_xml"])
        assert (document.msg_type, document.status) == ("Alert", "Actual")
    by_channel = progress(sent)
    for channel in (pb.CHANNEL_CELL_BROADCAST, pb.CHANNEL_LB_SMS):
        counts = by_channel[channel]
        assert (counts.targeted, counts.submitted, counts.failed) == (7, 4, 3)  # opB refused
    preview = await client.alerts.PreviewAlert(
        pb.PreviewAlertRequest(alert_id=sent.id), metadata=client.metadata
    )
    assert preview.cells == 7

    updated = await client.alerts.UpdateAlert(
        pb.UpdateAlertRequest(
            alert_id=sent.id, infos=[pb.Info(language="nl", event="Release", headline="Voorbij")]
        ),
        metadata=client.metadata,
    )
    assert [cap.parse(r["cap_xml"]).msg_type for r in requests[2:]] == ["Update", "Update"]
    assert progress(updated)[pb.CHANNEL_CELL_BROADCAST].targeted == 14
    await client.alerts.CancelAlert(
        pb.CancelAlertRequest(alert_id=sent.id), metadata=client.metadata
    )
    assert harness.broadcasts.withdrawn == [sent.id]


async def test_a_failing_cell_broadcast_service_does_not_hold_back_the_sms(
    harness: Harness,
) -> None:
    harness.broadcasts.error = Unimplemented("cellbroadcast: not built yet")
    client, sent = await sent_alert(harness)
    assert sent.state == pb.ALERT_STATE_SENT
    assert len(harness.targeting.resolved) == 1
    by_channel = progress(sent)
    assert by_channel[pb.CHANNEL_SMS].targeted == 15
    assert (by_channel[pb.CHANNEL_LB_SMS].targeted, by_channel[pb.CHANNEL_LB_SMS].failed) == (7, 7)
    cancelled = await client.alerts.CancelAlert(
        pb.CancelAlertRequest(alert_id=sent.id), metadata=client.metadata
    )
    assert cancelled.state == pb.ALERT_STATE_CANCELLED


async def test_presence_channels_for_drills_only_when_the_national_centre_runs_them(
    harness: Harness,
) -> None:
    gent = await harness.entity("Stad Gent", postpaid=True)
    mayor = await harness.issuer(gent.id, "mayor.gent")
    national = await harness.admin.admin.CreateEntity(
        pb.CreateEntityRequest(
            name="National Crisis Centre",
            type=1,
            territory_kind="country",
            territory_geojson=TERRITORY,
            postpaid=True,
        ),
        metadata=harness.admin.metadata,
    )
    centre = await harness.issuer(national.id, "ncc.duty")
    for kind in (pb.ALERT_KIND_TEST, pb.ALERT_KIND_EXERCISE):
        drill = spec(kind=kind, channels=PRESENCE)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await mayor.alerts.CreateAlert(
                pb.CreateAlertRequest(idempotency_key=f"drill-gent-{kind}", spec=drill),
                metadata=mayor.metadata,
            )
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (info.value.details() or "").startswith("spec.channels: ")
        created = await centre.alerts.CreateAlert(
            pb.CreateAlertRequest(idempotency_key=f"drill-ncc-{kind}", spec=drill),
            metadata=centre.metadata,
        )
        assert created.id
