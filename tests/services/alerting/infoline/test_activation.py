"""Who may activate the information line, and the form's validation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from tocsin.alerting.v1 import infoline_pb2 as pb

from services.alerting import audit
from tests.services.alerting.conftest import AUDIT_KEY
from tests.services.alerting.infoline.conftest import LineEnv, form

pytestmark = pytest.mark.timeout(60)


async def test_mayor_activates_during_declared_phase(line_env: LineEnv) -> None:
    _entity_id, mayor, alert_id = await line_env.ready()
    line = await line_env.stub.ActivateLine(
        pb.ActivateLineRequest(form=form(alert_ids=(alert_id,))), metadata=mayor.metadata
    )
    assert line.state == pb.LINE_STATE_REQUESTED
    assert line.form.operators == 4  # the default
    assert line.form.opening_hours == "24/7"
    assert line.handled_by == "provider"
    requested = line.requested_at.ToDatetime()
    assert line.open_by.ToDatetime() - requested == timedelta(hours=1)
    assert list(line.form.alert_ids) == [alert_id]
    # The provider received the form over HTTP.
    received = await line_env.control(f"/control/lines/{line.id}")
    assert received["activation"]["operators"] == 4
    assert received["activation"]["advice"]["nl"].startswith("Blijf binnen")
    assert received["activation"]["liaison"]["phone"] == "+3292680000"


async def test_issuer_not_named_in_advance_is_refused(line_env: LineEnv) -> None:
    entity_id, _mayor, alert_id = await line_env.ready()
    other = await line_env.harness.issuer(entity_id, "clerk-gent")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await line_env.stub.ActivateLine(
            pb.ActivateLineRequest(form=form(alert_ids=(alert_id,))), metadata=other.metadata
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "named in advance" in (err.value.details() or "")


async def test_removed_representative_is_refused_and_the_list_is_audited(
    line_env: LineEnv,
) -> None:
    entity_id, mayor, alert_id = await line_env.ready()
    rep = await line_env.person(entity_id, "deputy-gent", pb.PERSON_FUNCTION_REPRESENTATIVE)
    listed = await line_env.stub.ListAuthorisedPersons(
        pb.ListAuthorisedPersonsRequest(entity_id=entity_id), metadata=mayor.metadata
    )
    assert [(p.username, p.function) for p in listed.persons] == [
        ("mayor-gent", pb.PERSON_FUNCTION_MAYOR),
        ("deputy-gent", pb.PERSON_FUNCTION_REPRESENTATIVE),
    ]
    rep_id = listed.persons[1].user_id
    await line_env.stub.RemoveAuthorisedPerson(
        pb.RemoveAuthorisedPersonRequest(entity_id=entity_id, user_id=rep_id),
        metadata=line_env.admin,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await line_env.stub.ActivateLine(
            pb.ActivateLineRequest(form=form(alert_ids=(alert_id,))), metadata=rep.metadata
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    actions = [
        r["action"]
        for r in await line_env.harness.pool.fetch("SELECT action FROM audit_log ORDER BY seq")
    ]
    assert actions.count("AddAuthorisedPerson") == 2
    assert "RemoveAuthorisedPerson" in actions
    assert (await audit.verify(line_env.harness.pool, key=AUDIT_KEY)).ok


async def test_only_an_admin_manages_the_list(line_env: LineEnv) -> None:
    entity_id, mayor, _ = await line_env.ready()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await line_env.stub.AddAuthorisedPerson(
            pb.AddAuthorisedPersonRequest(
                entity_id=entity_id, user_id=1, function=pb.PERSON_FUNCTION_REPRESENTATIVE
            ),
            metadata=mayor.metadata,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_no_phase_no_line_but_an_exercise_needs_none(line_env: LineEnv) -> None:
    entity_id = await line_env.entity()
    mayor = await line_env.person(entity_id, "mayor-gent")
    alert_id = await line_env.alert(mayor)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await line_env.stub.ActivateLine(
            pb.ActivateLineRequest(form=form(alert_ids=(alert_id,))), metadata=mayor.metadata
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "phase" in (err.value.details() or "")
    exercise = await line_env.stub.ActivateLine(
        pb.ActivateLineRequest(
            form=form(exercise=True, desired_opening=line_env.clock() + timedelta(weeks=5))
        ),
        metadata=mayor.metadata,
    )
    assert exercise.form.exercise
    # After the phase ends, no new line.
    await line_env.declare(mayor, entity_id)
    await line_env.stub.EndPhase(pb.EndPhaseRequest(entity_id=entity_id), metadata=mayor.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await line_env.stub.ActivateLine(
            pb.ActivateLineRequest(form=form(alert_ids=(alert_id,))), metadata=mayor.metadata
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_mayor_declares_only_the_municipal_phase(line_env: LineEnv) -> None:
    entity_id = await line_env.entity()
    mayor = await line_env.person(entity_id, "mayor-gent")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await line_env.stub.DeclarePhase(
            pb.DeclarePhaseRequest(entity_id=entity_id, level=pb.PHASE_LEVEL_PROVINCIAL),
            metadata=mayor.metadata,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The crisis centre records the governor's provincial phase; it allows the line too.
    phase = await line_env.stub.DeclarePhase(
        pb.DeclarePhaseRequest(entity_id=entity_id, level=pb.PHASE_LEVEL_PROVINCIAL),
        metadata=line_env.admin,
    )
    assert phase.level == pb.PHASE_LEVEL_PROVINCIAL
    line = await line_env.stub.ActivateLine(
        pb.ActivateLineRequest(form=form(alert_ids=(await line_env.alert(mayor),))),
        metadata=mayor.metadata,
    )
    assert line.state == pb.LINE_STATE_REQUESTED


async def test_type_2_entities_cannot(line_env: LineEnv) -> None:
    police = await line_env.entity("Politiezone Gent", type=2, territory="")
    await line_env.harness.issuer(police, "chief-pz")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await line_env.stub.AddAuthorisedPerson(
            pb.AddAuthorisedPersonRequest(
                entity_id=police, user_id=2, function=pb.PERSON_FUNCTION_MAYOR
            ),
            metadata=line_env.admin,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "type 2" in (err.value.details() or "")
    chief = await line_env.harness.login("chief-pz")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await line_env.stub.ActivateLine(
            pb.ActivateLineRequest(
                form=form(exercise=True, desired_opening=line_env.clock() + timedelta(weeks=5))
            ),
            metadata=chief.metadata,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_someone_elses_alert_cannot_be_linked(line_env: LineEnv) -> None:
    _, mayor, _ = await line_env.ready("Gent")
    _, _other_mayor, other_alert = await line_env.ready("Brugge")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await line_env.stub.ActivateLine(
            pb.ActivateLineRequest(form=form(alert_ids=(other_alert,))), metadata=mayor.metadata
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("form.alert_ids[0]")


def _set(**fields: object) -> Callable[[pb.ActivationForm], None]:
    def change(msg: pb.ActivationForm) -> None:
        for name, value in fields.items():
            target = msg.liaison if name.startswith("liaison_") else msg
            setattr(target, name.removeprefix("liaison_"), value)

    return change


def _advice(advice: dict[str, str]) -> Callable[[pb.ActivationForm], None]:
    def change(msg: pb.ActivationForm) -> None:
        msg.advice.clear()
        msg.advice.update(advice)

    return change


def _alerts(ids: list[str]) -> Callable[[pb.ActivationForm], None]:
    def change(msg: pb.ActivationForm) -> None:
        del msg.alert_ids[:]
        msg.alert_ids.extend(ids)

    return change


def _opening_in(hours: float) -> Callable[[pb.ActivationForm], None]:
    def change(msg: pb.ActivationForm) -> None:
        msg.desired_opening.FromDatetime(datetime.now(UTC) + timedelta(hours=hours))

    return change


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_set(kind=pb.LINE_KIND_UNSPECIFIED), "form.kind"),
        (_set(description="  "), "form.description"),
        (_advice({}), "form.advice"),
        (_advice({"xx": "hello"}), "form.advice[xx]"),
        (_advice({"nl": ""}), "form.advice[nl]"),
        (_set(liaison_name=""), "form.liaison.name"),
        (_set(liaison_phone="0470 12 34 56"), "form.liaison.phone"),
        (_set(liaison_email="not-an-address"), "form.liaison.email"),
        (_set(opening_hours="8 to 20"), "form.opening_hours"),
        (_set(operators=500), "form.operators"),
        (_set(operators=-1), "form.operators"),
        (_alerts([]), "form.alert_ids"),
        (_alerts(["nope"]), "form.alert_ids[0]"),
        (_opening_in(-2), "form.desired_opening"),
    ],
)
async def test_form_errors_name_the_field(
    line_env: LineEnv, change: Callable[[pb.ActivationForm], None], field: str
) -> None:
    _, mayor, alert_id = await line_env.ready()
    msg = form(alert_ids=(alert_id,))
    change(msg)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await line_env.stub.ActivateLine(pb.ActivateLineRequest(form=msg), metadata=mayor.metadata)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(f"{field}:"), err.value.details()


async def test_exercise_needs_four_weeks_notice(line_env: LineEnv) -> None:
    _, mayor, _ = await line_env.ready()
    soon = line_env.clock() + timedelta(weeks=3)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await line_env.stub.ActivateLine(
            pb.ActivateLineRequest(form=form(exercise=True, desired_opening=soon)),
            metadata=mayor.metadata,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.value.details() or ""
    earliest = (line_env.clock() + timedelta(weeks=4)).isoformat(timespec="minutes")
    assert details.startswith("form.desired_opening:")
    assert earliest in details
    ok = await line_env.stub.ActivateLine(
        pb.ActivateLineRequest(
            form=form(exercise=True, desired_opening=line_env.clock() + timedelta(weeks=4, hours=1))
        ),
        metadata=mayor.metadata,
    )
    # An exercise's promise is its desired opening, not an hour after the request.
    assert ok.open_by.ToDatetime() == ok.form.desired_opening.ToDatetime()
