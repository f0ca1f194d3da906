"""Alerting's side of the operators' channels: pages at CreateAlert, content, WatchAlert, rights."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting.model import Channel
from services.alerting.ports import OperatorStatus
from tests.services.alerting.conftest import ZONE_INSIDE, Harness, spec

CB = (pb.CHANNEL_CELL_BROADCAST, pb.CHANNEL_LB_SMS)


async def test_text_over_fifteen_pages_is_refused_at_create_naming_the_field(
    harness: Harness,
) -> None:
    """French in UCS-2 past 15 pages of 41 characters: INVALID_ARGUMENT on its description."""
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    request = spec(channels=CB, languages=("nl", "fr"))
    request.infos[1].description = "Évacuez la zone immédiatement, ç'est sérieux. " * 14
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.alerts.CreateAlert(
            pb.CreateAlertRequest(idempotency_key="too-long-1", spec=request),
            metadata=client.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.infos[1].description" in (caught.value.details() or "")
    # Without cell broadcast the same text is fine by e-mail, which has no pages.
    request = spec(channels=(pb.CHANNEL_EMAIL,), languages=("nl", "fr"))
    request.infos[1].description = "Évacuez la zone immédiatement, ç'est sérieux. " * 14
    await client.alerts.CreateAlert(
        pb.CreateAlertRequest(idempotency_key="too-long-2", spec=request),
        metadata=client.metadata,
    )
    # By SMS it is eleven UCS-2 segments: the segment cap refuses it, on the same field.
    request = spec(channels=(pb.CHANNEL_SMS,), languages=("nl", "fr"))
    request.infos[1].description = "Évacuez la zone immédiatement, ç'est sérieux. " * 14
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.alerts.CreateAlert(
            pb.CreateAlertRequest(idempotency_key="too-long-3", spec=request),
            metadata=client.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.infos[1].description" in (caught.value.details() or "")
    assert "segments" in (caught.value.details() or "")


async def test_text_over_fifteen_pages_is_refused_at_update_naming_the_field(
    harness: Harness,
) -> None:
    """UpdateAlert checks the new texts as CreateAlert does, draft or sent, before any request."""
    gent = await harness.entity("Stad Gent", postpaid=True)
    client = await harness.issuer(gent.id, "mayor.gent")
    draft = await client.alerts.CreateAlert(
        pb.CreateAlertRequest(
            idempotency_key="too-long-update", spec=spec(channels=CB, languages=("nl", "fr"))
        ),
        metadata=client.metadata,
    )
    too_long = [
        pb.Info(language="nl", event="Release", headline="Ontruim"),
        pb.Info(
            language="fr",
            event="Release",
            headline="Évacuez",
            description="Évacuez la zone immédiatement, ç'est sérieux. " * 14,
        ),
    ]
    for sent in (False, True):
        if sent:
            await client.alerts.SendAlert(
                pb.SendAlertRequest(alert_id=draft.id), metadata=client.metadata
            )
        requested = len(harness.broadcasts.broadcasts)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.alerts.UpdateAlert(
                pb.UpdateAlertRequest(alert_id=draft.id, infos=too_long),
                metadata=client.metadata,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (caught.value.details() or "").startswith("infos[1].description: ")
        assert "cell broadcast" in (caught.value.details() or "")
        assert len(harness.broadcasts.broadcasts) == requested
    alert = await client.alerts.GetAlert(
        pb.GetAlertRequest(alert_id=draft.id), metadata=client.metadata
    )
    assert alert.version == 1


@pytest.mark.parametrize(
    "kind", [pb.ALERT_KIND_GENERAL_INTEREST, pb.ALERT_KIND_EXERCISE, pb.ALERT_KIND_TEST]
)
async def test_only_threatening_danger_uses_the_operators_channels(
    harness: Harness, kind: pb.AlertKind
) -> None:
    """LB-SMS and cell broadcast: a municipality's general interest, exercise or test is refused."""
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    for channel in CB:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.alerts.CreateAlert(
                pb.CreateAlertRequest(
                    idempotency_key=f"general-{kind}-{channel}",
                    spec=spec(kind=kind, channels=(channel,)),
                ),
                metadata=client.metadata,
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "spec.channels" in (caught.value.details() or "")


async def test_content_follows_the_alert_and_its_versions(harness: Harness) -> None:
    """What reaches the cell broadcast service: kind, severity, version, texts in order."""
    gent = await harness.entity("Stad Gent", postpaid=True)
    client = await harness.issuer(gent.id, "mayor.gent")
    draft = await client.alerts.CreateAlert(
        pb.CreateAlertRequest(
            idempotency_key="content-1", spec=spec(channels=CB, languages=("fr", "nl"))
        ),
        metadata=client.metadata,
    )
    await client.alerts.SendAlert(pb.SendAlertRequest(alert_id=draft.id), metadata=client.metadata)
    content = harness.broadcasts.broadcasts[0]["content"]
    assert (content.kind, content.version, content.severity) == ("emergency", 1, "Severe")
    assert [lang for lang, _ in content.texts] == ["fr", "nl"]
    assert content.texts[0][1].startswith("Chemische wolk boven Gent (fr)")
    assert content.zone_geojson == ZONE_INSIDE  # for LB-SMS platforms that take a polygon
    await client.alerts.UpdateAlert(
        pb.UpdateAlertRequest(
            alert_id=draft.id, infos=[pb.Info(language="nl", event="Release", headline="Voorbij")]
        ),
        metadata=client.metadata,
    )
    assert harness.broadcasts.broadcasts[-1]["content"].version == 2


async def test_watch_shows_each_operator(harness: Harness) -> None:
    """WatchAlert carries every operator's state, cells and, for LB-SMS, phones reached."""
    gent = await harness.entity("Stad Gent", postpaid=True)
    client = await harness.issuer(gent.id, "mayor.gent")
    draft = await client.alerts.CreateAlert(
        pb.CreateAlertRequest(idempotency_key="watch-ops-1", spec=spec(channels=CB)),
        metadata=client.metadata,
    )
    await client.alerts.SendAlert(pb.SendAlertRequest(alert_id=draft.id), metadata=client.metadata)
    harness.broadcasts.statuses = (
        OperatorStatus("opA", Channel.CELL_BROADCAST, "broadcast", 1, "accepted", "", 4, 0),
        OperatorStatus(
            "opB", Channel.CELL_BROADCAST, "broadcast", 1, "retrying", "no answer", 3, 0
        ),
        OperatorStatus("opA", Channel.LB_SMS, "broadcast", 1, "accepted", "", 4, 1200),
    )
    async with asyncio.timeout(10):
        stream = client.alerts.WatchAlert(
            pb.WatchAlertRequest(alert_id=draft.id), metadata=client.metadata
        )
        first = await stream.read()
        assert isinstance(first, pb.AlertProgress)
        seen = {(o.operator, o.channel): o for o in first.operators}
        assert seen[("opA", pb.CHANNEL_CELL_BROADCAST)].accepted
        assert seen[("opB", pb.CHANNEL_CELL_BROADCAST)].state == "retrying"
        assert not seen[("opB", pb.CHANNEL_CELL_BROADCAST)].accepted
        assert seen[("opA", pb.CHANNEL_LB_SMS)].phones == 1200
        # opB comes back: a message follows with nothing else changed.
        harness.broadcasts.statuses = (
            harness.broadcasts.statuses[0],
            OperatorStatus("opB", Channel.CELL_BROADCAST, "broadcast", 1, "accepted", "", 3, 0),
            harness.broadcasts.statuses[2],
        )
        second = await stream.read()
        stream.cancel()
    assert isinstance(second, pb.AlertProgress)
    seen = {(o.operator, o.channel): o for o in second.operators}
    assert seen[("opB", pb.CHANNEL_CELL_BROADCAST)].accepted
