"""Every CAP document we render is valid CAP 1.2 by the OASIS schema, whatever was typed in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.alerting import cap
from services.alerting.model import Alert, AlertSpec, Channel, Info, Kind, MsgType, State
from tests.services.alerting.cap_schema import assert_valid_cap
from tests.services.alerting.conftest import ZONE_INSIDE
from tests.services.alerting.test_cap import MESSAGE

SENT = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


def _alert(kind: Kind = Kind.EMERGENCY, *, languages: tuple[str, ...] = ("nl",)) -> Alert:
    infos = tuple(
        Info(
            language=lang,
            event="Chemical release",
            headline=f"Chemische wolk ({lang}) \u2013 ÜBUNG é",
            description="Een wolk boven Rabot.",
            instruction="Blijf binnen.",
        )
        for lang in languages
    )
    spec = AlertSpec(
        kind=kind,
        category="CBRNE",
        urgency="Immediate",
        severity="Severe",
        certainty="Observed",
        infos=infos,
        zone_geojson=ZONE_INSIDE,
        area_description="Gent - Rabot",
        group_ids=(),
        channels=(Channel.EMAIL, Channel.CAP_FEED),
        expires=SENT + timedelta(hours=2),
        sender="BE-Alert",
    )
    return Alert(
        id="8a6f0c1e-0000-4000-8000-000000000001",
        entity_id=1,
        created_by="1",
        state=State.SENT,
        version=1,
        msg_type=MsgType.ALERT,
        spec=spec,
        created_at=SENT,
        sent_at=SENT,
        cancelled_at=None,
        units_prepaid=0,
        units_postpaid=0,
        cap_xml="",
    )


def _chain(alert: Alert) -> list[cap.CapMessage]:
    """Alert, Update and Cancel of one alert, each referencing all before it."""
    messages: list[cap.CapMessage] = []
    for seq, msg_type in enumerate((MsgType.ALERT, MsgType.UPDATE, MsgType.CANCEL), start=1):
        messages.append(
            cap.for_alert(
                alert,
                seq=seq,
                msg_type=msg_type,
                sent=SENT + timedelta(minutes=seq),
                sender_name="Stad Gent",
                references=tuple(cap.reference(m) for m in messages),
            )
        )
    return messages


def test_alert_update_and_cancel_are_valid_and_reference_what_they_replace() -> None:
    alert, update, cancel = _chain(_alert(languages=("nl", "fr", "de", "en")))
    for message in (alert, update, cancel):
        assert_valid_cap(cap.render(message))
    assert (alert.msg_type, update.msg_type, cancel.msg_type) == ("Alert", "Update", "Cancel")
    assert alert.references == ()
    assert update.references == (f"be-alert@tocsin,{alert.identifier},2026-12-03T15:01:00-00:00",)
    assert cancel.references == (cap.reference(alert), cap.reference(update))
    assert [i.language for i in cap.parse(cap.render(cancel)).infos] == ["nl", "fr", "de", "en"]


def test_exercises_and_tests_are_never_actual() -> None:
    for kind, status in ((Kind.EXERCISE, "Exercise"), (Kind.TEST, "Test")):
        for message in _chain(_alert(kind)):
            xml = cap.render(message)
            assert_valid_cap(xml)
            parsed = cap.parse(xml)
            assert parsed.status == status
            assert status.upper() in parsed.note
            assert parsed.infos[0].headline.startswith(("OEFENING - ", "TEST - "))
    assert {m.status for m in _chain(_alert(Kind.GENERAL))} == {"Actual"}


def test_text_that_xml_cannot_carry_is_dropped_never_a_broken_document() -> None:
    alert = _alert()
    pasted = Info(
        language="nl",
        event="Chemical\x0brelease",
        headline="Wolk\x0b boven\x00 Gent\x1f",
        description="Regel\x0cmet\x0bformulier",
        instruction="Blijf\r\nbinnen\tnu",
    )
    broken = replace(alert, spec=replace(alert.spec, infos=(pasted,)))
    for message in _chain(broken):
        xml = cap.render(message)
        assert_valid_cap(xml)
        info = cap.parse(xml).infos[0]
        assert info.headline == "Wolk boven Gent"
        assert info.event == "Chemicalrelease"
        assert info.instruction == "Blijf\nbinnen\tnu"


@settings(max_examples=100, deadline=None)
@given(MESSAGE.filter(lambda m: bool(m.infos)), st.text(max_size=20))
def test_any_message_renders_to_a_valid_document(message: cap.CapMessage, junk: str) -> None:
    info = replace(message.infos[0], headline=message.infos[0].headline + junk)
    assert_valid_cap(cap.render(replace(message, infos=(info, *message.infos[1:]))))
