"""A simulated operator's location-based SMS platform (the JSON request of gateways/lbsms).

It "sends" to `phones_per_cell` phones per cell of the zone, or to `phones_per_km2` phones per
square kilometre of a polygon zone (GeoJSON Polygon or MultiPolygon, its area on the sphere's
local plane), answers 201 with the count, 409 with the same count for a request id it already
has, 400 for a request it cannot take (a zone of a kind it does not take: `zones`), and keeps
every request for the tests.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PREFIX = "/lbsms/v1"
#: Kilometres per degree of latitude, and of longitude at the equator.
KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON = 111.320
#: Zone kinds a platform may take.
ZONE_KINDS = ("cells", "polygon")


class BadZone(ValueError):
    """The zone is not one the platform takes; the text says why."""


def _ring_km2(ring: Any, where: str) -> float:
    """Area of one closed ring of [lon, lat] positions, in km² (shoelace on a local plane)."""
    if not isinstance(ring, list) or len(ring) < 4:
        raise BadZone(f"{where}: a closed ring of at least 4 positions")
    points: list[tuple[float, float]] = []
    for i, position in enumerate(ring):
        ok = isinstance(position, list) and len(position) >= 2
        if not ok or not all(isinstance(v, int | float) for v in position[:2]):
            raise BadZone(f"{where}[{i}]: [longitude, latitude]")
        lon, lat = float(position[0]), float(position[1])
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise BadZone(f"{where}[{i}]: [longitude, latitude] in degrees")
        points.append((lon, lat))
    if points[0] != points[-1]:
        raise BadZone(f"{where}: the ring is not closed")
    kx = KM_PER_DEG_LON * math.cos(math.radians(sum(p[1] for p in points) / len(points)))
    twice = sum(a[0] * b[1] - b[0] * a[1] for a, b in itertools.pairwise(points))
    return abs(twice) / 2 * kx * KM_PER_DEG_LAT


def polygon_km2(geometry: Any) -> float:
    """Area of a GeoJSON Polygon or MultiPolygon in km² (holes taken out); BadZone if it is not
    one."""
    if not isinstance(geometry, dict):
        raise BadZone("zone.polygon: a GeoJSON object")
    kind, coordinates = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        polygons = [coordinates]
    elif kind == "MultiPolygon" and isinstance(coordinates, list):
        polygons = coordinates
    else:
        raise BadZone("zone.polygon: a GeoJSON Polygon or MultiPolygon")
    total = 0.0
    for p, rings in enumerate(polygons):
        if not isinstance(rings, list) or not rings:
            raise BadZone(f"zone.polygon.coordinates[{p}]: a list of rings")
        areas = [_ring_km2(r, f"zone.polygon.coordinates[{p}][{i}]") for i, r in enumerate(rings)]
        total += max(0.0, areas[0] - sum(areas[1:]))
    return total


@dataclass
class LbSmsPlatform:
    """Requests taken, cancelled, and the answers given."""

    phones_per_cell: int = 250
    #: Phones per km² of a polygon zone.
    phones_per_km2: int = 400
    #: Zone kinds this platform takes (an operator takes cells, a polygon, or either).
    zones: tuple[str, ...] = ZONE_KINDS
    refuse: bool = False
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def add_routes(self, app: web.Application) -> None:
        """Serve the LB-SMS API on `app`."""
        app.router.add_post(PREFIX + "/requests", self._submit)
        app.router.add_delete(PREFIX + "/requests/{request_id}", self._cancel)

    def _phones(self, zone: dict[str, Any]) -> int:
        """Phones the zone reaches; BadZone for a zone this platform does not take."""
        kinds = [k for k in ZONE_KINDS if k in zone]
        if len(kinds) != 1:
            raise BadZone("zone: cells or polygon, one of them")
        if kinds[0] not in self.zones:
            raise BadZone(f"zone: this platform takes {' or '.join(self.zones)}")
        if kinds[0] == "polygon":
            return round(polygon_km2(zone["polygon"]) * self.phones_per_km2)
        cells = zone["cells"]
        if not isinstance(cells, list) or not cells or not all(isinstance(c, str) for c in cells):
            raise BadZone("zone.cells: a non-empty list of cell identities")
        return self.phones_per_cell * len(cells)

    def _answer(self, status: int, **body: Any) -> web.Response:
        self.statuses.append(status)
        if "error" in body:
            return web.Response(status=status, text=body["error"])
        return web.json_response(body, status=status)

    async def _submit(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return self._answer(400, error="body is not JSON")
        if not isinstance(body, dict):
            return self._answer(400, error="body is not an object")
        request_id, zone, texts = body.get("request_id"), body.get("zone"), body.get("texts")
        if not isinstance(request_id, str) or not request_id:
            return self._answer(400, error="request_id: required")
        if not isinstance(zone, dict):
            return self._answer(400, error="zone: cells or polygon required")
        try:
            phones = self._phones(zone)
        except BadZone as exc:
            return self._answer(400, error=str(exc))
        if not isinstance(texts, dict) or not texts:
            return self._answer(400, error="texts: at least one language")
        if not isinstance(body.get("validity_s"), int) or body["validity_s"] <= 0:
            return self._answer(400, error="validity_s: a positive integer")
        if self.refuse:
            return self._answer(422, error="refused by the simulated operator")
        if request_id in self.requests:
            return self._answer(
                409, request_id=request_id, phones=self.requests[request_id]["phones"]
            )
        self.requests[request_id] = {**body, "phones": phones}
        return self._answer(201, request_id=request_id, phones=phones)

    async def _cancel(self, request: web.Request) -> web.Response:
        request_id = request.match_info["request_id"]
        if request_id not in self.requests:
            return self._answer(404, error="unknown request")
        self.cancelled.append(request_id)
        return self._answer(200, request_id=request_id, phones=self.requests[request_id]["phones"])
