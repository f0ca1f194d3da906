"""Cover a zone with H3 cells: cells wholly inside, and boundary cells that need a point test.

Addresses store their H3 cell at resolution 15 (FINE_RES). The descendants of any coarser cell at
that resolution form one contiguous integer range, so a cover becomes a list of range scans.
A cell is classified by its centre: every descendant of a cell at resolution r lies within
`reach(r)` of the cell's centre, so a centre farther than that from the zone's boundary settles
the whole cell. Cells near the boundary are split, down to `max_res`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import shapely
from h3.api import basic_int as h3

from services.targeting.zones import Zone

#: Resolution of the H3 cell stored with every point.
FINE_RES = 15
#: Coarsest resolution of the precomputed counts (table cell_counts): coarser inside cells are
#: summed from their resolution-9 descendants.
COUNT_RES = 9
#: Resolutions held in cell_counts. Resolution 10 too, so that a zone's inside cells of that
#: resolution (most of the points between the resolution-9 cells and the boundary) need no scan
#: of addresses either.
COUNT_RESOLUTIONS = (9, 10)
#: Coarsest resolution a cover starts from (edge about 8.5 km).
START_RES = 5
#: Descendants stay within 1.61 edges of a cell's centre on an ideal grid (at most 1.02 measured
#: over Belgium); the rest is margin for the grid's distortion and the local projection (a test
#: checks it on random points).
REACH_EDGES = 1.75

_RES_MASK = ~(15 << 52)


@cache
def reach(res: int) -> float:
    """Metres from a cell's centre within which all its descendants lie."""
    return REACH_EDGES * float(h3.average_hexagon_edge_length(res, "m"))


@dataclass
class Cover:
    """A zone's cover: cells wholly inside (any resolution) and boundary cells (at max_res)."""

    inside: list[int] = field(default_factory=list)
    boundary: list[int] = field(default_factory=list)


def cover_zone(*, zone: Zone, max_res: int) -> Cover:
    """Classify H3 cells from START_RES down to max_res against the zone."""
    cover = Cover()
    cells = _seed(zone)
    for res in range(START_RES, max_res + 1):
        if not cells:
            break
        r = reach(res)
        inner = zone.projected.buffer(-r, quad_segs=2)
        outer = zone.projected.buffer(r, quad_segs=2)
        shapely.prepare(inner)
        shapely.prepare(outer)
        latlng = np.array([h3.cell_to_latlng(c) for c in cells])
        x, y = zone.project_xy(latlng[:, 1], latlng[:, 0])
        is_inside = (
            shapely.contains_xy(inner, x, y) if not inner.is_empty else np.zeros(len(x), bool)
        )
        is_near = shapely.contains_xy(outer, x, y) & ~is_inside
        arr = np.asarray(cells, dtype=np.int64)
        cover.inside.extend(int(c) for c in arr[is_inside])
        near = [int(c) for c in arr[is_near]]
        if res == max_res:
            cover.boundary.extend(near)
        else:
            cells = [child for c in near for child in h3.cell_to_children(c, res + 1)]
    return cover


def _seed(zone: Zone) -> list[int]:
    """Cells at START_RES whose descendants may touch the zone (centre within reach of its box)."""
    margin = reach(START_RES) * 1.1
    lon_min, lat_min, lon_max, lat_max = zone.geometry.bounds
    kx = 111_320.0 * math.cos(math.radians(zone.ref_lat))
    dlon, dlat = margin / kx, margin / 110_574.0
    box = h3.LatLngPoly(
        [
            (lat_min - dlat, lon_min - dlon),
            (lat_min - dlat, lon_max + dlon),
            (lat_max + dlat, lon_max + dlon),
            (lat_max + dlat, lon_min - dlon),
        ]
    )
    return sorted(h3.h3shape_to_cells(box, START_RES))


def descendant_range(cell: int, *, res: int) -> tuple[int, int]:
    """Smallest and largest id of the cell's descendants at resolution `res` (inclusive)."""
    cell_res = (cell >> 52) & 15
    if cell_res > res:
        raise ValueError(f"cell resolution {cell_res} is finer than {res}")
    below = (1 << (3 * (15 - cell_res))) - 1
    unused = (1 << (3 * (15 - res))) - 1
    lo = (cell & _RES_MASK & ~below) | (res << 52) | unused
    sixes = sum(6 << (3 * i) for i in range(res - cell_res)) << (3 * (15 - res))
    return lo, lo | sixes


def ancestor(cell: int, *, res: int) -> int:
    """The cell's ancestor at a coarser resolution (same formula as SQL h3_ancestor)."""
    return (cell & _RES_MASK) | (res << 52) | ((1 << (3 * (15 - res))) - 1)


def merged_ranges(cells: list[int], *, res: int) -> list[tuple[int, int]]:
    """Descendant ranges of the cells at `res`, sorted, touching ranges merged."""
    ranges = sorted(descendant_range(c, res=res) for c in cells)
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged
