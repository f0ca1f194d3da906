"""Administration for the crisis centre: entities, users, groups and their members."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis

from services.alerting import auth, ledger
from services.alerting.model import LANGUAGES, Channel, Role
from services.alerting.validation import parse_zone
from services.channel.retention import erase_address
from services.kernel.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.targeting.subscribers import erase_queued_work

TERRITORY_KINDS = ("municipality", "province", "country")
GROUP_KINDS = ("contact_list", "neighbourhood_network")
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{2,63}$")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: Bits of group_members.channels (migrations/0002_targeting.sql).
CHANNEL_BITS = {Channel.SMS: 1, Channel.VOICE: 2, Channel.EMAIL: 4}


@dataclass(frozen=True)
class Entity:
    """An entity with its billing state."""

    id: int
    name: str
    type: int
    territory_kind: str
    territory_geojson: str
    postpaid: bool
    prepaid_units: int
    activated_at: datetime | None


@dataclass(frozen=True)
class User:
    """An account, without its credential."""

    id: int
    username: str
    entity_id: int | None
    role: Role
    disabled: bool


@dataclass(frozen=True)
class Group:
    """A contact list of an entity."""

    id: int
    entity_id: int
    name: str
    kind: str
    members: int


ENTITY_SELECT = (
    "SELECT e.id, e.name, e.type, coalesce(e.territory_kind, '') AS territory_kind,"
    " coalesce(e.territory, '') AS territory, coalesce(b.postpaid, false) AS postpaid,"
    " coalesce(b.prepaid_units, 0) AS prepaid_units, b.activated_at"
    " FROM entities e LEFT JOIN billing_accounts b ON b.entity_id = e.id"
)


def _entity(row: asyncpg.Record) -> Entity:
    return Entity(
        row["id"],
        row["name"],
        row["type"],
        row["territory_kind"],
        row["territory"],
        row["postpaid"],
        row["prepaid_units"],
        row["activated_at"],
    )


async def get_entity(pool: asyncpg.Pool, *, entity_id: int) -> Entity:
    """One entity with its billing state."""
    row = await pool.fetchrow(f"{ENTITY_SELECT} WHERE e.id = $1", entity_id)
    if row is None:
        raise NotFound(f"entity {entity_id} does not exist")
    return _entity(row)


#: Longest name of an entity, group or group member, and longest e-mail address (RFC 5321).
MAX_NAME = 200
MAX_EMAIL = 254


def check_name(name: str, *, field: str = "name") -> None:
    """Refuse an empty or overlong name."""
    if not name.strip():
        raise InvalidArgument(field, "required")
    if len(name) > MAX_NAME:
        raise InvalidArgument(field, f"at most {MAX_NAME} characters")


async def create_entity(
    pool: asyncpg.Pool,
    *,
    name: str,
    type: int,
    territory_kind: str,
    territory_geojson: str,
    postpaid: bool,
) -> Entity:
    """Register an entity and open its account (activation fee, first year's subscription)."""
    check_name(name)
    if type not in (1, 2):
        raise InvalidArgument("type", "1 (alerts a zone of its territory) or 2 (groups only)")
    if territory_geojson or territory_kind:
        if territory_kind not in TERRITORY_KINDS:
            raise InvalidArgument("territory_kind", f"one of {', '.join(TERRITORY_KINDS)}")
        parse_zone(territory_geojson, field="territory_geojson")
    elif type == 1:
        raise InvalidArgument("territory_geojson", "a type 1 entity needs its territory")
    async with pool.acquire() as conn, conn.transaction():
        entity_id = await conn.fetchval(
            "INSERT INTO entities (name, type, territory_kind, territory)"
            " VALUES ($1, $2, $3, $4) RETURNING id",
            name.strip(),
            type,
            territory_kind or None,
            territory_geojson or None,
        )
        await ledger.open_account(conn, entity_id=entity_id, postpaid=postpaid, now=_now())
    return await get_entity(pool, entity_id=entity_id)


async def list_entities(pool: asyncpg.Pool) -> list[Entity]:
    """Every entity, by id."""
    return [_entity(r) for r in await pool.fetch(f"{ENTITY_SELECT} ORDER BY e.id")]


async def set_billing(pool: asyncpg.Pool, *, entity_id: int, postpaid: bool) -> Entity:
    """Turn an entity's postpaid agreement on or off."""
    await get_entity(pool, entity_id=entity_id)
    async with pool.acquire() as conn, conn.transaction():
        await ledger.open_account(conn, entity_id=entity_id, postpaid=postpaid, now=_now())
        await conn.execute(
            "UPDATE billing_accounts SET postpaid = $2 WHERE entity_id = $1", entity_id, postpaid
        )
    return await get_entity(pool, entity_id=entity_id)


def _user(row: asyncpg.Record) -> User:
    return User(row["id"], row["username"], row["entity_id"], Role(row["role"]), row["disabled"])


async def create_user(
    pool: asyncpg.Pool, *, username: str, password: str, entity_id: int | None, role: Role
) -> User:
    """Create one person's account; an issuer belongs to exactly one entity."""
    if not USERNAME.match(username):
        raise InvalidArgument("username", "3 to 64 of a-z 0-9 . _ @ -, starting alphanumeric")
    if role is Role.ISSUER and entity_id is None:
        raise InvalidArgument("entity_id", "an issuer belongs to an entity")
    if entity_id is not None:
        await get_entity(pool, entity_id=entity_id)
    hashed = await auth.hash_password(password)
    try:
        row = await pool.fetchrow(
            "INSERT INTO users (username, entity_id, role, password_hash) VALUES ($1, $2, $3, $4)"
            " RETURNING id, username, entity_id, role, disabled",
            username,
            entity_id,
            role.value,
            hashed,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"user {username} exists already", field="username") from None
    assert row is not None
    return _user(row)


async def disable_user(pool: asyncpg.Pool, *, user_id: int) -> User:
    """Disable an account: its tokens stop working at once."""
    row = await pool.fetchrow(
        "UPDATE users SET disabled = true, token_generation = token_generation + 1 WHERE id = $1"
        " RETURNING id, username, entity_id, role, disabled",
        user_id,
    )
    if row is None:
        raise NotFound(f"user {user_id} does not exist")
    return _user(row)


async def list_users(pool: asyncpg.Pool, *, entity_id: int | None) -> list[User]:
    """Accounts, of one entity or all."""
    rows = await pool.fetch(
        "SELECT id, username, entity_id, role, disabled FROM users"
        " WHERE $1::bigint IS NULL OR entity_id = $1 ORDER BY id",
        entity_id,
    )
    return [_user(r) for r in rows]


async def bootstrap_admin(pool: asyncpg.Pool, *, username: str, password: str) -> User:
    """Create the first admin, straight in the database; refused once any admin exists."""
    if await pool.fetchval("SELECT 1 FROM users WHERE role = 'admin' LIMIT 1"):
        raise FailedPrecondition("an admin exists already: create further users through the API")
    return await create_user(
        pool, username=username, password=password, entity_id=None, role=Role.ADMIN
    )


async def create_group(pool: asyncpg.Pool, *, entity_id: int, name: str, kind: str) -> Group:
    """Create an entity's contact list."""
    kind = kind or "contact_list"
    if kind not in GROUP_KINDS:
        raise InvalidArgument("kind", f"one of {', '.join(GROUP_KINDS)}")
    check_name(name)
    await get_entity(pool, entity_id=entity_id)
    try:
        group_id = await pool.fetchval(
            "INSERT INTO groups (entity_id, name, kind) VALUES ($1, $2, $3) RETURNING id",
            entity_id,
            name.strip(),
            kind,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"the entity has a group {name!r} already", field="name") from None
    return Group(group_id, entity_id, name.strip(), kind, 0)


async def list_groups(pool: asyncpg.Pool, *, entity_id: int) -> list[Group]:
    """An entity's groups with their sizes."""
    rows = await pool.fetch(
        "SELECT g.id, g.entity_id, g.name, g.kind, count(m.id) AS members FROM groups g"
        " LEFT JOIN group_members m ON m.group_id = g.id WHERE g.entity_id = $1"
        " GROUP BY g.id ORDER BY g.id",
        entity_id,
    )
    return [Group(r["id"], r["entity_id"], r["name"], r["kind"], r["members"]) for r in rows]


async def add_member(
    pool: asyncpg.Pool,
    *,
    group_id: int,
    name: str,
    phone: str,
    email: str,
    language: str,
    channels: tuple[Channel, ...],
) -> int:
    """Add a named contact to a group; returns the member's id."""
    check_name(name)
    if phone and not E164.match(phone):
        raise InvalidArgument("phone", "E.164, e.g. +32470123456")
    if len(email) > MAX_EMAIL or (email and not EMAIL.match(email)):
        raise InvalidArgument("email", "not an e-mail address")
    if language not in LANGUAGES:
        raise InvalidArgument("language", f"one of {', '.join(LANGUAGES)}")
    bits = 0
    for channel in channels:
        if channel not in CHANNEL_BITS:
            raise InvalidArgument("channels", "SMS, voice and e-mail only")
        bits |= CHANNEL_BITS[channel]
    if not bits:
        raise InvalidArgument("channels", "at least one of SMS, voice, e-mail")
    if bits & 3 and not phone:
        raise InvalidArgument("phone", "needed for SMS and voice")
    if bits & 4 and not email:
        raise InvalidArgument("email", "needed for e-mail")
    if await pool.fetchval("SELECT 1 FROM groups WHERE id = $1", group_id) is None:
        raise NotFound(f"group {group_id} does not exist")
    member_id: int = await pool.fetchval(
        "INSERT INTO group_members (group_id, name, phone, email, language, channels)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        group_id,
        name.strip(),
        phone or None,
        email or None,
        language,
        bits,
    )
    return member_id


async def remove_member(
    pool: asyncpg.Pool, *, redis: aioredis.Redis, group_id: int, member_id: int
) -> None:
    """Delete a group's contact and erase their number and address everywhere: queued stream
    work first (unless another registration still holds them), then past deliveries."""
    contact = await pool.fetchrow(
        "SELECT phone, email FROM group_members WHERE group_id = $1 AND id = $2",
        group_id,
        member_id,
    )
    if contact is None:
        raise NotFound(f"group {group_id} has no member {member_id}", field="member_id")
    tokens = await erase_queued_work(
        pool, redis, phone=contact["phone"], email=contact["email"], member=(group_id, member_id)
    )
    async with pool.acquire() as conn, conn.transaction():
        deleted = await conn.fetchrow(
            "DELETE FROM group_members WHERE group_id = $1 AND id = $2 RETURNING phone, email",
            group_id,
            member_id,
        )
        if deleted is None:
            raise NotFound(f"group {group_id} has no member {member_id}", field="member_id")
        # Past deliveries of every channel too, in the same transaction (as a citizen's removal).
        for address in (deleted["phone"], deleted["email"]):
            if address:
                await erase_address(conn, address=address, tokens=tokens.get(address))


def _now() -> datetime:
    return datetime.now(UTC)
