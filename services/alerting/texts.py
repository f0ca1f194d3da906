"""The text each channel carries: CAP fields joined, exercises and tests marked in the language."""

from __future__ import annotations

from services.alerting.model import Info, Kind

#: The marking that opens every text of an exercise or a test, per language.
MARKS: dict[Kind, dict[str, str]] = {
    Kind.EXERCISE: {
        "nl": "OEFENING - ",
        "fr": "EXERCICE - ",
        "de": "ÜBUNG - ",
        "en": "EXERCISE - ",
    },
    Kind.TEST: {"nl": "TEST - ", "fr": "TEST - ", "de": "TEST - ", "en": "TEST - "},
}


def mark(*, kind: Kind, language: str) -> str:
    """The prefix an alert of `kind` carries in `language` ("" for real alerts)."""
    return MARKS.get(kind, {}).get(language, "")


def channel_text(*, kind: Kind, info: Info) -> str:
    """The text sent over SMS, voice and e-mail: marking, headline, then what to do."""
    parts = [info.headline.strip(), info.description.strip(), info.instruction.strip()]
    return mark(kind=kind, language=info.language) + " ".join(p for p in parts if p)


def channel_texts(*, kind: Kind, infos: tuple[Info, ...]) -> dict[str, str]:
    """Final text per language, as written to the work streams."""
    return {info.language: channel_text(kind=kind, info=info) for info in infos}
