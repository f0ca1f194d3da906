"""The H3 cover: index arithmetic agrees with h3, and no point of a zone falls outside it."""

from __future__ import annotations

import numpy as np
import pytest
from h3.api import basic_int as h3

from bench import population
from services.targeting.cover import (
    FINE_RES,
    ancestor,
    cover_zone,
    descendant_range,
    merged_ranges,
    reach,
)
from services.targeting.zones import circle, parse_geojson


@pytest.mark.parametrize("res", [5, 9, 11, 14])
def test_index_arithmetic_matches_h3(res: int) -> None:
    rng = np.random.default_rng(res)
    for lon, lat in zip(rng.uniform(2.6, 6.3, 50), rng.uniform(49.6, 51.4, 50), strict=True):
        fine = h3.latlng_to_cell(lat, lon, FINE_RES)
        parent = h3.cell_to_parent(fine, res)
        assert ancestor(fine, res=res) == parent
        lo, hi = descendant_range(parent, res=FINE_RES)
        assert lo <= fine <= hi
        children = h3.cell_to_children(parent, res + 1)
        assert descendant_range(parent, res=res + 1) == (min(children), max(children))


def test_every_descendant_lies_within_reach_of_its_ancestors_centre() -> None:
    rng = np.random.default_rng(7)
    for lon, lat in zip(rng.uniform(2.6, 6.3, 2000), rng.uniform(49.6, 51.4, 2000), strict=True):
        fine = h3.latlng_to_cell(lat, lon, FINE_RES)
        for res in range(5, 12):
            centre = h3.cell_to_latlng(h3.cell_to_parent(fine, res))
            assert h3.great_circle_distance((lat, lon), centre, "m") < reach(res)


@pytest.mark.parametrize(
    "zone",
    [
        circle(lon=4.35, lat=50.85, radius_m=3_000),
        parse_geojson(
            '{"type":"MultiPolygon","coordinates":[[[[4.0,50.5],[4.6,50.5],[4.6,51.0],[4.0,51.0],'
            "[4.0,50.5]],[[4.2,50.7],[4.4,50.7],[4.4,50.8],[4.2,50.8],[4.2,50.7]]],"
            "[[[5.0,50.5],[5.1,50.5],[5.1,50.6],[5.0,50.5]]]]}"
        ),
    ],
    ids=["circle", "multipolygon-with-hole"],
)
@pytest.mark.parametrize("max_res", [9, 11])
def test_cover_holds_every_point_of_the_zone_and_inside_cells_hold_no_other(
    zone: object, max_res: int
) -> None:
    from services.targeting.zones import Zone

    assert isinstance(zone, Zone)
    cover = cover_zone(zone=zone, max_res=max_res)
    inside = merged_ranges(cover.inside, res=FINE_RES)
    boundary = merged_ranges(cover.boundary, res=FINE_RES)
    lon_min, lat_min, lon_max, lat_max = zone.geometry.bounds
    rng = np.random.default_rng(max_res)
    lon = rng.uniform(lon_min - 0.01, lon_max + 0.01, 4000)
    lat = rng.uniform(lat_min - 0.01, lat_max + 0.01, 4000)
    truth = zone.contains(lon=lon, lat=lat)
    cells = [h3.latlng_to_cell(la, lo, FINE_RES) for lo, la in zip(lon, lat, strict=True)]

    def hit(ranges: list[tuple[int, int]], cell: int) -> bool:
        return any(lo <= cell <= hi for lo, hi in ranges)

    for cell, is_in in zip(cells, truth.tolist(), strict=True):
        if hit(inside, cell):
            assert is_in
        elif is_in:
            assert hit(boundary, cell)


def test_the_generator_is_reproducible_from_its_seed() -> None:
    a = population.generate(seed=3, subscribers=2_000)
    b = population.generate(seed=3, subscribers=2_000)
    c = population.generate(seed=4, subscribers=2_000)
    assert a.phone == b.phone
    assert np.array_equal(a.addr_h3, b.addr_h3)
    assert not np.array_equal(a.addr_lon, c.addr_lon)
    assert len(a.phone) == 2_000
    assert set(np.unique(a.addr_subscriber).tolist()) == set(range(1, 2_001))
    sites = population.generate_cell_sites(seed=3, per_operator=60)
    assert len(sites.cell_id) == 180
