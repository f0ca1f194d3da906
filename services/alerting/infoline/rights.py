"""Who may do what with an entity's information line: authorised persons and declared phases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.alerting import entities
from services.alerting.auth import Principal
from services.alerting.infoline.model import PersonFunction, PhaseLevel
from services.alerting.infoline.store import Conn
from services.alerting.permissions import EntityInfo
from services.kernel.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied

#: The phase an entity's own authorised person may declare, by the entity's territory.
OWN_LEVEL = {
    "municipality": PhaseLevel.MUNICIPAL,
    "province": PhaseLevel.PROVINCIAL,
    "country": PhaseLevel.FEDERAL,
}


@dataclass(frozen=True)
class Person:
    """Someone the entity named to activate and close its line."""

    entity_id: int
    user_id: int
    username: str
    function: PersonFunction
    added_at: datetime


@dataclass(frozen=True)
class Phase:
    """An emergency phase declared for an entity."""

    entity_id: int
    level: PhaseLevel
    reason: str
    declared_at: datetime
    declared_by: str
    ended_at: datetime | None


async def line_entity(conn: Conn, *, entity_id: int) -> EntityInfo:
    """The entity, refused unless it is of type 1 (type 2 entities have no information line)."""
    entity = await entities.load(conn, entity_id=entity_id)
    if entity.type != 1:
        raise PermissionDenied(
            f"{entity.name} is a type 2 entity: only a mayor, governor or minister's entity"
            " activates an information line"
        )
    return entity


async def add_person(
    pool: asyncpg.Pool, *, entity_id: int, user_id: int, function: PersonFunction, now: datetime
) -> Person:
    """Name one of the entity's own accounts as mayor or representative."""
    await line_entity(pool, entity_id=entity_id)
    user = await pool.fetchrow(
        "SELECT username, entity_id, disabled FROM users WHERE id = $1", user_id
    )
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    if user["entity_id"] != entity_id or user["disabled"]:
        raise FailedPrecondition(
            f"user {user['username']} is not an enabled account of entity {entity_id}"
        )
    try:
        await pool.execute(
            "INSERT INTO infoline_persons (entity_id, user_id, function, added_at)"
            " VALUES ($1, $2, $3, $4)",
            entity_id,
            user_id,
            function.value,
            now,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"{user['username']} is authorised already", field="user_id") from None
    return Person(entity_id, user_id, user["username"], function, now)


async def remove_person(pool: asyncpg.Pool, *, entity_id: int, user_id: int, now: datetime) -> None:
    """Withdraw a person's right (the row stays, with the moment it ended)."""
    done = await pool.execute(
        "UPDATE infoline_persons SET removed_at = $3"
        " WHERE entity_id = $1 AND user_id = $2 AND removed_at IS NULL",
        entity_id,
        user_id,
        now,
    )
    if done == "UPDATE 0":
        raise NotFound(f"user {user_id} is not an authorised person of entity {entity_id}")


async def persons(pool: asyncpg.Pool, *, entity_id: int) -> list[Person]:
    """The entity's current authorised persons."""
    rows = await pool.fetch(
        "SELECT p.entity_id, p.user_id, u.username, p.function, p.added_at"
        " FROM infoline_persons p JOIN users u ON u.id = p.user_id"
        " WHERE p.entity_id = $1 AND p.removed_at IS NULL ORDER BY p.added_at, p.user_id",
        entity_id,
    )
    return [
        Person(
            r["entity_id"],
            r["user_id"],
            r["username"],
            PersonFunction(r["function"]),
            r["added_at"],
        )
        for r in rows
    ]


async def require_authorised(conn: Conn, *, principal: Principal, entity_id: int) -> None:
    """Refuse anyone but the entity's mayor or a representative it named in advance."""
    if principal.entity_id != entity_id or not await conn.fetchval(
        "SELECT 1 FROM infoline_persons p JOIN users u ON u.id = p.user_id"
        " WHERE p.entity_id = $1 AND p.user_id = $2 AND p.removed_at IS NULL"
        " AND NOT u.disabled",
        entity_id,
        principal.user_id,
    ):
        raise PermissionDenied(
            "only the mayor or a representative named in advance (an authorised person of the"
            " entity) may do this"
        )


async def phase_in_force(conn: Conn, *, entity_id: int) -> Phase | None:
    """The entity's declared phase, if one is in force."""
    row = await conn.fetchrow(
        "SELECT * FROM infoline_phases WHERE entity_id = $1 AND ended_at IS NULL", entity_id
    )
    return None if row is None else _phase(row)


def _phase(row: asyncpg.Record) -> Phase:
    return Phase(
        row["entity_id"],
        PhaseLevel(row["level"]),
        row["reason"],
        row["declared_at"],
        row["declared_by"],
        row["ended_at"],
    )


async def declare_phase(
    pool: asyncpg.Pool,
    *,
    principal: Principal,
    entity_id: int,
    level: PhaseLevel,
    reason: str,
    now: datetime,
) -> Phase:
    """Declare a phase: the entity's own level by its authorised person, any level by an admin."""
    entity = await line_entity(pool, entity_id=entity_id)
    if not principal.is_admin:
        await require_authorised(pool, principal=principal, entity_id=entity_id)
        territory = await pool.fetchval(
            "SELECT territory_kind FROM entities WHERE id = $1", entity_id
        )
        own = OWN_LEVEL.get(territory or "")
        if level is not own:
            raise PermissionDenied(
                f"{entity.name} declares a {own.value if own else 'no'} phase; a higher phase is"
                " declared by the governor or the minister through the crisis centre"
            )
    try:
        row = await pool.fetchrow(
            "INSERT INTO infoline_phases (entity_id, level, reason, declared_at, declared_by)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING *",
            entity_id,
            level.value,
            reason,
            now,
            principal.username,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"{entity.name} has a phase in force already") from None
    assert row is not None
    return _phase(row)


async def end_phase(
    pool: asyncpg.Pool, *, principal: Principal, entity_id: int, now: datetime
) -> Phase:
    """End the entity's phase (its authorised person or an admin); open lines stay open."""
    if not principal.is_admin:
        await require_authorised(pool, principal=principal, entity_id=entity_id)
    row = await pool.fetchrow(
        "UPDATE infoline_phases SET ended_at = $2 WHERE entity_id = $1 AND ended_at IS NULL"
        " RETURNING *",
        entity_id,
        now,
    )
    if row is None:
        raise NotFound(f"entity {entity_id} has no phase in force")
    return _phase(row)
