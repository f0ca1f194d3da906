"""What the feed serves, rendered once per change: the Atom index and every CAP document as bytes.

The layout follows OASIS "Example Practices: CAP Feeds": an Atom feed with one entry per alert in
force, the entry carrying the CAP fields a screen needs to decide (event, status, msgType,
urgency, severity, certainty, areaDesc, expires) and a `related` link of type
`application/cap+xml` to the full CAP document, which lives at a stable URL of its identifier.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from services.alerting import cap

ATOM = "http://www.w3.org/2005/Atom"
#: Feed and document media types.
ATOM_TYPE = "application/atom+xml; charset=utf-8"
CAP_TYPE = "application/cap+xml; charset=utf-8"
FEED_PATH = "/cap/feed.atom"


def document_path(identifier: str) -> str:
    """Stable path of one CAP document (identifiers hold no `/`, space, `,`, `<` or `&`)."""
    return f"/cap/{identifier}.xml"


@dataclass(frozen=True, slots=True)
class Message:
    """One stored CAP message with what the feed needs of its alert."""

    alert_id: str
    seq: int
    identifier: str
    sent: datetime
    xml: str
    #: When the alert stops being in force.
    expires: datetime


@dataclass(frozen=True, slots=True)
class Resource:
    """Bytes and their validators, ready to answer with."""

    body: bytes
    etag: str
    last_modified: datetime
    #: Every header of a 200 answer (Content-Type, ETag, Last-Modified, Cache-Control).
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything served until the next change."""

    feed: Resource
    documents: dict[str, Resource]
    #: The soonest moment the feed changes by itself (an entry expires), or None.
    next_expiry: datetime | None
    #: Alerts in force shown in the feed.
    entries: int


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """How the feed names itself."""

    base_url: str
    title: str
    author: str
    max_entries: int
    summary_chars: int
    feed_max_age_s: int
    document_max_age_s: int


def resource(
    body: bytes, *, content_type: str, last_modified: datetime, max_age_s: int
) -> Resource:
    """Bytes with a strong ETag (a hash of the bytes: equal in every process) and headers."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "Content-Type": content_type,
        "ETag": etag,
        "Last-Modified": format_datetime(last_modified.astimezone(UTC), usegmt=True),
        "Cache-Control": f"public, max-age={max(0, max_age_s)}",
    }
    return Resource(body, etag, last_modified, headers)


def _atom_time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _sub(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text:
        el.text = cap.xml_safe(text)
    return el


def _entry(feed: ET.Element, info: FeedInfo, first: Message, latest: Message) -> None:
    doc = cap.parse(latest.xml)
    entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
    infos = doc.infos
    lead = infos[0] if infos else None
    _sub(entry, f"{{{ATOM}}}id", f"urn:tocsin:alert:{latest.alert_id}")
    headline = " / ".join(dict.fromkeys(i.headline for i in infos if i.headline)) or doc.msg_type
    prefix = "" if doc.msg_type != "Cancel" else "Cancelled: "
    _sub(entry, f"{{{ATOM}}}title", prefix + headline)
    _sub(entry, f"{{{ATOM}}}published", _atom_time(first.sent))
    _sub(entry, f"{{{ATOM}}}updated", _atom_time(latest.sent))
    author = ET.SubElement(entry, f"{{{ATOM}}}author")
    _sub(author, f"{{{ATOM}}}name", lead.sender_name if lead else info.author)
    href = info.base_url + document_path(latest.identifier)
    _sub(entry, f"{{{ATOM}}}link", "", rel="related", type="application/cap+xml", href=href)
    _sub(entry, f"{{{ATOM}}}link", "", rel="alternate", type="application/cap+xml", href=href)
    if lead is not None:
        summary = lead.description or lead.instruction or lead.headline
        if len(summary) > info.summary_chars:
            summary = summary[: max(0, info.summary_chars - 1)].rstrip() + "…"
        _sub(entry, f"{{{ATOM}}}summary", summary)
    for tag, value in (
        ("identifier", doc.identifier),
        ("sender", doc.sender),
        ("sent", cap.format_time(doc.sent)),
        ("status", doc.status),
        ("msgType", doc.msg_type),
        ("references", " ".join(doc.references)),
    ):
        if value:
            _sub(entry, f"{{{cap.NS}}}{tag}", value)
    if lead is not None:
        for tag, value in (
            ("language", ",".join(i.language for i in infos)),
            ("event", lead.event),
            ("urgency", lead.urgency),
            ("severity", lead.severity),
            ("certainty", lead.certainty),
            ("expires", cap.format_time(lead.expires)),
            ("areaDesc", lead.area_desc),
        ):
            _sub(entry, f"{{{cap.NS}}}{tag}", value)


def feed_bytes(
    *, info: FeedInfo, alerts: list[tuple[Message, Message]], updated: datetime
) -> bytes:
    """The Atom index: one entry per (first, latest) message pair, newest first."""
    ET.register_namespace("", ATOM)
    ET.register_namespace("cap", cap.NS)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _sub(feed, f"{{{ATOM}}}id", info.base_url + FEED_PATH)
    _sub(feed, f"{{{ATOM}}}title", info.title)
    _sub(feed, f"{{{ATOM}}}updated", _atom_time(updated))
    author = ET.SubElement(feed, f"{{{ATOM}}}author")
    _sub(author, f"{{{ATOM}}}name", info.author)
    _sub(
        feed,
        f"{{{ATOM}}}link",
        "",
        rel="self",
        type="application/atom+xml",
        href=info.base_url + FEED_PATH,
    )
    for first, latest in alerts:
        _entry(feed, info, first, latest)
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body


def snapshot(*, info: FeedInfo, messages: list[Message], now: datetime) -> Snapshot:
    """Render the feed and the documents from every retained message, as of `now`."""
    documents: dict[str, Resource] = {}
    by_alert: dict[str, list[Message]] = {}
    for m in messages:
        by_alert.setdefault(m.alert_id, []).append(m)
        until = (m.expires - now).total_seconds()
        max_age = info.document_max_age_s if until <= 0 else min(info.document_max_age_s, until)
        documents[document_path(m.identifier)] = resource(
            m.xml.encode(), content_type=CAP_TYPE, last_modified=m.sent, max_age_s=int(max_age)
        )
    in_force = []
    ended = [datetime.fromtimestamp(0, UTC)]
    for chain in by_alert.values():
        chain.sort(key=lambda m: m.seq)
        latest = chain[-1]
        if latest.expires > now:
            in_force.append((chain[0], latest))
        else:
            ended.append(latest.expires)
    in_force.sort(key=lambda pair: (pair[1].sent, pair[1].alert_id), reverse=True)
    in_force = in_force[: info.max_entries]
    # Deterministic in every process: the newest message shown, or the last entry to leave.
    last_modified = max([latest.sent for _, latest in in_force] + ended)
    next_expiry = min((latest.expires for _, latest in in_force), default=None)
    max_age = info.feed_max_age_s
    if next_expiry is not None:
        max_age = min(max_age, int((next_expiry - now).total_seconds()))
    body = feed_bytes(info=info, alerts=in_force, updated=last_modified)
    feed = resource(body, content_type=ATOM_TYPE, last_modified=last_modified, max_age_s=max_age)
    return Snapshot(feed=feed, documents=documents, next_expiry=next_expiry, entries=len(in_force))
