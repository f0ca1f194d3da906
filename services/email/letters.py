"""What an alert's e-mail says: subject and body per language, from the alert's CAP document.

The CAP document of the version carries the headline (already marked OEFENING/EXERCICE/TEST for
exercises and tests), the description and the instruction apart, which an e-mail can show as a
subject and paragraphs; the stream's text (all of it on one line, as an SMS carries it) is the
fallback when no document exists (work that did not come from an alert).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from services.alerting import cap

#: Longest subject made from a text when no headline exists (RFC 5322 lines: 78 characters).
SUBJECT_CHARS = 78

_DOCUMENT = """
SELECT xml FROM cap_messages
 WHERE alert_id = $1::uuid AND version = $2 AND msg_type <> 'Cancel'
 ORDER BY seq DESC LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class Letter:
    """Subject and body of one message."""

    subject: str
    text: str


def from_text(text: str) -> Letter:
    """The stream's text: its beginning as the subject, all of it as the body."""
    text = text.strip()
    subject = text if len(text) <= SUBJECT_CHARS else text[: SUBJECT_CHARS - 1].rsplit(" ", 1)[0]
    return Letter(subject=subject + ("…" if subject != text else ""), text=text)


def from_cap(xml: str, *, language: str) -> Letter | None:
    """The headline as the subject, description, instruction and area as paragraphs."""
    doc = cap.parse(xml)
    infos = {i.language: i for i in doc.infos}
    info = infos.get(language) or (doc.infos[0] if doc.infos else None)
    if info is None or not info.headline.strip():
        return None
    paragraphs = [info.description, info.instruction, info.area_desc and f"({info.area_desc})"]
    body = "\n\n".join(p.strip() for p in paragraphs if p and p.strip())
    return Letter(subject=info.headline.strip(), text=body or info.headline.strip())


class Letters:
    """Letters per (alert, version, language), read once from PostgreSQL and kept."""

    def __init__(self, pool: asyncpg.Pool, *, keep: int = 512) -> None:
        self._pool = pool
        self._keep = keep
        self._documents: dict[tuple[str, int], str | None] = {}

    async def letter(self, *, alert: str, version: int, language: str, text: str) -> Letter:
        """The letter of one alert version in one language (the stream's text as fallback)."""
        key = (alert, version)
        if key not in self._documents:
            if len(self._documents) >= self._keep:
                self._documents.clear()
            self._documents[key] = await self._load(alert, version)
        xml = self._documents[key]
        found = from_cap(xml, language=language) if xml else None
        return found or from_text(text)

    async def _load(self, alert: str, version: int) -> str | None:
        try:
            uuid.UUID(alert)
        except ValueError:
            return None  # not an alert of the alerting service
        xml: str | None = await self._pool.fetchval(_DOCUMENT, alert, version)
        return xml
