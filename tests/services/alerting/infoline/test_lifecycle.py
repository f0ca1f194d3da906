"""An open line: hourly figures, staffing, costs in the monthly report, liaison, second line,
gradual and final closure, and the victims' (D2) line."""

from __future__ import annotations

from datetime import datetime

import grpc
import pytest
from tocsin.alerting.v1 import alerting_pb2 as apb
from tocsin.alerting.v1 import infoline_pb2 as pb

from tests.services.alerting.conftest import Client
from tests.services.alerting.infoline.conftest import LineEnv, MakeEnv, form

pytestmark = pytest.mark.timeout(60)

#: Calls per hour per language line in these tests, and their handling time.
CALLS = {"nl": 200, "fr": 60}
AHT_S = 180.0


async def open_line(
    env: LineEnv, *, kind: pb.LineKind = pb.LINE_KIND_D5, hours: int = 0
) -> tuple[Client, pb.InfoLine]:
    """A line activated, acknowledged and opened; `hours` full hours of calls after opening."""
    _, mayor, alert_id = await env.ready()
    line = await env.stub.ActivateLine(
        pb.ActivateLineRequest(form=form(alert_ids=(alert_id,), kind=kind)),
        metadata=mayor.metadata,
    )
    await env.control("/control/advance", {"seconds": 600 + hours * 3600})
    env.clock.advance(minutes=10 + hours * 60)
    await env.syncer.sync_once()
    got = await env.stub.GetLine(pb.GetLineRequest(line_id=line.id), metadata=mayor.metadata)
    assert got.state == pb.LINE_STATE_OPEN
    return mayor, got


@pytest.fixture
async def env(line_env_factory: MakeEnv) -> LineEnv:
    return await line_env_factory(calls=CALLS, aht_s=AHT_S, abandon_ratio=0.05)


async def test_staffing_side_by_side_per_language_line(env: LineEnv) -> None:
    mayor, line = await open_line(env, hours=2)
    staffing = await env.stub.GetStaffing(
        pb.GetStaffingRequest(line_id=line.id), metadata=mayor.metadata
    )
    assert (staffing.target_answered_ratio, staffing.target_answer_s) == (0.8, 20)
    by_language = {s.language: s for s in staffing.languages}
    assert sorted(by_language) == ["fr", "nl"]
    nl, fr = by_language["nl"], by_language["fr"]
    # 4 operators split over two language lines; 200 calls of 3 minutes need 14 (10 Erlangs).
    assert (nl.actual_operators, fr.actual_operators) == (2, 2)
    assert (nl.offered, nl.answered, nl.abandoned) == (200, 190, 10)
    assert nl.recommended_operators == 14
    assert nl.service_level_actual == 0.0  # 2 operators for 10 Erlangs: overloaded
    assert nl.service_level_recommended >= 0.8
    # 60 calls of 3 minutes: 3 Erlangs.
    assert fr.recommended_operators == 5
    stricter = await env.stub.GetStaffing(
        pb.GetStaffingRequest(line_id=line.id, target_answered_ratio=0.9, target_answer_s=10),
        metadata=mayor.metadata,
    )
    assert {s.language: s.recommended_operators for s in stricter.languages}["nl"] > 14


async def test_costs_in_the_monthly_report(env: LineEnv) -> None:
    mayor, line = await open_line(env, hours=2)
    hours = await env.harness.pool.fetch(
        "SELECT DISTINCT hour_start FROM infoline_figures WHERE line_id = $1", line.id
    )
    assert len(hours) == 2
    month = min(r["hour_start"] for r in hours).strftime("%Y-%m")
    await env.syncer.sync_once()  # a second round charges nothing twice
    report = await env.harness.admin.admin.GetUsageReport(
        apb.GetUsageReportRequest(entity_id=line.entity_id, month=month),
        metadata=mayor.metadata,
    )
    lines = {x.item: x for x in report.lines}
    in_month = [r for r in hours if r["hour_start"].strftime("%Y-%m") == month]
    # Per hour: 2 + 2 operators; nl 190 answered and fr 57 answered calls of 3 minutes.
    assert lines["infoline_staff_hours"].quantity == 4 * len(in_month)
    assert lines["infoline_staff_hours"].amount_cents == 15400 * len(in_month)
    assert lines["infoline_telephony_minutes"].quantity == (570 + 171) * len(in_month)
    assert lines["infoline_telephony_minutes"].amount_cents == 2964 * len(in_month)
    assert report.total_cents == sum(x.amount_cents for x in report.lines)


async def test_d2_is_handled_by_the_health_authority(env: LineEnv) -> None:
    _mayor, line = await open_line(env, kind=pb.LINE_KIND_D2, hours=1)
    assert line.handled_by == "health_authority"
    received = await env.control(f"/control/lines/{line.id}")
    assert received["activation"]["kind"] == "D2"
    assert received["activation"]["handled_by"] == "health_authority"
    # Its staff is the health authority's: the entity pays the telephony only.
    items = await env.harness.pool.fetch(
        "SELECT item FROM ledger WHERE entity_id = $1 AND item LIKE 'infoline%'", line.entity_id
    )
    assert {r["item"] for r in items} == {"infoline_telephony_minutes"}


async def test_transfer_to_a_local_second_line(env: LineEnv) -> None:
    mayor, line = await open_line(env)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.OpenSecondLine(
            pb.OpenSecondLineRequest(line_id=line.id, number="09 210 10 10"),
            metadata=mayor.metadata,
        )
    assert (err.value.details() or "").startswith("number:")
    got = await env.stub.OpenSecondLine(
        pb.OpenSecondLineRequest(line_id=line.id, number="+3292101010"), metadata=mayor.metadata
    )
    assert got.second_line == "+3292101010"
    received = await env.control(f"/control/lines/{line.id}")
    assert received["transfers"] == ["+3292101010"]


async def test_liaison_updates_reach_the_provider_as_versions(env: LineEnv) -> None:
    _mayor, line = await open_line(env)
    liaison = await env.harness.issuer(line.entity_id, "liaison-gent")
    first = await env.stub.PublishLiaisonUpdate(
        pb.PublishLiaisonUpdateRequest(
            line_id=line.id,
            items=[pb.QuestionAnswer(question="Is tap water safe?", answer="Yes.")],
        ),
        metadata=liaison.metadata,
    )
    second = await env.stub.PublishLiaisonUpdate(
        pb.PublishLiaisonUpdateRequest(
            line_id=line.id,
            items=[
                pb.QuestionAnswer(question="Is tap water safe?", answer="Yes."),
                pb.QuestionAnswer(question="Can children go to school?", answer="Not today."),
            ],
        ),
        metadata=liaison.metadata,
    )
    assert (first.version, second.version) == (1, 2)
    assert second.published_by == "liaison-gent"
    received = await env.control(f"/control/lines/{line.id}")
    assert sorted(received["liaison"]) == ["1", "2"]
    assert received["liaison"]["2"][1]["answer"] == "Not today."
    audited = await env.harness.pool.fetch(
        "SELECT detail FROM audit_log WHERE action = 'PublishLiaisonUpdate' ORDER BY seq"
    )
    assert [r["detail"] for r in audited] == ["version=1 items=1", "version=2 items=2"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.PublishLiaisonUpdate(
            pb.PublishLiaisonUpdateRequest(
                line_id=line.id, items=[pb.QuestionAnswer(question="Why?", answer="")]
            ),
            metadata=liaison.metadata,
        )
    assert (err.value.details() or "").startswith("items[0].answer:")
    # Another entity's user sees no such line.
    _, stranger, _ = await env.ready("Brugge")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.PublishLiaisonUpdate(
            pb.PublishLiaisonUpdateRequest(
                line_id=line.id, items=[pb.QuestionAnswer(question="?", answer="!")]
            ),
            metadata=stranger.metadata,
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_gradual_then_final_closure_by_an_authorised_person(env: LineEnv) -> None:
    mayor, line = await open_line(env, hours=1)
    clerk = await env.harness.issuer(line.entity_id, "clerk-gent")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.CloseLine(
            pb.CloseLineRequest(line_id=line.id, statement="Done.", final=True),
            metadata=clerk.metadata,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.CloseLine(
            pb.CloseLineRequest(line_id=line.id, statement="", final=True),
            metadata=mayor.metadata,
        )
    assert (err.value.details() or "").startswith("statement:")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.CloseLine(
            pb.CloseLineRequest(line_id=line.id, statement="Fewer.", operators=8),
            metadata=mayor.metadata,
        )
    assert (err.value.details() or "").startswith("operators:")
    step = await env.stub.CloseLine(
        pb.CloseLineRequest(
            line_id=line.id,
            statement="Calls are dropping: day hours, two operators, nights to the town hall.",
            opening_hours="08:00-20:00",
            operators=2,
            forward_to="+3292662211",
        ),
        metadata=mayor.metadata,
    )
    assert step.state == pb.LINE_STATE_REDUCED
    assert (step.opening_hours, step.operators, step.forward_to) == (
        "08:00-20:00",
        2,
        "+3292662211",
    )
    # The next hour is staffed with the reduced arrangement: one operator per language line.
    await env.control("/control/advance", {"seconds": 3600})
    env.clock.advance(hours=1)
    await env.syncer.sync_once()
    staffing = await env.stub.GetStaffing(
        pb.GetStaffingRequest(line_id=line.id), metadata=mayor.metadata
    )
    assert {s.language: s.actual_operators for s in staffing.languages} == {"nl": 1, "fr": 1}
    closing = await env.stub.CloseLine(
        pb.CloseLineRequest(
            line_id=line.id, statement="The emergency phase has ended.", final=True
        ),
        metadata=mayor.metadata,
    )
    assert closing.state == pb.LINE_STATE_CLOSING
    await env.syncer.sync_once()
    closed = await env.stub.GetLine(pb.GetLineRequest(line_id=line.id), metadata=mayor.metadata)
    assert closed.state == pb.LINE_STATE_CLOSED
    assert isinstance(closed.closed_at.ToDatetime(), datetime)
    received = await env.control(f"/control/lines/{line.id}")
    assert received["closure"] == {
        "statement": "The emergency phase has ended.",
        "confirmed_by": "mayor-gent",
    }
    assert received["arrangements"][0]["forward_to"] == "+3292662211"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await env.stub.CloseLine(
            pb.CloseLineRequest(line_id=line.id, statement="Again.", final=True),
            metadata=mayor.metadata,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
