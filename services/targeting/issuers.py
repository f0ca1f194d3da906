"""Who may target what: type 1 entities a zone inside their territory, every entity its groups."""

from __future__ import annotations

from services.kernel.errors import InvalidArgument, NotFound, PermissionDenied
from services.targeting.model import Conn
from services.targeting.zones import Zone, parse_geojson, project_geometry

#: Tolerance around a territory, in metres: a zone drawn along the border may overshoot a little.
TERRITORY_TOLERANCE_M = 200.0


async def check_issuer(
    *, conn: Conn, entity_id: int, zone: Zone | None, group_ids: list[int]
) -> None:
    """Refuse unless the entity exists, owns the groups and (for a zone) is type 1 covering it."""
    if entity_id <= 0:
        raise InvalidArgument("entity_id", "the issuing entity is required")
    entity = await conn.fetchrow("SELECT type, territory FROM entities WHERE id = $1", entity_id)
    if entity is None:
        raise NotFound(f"entity {entity_id} does not exist", field="entity_id")
    if group_ids:
        rows = await conn.fetch(
            "SELECT id, entity_id FROM groups WHERE id = ANY($1::bigint[])", group_ids
        )
        owners: dict[int, int] = {r["id"]: r["entity_id"] for r in rows}
        for i, gid in enumerate(group_ids):
            if gid not in owners:
                raise NotFound(f"group {gid} does not exist", field=f"group_ids[{i}]")
            if owners[gid] != entity_id:
                raise PermissionDenied(
                    f"group {gid} belongs to another entity", field=f"group_ids[{i}]"
                )
    if zone is None:
        return
    if entity["type"] != 1:
        raise PermissionDenied("a type 2 entity alerts only its groups, never a zone", field="zone")
    territory = parse_geojson(entity["territory"], field="entity.territory")
    if not territory.projected.buffer(TERRITORY_TOLERANCE_M).covers(
        project_geometry(zone.geometry, ref_lat=territory.ref_lat)
    ):
        raise PermissionDenied("the zone extends outside the entity's territory", field="zone")
