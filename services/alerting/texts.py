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


#: GSM 03.38 default alphabet (one septet each) and its extension table (two septets each).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")


def sms_segments(text: str) -> int:
    """SMS segments (communication units) a text takes: 160/153 septets, or 70/67 in UCS-2."""
    if all(c in GSM_BASIC or c in GSM_EXTENSION for c in text):
        septets = sum(2 if c in GSM_EXTENSION else 1 for c in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)
