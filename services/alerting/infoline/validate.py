"""The activation form and the other requests checked field by field (INVALID_ARGUMENT)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from services.alerting.infoline.model import (
    ALWAYS_OPEN,
    DEFAULT_OPERATORS,
    EXERCISE_NOTICE,
    Arrangements,
    Contact,
    Form,
    LineKind,
    QuestionAnswer,
)
from services.alerting.model import LANGUAGES
from services.kernel.errors import InvalidArgument

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")
#: Longest free text of a form field (description, advice, an answer).
MAX_TEXT = 4000
#: Most operators a form may ask for (the provider's standby pool).
MAX_OPERATORS = 200
#: Most questions and answers in one liaison update.
MAX_ITEMS = 100


def text(value: str, *, field: str, required: bool = True, limit: int = MAX_TEXT) -> str:
    """A stripped free text; refused when empty (if required) or too long."""
    value = value.strip()
    if required and not value:
        raise InvalidArgument(field, "required")
    if len(value) > limit:
        raise InvalidArgument(field, f"at most {limit} characters")
    return value


def phone(value: str, *, field: str, required: bool = True) -> str:
    """An E.164 number."""
    value = value.strip()
    if not value and not required:
        return ""
    if not E164.match(value):
        raise InvalidArgument(field, "an E.164 number, e.g. +3292680000")
    return value


def opening_hours(value: str, *, field: str) -> str:
    """'24/7' (the default) or 'HH:MM-HH:MM'."""
    value = value.strip() or ALWAYS_OPEN
    if value != ALWAYS_OPEN and not HOURS.match(value):
        raise InvalidArgument(field, "'24/7' or HH:MM-HH:MM, e.g. 08:00-20:00")
    return value


def operators(value: int, *, field: str) -> int:
    """Operators asked for; 0 means the default of 4."""
    if value == 0:
        return DEFAULT_OPERATORS
    if not 1 <= value <= MAX_OPERATORS:
        raise InvalidArgument(field, f"1 to {MAX_OPERATORS} (0: the default, {DEFAULT_OPERATORS})")
    return value


def alert_id(value: str, *, field: str) -> str:
    """An alert's UUID in canonical form."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(field, "not an alert id (UUID)") from None


def form(
    *,
    kind: LineKind | None,
    exercise: bool,
    description: str,
    advice: dict[str, str],
    liaison: Contact,
    hours: str,
    operators_asked: int,
    desired_opening: datetime | None,
    alert_ids: list[str],
    now: datetime,
) -> Form:
    """The activation form checked field by field; the first bad field is named."""
    if kind is None:
        raise InvalidArgument("form.kind", "D5 (general information) or D2 (victims)")
    if not advice:
        raise InvalidArgument("form.advice", "advice in at least one language")
    checked: dict[str, str] = {}
    for language in sorted(advice):
        if language not in LANGUAGES:
            raise InvalidArgument(f"form.advice[{language}]", f"one of {', '.join(LANGUAGES)}")
        checked[language] = text(advice[language], field=f"form.advice[{language}]")
    contact = Contact(
        name=text(liaison.name, field="form.liaison.name", limit=200),
        phone=phone(liaison.phone, field="form.liaison.phone"),
        email=liaison.email.strip(),
    )
    if contact.email and not EMAIL.match(contact.email):
        raise InvalidArgument("form.liaison.email", "not an e-mail address")
    if desired_opening is not None and desired_opening < now:
        raise InvalidArgument("form.desired_opening", "in the past")
    if exercise:
        earliest = now + EXERCISE_NOTICE
        if desired_opening is None or desired_opening < earliest:
            raise InvalidArgument(
                "form.desired_opening",
                "an exercise is requested at least 4 weeks ahead: the earliest allowed opening"
                f" is {earliest.isoformat(timespec='minutes')}",
            )
    ids = tuple(
        dict.fromkeys(alert_id(a, field=f"form.alert_ids[{i}]") for i, a in enumerate(alert_ids))
    )
    if not ids and not exercise:
        raise InvalidArgument("form.alert_ids", "the alert(s) the line supports")
    return Form(
        kind=kind,
        exercise=exercise,
        description=text(description, field="form.description"),
        advice=checked,
        liaison=contact,
        opening_hours=opening_hours(hours, field="form.opening_hours"),
        operators=operators(operators_asked, field="form.operators"),
        desired_opening=desired_opening,
        alert_ids=ids,
    )


def liaison_items(items: list[QuestionAnswer]) -> tuple[QuestionAnswer, ...]:
    """Questions and answers, each with both parts."""
    if not items:
        raise InvalidArgument("items", "at least one question and answer")
    if len(items) > MAX_ITEMS:
        raise InvalidArgument("items", f"at most {MAX_ITEMS} per update")
    return tuple(
        QuestionAnswer(
            question=text(item.question, field=f"items[{i}].question"),
            answer=text(item.answer, field=f"items[{i}].answer"),
        )
        for i, item in enumerate(items)
    )


def arrangements(
    *, hours: str, operators_kept: int, forward_to: str, current: Arrangements
) -> Arrangements:
    """A gradual closure step: fewer hours, fewer operators and/or a number to forward to.

    An empty field keeps what the line has now; at least one must change.
    """
    step = Arrangements(
        opening_hours=opening_hours(hours, field="opening_hours")
        if hours.strip()
        else current.opening_hours,
        operators=operators(operators_kept, field="operators")
        if operators_kept
        else current.operators,
        forward_to=phone(forward_to, field="forward_to", required=False) or current.forward_to,
    )
    if step == current:
        raise InvalidArgument(
            "final", "a step down names fewer hours, fewer operators or a forwarding number"
        )
    if step.operators > current.operators:
        raise InvalidArgument("operators", f"a step down keeps at most {current.operators}")
    return step
