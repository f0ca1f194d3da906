"""CAP 1.2 documents (OASIS Common Alerting Protocol) for feeds and operators: render, parse."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.alerting.model import Alert, Info, Kind, MsgType
from services.alerting.texts import mark

NS = "urn:oasis:names:tc:emergency:cap:1.2"
#: CAP status per alert kind: exercises and tests are never Actual.
STATUS = {
    Kind.EMERGENCY: "Actual",
    Kind.GENERAL: "Actual",
    Kind.EXERCISE: "Exercise",
    Kind.TEST: "Test",
}
#: Sender of every document: the platform; senderName says which entity.
SENDER = "be-alert@tocsin"

Point = tuple[float, float]

#: Characters XML 1.0 cannot carry (C0 controls but tab, LF, CR; lone surrogates; U+FFFE/F).
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
#: Elements the CAP 1.2 schema requires: written even when empty, so a document always validates.
REQUIRED = frozenset(
    {"identifier", "sender", "sent", "status", "msgType", "scope"}
    | {"category", "event", "urgency", "severity", "certainty", "areaDesc"}
)


@dataclass(frozen=True)
class CapInfo:
    """One <info> block: one language."""

    language: str
    category: str
    event: str
    urgency: str
    severity: str
    certainty: str
    expires: datetime
    sender_name: str
    headline: str
    description: str
    instruction: str
    area_desc: str
    #: Each polygon a closed ring of (lat, lon) points, as CAP writes them.
    polygons: tuple[tuple[Point, ...], ...] = ()


@dataclass(frozen=True)
class CapMessage:
    """One CAP <alert> document."""

    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    scope: str = "Public"
    note: str = ""
    references: tuple[str, ...] = ()
    infos: tuple[CapInfo, ...] = field(default=())


def format_time(moment: datetime) -> str:
    """CAP dateTime: seconds, numeric offset, UTC written -00:00 (CAP 1.2, 3.3.2)."""
    moment = moment.astimezone(UTC).replace(microsecond=0)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + "-00:00"


def parse_time(text: str) -> datetime:
    """Parse a CAP dateTime back to an aware datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


def identifier(*, alert_id: str, seq: int) -> str:
    """CAP identifier of the seq-th message of an alert (no spaces, commas or < &)."""
    return f"tocsin.{alert_id}.{seq}"


def reference(msg: CapMessage) -> str:
    """How a later message names this one: sender,identifier,sent."""
    return f"{msg.sender},{msg.identifier},{format_time(msg.sent)}"


def zone_polygons(zone_geojson: str) -> tuple[tuple[Point, ...], ...]:
    """The exterior rings of a GeoJSON (Multi)Polygon as CAP (lat, lon) rings."""
    if not zone_geojson:
        return ()
    doc = json.loads(zone_geojson)
    if doc.get("type") == "Feature":
        doc = doc["geometry"]
    polygons = [doc["coordinates"]] if doc["type"] == "Polygon" else doc["coordinates"]
    return tuple(tuple((float(p[1]), float(p[0])) for p in poly[0]) for poly in polygons)


def xml_safe(text: str) -> str:
    """The text less what XML 1.0 cannot carry: rendering never fails on pasted control codes."""
    return XML_ILLEGAL.sub("", text)


def _sub(parent: ET.Element, tag: str, text: str) -> None:
    if text or tag in REQUIRED:
        ET.SubElement(parent, f"{{{NS}}}{tag}").text = xml_safe(text)


def render(msg: CapMessage) -> str:
    """The document as CAP 1.2 XML text."""
    ET.register_namespace("", NS)
    root = ET.Element(f"{{{NS}}}alert")
    _sub(root, "identifier", msg.identifier)
    _sub(root, "sender", msg.sender)
    _sub(root, "sent", format_time(msg.sent))
    _sub(root, "status", msg.status)
    _sub(root, "msgType", msg.msg_type)
    _sub(root, "scope", msg.scope)
    _sub(root, "note", msg.note)
    _sub(root, "references", " ".join(msg.references))
    for info in msg.infos:
        el = ET.SubElement(root, f"{{{NS}}}info")
        _sub(el, "language", info.language)
        _sub(el, "category", info.category)
        _sub(el, "event", info.event)
        _sub(el, "urgency", info.urgency)
        _sub(el, "severity", info.severity)
        _sub(el, "certainty", info.certainty)
        _sub(el, "expires", format_time(info.expires))
        _sub(el, "senderName", info.sender_name)
        _sub(el, "headline", info.headline)
        _sub(el, "description", info.description)
        _sub(el, "instruction", info.instruction)
        area = ET.SubElement(el, f"{{{NS}}}area")
        _sub(area, "areaDesc", info.area_desc)
        for ring in info.polygons:
            _sub(area, "polygon", " ".join(f"{lat!r},{lon!r}" for lat, lon in ring))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _text(el: ET.Element, tag: str) -> str:
    child = el.find(f"{{{NS}}}{tag}")
    return "" if child is None or child.text is None else child.text


def parse(xml: str) -> CapMessage:
    """Parse a CAP 1.2 document rendered by `render` (or any with the same fields)."""
    root = ET.fromstring(xml.encode())
    if root.tag != f"{{{NS}}}alert":
        raise ValueError(f"not a CAP 1.2 alert: {root.tag}")
    infos = []
    for el in root.findall(f"{{{NS}}}info"):
        area = el.find(f"{{{NS}}}area")
        polygons: list[tuple[Point, ...]] = []
        if area is not None:
            for poly in area.findall(f"{{{NS}}}polygon"):
                pairs = [p.split(",") for p in (poly.text or "").split()]
                polygons.append(tuple((float(a), float(b)) for a, b in pairs))
        infos.append(
            CapInfo(
                language=_text(el, "language"),
                category=_text(el, "category"),
                event=_text(el, "event"),
                urgency=_text(el, "urgency"),
                severity=_text(el, "severity"),
                certainty=_text(el, "certainty"),
                expires=parse_time(_text(el, "expires")),
                sender_name=_text(el, "senderName"),
                headline=_text(el, "headline"),
                description=_text(el, "description"),
                instruction=_text(el, "instruction"),
                area_desc="" if area is None else _text(area, "areaDesc"),
                polygons=tuple(polygons),
            )
        )
    refs = _text(root, "references")
    return CapMessage(
        identifier=_text(root, "identifier"),
        sender=_text(root, "sender"),
        sent=parse_time(_text(root, "sent")),
        status=_text(root, "status"),
        msg_type=_text(root, "msgType"),
        scope=_text(root, "scope"),
        note=_text(root, "note"),
        references=tuple(refs.split()) if refs else (),
        infos=tuple(infos),
    )


def _cap_info(alert: Alert, info: Info, *, sender_name: str) -> CapInfo:
    spec = alert.spec
    prefix = mark(kind=spec.kind, language=info.language)
    return CapInfo(
        language=info.language,
        category=spec.category,
        event=info.event,
        urgency=spec.urgency,
        severity=spec.severity,
        certainty=spec.certainty,
        expires=spec.expires,
        sender_name=sender_name,
        headline=prefix + info.headline,
        description=info.description,
        instruction=info.instruction,
        area_desc=spec.area_description or sender_name,
        polygons=zone_polygons(spec.zone_geojson),
    )


def for_alert(
    alert: Alert,
    *,
    seq: int,
    msg_type: MsgType,
    sent: datetime,
    sender_name: str,
    references: tuple[str, ...] = (),
) -> CapMessage:
    """The CAP message of an alert's seq-th message (Alert, Update or Cancel)."""
    status = STATUS[alert.spec.kind]
    note = "" if status == "Actual" else f"{status.upper()} - not a real alert"
    return CapMessage(
        identifier=identifier(alert_id=alert.id, seq=seq),
        sender=SENDER,
        sent=sent,
        status=status,
        msg_type=msg_type.value,
        note=note,
        references=references,
        infos=tuple(_cap_info(alert, i, sender_name=sender_name) for i in alert.spec.infos),
    )
