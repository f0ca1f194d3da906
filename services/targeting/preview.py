"""Preview: recipients per channel and language for a zone and groups, in well under a second.

Cells wholly inside the zone at a resolution of COUNT_RESOLUTIONS or coarser are summed from
cell_counts; the finer cells along the boundary are counted from the addresses, testing each
point exactly in the boundary cells.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import numpy as np

from services.targeting.cover import (
    COUNT_RES,
    COUNT_RESOLUTIONS,
    FINE_RES,
    cover_zone,
    merged_ranges,
)
from services.targeting.model import ALL_CHANNELS, LANGUAGES, Channel, Counts
from services.targeting.zones import Zone

#: Finest cover resolution by zone area (km²): fine enough that the band of points tested exactly
#: stays narrow, coarse enough that covering a large zone stays cheap (docs/targeting.md).
MAX_RES_BY_AREA = ((50.0, 11), (1_000.0, 10), (float("inf"), 9))
#: Zones smaller than this (km²) are counted exactly, person by person, without cell_counts.
EXACT_BELOW_KM2 = 10.0

_COUNTS_SQL = """
    SELECT c.language, sum(c.sms), sum(c.voice), sum(c.email)
    FROM unnest($1::bigint[], $2::bigint[]) r(lo, hi)
    JOIN cell_counts c ON c.cell BETWEEN r.lo AND r.hi
    GROUP BY c.language
"""
#: One row of arrays rather than a row per address: asyncpg decodes arrays in C, and numpy
#: takes them whole. Languages come as their index in LANGUAGES (0-based).
_BAND_SQL = """
    SELECT coalesce(array_agg(a.subscriber_id), '{}'), coalesce(array_agg(a.lon), '{}'),
           coalesce(array_agg(a.lat), '{}'),
           coalesce(array_agg(array_position('{nl,fr,de,en}'::text[], a.language) - 1), '{}'),
           coalesce(array_agg(a.channels), '{}'), coalesce(array_agg(r.test), '{}')
    FROM unnest($1::bigint[], $2::bigint[], $3::bool[]) r(lo, hi, test)
    JOIN addresses a ON a.h3 BETWEEN r.lo AND r.hi
"""
_BAND_COUNT_SQL = """
    SELECT language, count(DISTINCT subscriber_id) FILTER (WHERE channels & 1 <> 0),
           count(DISTINCT subscriber_id) FILTER (WHERE channels & 2 <> 0),
           count(DISTINCT subscriber_id) FILTER (WHERE channels & 4 <> 0)
    FROM unnest($1::bigint[], $2::bigint[]) r(lo, hi)
    JOIN addresses a ON a.h3 BETWEEN r.lo AND r.hi
    GROUP BY language
"""
_GROUPS_SQL = """
    SELECT DISTINCT ON (dest, ch) dest, ch, language FROM (
        SELECT m.phone AS dest, 1 AS ch, m.language FROM group_members m
         WHERE m.group_id = ANY($1::bigint[]) AND m.channels & 1 <> 0 AND m.phone IS NOT NULL
        UNION ALL
        SELECT m.phone, 2, m.language FROM group_members m
         WHERE m.group_id = ANY($1::bigint[]) AND m.channels & 2 <> 0 AND m.phone IS NOT NULL
        UNION ALL
        SELECT m.email, 4, m.language FROM group_members m
         WHERE m.group_id = ANY($1::bigint[]) AND m.channels & 4 <> 0 AND m.email IS NOT NULL
    ) d
"""


@dataclass
class ZonePlan:
    """A zone's cover as ranges: of cell_counts cells, and of addresses (tested or not)."""

    count_ranges: list[tuple[int, int]]
    address_ranges: list[tuple[int, int, bool]]


def max_res_for(zone: Zone) -> int:
    """The finest cover resolution worth using for this zone."""
    return next(res for area, res in MAX_RES_BY_AREA if zone.area_km2 <= area)


def plan_zone(*, zone: Zone, use_counts: bool = True) -> ZonePlan:
    """Turn the zone's cover into range scans."""
    cover = cover_zone(zone=zone, max_res=max_res_for(zone))
    counted = max(COUNT_RESOLUTIONS) if use_counts else -1
    coarse = [c for c in cover.inside if (c >> 52) & 15 <= COUNT_RES <= counted]
    count_ranges = merged_ranges(coarse, res=COUNT_RES)
    for res in COUNT_RESOLUTIONS:
        if COUNT_RES < res <= counted:
            count_ranges += merged_ranges(
                [c for c in cover.inside if (c >> 52) & 15 == res], res=res
            )
    fine = [c for c in cover.inside if (c >> 52) & 15 > counted]
    address_ranges = [(lo, hi, False) for lo, hi in merged_ranges(fine, res=FINE_RES)]
    address_ranges += [(lo, hi, True) for lo, hi in merged_ranges(cover.boundary, res=FINE_RES)]
    address_ranges.sort()
    return ZonePlan(count_ranges=sorted(count_ranges), address_ranges=address_ranges)


@dataclass
class PreviewResult:
    """Counts and whether they are exact."""

    counts: Counts
    exact: bool


async def preview(
    *,
    pool: asyncpg.Pool,
    zone: Zone | None,
    group_ids: list[int],
    channels: frozenset[Channel] = frozenset(ALL_CHANNELS),
) -> PreviewResult:
    """Count recipients per channel and language; an upper bound when not exact."""
    counts = Counts()
    tasks: list[asyncio.Task[None]] = []
    exact = True
    if zone is not None:
        plan = plan_zone(zone=zone, use_counts=zone.area_km2 >= EXACT_BELOW_KM2)
        band = plan.address_ranges
        if plan.count_ranges:
            # Large zone: counts are an upper bound anyway, so the cells inside are counted in
            # SQL and only the boundary cells' points travel here to be tested.
            exact = False
            inside = [(lo, hi) for lo, hi, test in band if not test]
            band = [r for r in band if r[2]]
            tasks.append(asyncio.create_task(_count_cells(pool, _BAND_COUNT_SQL, inside, counts)))
            tasks.append(
                asyncio.create_task(_count_cells(pool, _COUNTS_SQL, plan.count_ranges, counts))
            )
        tasks.append(asyncio.create_task(_count_band(pool, zone, band, counts)))
    if group_ids:
        if zone is not None:
            exact = False
        tasks.append(asyncio.create_task(_count_groups(pool, group_ids, counts)))
    await asyncio.gather(*tasks)
    for channel in set(ALL_CHANNELS) - channels:
        counts.by_channel[channel] = {lang: 0 for lang in counts.by_channel[channel]}
    return PreviewResult(counts=counts, exact=exact)


async def _count_cells(
    pool: asyncpg.Pool, sql: str, ranges: list[tuple[int, int]], counts: Counts
) -> None:
    if not ranges:
        return
    rows = await pool.fetch(sql, [lo for lo, _ in ranges], [hi for _, hi in ranges])
    for lang, sms, voice, email in rows:
        counts.add(Channel.SMS, lang, int(sms))
        counts.add(Channel.VOICE, lang, int(voice))
        counts.add(Channel.EMAIL, lang, int(email))


async def _count_band(
    pool: asyncpg.Pool, zone: Zone, ranges: list[tuple[int, int, bool]], counts: Counts
) -> None:
    """Count distinct subscribers in the ranges, testing the points of the tested ranges."""
    if not ranges:
        return
    lo, hi, test = zip(*ranges, strict=True)
    row = await pool.fetchrow(_BAND_SQL, list(lo), list(hi), list(test))
    if row is None:
        return
    sub, lon, lat, lang, chans, tested = (
        np.asarray(row[0], dtype=np.int64),
        np.asarray(row[1], dtype=float),
        np.asarray(row[2], dtype=float),
        np.asarray(row[3], dtype=np.int64),
        np.asarray(row[4], dtype=np.int64),
        np.asarray(row[5], dtype=np.bool_),
    )
    if not sub.size:
        return
    keep = ~tested
    keep[tested] = zone.contains(lon=lon[tested], lat=lat[tested])
    # One row per subscriber: language and channels are the subscriber's on every address.
    _, first = np.unique(sub[keep], return_index=True)
    lang, chans = lang[keep][first], chans[keep][first]
    for channel in ALL_CHANNELS:
        per_lang = np.bincount(lang[(chans & channel.bit) != 0], minlength=len(LANGUAGES))
        for language, n in zip(LANGUAGES, per_lang.tolist(), strict=True):
            if n:
                counts.add(channel, language, n)


async def _count_groups(pool: asyncpg.Pool, group_ids: list[int], counts: Counts) -> None:
    bit_channel = {c.bit: c for c in ALL_CHANNELS}
    for _dest, bit, lang in await pool.fetch(_GROUPS_SQL, group_ids):
        counts.add(bit_channel[bit], lang)
