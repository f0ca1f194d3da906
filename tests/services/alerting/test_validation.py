"""Zones parsed before a handler uses them: small ones on the loop, large ones in a thread,
each refused with the field named (services/alerting/validation.py)."""

from __future__ import annotations

import json
import math

import pytest
from shapely.geometry import Polygon

from services.alerting import validation
from services.kernel.errors import InvalidArgument


def _circle(points: int, *, radius: float = 0.01) -> str:
    ring = [
        [
            4.35 + radius * math.cos(2 * math.pi * i / points),
            50.85 + radius * math.sin(2 * math.pi * i / points),
        ]
        for i in range(points)
    ]
    ring.append(ring[0])
    return json.dumps({"type": "Polygon", "coordinates": [ring]})


@pytest.mark.parametrize("points", [8, 2_000])
async def test_a_zone_small_or_large_is_parsed_once_and_then_served_from_the_cache(
    points: int,
) -> None:
    text = _circle(points)
    assert (len(text) <= validation.INLINE_ZONE_BYTES) == (points == 8)
    await validation.parse_zone_off_loop(text)
    hits = validation._parse_zone.cache_info().hits
    zone = validation.parse_zone(text)
    assert validation._parse_zone.cache_info().hits == hits + 1
    assert zone.is_valid
    assert isinstance(zone, Polygon)
    assert len(zone.exterior.coords) == points + 1


@pytest.mark.parametrize("points", [8, 2_000])
async def test_a_self_crossing_zone_is_refused_naming_the_field_on_either_path(
    points: int,
) -> None:
    ring = json.loads(_circle(points))["coordinates"][0]
    ring[1], ring[points // 2] = ring[points // 2], ring[1]  # a bow tie: the ring crosses itself
    text = json.dumps({"type": "Polygon", "coordinates": [ring]})
    with pytest.raises(InvalidArgument) as refused:
        await validation.parse_zone_off_loop(text, field="spec.infos[0].zone")
    assert refused.value.field == "spec.infos[0].zone"
    assert "invalid zone" in refused.value.details
