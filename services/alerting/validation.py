"""Checks of an alert's request: each refusal names its field (INVALID_ARGUMENT)."""

from __future__ import annotations

import asyncio
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
#: Largest zone text accepted (a zone of MAX_VERTICES positions fits in it).
MAX_ZONE_BYTES = 512 * 1024
#: Most positions in a zone.
MAX_VERTICES = 20_000
#: Longest area description, event and other one-line texts.
MAX_LINE = 500
#: Most groups one alert may name.
MAX_GROUPS = 100
#: Largest area a zone may cover, in square degrees (Belgium is about 4.5).
MAX_ZONE_AREA_DEG2 = 20.0


#: Largest page of a list, in bytes of protobuf (a page ends early rather than exceed it).
MAX_PAGE_BYTES = 1024 * 1024
#: Longest page token: an offset of up to nine digits.
_PAGE_TOKEN = re.compile(r"^[0-9]{1,9}$")


def page_offset(token: str) -> int:
    """The offset a page token stands for (0 for none); a token not from a list is refused."""
    if not token:
        return 0
    if not _PAGE_TOKEN.match(token):
        raise InvalidArgument("page_token", "not a token from a previous page")
    return int(token)


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
        if len(info.event) > MAX_LINE:
            raise InvalidArgument(f"{where}.event", f"at most {MAX_LINE} characters")
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


#: A zone this small is parsed on the event loop (a few hundred positions: well under a
#: millisecond), as is one already parsed (cached): the hop to a worker thread and back costs
#: more than that (5 % of alerting's CPU per call in `make loadtest`'s mix).
INLINE_ZONE_BYTES = 8 * 1024


async def parse_zone_off_loop(text: str, *, field: str = "spec.zone_geojson") -> None:
    """Parse a large zone in a worker thread (it takes milliseconds): the result is cached, so
    the domain's own `parse_zone` of the same text is then immediate."""
    if len(text) > MAX_ZONE_BYTES:
        raise InvalidArgument(field, f"at most {MAX_ZONE_BYTES // 1024} KiB of GeoJSON")
    if len(text) <= INLINE_ZONE_BYTES:
        _parse_zone(text, field)
    else:
        await asyncio.to_thread(_parse_zone, text, field)


# Drafts of one crisis repeat the same zone; shapely geometries are immutable, so sharing is safe.
# A refusal raises, and lru_cache remembers only what returned: at most 64 zones of 512 KiB.
@lru_cache(maxsize=64)
def _parse_zone(text: str, field: str) -> Polygon | MultiPolygon:
    if len(text) > MAX_ZONE_BYTES:
        raise InvalidArgument(field, f"at most {MAX_ZONE_BYTES // 1024} KiB of GeoJSON")
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and doc.get("type") == "Feature":
            doc = doc.get("geometry")
        geometry: BaseGeometry = shape(doc)
    except RecursionError:
        raise InvalidArgument(field, "not a GeoJSON geometry: nested too deeply") from None
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise InvalidArgument(field, f"not a GeoJSON geometry: {str(exc)[:200]}") from None
    except shapely.errors.ShapelyError as exc:
        raise InvalidArgument(field, f"not a GeoJSON geometry: {exc}") from None
    if not isinstance(geometry, Polygon | MultiPolygon):
        raise InvalidArgument(field, f"expected Polygon or MultiPolygon, got {geometry.geom_type}")
    if shapely.get_num_coordinates(geometry) > MAX_VERTICES:
        raise InvalidArgument(field, f"more than {MAX_VERTICES} positions")
    if geometry.is_empty or not geometry.is_valid:
        raise InvalidArgument(field, f"invalid zone: {shapely.is_valid_reason(geometry)}")
    lon_min, lat_min, lon_max, lat_max = geometry.bounds
    if lon_min < -180 or lon_max > 180 or lat_min < -90 or lat_max > 90:
        raise InvalidArgument(field, "positions are [longitude, latitude] in degrees")
    if geometry.area > MAX_ZONE_AREA_DEG2:
        raise InvalidArgument(field, "zone covers more than the country")
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
    if len(spec.area_description) > MAX_LINE:
        raise InvalidArgument("spec.area_description", f"at most {MAX_LINE} characters")
    if len(spec.group_ids) > MAX_GROUPS:
        raise InvalidArgument("spec.group_ids", f"at most {MAX_GROUPS} groups")
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
