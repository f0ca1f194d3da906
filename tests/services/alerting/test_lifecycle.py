"""Create, send, update and cancel: idempotent, same audience, CAP msgTypes, exercise marking."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting import cap
from services.alerting.model import Channel
from services.alerting.ports import Sent
from services.kernel import keys
from services.kernel.errors import Unavailable
from tests.services.alerting.conftest import ZONE_INSIDE, Client, Harness, spec


async def mayor(harness: Harness) -> tuple[pb.Entity, Client]:
    """Stad Gent and one of its issuers."""
    gent = await harness.entity("Stad Gent", postpaid=True)
    return gent, await harness.issuer(gent.id, "mayor.gent")


async def create(client: Client, alert_spec: pb.AlertSpec, key: str = "key-00000001") -> pb.Alert:
    """CreateAlert as `client`."""
    return await client.alerts.CreateAlert(
        pb.CreateAlertRequest(idempotency_key=key, spec=alert_spec), metadata=client.metadata
    )


async def send(client: Client, alert_id: str) -> pb.Alert:
    """SendAlert as `client`."""
    return await client.alerts.SendAlert(
        pb.SendAlertRequest(alert_id=alert_id), metadata=client.metadata
    )


async def test_create_is_idempotent_per_key(harness: Harness) -> None:
    _, client = await mayor(harness)
    request = spec()
    first = await create(client, request)
    again = await create(client, request)
    assert again.id == first.id
    other = await create(client, request, key="key-00000002")
    assert other.id != first.id
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create(client, spec(headline="Something else"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("idempotency_key: ")
    assert await harness.pool.fetchval("SELECT count(*) FROM alerts") == 2


async def test_an_alert_on_a_channel_not_deployed_is_refused_naming_it(harness: Harness) -> None:
    _, client = await mayor(harness)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create(client, spec(channels=(pb.CHANNEL_SMS, pb.CHANNEL_VOICE)))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (info.value.details() or "").startswith(
        "spec.channels[1]: channel voice is not deployed"
    )
    assert await harness.pool.fetchval("SELECT count(*) FROM alerts") == 0


async def test_send_twice_dispatches_once(harness: Harness) -> None:
    _, client = await mayor(harness)
    alert = await create(client, spec())
    sent = await send(client, alert.id)
    again = await send(client, alert.id)
    assert sent.state == again.state == pb.ALERT_STATE_SENT
    assert sent.version == again.version == 1
    assert len(harness.targeting.resolved) == 1
    call = harness.targeting.resolved[0].kwargs
    assert call["alert_id"] == alert.id
    assert call["version"] == 1
    assert call["kind"] == "emergency"
    assert call["channels"] == (Channel.SMS, Channel.EMAIL)
    assert await harness.redis.get(keys.alert_version(alert.id)) == b"1"
    progress = {p.channel: p for p in sent.progress}
    assert progress[pb.CHANNEL_SMS].targeted == 15
    assert progress[pb.CHANNEL_SMS].queued == 15
    assert cap.parse(sent.cap_xml).msg_type == "Alert"


async def test_preview_counts_audience_and_cost(harness: Harness) -> None:
    _, client = await mayor(harness)
    alert = await create(client, spec(channels=(pb.CHANNEL_SMS, pb.CHANNEL_CELL_BROADCAST)))
    preview = await client.alerts.PreviewAlert(
        pb.PreviewAlertRequest(alert_id=alert.id), metadata=client.metadata
    )
    by_language = {(a.channel, a.language): (a.recipients, a.units) for a in preview.audiences}
    assert by_language == {(pb.CHANNEL_SMS, "nl"): (10, 10), (pb.CHANNEL_SMS, "fr"): (5, 5)}
    assert preview.cells == 7
    assert preview.estimated_units == 15
    assert preview.estimated_cost_cents == 83  # 15 x EUR 0.055 = EUR 0.825
    assert preview.units_postpaid == 15
    assert not preview.would_be_refused


async def test_update_reaches_the_same_audience_with_new_texts(harness: Harness) -> None:
    _, client = await mayor(harness)
    alert = await create(client, spec())
    first = await send(client, alert.id)
    updated = await client.alerts.UpdateAlert(
        pb.UpdateAlertRequest(
            alert_id=alert.id,
            base_version=1,
            infos=[pb.Info(language="nl", event="Chemical release", headline="Gevaar voorbij")],
        ),
        metadata=client.metadata,
    )
    assert updated.version == 2
    assert updated.msg_type == "Update"
    assert [i.headline for i in updated.spec.infos] == ["Gevaar voorbij"]
    one, two = (c.kwargs for c in harness.targeting.resolved)
    for name in ("zone_geojson", "group_ids", "channels", "entity_id", "alert_id", "expires"):
        assert one[name] == two[name], name
    assert two["version"] == 2
    assert two["texts"] == {"nl": "Gevaar voorbij"}
    assert await harness.redis.get(keys.alert_version(alert.id)) == b"2"
    document = cap.parse(updated.cap_xml)
    assert document.msg_type == "Update"
    assert document.references == (cap.reference(cap.parse(first.cap_xml)),)
    # A retry of the same update does not bump the version twice.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.alerts.UpdateAlert(
            pb.UpdateAlertRequest(alert_id=alert.id, base_version=1, infos=updated.spec.infos),
            metadata=client.metadata,
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    progress = {p.channel: p.targeted for p in updated.progress}
    assert progress[pb.CHANNEL_SMS] == 30  # both versions' recipients


async def test_cancel_stops_unsent_messages(harness: Harness) -> None:
    _, client = await mayor(harness)
    alert = await create(client, spec())
    await send(client, alert.id)
    harness.deliveries.reports[alert.id] = {Channel.SMS: Sent(submitted=4, delivered=4, units=4)}
    cancelled = await client.alerts.CancelAlert(
        pb.CancelAlertRequest(alert_id=alert.id), metadata=client.metadata
    )
    assert cancelled.state == pb.ALERT_STATE_CANCELLED
    assert cancelled.msg_type == "Cancel"
    assert await harness.redis.get(keys.alert_cancelled(alert.id)) == b"1"
    assert cap.parse(cancelled.cap_xml).msg_type == "Cancel"
    again = await client.alerts.CancelAlert(
        pb.CancelAlertRequest(alert_id=alert.id), metadata=client.metadata
    )
    assert again.state == pb.ALERT_STATE_CANCELLED
    assert await harness.pool.fetchval("SELECT count(*) FROM cap_messages") == 2
    # The SMS service reports the rest dropped; the watch ends on the cancelled state.
    harness.deliveries.reports[alert.id] = {
        Channel.SMS: Sent(submitted=4, delivered=4, dropped=11, units=4)
    }
    seen = [
        p
        async for p in client.alerts.WatchAlert(
            pb.WatchAlertRequest(alert_id=alert.id), metadata=client.metadata
        )
    ]
    assert seen[-1].final
    sms = {c.channel: c for c in seen[-1].channels}[pb.CHANNEL_SMS]
    assert (sms.targeted, sms.delivered, sms.dropped, sms.queued) == (15, 4, 11, 0)
    assert seen[-1].units == 4  # what was handed over before the cancel is still charged
    for call in (
        client.alerts.UpdateAlert(
            pb.UpdateAlertRequest(alert_id=alert.id, infos=cancelled.spec.infos),
            metadata=client.metadata,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert len(harness.targeting.resolved) == 1


async def test_a_cancelled_draft_is_never_sent(harness: Harness) -> None:
    _, client = await mayor(harness)
    alert = await create(client, spec())
    await client.alerts.CancelAlert(
        pb.CancelAlertRequest(alert_id=alert.id), metadata=client.metadata
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await send(client, alert.id)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert harness.targeting.resolved == []
    # Set even for a draft: whatever was queued for it (a send stopped part-way) stops too.
    assert await harness.redis.get(keys.alert_cancelled(alert.id)) == b"1"


@pytest.mark.parametrize(
    ("kind", "status", "marks"),
    [
        (pb.ALERT_KIND_EXERCISE, "Exercise", {"nl": "OEFENING - ", "fr": "EXERCICE - "}),
        (pb.ALERT_KIND_TEST, "Test", {"nl": "TEST - ", "fr": "TEST - "}),
        (pb.ALERT_KIND_EMERGENCY, "Actual", {"nl": "", "fr": ""}),
    ],
)
async def test_exercises_and_tests_are_marked_in_every_text(
    harness: Harness, kind: pb.AlertKind, status: str, marks: dict[str, str]
) -> None:
    _, client = await mayor(harness)
    alert = await create(client, spec(kind=kind, languages=("nl", "fr"), zone=ZONE_INSIDE))
    sent = await send(client, alert.id)
    texts = harness.targeting.resolved[0].kwargs["texts"]
    for language, prefix in marks.items():
        assert texts[language].startswith(prefix + "Chemische wolk"), texts[language]
    document = cap.parse(sent.cap_xml)
    assert document.status == status
    for info in document.infos:
        assert info.headline.startswith(marks[info.language] + "Chemische wolk")


async def test_list_pages_through_the_entitys_alerts_newest_first(harness: Harness) -> None:
    _, client = await mayor(harness)
    created = [(await create(client, spec(), key=f"key-page-{i:04d}")).id for i in range(3)]
    first = await client.alerts.ListAlerts(
        pb.ListAlertsRequest(page_size=2), metadata=client.metadata
    )
    second = await client.alerts.ListAlerts(
        pb.ListAlertsRequest(page_size=2, page_token=first.next_page_token),
        metadata=client.metadata,
    )
    assert [a.id for a in [*first.alerts, *second.alerts]] == created[::-1]
    assert second.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.alerts.ListAlerts(
            pb.ListAlertsRequest(page_token="-1"), metadata=client.metadata
        )
    assert (info.value.details() or "").startswith("page_token: ")


async def test_a_send_goes_on_when_the_caller_hangs_up(harness: Harness) -> None:
    _, client = await mayor(harness)
    alert = await create(client, spec())
    harness.targeting.hold = asyncio.Event()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.alerts.SendAlert(
            pb.SendAlertRequest(alert_id=alert.id), metadata=client.metadata, timeout=0.5
        )
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    harness.targeting.hold.set()
    await harness.alerts.dispatcher.drain()
    sent = await client.alerts.GetAlert(
        pb.GetAlertRequest(alert_id=alert.id), metadata=client.metadata
    )
    assert sent.state == pb.ALERT_STATE_SENT
    assert len(harness.targeting.resolved) == 1
    # Its intent written before it acted, its outcome once the server saw the caller go away:
    # the client's deadline passes first, the server's cancellation may come later (a busy
    # machine), so the outcome is looked for until it comes.
    results: list[str] = []
    async with asyncio.timeout(10):
        while len(results) < 2:
            rows = await harness.pool.fetch(
                "SELECT result FROM audit_log WHERE action = 'SendAlert' ORDER BY seq"
            )
            results = [r["result"] for r in rows]
            await asyncio.sleep(0.05)  # polling PostgreSQL: the server writes it when it sees
    assert results == ["STARTED", "CANCELLED"]


async def test_a_send_left_half_done_by_a_dead_process_is_resumed(harness: Harness) -> None:
    _, client = await mayor(harness)
    alert = await create(client, spec())
    await send(client, alert.id)
    # As a process dying while resolving leaves it: still `sending`, for longer than any Resolve.
    await harness.pool.execute(
        "UPDATE alerts SET state = 'sending', targeted = '{}',"
        " sent_at = now() - interval '1 hour' WHERE id = $1::uuid",
        alert.id,
    )
    resumed = await harness.alerts.dispatcher.resume_stale(older_than=timedelta(minutes=5))
    assert resumed == [alert.id]
    again = await client.alerts.GetAlert(
        pb.GetAlertRequest(alert_id=alert.id), metadata=client.metadata
    )
    assert again.state == pb.ALERT_STATE_SENT
    assert {p.channel: p.targeted for p in again.progress}[pb.CHANNEL_SMS] == 15
    assert [c.kwargs["version"] for c in harness.targeting.resolved] == [1, 1]
    assert await harness.alerts.dispatcher.resume_stale(older_than=timedelta(minutes=5)) == []


async def test_a_watch_outlives_an_unreachable_sms_service(harness: Harness) -> None:
    _, client = await mayor(harness)
    alert = await create(client, spec(channels=(pb.CHANNEL_SMS,)))
    await send(client, alert.id)
    harness.deliveries.error = Unavailable("sms unavailable (UNAVAILABLE): retry")
    stream = client.alerts.WatchAlert(
        pb.WatchAlertRequest(alert_id=alert.id), metadata=client.metadata
    )
    first = await anext(aiter(stream))
    assert first.state == pb.ALERT_STATE_SENT
    assert not first.final
    harness.deliveries.error = None
    harness.deliveries.reports[alert.id] = {Channel.SMS: Sent(submitted=15, delivered=15, units=15)}
    rest = [p async for p in stream]
    assert rest[-1].state == pb.ALERT_STATE_COMPLETE
    assert rest[-1].final
