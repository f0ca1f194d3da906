"""What the alerts a line supports carry while it takes calls: its number in texts and CAP."""

from __future__ import annotations

import asyncpg

from services.alerting import store
from services.alerting.infoline.model import TAKING_CALLS

#: "Information line" per language, before the number in the channels' texts.
LABELS = {"nl": "Infolijn", "fr": "Ligne info", "de": "Infotelefon", "en": "Information line"}


async def open_number(conn: store.Conn | asyncpg.Pool, *, alert_id: str) -> str:
    """The number of a line taking calls for the alert ("" when none is)."""
    number: str | None = await conn.fetchval(
        "SELECT l.number FROM infoline_line_alerts a JOIN infoline_lines l ON l.id = a.line_id"
        " WHERE a.alert_id = $1::uuid AND l.state = ANY($2::text[]) AND l.number <> ''"
        " ORDER BY l.opened_at DESC LIMIT 1",
        alert_id,
        [s.value for s in TAKING_CALLS],
    )
    return number or ""


def with_number(texts: dict[str, str], *, number: str) -> dict[str, str]:
    """The channels' texts with the line's number at the end, in each text's language."""
    if not number:
        return texts
    return {
        lang: f"{text} {LABELS.get(lang, LABELS['en'])}: {number}" for lang, text in texts.items()
    }


def cap_contact(number: str) -> str:
    """CAP <contact>: the line, in words."""
    return f"{LABELS['en']} {number}" if number else ""


def cap_web(number: str) -> str:
    """CAP <web>: the number as a tel: URI (RFC 3966), which phones and apps can dial."""
    return f"tel:{number}" if number else ""
