"""Zone parsing and validation: every refusal names its field; encoder and decoder agree."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from services.kernel.errors import InvalidArgument
from services.targeting.zones import circle, parse_geojson, to_geojson

SQUARE = [[4.30, 50.80], [4.40, 50.80], [4.40, 50.90], [4.30, 50.90], [4.30, 50.80]]


def polygon(*rings: list[list[Any]]) -> str:
    return json.dumps({"type": "Polygon", "coordinates": list(rings)})


def refusal(text: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        parse_geojson(text)
    return caught.value


def test_a_valid_polygon_has_its_area() -> None:
    zone = parse_geojson(polygon(SQUARE))
    assert zone.area_km2 == pytest.approx(7.03 * 11.06, rel=0.02)


def test_a_feature_wrapping_a_polygon_is_accepted() -> None:
    feature = {"type": "Feature", "properties": {}, "geometry": json.loads(polygon(SQUARE))}
    assert parse_geojson(json.dumps(feature)).area_km2 > 70


def test_an_open_ring_is_refused_naming_the_ring() -> None:
    err = refusal(polygon([*SQUARE[:-1], [4.31, 50.80]]))
    assert err.field == "zone.geojson.coordinates[0]"
    assert "not closed" in err.message


def test_a_self_intersecting_ring_is_refused() -> None:
    bowtie = [[4.3, 50.8], [4.4, 50.9], [4.4, 50.8], [4.3, 50.9], [4.3, 50.8]]
    err = refusal(polygon(bowtie))
    assert err.field == "zone.geojson.coordinates[0]"
    assert "intersects itself" in err.message


def test_a_zone_outside_the_country_box_is_refused() -> None:
    paris = [[2.30, 48.80], [2.40, 48.80], [2.40, 48.90], [2.30, 48.80]]
    assert "bounding box" in refusal(polygon(paris)).message


def test_a_zone_larger_than_the_maximum_is_refused() -> None:
    box = [[2.6, 49.5], [6.4, 49.5], [6.4, 51.5], [2.6, 51.5], [2.6, 49.5]]
    assert "exceeds the maximum" in refusal(polygon(box)).message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("{not json", "zone.geojson"),
        (json.dumps({"type": "Point", "coordinates": [4.3, 50.8]}), "zone.geojson.type"),
        (polygon(SQUARE[:3]), "zone.geojson.coordinates[0]"),
        (polygon([*SQUARE[:2], ["x", 50.9], *SQUARE[2:]]), "zone.geojson.coordinates[0][2]"),
        (json.dumps({"type": "MultiPolygon", "coordinates": []}), "zone.geojson.coordinates"),
    ],
)
def test_malformed_zones_name_the_field(text: str, field: str) -> None:
    assert refusal(text).field == field


def test_overlapping_multipolygon_parts_are_refused() -> None:
    shifted = [[x + 0.05, y] for x, y in SQUARE]
    text = json.dumps({"type": "MultiPolygon", "coordinates": [[SQUARE], [shifted]]})
    assert refusal(text).field == "zone.geojson.coordinates"


def test_a_multipolygon_with_a_hole_excludes_the_hole() -> None:
    outer = [[4.0, 50.5], [4.6, 50.5], [4.6, 51.0], [4.0, 51.0], [4.0, 50.5]]
    hole = [[4.2, 50.7], [4.4, 50.7], [4.4, 50.8], [4.2, 50.8], [4.2, 50.7]]
    other = [[5.0, 50.5], [5.1, 50.5], [5.1, 50.6], [5.0, 50.5]]
    zone = parse_geojson(
        json.dumps({"type": "MultiPolygon", "coordinates": [[outer, hole], [other]]})
    )
    inside = zone.contains(
        lon=np.array([4.1, 4.3, 5.08, 4.8]), lat=np.array([50.6, 50.75, 50.52, 50.6])
    )
    assert inside.tolist() == [True, False, True, False]


def test_a_circle_contains_what_is_within_its_radius() -> None:
    zone = circle(lon=4.35, lat=50.85, radius_m=1000)
    # 1 km north is 0.008993 degrees of latitude.
    lat = np.array([50.85 + 0.0089, 50.85 + 0.0091, 50.85])
    assert zone.contains(lon=np.array([4.35, 4.35, 4.35]), lat=lat).tolist() == [True, False, True]
    assert zone.area_km2 == pytest.approx(np.pi, rel=0.03)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lon": 4.35, "lat": 50.85, "radius_m": 0.0}, "zone.circle.radius_m"),
        ({"lon": 4.35, "lat": 50.85, "radius_m": float("nan")}, "zone.circle.radius_m"),
        ({"lon": 12.0, "lat": 50.85, "radius_m": 100.0}, "zone.circle.lon"),
        ({"lon": 2.6, "lat": 51.0, "radius_m": 50_000.0}, "zone.circle"),
    ],
)
def test_bad_circles_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        circle(lon=kwargs["lon"], lat=kwargs["lat"], radius_m=kwargs["radius_m"])
    assert caught.value.field == field


coords = st.tuples(st.floats(2.6, 6.3), st.floats(49.6, 51.4))


@settings(max_examples=60, deadline=None)
@given(st.lists(coords, min_size=3, max_size=12))
def test_geojson_written_is_read_back_as_the_same_zone(points: list[tuple[float, float]]) -> None:
    hull = shapely.convex_hull(shapely.multipoints(points))
    if not isinstance(hull, Polygon) or hull.area < 1e-6:
        return
    if hull.area > 3.0:  # square degrees: larger hulls exceed the maximum zone area
        return
    zone = parse_geojson(to_geojson(parse_geojson(shapely.to_geojson(hull))))
    assert shapely.equals_exact(zone.geometry, hull, tolerance=1e-9)
