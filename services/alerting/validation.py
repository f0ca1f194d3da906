"""Checks of an alert's request: each refusal names its field (INVALID_ARGUMENT)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from functools import lru_cache

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from services.alerting import presence
from services.alerting.model import LANGUAGES, PRESENCE_CHANNELS, AlertSpec, Info
from services.kernel.errors import InvalidArgument
from services.kernel.keys import ALERT_CONTROL_TTL_S

#: CAP 1.2 code lists (OASIS CAP 1.2, section 3.2.2).
CATEGORIES = frozenset(
    {"Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra"}
    | {"CBRNE", "Other"}
)
URGENCIES = frozenset({"Immediate", "Expected", "Future", "Past", "Unknown"})
SEVERITIES = frozenset({"Extreme", "Severe", "Moderate", "Minor", "Unknown"})
CERTAINTIES = frozenset({"Observed", "Likely", "Possible", "Unlikely", "Unknown"})
#: Longest headline: CAP recommends under 160 characters (it fits one SMS segment).
MAX_HEADLINE = 160
#: Longest description or instruction.
MAX_TEXT = 4000
#: Longest life of an alert: the Redis control keys must outlive it.
MAX_LIFETIME = timedelta(seconds=ALERT_CONTROL_TTL_S - 3600)
#: Alphanumeric SMS originator (GSM 03.40: at most 11 characters).
SENDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .\-]{0,10}$")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{8,128}$")


def check_idempotency_key(key: str) -> None:
    """Refuse a missing or malformed idempotency key."""
    if not IDEMPOTENCY_KEY.match(key):
        raise InvalidArgument("idempotency_key", "required: 8 to 128 printable ASCII characters")


def check_infos(infos: tuple[Info, ...], *, field: str = "spec.infos") -> None:
    """At least one language, each once, each with an event and a headline."""
    if not infos:
        raise InvalidArgument(field, "at least one language (nl, fr, de, en)")
    seen: set[str] = set()
    for i, info in enumerate(infos):
        where = f"{field}[{i}]"
        if info.language not in LANGUAGES:
            raise InvalidArgument(f"{where}.language", f"one of {', '.join(LANGUAGES)}")
        if info.language in seen:
            raise InvalidArgument(f"{where}.language", f"{info.language} given twice")
        seen.add(info.language)
        if not info.event.strip():
            raise InvalidArgument(f"{where}.event", "required")
        if not info.headline.strip():
            raise InvalidArgument(f"{where}.headline", "required")
        if len(info.headline) > MAX_HEADLINE:
            raise InvalidArgument(f"{where}.headline", f"at most {MAX_HEADLINE} characters")
        for name in ("description", "instruction"):
            if len(getattr(info, name)) > MAX_TEXT:
                raise InvalidArgument(f"{where}.{name}", f"at most {MAX_TEXT} characters")


def parse_zone(text: str, *, field: str = "spec.zone_geojson") -> Polygon | MultiPolygon:
    """A GeoJSON Polygon or MultiPolygon (geometry or Feature) as a valid shapely geometry."""
    return _parse_zone(text, field)


# Drafts of one crisis repeat the same zone; shapely geometries are immutable, so sharing is safe.
# A refusal raises, and lru_cache remembers only what returned.
@lru_cache(maxsize=256)
def _parse_zone(text: str, field: str) -> Polygon | MultiPolygon:
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and doc.get("type") == "Feature":
            doc = doc.get("geometry")
        geometry: BaseGeometry = shape(doc)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise InvalidArgument(field, f"not a GeoJSON geometry: {exc}") from None
    except shapely.errors.ShapelyError as exc:
        raise InvalidArgument(field, f"not a GeoJSON geometry: {exc}") from None
    if not isinstance(geometry, Polygon | MultiPolygon):
        raise InvalidArgument(field, f"expected Polygon or MultiPolygon, got {geometry.geom_type}")
    if geometry.is_empty or not geometry.is_valid:
        raise InvalidArgument(field, f"invalid zone: {shapely.is_valid_reason(geometry)}")
    return geometry


def check_spec(spec: AlertSpec, *, now: datetime) -> None:
    """Refuse a malformed alert, naming the field."""
    if spec.category not in CATEGORIES:
        raise InvalidArgument("spec.category", f"one of {', '.join(sorted(CATEGORIES))}")
    if spec.urgency not in URGENCIES:
        raise InvalidArgument("spec.urgency", f"one of {', '.join(sorted(URGENCIES))}")
    if spec.severity not in SEVERITIES:
        raise InvalidArgument("spec.severity", f"one of {', '.join(sorted(SEVERITIES))}")
    if spec.certainty not in CERTAINTIES:
        raise InvalidArgument("spec.certainty", f"one of {', '.join(sorted(CERTAINTIES))}")
    check_infos(spec.infos)
    if not spec.channels:
        raise InvalidArgument("spec.channels", "at least one channel")
    if len(set(spec.channels)) != len(spec.channels):
        raise InvalidArgument("spec.channels", "a channel is given twice")
    if not spec.zone_geojson and not spec.group_ids:
        raise InvalidArgument("spec.zone_geojson", "a zone, groups, or both")
    if spec.zone_geojson:
        parse_zone(spec.zone_geojson)
    for channel in spec.channels:
        if channel in PRESENCE_CHANNELS and not spec.zone_geojson:
            raise InvalidArgument("spec.zone_geojson", f"channel {channel.value} needs a zone")
    presence.check_pages(spec)
    if len(set(spec.group_ids)) != len(spec.group_ids) or any(g <= 0 for g in spec.group_ids):
        raise InvalidArgument("spec.group_ids", "positive group ids, each once")
    if spec.expires <= now:
        raise InvalidArgument("spec.expires", "must be in the future")
    if spec.expires - now > MAX_LIFETIME:
        raise InvalidArgument("spec.expires", f"at most {MAX_LIFETIME.days} days ahead")
    if not SENDER.match(spec.sender):
        raise InvalidArgument("spec.sender", "1 to 11 letters, digits, spaces, dots or dashes")
