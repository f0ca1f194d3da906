"""Helpers for targeting tests: entities, groups, subscribers and reading the work streams."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.kernel import keys
from services.targeting import subscribers
from services.targeting.model import Channel

#: A type 1 entity's territory: a box around Brussels and the centre of the country.
TERRITORY = json.dumps(
    {
        "type": "Polygon",
        "coordinates": [[[3.9, 50.4], [5.2, 50.4], [5.2, 51.1], [3.9, 51.1], [3.9, 50.4]]],
    }
)


async def make_entity(pool: asyncpg.Pool, *, type_: int = 1, name: str = "Gemeente") -> int:
    """An entity; type 1 gets TERRITORY."""
    return int(
        await pool.fetchval(
            "INSERT INTO entities (name, type, territory_kind, territory) "
            "VALUES ($1, $2, $3, $4) RETURNING id",
            name,
            type_,
            "province" if type_ == 1 else None,
            TERRITORY if type_ == 1 else None,
        )
    )


async def make_group(pool: asyncpg.Pool, *, entity_id: int, members: list[dict[str, Any]]) -> int:
    """A group with members (name, phone, email, language, channels)."""
    gid = int(
        await pool.fetchval(
            "INSERT INTO groups (entity_id, name) VALUES ($1, $2) RETURNING id",
            entity_id,
            f"group-{entity_id}-{len(members)}",
        )
    )
    for m in members:
        await pool.execute(
            "INSERT INTO group_members (group_id, name, phone, email, language, channels) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            gid,
            m.get("name", "contact"),
            m.get("phone"),
            m.get("email"),
            m.get("language", "nl"),
            m.get("channels", 1),
        )
    return gid


async def add_subscriber(
    pool: asyncpg.Pool,
    *,
    phone: str | None = "+32470000001",
    email: str | None = None,
    language: str = "nl",
    channels: frozenset[Channel] = frozenset({Channel.SMS}),
    points: list[tuple[float, float]],
) -> int:
    """Register a subscriber through the domain code (home first, then work, then family)."""
    kinds = ["home", "work", "family", "family", "family"]
    return await subscribers.register(
        pool=pool,
        data=subscribers.SubscriberData(
            phone=phone,
            email=email,
            language=language,
            channels=channels,
            addresses=tuple(
                subscribers.Address(kind=k, lon=lon, lat=lat)
                for k, (lon, lat) in zip(kinds, points, strict=False)
            ),
        ),
    )


async def stream_entries(redis: aioredis.Redis, stream: str) -> list[dict[bytes, bytes]]:
    """The fields of every entry of a work stream, in order."""
    raw: Any = await redis.xrange(stream)
    return [dict(fields) for _, fields in raw]


async def stream_recipients(redis: aioredis.Redis, stream: str) -> list[tuple[str, str]]:
    """Every [address, language] written to a work stream, in order."""
    out: list[tuple[str, str]] = []
    for fields in await stream_entries(redis, stream):
        out.extend((a, lang) for a, lang in json.loads(fields[b"to"]))
    return out


@pytest.fixture
def streams() -> dict[Channel, str]:
    """Stream name per channel."""
    return {
        Channel.SMS: keys.SMS_STREAM,
        Channel.VOICE: keys.VOICE_STREAM,
        Channel.EMAIL: keys.EMAIL_STREAM,
    }
