"""The issuing entities and their groups, as targeting stores them (read directly)."""

from __future__ import annotations

import asyncpg

from services.alerting import store
from services.alerting.permissions import EntityInfo
from services.kernel.errors import NotFound


async def load(conn: store.Conn | asyncpg.Pool, *, entity_id: int) -> EntityInfo:
    """The entity with its type and territory."""
    row = await conn.fetchrow(
        "SELECT id, name, type, territory, coalesce(territory_kind, '') AS territory_kind"
        " FROM entities WHERE id = $1",
        entity_id,
    )
    if row is None:
        raise NotFound(f"entity {entity_id} does not exist")
    return EntityInfo(row["id"], row["name"], row["type"], row["territory"], row["territory_kind"])


async def own_groups(
    conn: store.Conn | asyncpg.Pool, *, entity_id: int, group_ids: tuple[int, ...]
) -> frozenset[int]:
    """Which of `group_ids` belong to the entity."""
    rows = await conn.fetch(
        "SELECT id FROM groups WHERE entity_id = $1 AND id = ANY($2::bigint[])",
        entity_id,
        list(group_ids),
    )
    return frozenset(r["id"] for r in rows)
