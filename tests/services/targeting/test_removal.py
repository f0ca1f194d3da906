"""RemoveSubscriber erases the citizen everywhere: registration, delivery records, streams."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from services.channel import keys as channel_keys
from services.targeting import subscribers
from services.targeting.model import ALL_CHANNELS, Channel
from services.targeting.resolve import AlertMessage, resolve
from services.targeting.zones import circle
from tests.services.targeting.conftest import add_subscriber, stream_recipients

CENTRE = (4.3517, 50.8503)
PHONE = {Channel.SMS, Channel.VOICE}
MESSAGE = AlertMessage(
    alert="5f0e0c9e-4a57-4c55-9a6e-2d1f8f7b1a77",
    version=1,
    kind="exercise",
    expires=time.time() + 3600,
    sender="BE-Alert",
    texts={"nl": "OEFENING: blijf binnen"},
)


async def test_removal_erases_queued_stream_work_and_past_deliveries(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, streams: dict[Channel, str]
) -> None:
    keep = "+32470000060"
    gone, gone_mail = "+32470000061", "gone61@example.org"
    await add_subscriber(pg_pool, phone=keep, points=[CENTRE], channels=frozenset(PHONE))
    removed = await add_subscriber(
        pg_pool, phone=gone, email=gone_mail, points=[CENTRE], channels=frozenset(ALL_CHANNELS)
    )
    # An alert's work waits in every channel's stream, and an older delivery is on record.
    zone = circle(lon=CENTRE[0], lat=CENTRE[1], radius_m=1000)
    async for _ in resolve(
        pool=pg_pool,
        redis=redis_client,
        message=MESSAGE,
        channels=frozenset(ALL_CHANNELS),
        zone=zone,
        group_ids=[],
        batch_size=500,
    ):
        pass
    await pg_pool.execute(
        "INSERT INTO sms_messages (alert, version, address, operator, segments, state)"
        " VALUES ($1, 1, $2, 'opA', 1, 'delivered')",
        "5f0e0c9e-4a57-4c55-9a6e-2d1f8f7b1a00",
        gone,
    )
    assert (gone, "nl") in await stream_recipients(redis_client, streams[Channel.SMS])

    await subscribers.remove(pool=pg_pool, redis=redis_client, subscriber_id=removed)

    assert await stream_recipients(redis_client, streams[Channel.SMS]) == [(keep, "nl")]
    assert await stream_recipients(redis_client, streams[Channel.VOICE]) == [(keep, "nl")]
    assert await stream_recipients(redis_client, streams[Channel.EMAIL]) == []
    everything: list[Any] = []
    for stream in (*streams.values(), channel_keys.dead_letters("sms")):
        found: Any = await redis_client.xrange(stream)
        everything += [fields for _, fields in found]
    tombstones = await redis_client.zrange(channel_keys.erased("sms"), 0, -1)
    assert tombstones  # digests, checked below never to be the number
    assert gone.encode() not in repr([everything, tombstones]).encode()
    assert gone_mail.encode() not in repr(everything).encode()
    assert not await pg_pool.fetchval("SELECT count(*) FROM sms_messages WHERE address = $1", gone)
