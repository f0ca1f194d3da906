"""Which EU-Alert message identifiers an alert goes out on, and with which texts (one table).

EU-Alert (ETSI TS 102 900) uses the CMAS message identifiers of 3GPP TS 23.041 section 9.4.1.2.2:

| alert (kind, severity, urgency, certainty)                     | identifier | extra languages |
|----------------------------------------------------------------|-----------:|----------------:|
| emergency, Extreme, Immediate, Observed (EU-Alert level 1)     | 4370 | 4383 |
| emergency, Extreme, Immediate, Likely (or less certain)        | 4372 | 4385 |
| emergency, Extreme, Expected (or later), Observed              | 4373 | 4386 |
| emergency, Extreme, Expected (or later), Likely (or less)      | 4374 | 4387 |
| emergency, Severe, Immediate, Observed                         | 4375 | 4388 |
| emergency, Severe, Immediate, Likely (or less)                 | 4376 | 4389 |
| emergency, Severe, Expected (or later), Observed               | 4377 | 4390 |
| emergency, Severe (or Moderate, Minor, Unknown), otherwise     | 4378 | 4391 |
| test                                                           | 4380 | 4393 |
| exercise                                                       | 4381 | 4394 |

4371 (Extreme, Immediate, Observed in CMAS) is left to 4370: in EU-Alert the highest level is the
one phones cannot opt out of. An exercise and a test never go out on an alert identifier, whatever
their severity. General-interest alerts are never broadcast (the permission matrix refuses them).

Languages: the alert's first language goes on the identifier, its language in the data coding
scheme; the other languages go on the "additional language" identifier (13 above), one message
whose text is theirs one after another (osmo-cbc's ECBE keeps one message per identifier, so one
message per identifier and serial number is all an operator's CBC is asked to hold).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.cellbroadcast.pages import MAX_PAGES, Pages, PagesError, encode, page_count

#: EU-Alert level 1 (CMAS presidential): highest level, no opt-out.
EU_ALERT_LEVEL_1 = 4370
#: Monthly test.
TEST = 4380
#: Exercise.
EXERCISE = 4381
#: The "additional language" identifier of each lies this far above it.
ADDITIONAL_LANGUAGE_OFFSET = 13
#: Between two languages of the additional-language message.
LANGUAGE_SEPARATOR = "\n"

#: (severity is Extreme, urgency is Immediate, certainty is Observed) -> identifier, emergencies.
_EMERGENCY = {
    (True, True, True): EU_ALERT_LEVEL_1,
    (True, True, False): 4372,
    (True, False, True): 4373,
    (True, False, False): 4374,
    (False, True, True): 4375,
    (False, True, False): 4376,
    (False, False, True): 4377,
    (False, False, False): 4378,
}
#: Every identifier an alert of ours may use (primary ones).
ALERT_IDENTIFIERS = frozenset(_EMERGENCY.values())


def identifier(*, kind: str, severity: str, urgency: str, certainty: str) -> int:
    """The primary message identifier of an alert (the table in this module's docstring)."""
    if kind == "test":
        return TEST
    if kind == "exercise":
        return EXERCISE
    if kind != "emergency":
        raise ValueError(f"kind {kind!r} is never broadcast")
    return _EMERGENCY[(severity == "Extreme", urgency == "Immediate", certainty == "Observed")]


@dataclass(frozen=True)
class CbsMessage:
    """One CBS message of an alert: its identifier, language (None: several) and pages."""

    message_id: int
    language: str | None
    text: str
    pages: Pages


class TextTooLong(PagesError):
    """A language's text (or the additional languages together) needs more than 15 pages."""

    def __init__(self, message: str, *, language: str, pages: int) -> None:
        super().__init__(message)
        #: The language (or languages joined by +) whose message is too long.
        self.language = language
        #: Pages it would need.
        self.pages = pages


def split_languages(texts: list[tuple[str, str]]) -> list[tuple[str | None, str, int]]:
    """(language, text, offset) per CBS message: the first language, then the others together."""
    if not texts:
        return []
    out: list[tuple[str | None, str, int]] = [(texts[0][0], texts[0][1], 0)]
    rest = texts[1:]
    if rest:
        language = rest[0][0] if len(rest) == 1 else None
        joined = LANGUAGE_SEPARATOR.join(text for _, text in rest)
        out.append((language, joined, ADDITIONAL_LANGUAGE_OFFSET))
    return out


def check_pages(texts: list[tuple[str, str]]) -> None:
    """Raise TextTooLong naming the language whose message needs more than 15 pages."""
    for language, text, offset in split_languages(texts):
        n = page_count(text)
        if n > MAX_PAGES:
            name = language or "+".join(lang for lang, _ in texts[1:])
            raise TextTooLong(
                f"{name}: {n} pages of cell broadcast, at most {MAX_PAGES}"
                + (" (additional languages share one message)" if offset else ""),
                language=name,
                pages=n,
            )


def messages(
    *, kind: str, severity: str, urgency: str, certainty: str, texts: list[tuple[str, str]]
) -> tuple[CbsMessage, ...]:
    """The CBS messages of an alert: its texts (language, text) in the alert's order."""
    check_pages(texts)
    base = identifier(kind=kind, severity=severity, urgency=urgency, certainty=certainty)
    return tuple(
        CbsMessage(base + offset, language, text, encode(text, language=language))
        for language, text, offset in split_languages(texts)
    )
