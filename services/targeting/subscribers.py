"""Registration of citizens: register, change and remove a subscriber and their addresses."""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from h3.api import basic_int as h3

from services.channel.erase import erase_contact
from services.channel.retention import erase_address
from services.kernel.errors import InvalidArgument, NotFound
from services.targeting.counts import add_subscriber_counts
from services.targeting.cover import FINE_RES
from services.targeting.model import LANGUAGES, Channel, Conn, channel_bits
from services.targeting.zones import COUNTRY_BBOX

#: Most addresses one subscriber may register.
MAX_ADDRESSES = 5
ADDRESS_KINDS = ("home", "work", "family")

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# Belgian numbers: +32 then 8 digits (fixed lines) or 9 digits starting with 4 (mobiles).
_BE_MOBILE = re.compile(r"\+324[0-9]{8}")
_BE_FIXED = re.compile(r"\+32[1-35-9][0-9]{7}")
# No quotes or backslashes: Resolve writes addresses into JSON as they are (resolve.py).
_EMAIL = re.compile(r'[^@\s"\\]{1,64}@[^@\s"\\]+\.[^@\s."\\]{2,}')


@dataclass(frozen=True)
class Address:
    """One registered place."""

    kind: str
    lon: float
    lat: float


@dataclass(frozen=True)
class SubscriberData:
    """What a citizen registers."""

    phone: str | None
    email: str | None
    language: str
    channels: frozenset[Channel]
    addresses: tuple[Address, ...]


def validate(data: SubscriberData) -> None:
    """Refuse bad registrations, naming the wrong field."""
    if data.phone is not None:
        if not _E164.fullmatch(data.phone):
            raise InvalidArgument("phone", "not an E.164 number (+ and country code, no spaces)")
        if data.phone.startswith("+32") and not (
            _BE_MOBILE.fullmatch(data.phone) or _BE_FIXED.fullmatch(data.phone)
        ):
            raise InvalidArgument("phone", "not a valid Belgian number")
    if data.email is not None and (len(data.email) > 254 or not _EMAIL.fullmatch(data.email)):
        raise InvalidArgument("email", "not an e-mail address")
    if data.language not in LANGUAGES:
        raise InvalidArgument("language", f"unknown language {data.language!r} (nl, fr, de, en)")
    if not data.channels:
        raise InvalidArgument("channels", "choose at least one channel")
    if {Channel.SMS, Channel.VOICE} & data.channels and data.phone is None:
        raise InvalidArgument("phone", "SMS and voice need a phone number")
    belgian = data.phone is not None and data.phone.startswith("+32")
    if Channel.SMS in data.channels and belgian and not _BE_MOBILE.fullmatch(data.phone or ""):
        raise InvalidArgument("channels", "SMS needs a mobile number")
    if Channel.EMAIL in data.channels and data.email is None:
        raise InvalidArgument("email", "e-mail needs an e-mail address")
    if not data.addresses:
        raise InvalidArgument("addresses", "register at least one address")
    if len(data.addresses) > MAX_ADDRESSES:
        raise InvalidArgument("addresses", f"at most {MAX_ADDRESSES} addresses")
    lon_min, lat_min, lon_max, lat_max = COUNTRY_BBOX
    for i, a in enumerate(data.addresses):
        if a.kind not in ADDRESS_KINDS:
            raise InvalidArgument(f"addresses[{i}].kind", "home, work or family")
        if not lon_min <= a.lon <= lon_max:
            raise InvalidArgument(f"addresses[{i}].lon", "point outside Belgium")
        if not lat_min <= a.lat <= lat_max:
            raise InvalidArgument(f"addresses[{i}].lat", "point outside Belgium")


async def register(*, pool: asyncpg.Pool, data: SubscriberData) -> int:
    """Store a new subscriber; return their id."""
    validate(data)
    async with pool.acquire() as conn, conn.transaction():
        subscriber_id: int = await conn.fetchval(
            "INSERT INTO subscribers (phone, email, language, channels) "
            "VALUES ($1, $2, $3, $4) RETURNING id",
            data.phone,
            data.email,
            data.language,
            channel_bits(data.channels),
        )
        cells = await _insert_addresses(conn, subscriber_id, data)
        await _count(conn, cells, data.language, channel_bits(data.channels), 1)
    return subscriber_id


async def update(*, pool: asyncpg.Pool, subscriber_id: int, data: SubscriberData) -> None:
    """Replace a subscriber's data and addresses."""
    validate(data)
    async with pool.acquire() as conn, conn.transaction():
        before = await conn.fetchrow(
            "SELECT language, channels FROM subscribers WHERE id = $1 FOR UPDATE", subscriber_id
        )
        if before is None:
            raise NotFound(f"subscriber {subscriber_id} does not exist", field="subscriber_id")
        await conn.execute(
            "UPDATE subscribers SET phone = $2, email = $3, language = $4, channels = $5, "
            "updated_at = now() WHERE id = $1",
            subscriber_id,
            data.phone,
            data.email,
            data.language,
            channel_bits(data.channels),
        )
        old = await conn.fetch(
            "DELETE FROM addresses WHERE subscriber_id = $1 RETURNING h3", subscriber_id
        )
        await _count(conn, [r["h3"] for r in old], before["language"], before["channels"], -1)
        cells = await _insert_addresses(conn, subscriber_id, data)
        await _count(conn, cells, data.language, channel_bits(data.channels), 1)


#: Whether a phone number ($1) or e-mail address is still someone's other than the subscriber
#: ($2) or group member ($3, $4) being removed.
_LISTED_ELSEWHERE = """
SELECT EXISTS (SELECT 1 FROM subscribers WHERE {column} = $1 AND id IS DISTINCT FROM $2)
    OR EXISTS (SELECT 1 FROM group_members WHERE {column} = $1
               AND (group_id, id) IS DISTINCT FROM ($3::bigint, $4::bigint))
"""


async def erase_queued_work(
    conn: Conn | asyncpg.Pool,
    redis: aioredis.Redis,
    *,
    phone: str | None,
    email: str | None,
    subscriber_id: int | None = None,
    member: tuple[int, int] | None = None,
) -> dict[str, dict[str, str]]:
    """Erase a removed person's number and e-mail address from the work streams, unless they
    are still another subscriber's or group member's (that one's messages must still go); the
    erasure tokens per address and channel, for retention.erase_address."""
    group_id, member_id = member or (None, None)
    gone: dict[str, str | None] = {"phone": phone, "email": email}
    for column, address in list(gone.items()):
        if address and await conn.fetchval(
            _LISTED_ELSEWHERE.format(column=column), address, subscriber_id, group_id, member_id
        ):
            gone[column] = None
    return await erase_contact(redis, phone=gone["phone"], email=gone["email"])


async def remove(*, pool: asyncpg.Pool, redis: aioredis.Redis, subscriber_id: int) -> None:
    """Delete the subscriber and their addresses (the rows, not a flag), and erase their number
    and e-mail address everywhere: queued stream work first, then past deliveries."""
    contact = await pool.fetchrow(
        "SELECT phone, email FROM subscribers WHERE id = $1", subscriber_id
    )
    if contact is None:
        raise NotFound(f"subscriber {subscriber_id} does not exist", field="subscriber_id")
    # Streams first: from the tombstone on, no worker records the number again, so the
    # erasure of the delivery records below is the last word (docs/security.md).
    tokens = await erase_queued_work(
        pool, redis, phone=contact["phone"], email=contact["email"], subscriber_id=subscriber_id
    )
    async with pool.acquire() as conn, conn.transaction():
        old = await conn.fetch(
            "DELETE FROM addresses WHERE subscriber_id = $1 RETURNING h3", subscriber_id
        )
        before = await conn.fetchrow(
            "DELETE FROM subscribers WHERE id = $1 RETURNING language, channels, phone, email",
            subscriber_id,
        )
        if before is None:
            raise NotFound(f"subscriber {subscriber_id} does not exist", field="subscriber_id")
        await _count(conn, [r["h3"] for r in old], before["language"], before["channels"], -1)
        # Removal erases the number and the e-mail address from past deliveries of every
        # channel too, in the same transaction.
        for address in (before["phone"], before["email"]):
            if address:
                await erase_address(conn, address=address, tokens=tokens.get(address))


async def _count(conn: Conn, cells: list[int], language: str, channels: int, sign: int) -> None:
    await add_subscriber_counts(
        conn=conn, fine_cells=cells, language=language, channels=channels, sign=sign
    )


async def _insert_addresses(conn: Conn, subscriber_id: int, data: SubscriberData) -> list[int]:
    cells = [h3.latlng_to_cell(a.lat, a.lon, FINE_RES) for a in data.addresses]
    bits = channel_bits(data.channels)
    phone, email = data.phone, data.email
    await conn.executemany(
        "INSERT INTO addresses (subscriber_id, position, kind, lon, lat, h3, language, channels,"
        " phone, email) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        [
            (subscriber_id, i, a.kind, a.lon, a.lat, cell, data.language, bits, phone, email)
            for i, (a, cell) in enumerate(zip(data.addresses, cells, strict=True))
        ],
    )
    return cells
