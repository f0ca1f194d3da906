"""A synthetic, Belgium-like population, reproducible from a seed (benchmarks and `make run`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from h3.api import basic_int as h3
from shapely.geometry import Polygon

from services.targeting.cover import FINE_RES
from stack.services import operators

Array = np.ndarray[Any, Any]

#: (name, lon, lat, weight: inhabitants in thousands, spread: sigma in km) of cities and towns.
CITIES: tuple[tuple[str, float, float, float, float], ...] = (
    ("Brussel/Bruxelles", 4.3517, 50.8503, 1220, 5.0),
    ("Antwerpen", 4.4025, 51.2194, 530, 4.5),
    ("Gent", 3.7174, 51.0543, 265, 3.5),
    ("Charleroi", 4.4448, 50.4108, 202, 4.0),
    ("Liège", 5.5797, 50.6326, 197, 4.0),
    ("Brugge", 3.2247, 51.2093, 118, 3.0),
    ("Namur", 4.8718, 50.4674, 111, 3.0),
    ("Leuven", 4.7005, 50.8798, 102, 2.5),
    ("Mons", 3.9523, 50.4542, 95, 2.5),
    ("Mechelen", 4.4777, 51.0259, 87, 2.0),
    ("Aalst", 4.0366, 50.9378, 86, 2.0),
    ("La Louvière", 4.1877, 50.4797, 80, 2.0),
    ("Kortrijk", 3.2649, 50.8280, 77, 2.0),
    ("Hasselt", 5.3378, 50.9307, 79, 2.0),
    ("Oostende", 2.9186, 51.2154, 72, 2.0),
    ("Sint-Niklaas", 4.1437, 51.1650, 78, 2.0),
    ("Tournai", 3.3886, 50.6057, 69, 2.0),
    ("Genk", 5.5000, 50.9650, 66, 2.0),
    ("Roeselare", 3.1234, 50.9465, 64, 1.5),
    ("Verviers", 5.8623, 50.5891, 55, 1.5),
    ("Mouscron", 3.2060, 50.7436, 59, 1.5),
    ("Arlon", 5.8167, 49.6833, 30, 1.5),
    ("Eupen", 6.0361, 50.6280, 20, 1.2),
    ("Bastogne", 5.7167, 50.0000, 16, 1.2),
    ("Turnhout", 4.9480, 51.3227, 45, 1.5),
    ("Wavre", 4.6075, 50.7170, 35, 1.5),
)
#: A rough outline of Belgium (lon, lat), for the countryside.
OUTLINE = Polygon(
    [
        (2.55, 51.09),
        (3.28, 51.35),
        (3.90, 51.21),
        (4.25, 51.37),
        (4.80, 51.50),
        (5.10, 51.43),
        (5.30, 51.26),
        (5.80, 51.16),
        (5.70, 50.80),
        (6.02, 50.75),
        (6.40, 50.33),
        (6.10, 50.15),
        (5.80, 49.90),
        (5.90, 49.55),
        (5.45, 49.50),
        (4.85, 49.79),
        (4.85, 50.15),
        (4.20, 49.98),
        (4.10, 50.30),
        (3.70, 50.35),
        (3.30, 50.50),
        (2.85, 50.70),
        (2.55, 50.85),
    ]
)
#: Share of households in cities and towns (the rest is countryside).
URBAN_SHARE = 0.62
#: Average subscribers per household (12 million people at about 5 million addresses).
PER_HOUSEHOLD = 2.4
#: Channel bits as stored: SMS, voice, e-mail.
SMS, VOICE, EMAIL = 1, 2, 4
LANGUAGES = ("nl", "fr", "de", "en")
OPERATORS = tuple(op.name for op in operators())


@dataclass
class Population:
    """Column arrays of a generated population; row i of subscribers has id i + 1."""

    phone: list[str | None]
    email: list[str | None]
    language: Array  # index into LANGUAGES
    channels: Array
    # addresses, sorted by subscriber id then position
    addr_subscriber: Array
    addr_position: Array
    addr_kind: Array  # 0 home, 1 work, 2 family
    addr_lon: Array
    addr_lat: Array
    addr_h3: Array


@dataclass
class CellSites:
    """Generated cell sites of every operator."""

    operator: list[str]
    cell_id: list[str]
    lon: Array
    lat: Array
    radius_m: Array


def _km_to_deg(lat: float) -> tuple[float, float]:
    return 1 / (111.32 * np.cos(np.radians(lat))), 1 / 110.574


def _city_points(rng: np.random.Generator, n: int, *, spread: float = 1.0) -> tuple[Array, Array]:
    weights = np.array([c[3] for c in CITIES])
    pick = rng.choice(len(CITIES), size=n, p=weights / weights.sum())
    lon0 = np.array([c[1] for c in CITIES])[pick]
    lat0 = np.array([c[2] for c in CITIES])[pick]
    sigma = np.array([c[4] for c in CITIES])[pick] * spread
    dlon, dlat = _km_to_deg(50.5)
    # Student's t per axis: a Gaussian core (a finite density in the centre) with suburbs
    # thinning out more slowly than a Gaussian's.
    dx = rng.standard_t(4, size=n) * sigma
    dy = rng.standard_t(4, size=n) * sigma
    return lon0 + dx * dlon, lat0 + dy * dlat


def _countryside_points(rng: np.random.Generator, n: int) -> tuple[Array, Array]:
    lon_min, lat_min, lon_max, lat_max = OUTLINE.bounds
    out_lon: list[Array] = []
    out_lat: list[Array] = []
    have = 0
    while have < n:
        lon = rng.uniform(lon_min, lon_max, size=2 * (n - have) + 16)
        lat = rng.uniform(lat_min, lat_max, size=lon.size)
        keep = shapely.contains_xy(OUTLINE, lon, lat)
        out_lon.append(lon[keep])
        out_lat.append(lat[keep])
        have += int(keep.sum())
    return np.concatenate(out_lon)[:n], np.concatenate(out_lat)[:n]


def _clip(lon: Array, lat: Array) -> tuple[Array, Array]:
    """Keep city tails inside the outline by pulling stray points back to the box of Belgium."""
    lon_min, lat_min, lon_max, lat_max = OUTLINE.bounds
    return np.clip(lon, lon_min, lon_max), np.clip(lat, lat_min, lat_max)


def _languages(rng: np.random.Generator, lon: Array, lat: Array) -> Array:
    """Language (index into LANGUAGES) by region: Flanders, Brussels, east cantons, Wallonia."""
    u = rng.random(lon.size)
    dlon, dlat = _km_to_deg(50.85)
    brussels = ((lon - 4.3517) / dlon / 9) ** 2 + ((lat - 50.8503) / dlat / 9) ** 2 < 1
    east = (lon > 5.95) & (lat > 50.15) & (lat < 50.80)
    flanders = (lat > 50.77) & ~brussels
    out = np.where(u < 0.94, 1, np.where(u < 0.96, 0, 3))  # Wallonia: fr, some nl and en
    out = np.where(flanders, np.where(u < 0.92, 0, np.where(u < 0.96, 1, 3)), out)
    out = np.where(east, np.where(u < 0.80, 2, np.where(u < 0.95, 1, 3)), out)
    out = np.where(brussels, np.where(u < 0.70, 1, np.where(u < 0.88, 0, 3)), out)
    return out.astype(np.int8)


def _h3_cells(lon: Array, lat: Array) -> Array:
    cell = h3.latlng_to_cell
    return np.fromiter(
        (cell(la, lo, FINE_RES) for lo, la in zip(lon.tolist(), lat.tolist(), strict=True)),
        dtype=np.int64,
        count=lon.size,
    )


def generate(*, seed: int, subscribers: int) -> Population:
    """Generate `subscribers` subscribers in households, with work and family addresses."""
    rng = np.random.default_rng(seed)
    n = subscribers
    households = max(1, round(n / PER_HOUSEHOLD))
    urban = round(households * URBAN_SHARE)
    ulon, ulat = _clip(*_city_points(rng, urban))
    clon, clat = _countryside_points(rng, households - urban)
    h_lon, h_lat = np.concatenate([ulon, clon]), np.concatenate([ulat, clat])
    h_lang = _languages(rng, h_lon, h_lat)
    h_cell = _h3_cells(h_lon, h_lat)
    # Subscribers numbered in the order of their home's H3 cell: registrations of one street
    # are near each other on disk, as after a periodic re-clustering of the table.
    order = np.argsort(h_cell, kind="stable")
    home = order[np.sort(rng.integers(0, households, size=n))]
    language = h_lang[home].copy()
    switch = rng.random(n) < 0.05
    language[switch] = 3

    ids = np.arange(n, dtype=np.int64)
    # Mobile numbers: a bijection of the id onto 8 digits, so unique; some foreign numbers, and
    # some subscribers share the number of the previous one (a family phone).
    digits = (ids * 48_271 + 12_345_679 + seed) % 100_000_000
    kind = rng.random(n)
    phone: list[str | None] = [
        (f"+316{d:08d}" if k < 0.02 else f"+336{d:08d}" if k < 0.04 else f"+324{d:08d}")
        for d, k in zip(digits.tolist(), kind.tolist(), strict=True)
    ]
    shared = np.flatnonzero(rng.random(n) < 0.02)
    for i in shared.tolist():
        if i > 0:
            phone[i] = phone[i - 1]
    has_email = rng.random(n) < 0.7
    email: list[str | None] = [
        f"citizen{i + 1}.{seed}@example.org" if e else None
        for i, e in enumerate(has_email.tolist())
    ]
    channels = (
        np.where(rng.random(n) < 0.9, SMS, 0)
        | np.where(rng.random(n) < 0.15, VOICE, 0)
        | np.where(has_email & (rng.random(n) < 0.6), EMAIL, 0)
    ).astype(np.int16)
    channels[channels == 0] = SMS

    works = np.flatnonzero(rng.random(n) < 0.35)
    wlon, wlat = _clip(*_city_points(rng, works.size, spread=0.6))
    families = np.flatnonzero(rng.random(n) < 0.08)
    fam_home = rng.integers(0, households, size=families.size)

    sub = np.concatenate([ids, works, families])
    kinds = np.concatenate(
        [np.zeros(n, np.int8), np.ones(works.size, np.int8), np.full(families.size, 2, np.int8)]
    )
    lon = np.concatenate([h_lon[home], wlon, h_lon[fam_home]])
    lat = np.concatenate([h_lat[home], wlat, h_lat[fam_home]])
    cells = np.concatenate([h_cell[home], _h3_cells(wlon, wlat), h_cell[fam_home]])
    by_sub = np.lexsort((kinds, sub))
    sub, kinds = sub[by_sub], kinds[by_sub]
    position = np.zeros(sub.size, np.int8)
    position[1:] = np.where(sub[1:] == sub[:-1], 1, 0)
    position[2:] += np.where((sub[2:] == sub[:-2]), 1, 0).astype(np.int8)
    return Population(
        phone=phone,
        email=email,
        language=language,
        channels=channels,
        addr_subscriber=sub + 1,
        addr_position=position,
        addr_kind=kinds,
        addr_lon=lon[by_sub],
        addr_lat=lat[by_sub],
        addr_h3=cells[by_sub],
    )


def generate_cell_sites(*, seed: int, per_operator: int) -> CellSites:
    """Cell sites of each operator: dense and small in towns, sparse and wide in the country."""
    rng = np.random.default_rng(seed + 1)
    ops: list[str] = []
    cell_ids: list[str] = []
    lons: list[Array] = []
    lats: list[Array] = []
    radii: list[Array] = []
    for op in OPERATORS:
        urban = per_operator * 2 // 3
        ulon, ulat = _clip(*_city_points(rng, urban, spread=1.5))
        clon, clat = _countryside_points(rng, per_operator - urban)
        lons.append(np.concatenate([ulon, clon]))
        lats.append(np.concatenate([ulat, clat]))
        radii.append(
            np.concatenate([rng.uniform(300, 1500, urban), rng.uniform(2000, 8000, clon.size)])
        )
        ops.extend([op] * per_operator)
        cell_ids.extend(f"{op[:3].upper()}-{i:06d}" for i in range(per_operator))
    return CellSites(
        operator=ops,
        cell_id=cell_ids,
        lon=np.concatenate(lons),
        lat=np.concatenate(lats),
        radius_m=np.concatenate(radii),
    )
