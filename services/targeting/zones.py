"""Alert zones: GeoJSON (Multi)Polygons and circles, validated, as shapely geometries."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from services.kernel.errors import InvalidArgument

#: Belgium's bounding box (lon_min, lat_min, lon_max, lat_max), with a margin of about 2 km.
COUNTRY_BBOX = (2.50, 49.47, 6.44, 51.53)
#: Largest zone accepted, in km² (Belgium is 30,689 km²: a national alert fits).
MAX_AREA_KM2 = 35_000.0
#: Smallest and largest circle radius accepted, in metres.
MIN_RADIUS_M = 10.0
MAX_RADIUS_M = 150_000.0
#: Vertices of the polygon that stands for a circle (error below 0.01 % of the radius).
CIRCLE_VERTICES = 256
#: Metres per degree of latitude, and of longitude at the equator (spherical Earth, WGS 84 radius).
M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON_EQ = 111_320.0
#: Largest number of vertices a zone may have.
MAX_VERTICES = 100_000
#: Largest GeoJSON text accepted (refused before parsing; MAX_VERTICES positions fit in it).
MAX_GEOJSON_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Zone:
    """A validated zone: its geometry in lon/lat degrees and a local metric projection of it."""

    geometry: Polygon | MultiPolygon
    #: Latitude of the local equirectangular projection (the zone's centre).
    ref_lat: float
    #: The geometry projected to metres (x east, y north), for distances and areas.
    projected: Polygon | MultiPolygon

    @property
    def area_km2(self) -> float:
        """Area of the zone in km² (local projection: within 2 % over Belgium)."""
        return float(self.projected.area) / 1e6

    def project_xy(
        self, lon: np.ndarray[Any, Any], lat: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Project lon/lat arrays to the zone's metric plane."""
        return project(lon=lon, lat=lat, ref_lat=self.ref_lat)

    def contains(
        self, *, lon: np.ndarray[Any, Any], lat: np.ndarray[Any, Any]
    ) -> np.ndarray[Any, Any]:
        """Exact point-in-zone test, vectorised; points on the boundary count as inside."""
        return np.asarray(shapely.intersects_xy(self.geometry, lon, lat), dtype=bool)


def project(
    *, lon: np.ndarray[Any, Any], lat: np.ndarray[Any, Any], ref_lat: float
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Local equirectangular projection to metres around `ref_lat`."""
    kx = M_PER_DEG_LON_EQ * math.cos(math.radians(ref_lat))
    return np.asarray(lon, dtype=float) * kx, np.asarray(lat, dtype=float) * M_PER_DEG_LAT


def project_geometry(geometry: Polygon | MultiPolygon, *, ref_lat: float) -> Polygon | MultiPolygon:
    """A lon/lat geometry in the local metric plane around `ref_lat`."""
    return shapely.transform(
        geometry, lambda xy: np.column_stack(project(lon=xy[:, 0], lat=xy[:, 1], ref_lat=ref_lat))
    )


def _make_zone(geometry: Polygon | MultiPolygon, *, field: str) -> Zone:
    lon_min, lat_min, lon_max, lat_max = geometry.bounds
    b = COUNTRY_BBOX
    if lon_min < b[0] or lat_min < b[1] or lon_max > b[2] or lat_max > b[3]:
        raise InvalidArgument(
            field,
            f"zone extends outside the country's bounding box "
            f"(lon {b[0]}..{b[2]}, lat {b[1]}..{b[3]})",
        )
    ref_lat = (lat_min + lat_max) / 2
    zone = Zone(
        geometry=geometry,
        ref_lat=ref_lat,
        projected=project_geometry(geometry, ref_lat=ref_lat),
    )
    if zone.area_km2 > MAX_AREA_KM2:
        raise InvalidArgument(
            field, f"zone area {zone.area_km2:,.0f} km² exceeds the maximum {MAX_AREA_KM2:,.0f} km²"
        )
    if zone.area_km2 <= 0:
        raise InvalidArgument(field, "zone has no area")
    shapely.prepare(zone.geometry)
    return zone


def _position(value: Any, *, field: str) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) not in (2, 3)
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise InvalidArgument(field, "a position is [longitude, latitude] in degrees")
    lon, lat = float(value[0]), float(value[1])
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise InvalidArgument(field, "coordinates must be finite numbers")
    return lon, lat


def _ring(value: Any, *, field: str) -> list[tuple[float, float]]:
    if not isinstance(value, list):
        raise InvalidArgument(field, "a linear ring is an array of positions")
    points = [_position(p, field=f"{field}[{i}]") for i, p in enumerate(value)]
    if len(points) < 4:
        raise InvalidArgument(field, "a linear ring needs at least 4 positions")
    if points[0] != points[-1]:
        raise InvalidArgument(field, "ring is not closed: the last position must equal the first")
    return points


def _polygon(value: Any, *, field: str) -> Polygon:
    if not isinstance(value, list) or not value:
        raise InvalidArgument(field, "a polygon is a non-empty array of linear rings")
    rings = [_ring(r, field=f"{field}[{i}]") for i, r in enumerate(value)]
    polygon = Polygon(rings[0], rings[1:])
    for i, ring in enumerate([polygon.exterior, *polygon.interiors]):
        if not ring.is_simple:
            raise InvalidArgument(f"{field}[{i}]", "ring intersects itself")
    if not polygon.is_valid:
        raise InvalidArgument(field, f"invalid polygon: {shapely.is_valid_reason(polygon)}")
    return polygon


def parse_geojson(text: str, *, field: str = "zone.geojson") -> Zone:
    """Parse and validate a GeoJSON Polygon or MultiPolygon (a geometry or a Feature).

    CPU-bound for large zones: async callers run it in a thread (`asyncio.to_thread`).
    """
    if len(text) > MAX_GEOJSON_BYTES:
        raise InvalidArgument(field, f"at most {MAX_GEOJSON_BYTES // 1024} KiB of GeoJSON")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(field, f"not JSON: {str(exc)[:200]}") from None
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        doc = doc.get("geometry")
        field = f"{field}.geometry"
    if not isinstance(doc, dict):
        raise InvalidArgument(field, "expected a GeoJSON object")
    kind = doc.get("type")
    coords = doc.get("coordinates")
    where = f"{field}.coordinates"
    if kind == "Polygon":
        geometry: Polygon | MultiPolygon = _polygon(coords, field=where)
    elif kind == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise InvalidArgument(where, "a MultiPolygon is a non-empty array of polygons")
        parts = [_polygon(p, field=f"{where}[{i}]") for i, p in enumerate(coords)]
        geometry = MultiPolygon(parts)
        if not geometry.is_valid:
            raise InvalidArgument(where, f"polygons overlap: {shapely.is_valid_reason(geometry)}")
    else:
        raise InvalidArgument(f"{field}.type", f"expected Polygon or MultiPolygon, got {kind!r}")
    if shapely.get_num_coordinates(geometry) > MAX_VERTICES:
        raise InvalidArgument(where, f"more than {MAX_VERTICES} positions")
    return _make_zone(geometry, field=field)


def circle(*, lon: float, lat: float, radius_m: float, field: str = "zone.circle") -> Zone:
    """A circle as a geodesic polygon of CIRCLE_VERTICES vertices, validated like any zone."""
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise InvalidArgument(f"{field}.lon", "centre coordinates must be finite numbers")
    if not (math.isfinite(radius_m) and MIN_RADIUS_M <= radius_m <= MAX_RADIUS_M):
        raise InvalidArgument(
            f"{field}.radius_m", f"radius must be between {MIN_RADIUS_M} and {MAX_RADIUS_M} m"
        )
    b = COUNTRY_BBOX
    if not (b[0] <= lon <= b[2] and b[1] <= lat <= b[3]):
        raise InvalidArgument(f"{field}.lon", "centre is outside the country's bounding box")
    return _make_zone(_geodesic_circle(lon=lon, lat=lat, radius_m=radius_m), field=field)


def _geodesic_circle(*, lon: float, lat: float, radius_m: float) -> Polygon:
    earth_r = 6_371_008.8
    bearing = np.linspace(0, 2 * np.pi, CIRCLE_VERTICES, endpoint=False)
    d = radius_m / earth_r
    phi1, lam1 = math.radians(lat), math.radians(lon)
    phi2 = np.arcsin(math.sin(phi1) * math.cos(d) + math.cos(phi1) * math.sin(d) * np.cos(bearing))
    lam2 = lam1 + np.arctan2(
        np.sin(bearing) * math.sin(d) * math.cos(phi1), math.cos(d) - math.sin(phi1) * np.sin(phi2)
    )
    return Polygon(np.column_stack([np.degrees(lam2), np.degrees(phi2)]))


def to_geojson(zone: Zone) -> str:
    """The zone's geometry as GeoJSON text."""
    return shapely.to_geojson(zone.geometry)
