"""Rendering the snapshot: size bound, expiry, deterministic validators."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import feedparser  # type: ignore[import-untyped]

from services.alerting import cap
from services.capfeed.render import Message, snapshot
from tests.services.alerting.cap_schema import assert_valid_cap
from tests.services.capfeed.conftest import INFO

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


def _message(n: int, *, expires: datetime) -> Message:
    info = cap.CapInfo(
        language="fr",
        category="Met",
        event="Inondation",
        urgency="Expected",
        severity="Severe",
        certainty="Likely",
        expires=expires,
        sender_name=f"Commune {n}",
        headline=f"Crue de la Meuse à Namur, secteur {n}",
        description="Montez aux étages. " * 100,
        instruction="Écoutez la radio.",
        area_desc=f"Namur secteur {n}",
    )
    doc = cap.CapMessage(
        identifier=cap.identifier(alert_id=f"a{n}", seq=1),
        sender=cap.SENDER,
        sent=NOW - timedelta(minutes=n),
        status="Actual",
        msg_type="Alert",
        scope="Public",
        infos=(info,),
    )
    return Message(
        alert_id=f"a{n}",
        seq=1,
        identifier=doc.identifier,
        sent=doc.sent,
        xml=cap.render(doc),
        expires=expires,
    )


def test_a_crowded_feed_stays_well_under_100_kb() -> None:
    messages = [_message(n, expires=NOW + timedelta(hours=1)) for n in range(400)]
    snap = snapshot(info=INFO, messages=messages, now=NOW)
    assert len(snap.feed.body) < 100_000
    parsed = feedparser.parse(snap.feed.body)
    assert len(parsed.entries) == INFO.max_entries
    assert parsed.entries[0].cap_areadesc == "Namur secteur 0"  # the newest first
    assert len(snap.documents) == 400
    assert_valid_cap(snap.documents["/cap/tocsin.a399.1.xml"].body)


def test_expired_alerts_leave_the_feed_and_their_documents_stay() -> None:
    soon, later = NOW + timedelta(seconds=12), NOW + timedelta(hours=3)
    messages = [_message(1, expires=soon), _message(2, expires=later)]
    before = snapshot(info=INFO, messages=messages, now=NOW)
    assert before.next_expiry == soon
    assert before.feed.headers["Cache-Control"] == "public, max-age=12"
    after = snapshot(info=INFO, messages=messages, now=soon)
    assert [e.cap_areadesc for e in feedparser.parse(after.feed.body).entries] == [
        "Namur secteur 2"
    ]
    assert after.feed.etag != before.feed.etag
    assert after.feed.last_modified == soon
    assert set(after.documents) == set(before.documents)
    # Two processes rendering the same rows at the same moment answer the same validators.
    again = snapshot(info=INFO, messages=list(reversed(messages)), now=soon)
    assert again.feed.headers == after.feed.headers
