"""The simulated LB-SMS platform: zones as cells or polygon, phones reached, refusals."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import aiohttp
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.cbc.config import CbcConfig
from simulators.cbc.server import CbcSimulator
from simulators.lbsms.server import KM_PER_DEG_LAT, KM_PER_DEG_LON, BadZone, polygon_km2

pytestmark = pytest.mark.timeout(30)


def square(lon: float, lat: float, side: float) -> list[list[float]]:
    """A closed square ring, counter-clockwise, `side` degrees wide."""
    return [[lon, lat], [lon + side, lat], [lon + side, lat + side], [lon, lat + side], [lon, lat]]


def shapely_km2(geometry: dict[str, Any]) -> float:
    """The same area by shapely (GEOS), on the same local plane: an independent computation."""
    shape = shapely.from_geojson(json.dumps(geometry))
    kx = KM_PER_DEG_LON * math.cos(math.radians(shape.centroid.y))
    return float(shapely.transform(shape, lambda xy: xy * [kx, KM_PER_DEG_LAT]).area)


@settings(max_examples=50, deadline=None)
@given(
    lon=st.floats(2.5, 6.0),
    lat=st.floats(49.5, 51.4),
    side=st.floats(0.001, 0.1),
    hole=st.floats(0.1, 0.8),
)
def test_polygon_area_agrees_with_shapely(lon: float, lat: float, side: float, hole: float) -> None:
    """A square with a square hole, and beside another: our shoelace and GEOS agree."""
    inner = square(lon + side * 0.1, lat + side * 0.1, side * 0.8 * hole)
    geometry = {"type": "Polygon", "coordinates": [square(lon, lat, side), inner[::-1]]}
    assert polygon_km2(geometry) == pytest.approx(shapely_km2(geometry), rel=1e-3)
    multi = {
        "type": "MultiPolygon",
        "coordinates": [geometry["coordinates"], [square(lon + 2 * side, lat, side)]],
    }
    assert polygon_km2(multi) == pytest.approx(shapely_km2(multi), rel=2e-3)


@pytest.mark.parametrize(
    ("geometry", "named"),
    [
        ({"type": "Point", "coordinates": [3.7, 51.0]}, "Polygon or MultiPolygon"),
        ({"type": "Polygon", "coordinates": [[[3.7, 51.0], [3.8, 51.0]]]}, "at least 4"),
        ({"type": "Polygon", "coordinates": [[*square(3.7, 51.0, 0.1), [3.9, 51.2]]]}, "closed"),
        (
            {"type": "Polygon", "coordinates": [square(3.7, 51.0, 0.1)[:-1]]},
            "not closed",
        ),
        ({"type": "Polygon", "coordinates": [[[3.7, 91.0]] * 4]}, "in degrees"),
        ({"type": "Polygon", "coordinates": []}, "coordinates[0]"),
    ],
)
def test_bad_polygons_are_named(geometry: dict[str, Any], named: str) -> None:
    with pytest.raises(BadZone, match=re.escape(named)):
        polygon_km2(geometry)


async def test_zones_the_platform_takes_and_the_phones_they_reach() -> None:
    """Cells: phones per cell; polygon: phones per km²; a kind not taken is a 400 naming it."""
    sim = CbcSimulator(CbcConfig(phones_per_cell=10, phones_per_km2=100, lbsms_zones=("polygon",)))
    port = await sim.start()
    url = f"http://127.0.0.1:{port}/lbsms/v1/requests"
    zone = {"type": "Polygon", "coordinates": [square(3.7, 51.0, 0.01)]}
    request: dict[str, Any] = {"texts": {"nl": "Test"}, "validity_s": 60, "sender": "BE-Alert"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                url, json={**request, "request_id": "r1", "zone": {"cells": ["c1"]}}
            ) as resp:
                assert resp.status == 400
                assert "this platform takes polygon" in await resp.text()
            async with http.post(
                url, json={**request, "request_id": "r2", "zone": {"polygon": zone}}
            ) as resp:
                assert resp.status == 201
                assert (await resp.json())["phones"] == round(polygon_km2(zone) * 100)
            both = {"cells": ["c1"], "polygon": zone}
            async with http.post(url, json={**request, "request_id": "r3", "zone": both}) as resp:
                assert resp.status == 400
            sim.lbsms.zones = ("cells",)
            async with http.post(
                url, json={**request, "request_id": "r4", "zone": {"cells": ["c1", "c2"]}}
            ) as resp:
                assert (resp.status, (await resp.json())["phones"]) == (201, 20)
    finally:
        await sim.stop()
    assert sorted(sim.lbsms.requests) == ["r2", "r4"]
