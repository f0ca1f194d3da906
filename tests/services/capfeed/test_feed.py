"""The public feed: valid CAP and Atom for alert, update, cancel, exercise and many languages;
conditional requests; rendered on change, not per request."""

from __future__ import annotations

import asyncio
from email.utils import format_datetime, parsedate_to_datetime

import feedparser  # type: ignore[import-untyped]
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting import cap
from tests.services.alerting.cap_schema import assert_valid_cap
from tests.services.alerting.conftest import Harness, spec
from tests.services.alerting.test_lifecycle import create, mayor, send
from tests.services.capfeed.conftest import Feed

RELATED = "application/cap+xml"


async def _changed(feed: Feed, before: int) -> feedparser.FeedParserDict:
    """Wait (bounded) for the render a NOTIFY triggers; the feed parsed by feedparser."""
    await asyncio.wait_for(feed.watcher.rendered_after(before), timeout=10)
    status, headers, body = await feed.get("/cap/feed.atom")
    assert status == 200
    assert headers["Content-Type"].startswith("application/atom+xml")
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed


async def _documents(feed: Feed, entry: feedparser.FeedParserDict) -> cap.CapMessage:
    (link,) = [lk for lk in entry.links if lk.rel == "related"]
    assert link.type == RELATED
    path = link.href.removeprefix("http://feed.test")
    status, headers, body = await feed.get(path)
    assert status == 200
    assert headers["Content-Type"].startswith("application/cap+xml")
    assert_valid_cap(body)
    return cap.parse(body.decode())


async def test_alert_update_and_cancel_appear_as_valid_cap_and_atom(
    harness: Harness, feed: Feed
) -> None:
    empty = feedparser.parse((await feed.get("/cap/feed.atom"))[2])
    assert not empty.bozo
    assert empty.entries == []
    _, client = await mayor(harness)
    alert = await create(client, spec(languages=("nl", "fr", "de", "en")))
    renders = feed.watcher.renders
    await send(client, alert.id)
    parsed = await _changed(feed, renders)
    (entry,) = parsed.entries
    assert entry.cap_event == "Chemical release"
    assert (entry.cap_status, entry.cap_msgtype) == ("Actual", "Alert")
    assert (entry.cap_urgency, entry.cap_severity, entry.cap_certainty) == (
        "Immediate",
        "Severe",
        "Observed",
    )
    assert entry.cap_areadesc == "Gent - Rabot"
    assert entry.cap_expires
    assert entry.cap_language == "nl,fr,de,en"
    assert "Chemische wolk boven Gent (nl)" in entry.title
    first = await _documents(feed, entry)
    assert [i.language for i in first.infos] == ["nl", "fr", "de", "en"]

    renders = feed.watcher.renders
    await client.alerts.UpdateAlert(
        pb.UpdateAlertRequest(
            alert_id=alert.id,
            infos=[pb.Info(language="nl", event="Chemical release", headline="Wolk trekt weg")],
        ),
        metadata=client.metadata,
    )
    (entry,) = (await _changed(feed, renders)).entries
    assert entry.cap_msgtype == "Update"
    update = await _documents(feed, entry)
    assert update.references == (cap.reference(first),)

    renders = feed.watcher.renders
    await client.alerts.CancelAlert(
        pb.CancelAlertRequest(alert_id=alert.id), metadata=client.metadata
    )
    (entry,) = (await _changed(feed, renders)).entries
    assert entry.cap_msgtype == "Cancel"
    assert entry.title.startswith("Cancelled: ")
    cancel = await _documents(feed, entry)
    assert cancel.references == (cap.reference(first), cap.reference(update))
    # Every version stays at its stable URL.
    for message in (first, update):
        status, _, body = await feed.get(f"/cap/{message.identifier}.xml")
        assert status == 200
        assert cap.parse(body.decode()) == message


async def test_exercises_and_tests_are_exercise_and_test_never_actual(
    harness: Harness, feed: Feed
) -> None:
    _, client = await mayor(harness)
    for n, (kind, status) in enumerate(
        ((pb.ALERT_KIND_EXERCISE, "Exercise"), (pb.ALERT_KIND_TEST, "Test"))
    ):
        alert = await create(client, spec(kind=kind), key=f"key-exercise-{n}")
        renders = feed.watcher.renders
        await send(client, alert.id)
        parsed = await _changed(feed, renders)
        entry = next(e for e in parsed.entries if e.id == f"urn:tocsin:alert:{alert.id}")
        assert entry.cap_status == status
        document = await _documents(feed, entry)
        assert document.status == status
        assert all(i.headline.startswith(("OEFENING", "EXERCISE", "TEST")) for i in document.infos)


async def test_conditional_requests_get_304_and_a_change_gets_a_new_etag(
    harness: Harness, feed: Feed
) -> None:
    _, client = await mayor(harness)
    alert = await create(client, spec())
    renders = feed.watcher.renders
    await send(client, alert.id)
    await _changed(feed, renders)
    status, headers, body = await feed.get("/cap/feed.atom")
    etag, modified = headers["ETag"], headers["Last-Modified"]
    assert etag.startswith('"')
    assert not etag.startswith("W/")
    max_age = int(headers["Cache-Control"].split("max-age=")[1])
    assert 0 < max_age <= 30
    assert (await feed.get("/cap/feed.atom", **{"If-None-Match": etag}))[0] == 304
    assert (await feed.get("/cap/feed.atom", **{"If-None-Match": f'"x", W/{etag}'}))[0] == 304
    assert (await feed.get("/cap/feed.atom", **{"If-Modified-Since": modified}))[0] == 304
    earlier = format_datetime(parsedate_to_datetime(modified).replace(year=2020), usegmt=True)
    assert (await feed.get("/cap/feed.atom", **{"If-Modified-Since": earlier}))[0] == 200
    assert (await feed.get("/cap/feed.atom", **{"If-None-Match": '"other"'}))[0] == 200
    # Documents too: a screen polls them as cheaply.
    (entry,) = feedparser.parse(body).entries
    doc_path = f"/cap/{(await _documents(feed, entry)).identifier}.xml"
    _, doc_headers, _ = await feed.get(doc_path)
    assert (await feed.get(doc_path, **{"If-None-Match": doc_headers["ETag"]}))[0] == 304
    # Requests render nothing; a change renders once and changes the validator.
    before = feed.watcher.renders
    for _ in range(5):
        await feed.get("/cap/feed.atom")
    assert feed.watcher.renders == before
    await client.alerts.CancelAlert(
        pb.CancelAlertRequest(alert_id=alert.id), metadata=client.metadata
    )
    await _changed(feed, before)
    status, headers, _ = await feed.get("/cap/feed.atom", **{"If-None-Match": etag})
    assert status == 200
    assert headers["ETag"] != etag


async def test_unknown_documents_are_404(feed: Feed) -> None:
    assert (await feed.get("/cap/tocsin.nothing.1.xml"))[0] == 404
    assert (await feed.get("/healthz"))[0] == 200
    assert (await feed.get("/readyz"))[0] == 200
    status, _, body = await feed.get("/metrics")
    assert status == 200
    assert b'tocsin_capfeed_requests_total{resource="document",status="404"}' in body
    assert b"tocsin_capfeed_renders_total" in body


async def test_an_alert_with_pasted_control_characters_still_renders_and_cancels(
    harness: Harness, feed: Feed
) -> None:
    _, client = await mayor(harness)
    alert = await create(client, spec())
    # As if stored before CreateAlert refused such text: the texts carry a vertical tab.
    await harness.pool.execute(
        "UPDATE alerts SET infos = jsonb_set(infos, '{0,headline}', to_jsonb($2::text))"
        " WHERE id = $1::uuid",
        alert.id,
        "Wolk\x0bboven Gent",
    )
    renders = feed.watcher.renders
    await send(client, alert.id)
    await _changed(feed, renders)
    renders = feed.watcher.renders
    cancelled = await client.alerts.CancelAlert(
        pb.CancelAlertRequest(alert_id=alert.id), metadata=client.metadata
    )
    assert cancelled.state == pb.ALERT_STATE_CANCELLED
    assert_valid_cap(cancelled.cap_xml)
    (entry,) = (await _changed(feed, renders)).entries
    document = await _documents(feed, entry)
    assert document.infos[0].headline == "Wolkboven Gent"
