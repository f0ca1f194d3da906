"""The work stream entry: one codec for every writer (targeting, the SMS API, benches, tests) and
every reader (the channel worker). docs/streams.md describes the fields.

An entry is one batch of recipients of one alert version on one channel. Writers either build a
`WorkEntry` and `encode` it, or, where a million recipients make per-recipient objects too dear
(targeting's resolve), build the `to` field from pre-escaped parts with `join_recipients` and put
it beside `header_fields`: both come from this module, so the format lives here only.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: Recipients per stream entry: a million-recipient zone is two thousand XADDs, and an entry is
#: small enough (about 20 kB) to be read, claimed and acknowledged as one unit of work.
ENTRY_SIZE = 500
#: Alert kinds an entry may carry.
KINDS = ("emergency", "general", "exercise", "test")
#: Language whose text is used when the recipient's own is missing from an entry.
FALLBACK_LANGUAGE = "en"
#: Fields every entry has (`entity` only when the writer knows it).
FIELDS = ("alert", "version", "kind", "expires", "sender", "texts", "to", "batch")


class Priority(StrEnum):
    """The lane of a channel's work: each has its own stream, read and sent in this order."""

    EMERGENCY = "emergency"  #: threatening danger: before anything else
    GENERAL = "general"  #: general-interest alerts
    BULK = "bulk"  #: tests, exercises and SMS API traffic: only what the others leave

    @property
    def rank(self) -> int:
        """0 for the most urgent lane."""
        return _RANKS[self]


#: Lanes, most urgent first.
PRIORITIES = tuple(Priority)
_RANKS = {p: i for i, p in enumerate(PRIORITIES)}
_KIND_PRIORITY = {
    "emergency": Priority.EMERGENCY,
    "general": Priority.GENERAL,
    "exercise": Priority.BULK,
    "test": Priority.BULK,
}


def priority_of(kind: str) -> Priority:
    """The lane of an alert of `kind` (KINDS); an unknown kind goes with general interest."""
    return _KIND_PRIORITY.get(kind, Priority.GENERAL)


class MalformedEntry(ValueError):
    """A stream entry that cannot be decoded; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Header:
    """What every entry of one alert version carries besides its recipients."""

    alert: str  # alert id (UUID text), or `api:<idempotency key>` for the SMS API
    version: int  # text version: 1 at send, +1 per update
    kind: str  # one of KINDS
    expires: float  # Unix time after which nothing of the entry is sent
    sender: str  # originator shown to the recipient ('' : the channel's default)
    texts: Mapping[str, str]  # language -> final text
    #: Issuing entity (municipality, API client): work of one lane is shared fairly between
    #: entities; '' when the writer does not know it (the alert then stands for itself).
    entity: str = ""

    def text_for(self, language: str) -> str:
        """The text of `language`, else the fallback language's, else any."""
        return text_for(self.texts, language)


def text_for(texts: Mapping[str, str], language: str) -> str:
    """The text a recipient of `language` gets: theirs, else the fallback language's, else the
    first (what every channel sends, and what previews count)."""
    found = texts.get(language) or texts.get(FALLBACK_LANGUAGE)
    return found if found is not None else next(iter(texts.values()))


@dataclass(frozen=True, slots=True)
class WorkEntry:
    """One decoded entry: a header and its recipients as (address, language) pairs."""

    header: Header
    to: Sequence[tuple[str, str]]  # address (E.164 number, e-mail address) and language
    batch: str  # batch identifier, unique per alert version and channel


def header_fields(header: Header) -> dict[str, str]:
    """The fields of an entry other than `to` and `batch`."""
    fields = {
        "alert": header.alert,
        "version": str(header.version),
        "kind": header.kind,
        "expires": repr(float(header.expires)),
        "sender": header.sender,
        "texts": json.dumps(dict(header.texts), ensure_ascii=False, sort_keys=True),
    }
    if header.entity:
        fields["entity"] = header.entity
    return fields


def encode(entry: WorkEntry) -> dict[str, str]:
    """The stream fields of an entry."""
    fields = header_fields(entry.header)
    fields["to"] = json.dumps([[a, lang] for a, lang in entry.to], ensure_ascii=False)
    fields["batch"] = entry.batch
    return fields


def entries(
    header: Header, to: Sequence[tuple[str, str]], *, size: int = ENTRY_SIZE, prefix: str = ""
) -> list[dict[str, str]]:
    """The stream fields of `to` cut into entries of `size` recipients (batch `<prefix><n>`)."""
    return [
        encode(WorkEntry(header, to[i : i + size], f"{prefix}{i // size}"))
        for i in range(0, len(to), size)
    ]


def recipient_tail(language: str) -> bytes:
    """What follows an escaped address in the `to` array: `","<language>"],`."""
    return f'","{language}"],'.encode()


def escape_address(address: bytes) -> bytes:
    """An address as it stands inside a JSON string (most need nothing)."""
    if b'"' in address or b"\\" in address or any(c < 0x20 for c in address):
        return json.dumps(address.decode(), ensure_ascii=False)[1:-1].encode()
    return address


def join_recipients(addresses: Sequence[bytes], tails: Iterable[bytes]) -> bytes:
    """The `to` field from escaped addresses and their `recipient_tail`s, in one join."""
    if not addresses:
        return b"[]"
    body = b"".join(
        itertools.chain.from_iterable(zip(itertools.repeat(b'["'), addresses, tails, strict=False))
    )
    return b"[" + body[:-1] + b"]"


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def decode(fields: Mapping[Any, Any]) -> WorkEntry:
    """An entry from its stream fields (bytes or str); MalformedEntry names what is wrong.

    Recipients appear once each (a repeated address keeps its first language).
    """
    f = {_text(k): v for k, v in fields.items()}
    for name in ("alert", "version", "expires", "texts", "to"):
        if name not in f:
            raise MalformedEntry(name, "missing")
    alert = _text(f["alert"])
    if not alert:
        raise MalformedEntry("alert", "empty")
    try:
        version = int(_text(f["version"]))
    except ValueError:
        raise MalformedEntry("version", "not an integer") from None
    try:
        expires = float(_text(f["expires"]))
    except ValueError:
        raise MalformedEntry("expires", "not a number") from None
    if math.isnan(expires):
        raise MalformedEntry("expires", "not a number")
    try:
        texts = json.loads(f["texts"])
    except ValueError:
        raise MalformedEntry("texts", "not JSON") from None
    if (
        not isinstance(texts, dict)
        or not texts
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in texts.items())
    ):
        raise MalformedEntry("texts", "must be a non-empty object of language -> text")
    try:
        raw_to = json.loads(f["to"])
    except ValueError:
        raise MalformedEntry("to", "not JSON") from None
    if not isinstance(raw_to, list):
        raise MalformedEntry("to", "must be an array")
    seen: dict[str, str] = {}
    for i, item in enumerate(raw_to):
        if isinstance(item, str):
            address, language = item, ""
        elif (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], str)
        ):
            address, language = item[0], item[1]
        else:
            raise MalformedEntry(f"to[{i}]", "must be [address, language]")
        seen.setdefault(address, language)
    header = Header(
        alert=alert,
        version=version,
        kind=_text(f.get("kind", b"general")),
        expires=expires,
        sender=_text(f.get("sender", b"")),
        texts=texts,
        entity=_text(f.get("entity", b"")),
    )
    return WorkEntry(header, list(seen.items()), _text(f.get("batch", b"")))
