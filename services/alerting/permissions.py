"""Who may alert whom: the rules of the service agreement, each refusal PERMISSION_DENIED."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from services.alerting.model import PRESENCE_CHANNELS, AlertSpec, Kind
from services.alerting.validation import parse_zone
from services.kernel.errors import PermissionDenied

#: Kinds allowed on presence channels (LB-SMS, cell broadcast, CAP feed): threatening danger.
#: The agreement keeps these channels for it; a test or an exercise may use them only when the
#: national crisis centre runs it (as the nationwide test of 2019 did), never a municipality's.
PRESENCE_KINDS = frozenset({Kind.EMERGENCY})
#: Drills the national crisis centre (the entity whose territory is the country) may run on them.
NATIONAL_DRILL_KINDS = frozenset({Kind.EXERCISE, Kind.TEST})
#: Territory kind of the national crisis centre.
NATIONAL = "country"
#: Tolerance around a territory, in metres: a zone drawn along the border may overshoot a little
#: (the same margin targeting allows, so that both services agree).
BORDER_TOLERANCE_M = 200.0
#: Metres per degree of latitude, and of longitude at the equator.
M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON_EQ = 111_320.0


@dataclass(frozen=True)
class EntityInfo:
    """What the rules need of the issuing entity."""

    id: int
    name: str
    type: int
    territory_geojson: str | None
    #: municipality, province or country (the national crisis centre); "" for none.
    territory_kind: str = ""

    @property
    def is_national(self) -> bool:
        """Whether the entity is the national crisis centre."""
        return self.type == 1 and self.territory_kind == NATIONAL


def zone_inside(*, zone: Polygon | MultiPolygon, territory: Polygon | MultiPolygon) -> bool:
    """Whether the zone lies inside the territory, give or take BORDER_TOLERANCE_M."""
    scale, allowed = _allowed_area(territory)
    return bool(allowed.covers(shapely.transform(zone, lambda xy: xy * scale)))


def _allowed_area(territory: Polygon | MultiPolygon) -> tuple[np.ndarray, BaseGeometry]:
    kx = M_PER_DEG_LON_EQ * math.cos(math.radians(territory.centroid.y))
    scale = np.array([kx, M_PER_DEG_LAT])
    metres = shapely.transform(territory, lambda xy: xy * scale)
    return scale, metres.buffer(BORDER_TOLERANCE_M)


@lru_cache(maxsize=256)
def _territory_area(territory_geojson: str) -> tuple[np.ndarray, BaseGeometry]:
    """The territory in metres with its tolerance, once per territory text (entities reuse it).

    Prepared (GEOS builds its index once), since every CreateAlert of the entity tests it.
    """
    scale, allowed = _allowed_area(parse_zone(territory_geojson, field="entity.territory"))
    shapely.prepare(allowed)
    return scale, allowed


def check_alert(*, entity: EntityInfo, spec: AlertSpec, own_groups: frozenset[int]) -> None:
    """Refuse what this entity may not send: population outside its right, others' groups."""
    if spec.zone_geojson:
        if entity.type != 1:
            raise PermissionDenied(
                f"entity type {entity.type} may alert only its own groups, never a zone's"
                " population",
                field="spec.zone_geojson",
            )
        if not entity.territory_geojson:
            raise PermissionDenied("the entity has no territory", field="spec.zone_geojson")
        scale, allowed = _territory_area(entity.territory_geojson)
        zone = shapely.transform(parse_zone(spec.zone_geojson), lambda xy: xy * scale)
        if not allowed.covers(zone):
            raise PermissionDenied(
                f"zone extends outside the territory of {entity.name}", field="spec.zone_geojson"
            )
    foreign = sorted(set(spec.group_ids) - own_groups)
    if foreign:
        raise PermissionDenied(
            f"groups {', '.join(map(str, foreign))} are not groups of {entity.name}",
            field="spec.group_ids",
        )
    drill = spec.kind in NATIONAL_DRILL_KINDS and entity.is_national
    if spec.kind not in PRESENCE_KINDS and not drill:
        for channel in spec.channels:
            if channel in PRESENCE_CHANNELS:
                raise PermissionDenied(
                    f"channel {channel.value} is only for emergencies (threatening danger);"
                    " tests and exercises on it are run by the national crisis centre only",
                    field="spec.channels",
                )
