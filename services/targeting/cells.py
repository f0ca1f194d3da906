"""The operators' cells whose coverage touches a zone (location-based SMS, cell broadcast)."""

from __future__ import annotations

from typing import Any

import asyncpg
import numpy as np
import shapely

from services.targeting.zones import M_PER_DEG_LAT, Zone

_SQL = """
    SELECT operator, cell_id, lon, lat, radius_m FROM cell_sites
    WHERE lat BETWEEN $1 AND $2 AND lon BETWEEN $3 AND $4
    ORDER BY operator, cell_id
"""


async def cells_for_zone(*, pool: asyncpg.Pool, zone: Zone) -> dict[str, list[str]]:
    """Cell ids per operator whose coverage disc intersects the zone."""
    max_radius = await pool.fetchval("SELECT max(radius_m) FROM cell_sites")
    if max_radius is None:
        return {}
    lon_min, lat_min, lon_max, lat_max = zone.geometry.bounds
    dlat = float(max_radius) / M_PER_DEG_LAT
    dlon = dlat * 2  # a degree of longitude is over half a degree of latitude in Belgium
    rows = await pool.fetch(_SQL, lat_min - dlat, lat_max + dlat, lon_min - dlon, lon_max + dlon)
    if not rows:
        return {}
    lon = np.array([r["lon"] for r in rows])
    lat = np.array([r["lat"] for r in rows])
    x, y = zone.project_xy(lon, lat)
    radius = np.array([r["radius_m"] for r in rows], dtype=float)
    sites: Any = shapely.points(x, y)
    # shapely broadcasts an array of distances; its stubs only admit a float.
    touches = shapely.dwithin(sites, zone.projected, radius)  # type: ignore[call-overload]
    out: dict[str, list[str]] = {}
    for row, hit in zip(rows, touches.tolist(), strict=True):
        if hit:
            out.setdefault(row["operator"], []).append(row["cell_id"])
    return out
