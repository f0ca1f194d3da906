"""Protobuf to the information line's values and back."""

from __future__ import annotations

from datetime import datetime

from tocsin.alerting.v1 import infoline_pb2 as pb

from services.alerting.convert import timestamp
from services.alerting.infoline import validate
from services.alerting.infoline.model import (
    Contact,
    Form,
    LanguageStaffing,
    LiaisonUpdate,
    Line,
    LineKind,
    LineState,
    PersonFunction,
    PhaseLevel,
    QuestionAnswer,
    Staffing,
)
from services.alerting.infoline.rights import Person, Phase

KINDS = {pb.LINE_KIND_D5: LineKind.D5, pb.LINE_KIND_D2: LineKind.D2}
KINDS_PB = {v: k for k, v in KINDS.items()}
STATES_PB = {
    LineState.REQUESTED: pb.LINE_STATE_REQUESTED,
    LineState.ACKNOWLEDGED: pb.LINE_STATE_ACKNOWLEDGED,
    LineState.OPEN: pb.LINE_STATE_OPEN,
    LineState.REDUCED: pb.LINE_STATE_REDUCED,
    LineState.CLOSING: pb.LINE_STATE_CLOSING,
    LineState.CLOSED: pb.LINE_STATE_CLOSED,
}
LEVELS = {
    pb.PHASE_LEVEL_MUNICIPAL: PhaseLevel.MUNICIPAL,
    pb.PHASE_LEVEL_PROVINCIAL: PhaseLevel.PROVINCIAL,
    pb.PHASE_LEVEL_FEDERAL: PhaseLevel.FEDERAL,
}
LEVELS_PB = {v: k for k, v in LEVELS.items()}
FUNCTIONS = {
    pb.PERSON_FUNCTION_MAYOR: PersonFunction.MAYOR,
    pb.PERSON_FUNCTION_REPRESENTATIVE: PersonFunction.REPRESENTATIVE,
}
FUNCTIONS_PB = {v: k for k, v in FUNCTIONS.items()}


def form(msg: pb.ActivationForm, *, now: datetime) -> Form:
    """The activation form, validated field by field."""
    return validate.form(
        kind=KINDS.get(msg.kind),
        exercise=msg.exercise,
        description=msg.description,
        advice=dict(msg.advice),
        liaison=Contact(msg.liaison.name, msg.liaison.phone, msg.liaison.email),
        hours=msg.opening_hours,
        operators_asked=msg.operators,
        desired_opening=msg.desired_opening.ToDatetime(tzinfo=now.tzinfo)
        if msg.HasField("desired_opening")
        else None,
        alert_ids=list(msg.alert_ids),
        now=now,
    )


def form_pb(value: Form) -> pb.ActivationForm:
    """The form as the API shows it."""
    return pb.ActivationForm(
        kind=KINDS_PB[value.kind],
        exercise=value.exercise,
        description=value.description,
        advice=value.advice,
        liaison=pb.Contact(
            name=value.liaison.name, phone=value.liaison.phone, email=value.liaison.email
        ),
        opening_hours=value.opening_hours,
        operators=value.operators,
        desired_opening=timestamp(value.desired_opening),
        alert_ids=list(value.alert_ids),
    )


def line_pb(value: Line, *, now: datetime) -> pb.InfoLine:
    """A line as the API shows it."""
    return pb.InfoLine(
        id=value.id,
        entity_id=value.entity_id,
        form=form_pb(value.form),
        state=STATES_PB[value.state],
        number=value.number,
        requested_at=timestamp(value.requested_at),
        open_by=timestamp(value.open_by),
        acknowledged_at=timestamp(value.acknowledged_at),
        opened_at=timestamp(value.opened_at),
        closed_at=timestamp(value.closed_at),
        overdue=value.overdue(now),
        handled_by=value.handled_by,
        second_line=value.second_line,
        opening_hours=value.opening_hours,
        operators=value.operators,
        forward_to=value.forward_to,
        liaison_version=value.liaison_version,
        requested_by=value.requested_by,
    )


def items(values: list[pb.QuestionAnswer]) -> list[QuestionAnswer]:
    """Liaison items (checked by the domain)."""
    return [QuestionAnswer(v.question, v.answer) for v in values]


def liaison_pb(value: LiaisonUpdate) -> pb.LiaisonUpdate:
    """A liaison version as the API shows it."""
    return pb.LiaisonUpdate(
        line_id=value.line_id,
        version=value.version,
        items=[pb.QuestionAnswer(question=i.question, answer=i.answer) for i in value.items],
        published_at=timestamp(value.published_at),
        published_by=value.published_by,
    )


def person_pb(value: Person) -> pb.AuthorisedPerson:
    """An authorised person as the API shows it."""
    return pb.AuthorisedPerson(
        entity_id=value.entity_id,
        user_id=value.user_id,
        username=value.username,
        function=FUNCTIONS_PB[value.function],
        added_at=timestamp(value.added_at),
    )


def phase_pb(value: Phase) -> pb.Phase:
    """A phase as the API shows it."""
    return pb.Phase(
        entity_id=value.entity_id,
        level=LEVELS_PB[value.level],
        reason=value.reason,
        declared_at=timestamp(value.declared_at),
        declared_by=value.declared_by,
        ended_at=timestamp(value.ended_at),
    )


def _language_pb(value: LanguageStaffing) -> pb.LanguageStaffing:
    f = value.figures
    return pb.LanguageStaffing(
        language=f.language,
        hour_start=timestamp(f.hour_start),
        offered=f.offered,
        answered=f.answered,
        abandoned=f.abandoned,
        average_handling_s=f.aht_s,
        actual_operators=f.operators,
        recommended_operators=value.recommended,
        service_level_actual=value.service_level_actual,
        service_level_recommended=value.service_level_recommended,
    )


def staffing_pb(value: Staffing) -> pb.Staffing:
    """Staffing side by side, per language line."""
    return pb.Staffing(
        line_id=value.line_id,
        target_answered_ratio=value.answered_ratio,
        target_answer_s=value.target_s,
        languages=[_language_pb(v) for v in value.languages],
    )
