"""The information line's values: kinds, states, the activation form, the provider's reports."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

#: Operators a line opens with unless the form asks otherwise (the service agreement).
DEFAULT_OPERATORS = 4
#: The provider's promise: open within this long after the request.
OPENING_PROMISE = timedelta(hours=1)
#: How long ahead an exercise must be requested.
EXERCISE_NOTICE = timedelta(weeks=4)
#: Opening hours unless the form asks otherwise.
ALWAYS_OPEN = "24/7"


class LineKind(enum.StrEnum):
    """What a line is for."""

    #: General information to the population, staffed by the provider's operators.
    D5 = "D5"
    #: Information for victims' relatives, staffed by the health authority's own staff.
    D2 = "D2"


#: Who answers the calls of each kind of line.
HANDLED_BY = {LineKind.D5: "provider", LineKind.D2: "health_authority"}


class LineState(enum.StrEnum):
    """Where a line is in its life."""

    #: Activation recorded; not acknowledged by the provider yet.
    REQUESTED = "requested"
    #: The provider acknowledged it; not open yet.
    ACKNOWLEDGED = "acknowledged"
    #: Taking calls.
    OPEN = "open"
    #: Taking calls with reduced arrangements (a gradual closure step).
    REDUCED = "reduced"
    #: Final closure sent; the provider has not reported it closed yet.
    CLOSING = "closing"
    #: Closed.
    CLOSED = "closed"


#: States in which the line takes calls (its number goes into the alerts' texts and CAP).
TAKING_CALLS = (LineState.OPEN, LineState.REDUCED)
#: States before opening: the one-hour promise still runs.
NOT_OPEN_YET = (LineState.REQUESTED, LineState.ACKNOWLEDGED)


class PhaseLevel(enum.StrEnum):
    """An emergency phase's level; each one allows the information line."""

    #: Declared by the mayor.
    MUNICIPAL = "municipal"
    #: Declared by the provincial governor.
    PROVINCIAL = "provincial"
    #: Declared by the minister of the interior.
    FEDERAL = "federal"


class PersonFunction(enum.StrEnum):
    """Why a person may activate the entity's line."""

    #: The mayor (or the governor, the minister for higher entities).
    MAYOR = "mayor"
    #: A representative named in advance.
    REPRESENTATIVE = "representative"


@dataclass(frozen=True)
class Contact:
    """The liaison officer: who the provider calls about the line."""

    name: str
    phone: str
    email: str = ""


@dataclass(frozen=True)
class Form:
    """The activation form, validated."""

    kind: LineKind
    exercise: bool
    description: str
    #: Advice per language; each language is one language line at the provider.
    advice: dict[str, str]
    liaison: Contact
    opening_hours: str
    operators: int
    #: None: as soon as possible.
    desired_opening: datetime | None
    alert_ids: tuple[str, ...]

    def details(self) -> dict[str, Any]:
        """What the form says besides its kind, exercise flag and alerts, as JSON values: the
        stored form (`infoline_lines.form`) and the provider's activation both carry it."""
        desired = self.desired_opening
        return {
            "description": self.description,
            "advice": self.advice,
            "liaison": {
                "name": self.liaison.name,
                "phone": self.liaison.phone,
                "email": self.liaison.email,
            },
            "opening_hours": self.opening_hours,
            "operators": self.operators,
            "desired_opening": None if desired is None else desired.isoformat(),
        }


@dataclass(frozen=True)
class Line:
    """A line as stored."""

    id: str
    entity_id: int
    requested_by: str
    form: Form
    state: LineState
    requested_at: datetime
    open_by: datetime
    acknowledged_at: datetime | None
    opened_at: datetime | None
    closed_at: datetime | None
    number: str
    second_line: str
    opening_hours: str
    operators: int
    forward_to: str
    liaison_version: int

    def overdue(self, now: datetime) -> bool:
        """Whether the promise is broken: not open by `open_by`, still or when it opened."""
        if self.opened_at is not None:
            return self.opened_at > self.open_by
        return self.state in NOT_OPEN_YET and now > self.open_by

    @property
    def handled_by(self) -> str:
        """Whose staff answers the calls."""
        return HANDLED_BY[self.form.kind]


@dataclass(frozen=True)
class Figures:
    """The provider's call figures of one language line for one hour."""

    language: str
    hour_start: datetime
    offered: int
    answered: int
    abandoned: int
    #: Average handling time, seconds.
    aht_s: float
    #: Operators who staffed the language line that hour.
    operators: int


class EventType(enum.StrEnum):
    """What the provider reports about a line."""

    #: It received the activation; carries the line's number.
    ACKNOWLEDGED = "acknowledged"
    #: The line takes calls.
    OPENED = "opened"
    #: One hour's figures of one language line.
    FIGURES = "figures"
    #: The line is closed.
    CLOSED = "closed"


@dataclass(frozen=True)
class ProviderEvent:
    """One report from the provider's feed, in order."""

    seq: int
    type: EventType
    at: datetime
    number: str = ""
    figures: Figures | None = None


@dataclass(frozen=True)
class QuestionAnswer:
    """One item of a liaison update."""

    question: str
    answer: str


@dataclass(frozen=True)
class LiaisonUpdate:
    """One version of the liaison officer's questions and answers."""

    line_id: str
    version: int
    items: tuple[QuestionAnswer, ...]
    published_at: datetime
    published_by: str


@dataclass(frozen=True)
class Arrangements:
    """A gradual closure step: what the line keeps."""

    opening_hours: str
    operators: int
    forward_to: str


@dataclass(frozen=True)
class LanguageStaffing:
    """Recommendation and actual staffing of one language line, from its latest hour."""

    figures: Figures
    recommended: int
    service_level_actual: float
    service_level_recommended: float


@dataclass(frozen=True)
class Staffing:
    """Per language line: actual and recommended operators for a service-level target."""

    line_id: str
    answered_ratio: float
    target_s: int
    languages: tuple[LanguageStaffing, ...] = field(default=())
