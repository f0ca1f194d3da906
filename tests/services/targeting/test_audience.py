"""Preview and resolve on a real PostgreSQL and Redis: deduplication, shapes, removal."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.kernel.errors import InvalidArgument, NotFound, PermissionDenied
from services.targeting import subscribers
from services.targeting.counts import rebuild_counts
from services.targeting.cover import COUNT_RESOLUTIONS
from services.targeting.issuers import check_issuer
from services.targeting.model import ALL_CHANNELS, Channel
from services.targeting.preview import preview
from services.targeting.resolve import AlertMessage, Progress, resolve
from services.targeting.zones import Zone, circle, parse_geojson
from tests.services.targeting.conftest import (
    add_subscriber,
    make_entity,
    make_group,
    stream_entries,
    stream_recipients,
)

CENTRE = (4.3517, 50.8503)
NEAR = (4.3530, 50.8510)  # about 120 m from CENTRE
FAR = (4.50, 50.95)  # about 15 km away
MESSAGE = AlertMessage(
    alert="5f0e0c9e-4a57-4c55-9a6e-2d1f8f7b1a01",
    version=1,
    kind="exercise",
    expires=time.time() + 3600,
    sender="BE-Alert",
    texts={"nl": "OEFENING: blijf binnen", "fr": "EXERCICE: restez à l'intérieur"},
)


async def run(
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    *,
    zone: Zone | None,
    group_ids: list[int] | None = None,
    channels: frozenset[Channel] = frozenset(ALL_CHANNELS),
    batch_size: int = 2,
) -> list[Progress]:
    return [
        p
        async for p in resolve(
            pool=pool,
            redis=redis,
            message=MESSAGE,
            channels=channels,
            zone=zone,
            group_ids=group_ids or [],
            batch_size=batch_size,
        )
    ]


async def test_two_addresses_in_the_zone_give_one_message_per_channel(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, streams: dict[Channel, str]
) -> None:
    await add_subscriber(
        pg_pool,
        phone="+32470000001",
        email="a@example.org",
        channels=frozenset(ALL_CHANNELS),
        points=[CENTRE, NEAR],
    )
    zone = circle(lon=CENTRE[0], lat=CENTRE[1], radius_m=1000)
    progress = await run(pg_pool, redis_client, zone=zone)
    sent = {c: await stream_recipients(redis_client, streams[c]) for c in ALL_CHANNELS}
    assert sent[Channel.SMS] == sent[Channel.VOICE] == [("+32470000001", "nl")]
    assert sent[Channel.EMAIL] == [("a@example.org", "nl")]
    assert progress[-1].done
    assert {c: progress[-1].counts.total(c) for c in ALL_CHANNELS} == dict.fromkeys(ALL_CHANNELS, 1)


async def test_a_shared_phone_gets_one_sms(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, streams: dict[Channel, str]
) -> None:
    await add_subscriber(pg_pool, phone="+32470000002", points=[CENTRE])
    await add_subscriber(pg_pool, phone="+32470000002", language="fr", points=[NEAR])
    await add_subscriber(pg_pool, phone="+32470000003", points=[NEAR])
    await run(pg_pool, redis_client, zone=circle(lon=CENTRE[0], lat=CENTRE[1], radius_m=1000))
    sent = await stream_recipients(redis_client, streams[Channel.SMS])
    assert sorted(a for a, _ in sent) == ["+32470000002", "+32470000003"]


async def test_group_and_zone_together_never_double_a_recipient(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, streams: dict[Channel, str]
) -> None:
    entity = await make_entity(pg_pool)
    await add_subscriber(pg_pool, phone="+32470000004", points=[CENTRE])
    group = await make_group(
        pg_pool,
        entity_id=entity,
        members=[
            {"phone": "+32470000004", "language": "nl", "channels": 1},
            {"phone": "+32470000005", "language": "de", "channels": 1},
        ],
    )
    zone = circle(lon=CENTRE[0], lat=CENTRE[1], radius_m=1000)
    await run(pg_pool, redis_client, zone=zone, group_ids=[group])
    sent = await stream_recipients(redis_client, streams[Channel.SMS])
    # German has no text: the member gets the first language given (no English text either).
    assert sorted(sent) == [("+32470000004", "nl"), ("+32470000005", "nl")]


async def test_a_multipolygon_with_a_hole_skips_the_hole(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, streams: dict[Channel, str]
) -> None:
    await add_subscriber(pg_pool, phone="+32470000010", points=[(4.10, 50.60)])  # outer ring
    await add_subscriber(pg_pool, phone="+32470000011", points=[(4.30, 50.75)])  # in the hole
    await add_subscriber(pg_pool, phone="+32470000012", points=[(5.08, 50.52)])  # second polygon
    await add_subscriber(pg_pool, phone="+32470000013", points=[(4.80, 50.60)])  # outside
    zone = parse_geojson(
        json.dumps(
            {
                "type": "MultiPolygon",
                "coordinates": [
                    [
                        [[4.0, 50.5], [4.6, 50.5], [4.6, 51.0], [4.0, 51.0], [4.0, 50.5]],
                        [[4.2, 50.7], [4.4, 50.7], [4.4, 50.8], [4.2, 50.8], [4.2, 50.7]],
                    ],
                    [[[5.0, 50.5], [5.1, 50.5], [5.1, 50.6], [5.0, 50.5]]],
                ],
            }
        )
    )
    await run(pg_pool, redis_client, zone=zone)
    sent = await stream_recipients(redis_client, streams[Channel.SMS])
    assert sorted(a for a, _ in sent) == ["+32470000010", "+32470000012"]
    result = await preview(pool=pg_pool, zone=zone, group_ids=[])
    assert result.counts.total(Channel.SMS) == 2


async def test_a_circle_reaches_exactly_who_is_within_the_radius(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, streams: dict[Channel, str]
) -> None:
    # 1 km north is 0.008993 degrees of latitude.
    await add_subscriber(pg_pool, phone="+32470000020", points=[(CENTRE[0], CENTRE[1] + 0.0089)])
    await add_subscriber(pg_pool, phone="+32470000021", points=[(CENTRE[0], CENTRE[1] + 0.0091)])
    await add_subscriber(pg_pool, phone="+32470000022", points=[FAR, CENTRE])
    zone = circle(lon=CENTRE[0], lat=CENTRE[1], radius_m=1000)
    await run(pg_pool, redis_client, zone=zone)
    sent = await stream_recipients(redis_client, streams[Channel.SMS])
    assert sorted(a for a, _ in sent) == ["+32470000020", "+32470000022"]
    result = await preview(pool=pg_pool, zone=zone, group_ids=[])
    assert result.exact
    assert result.counts.by_channel[Channel.SMS]["nl"] == 2


async def test_batches_follow_the_stream_contract(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, streams: dict[Channel, str]
) -> None:
    for i in range(5):
        await add_subscriber(pg_pool, phone=f"+3247000010{i}", points=[CENTRE])
    await run(pg_pool, redis_client, zone=circle(lon=CENTRE[0], lat=CENTRE[1], radius_m=500))
    entries = await stream_entries(redis_client, streams[Channel.SMS])
    assert [len(json.loads(f[b"to"])) for f in entries] == [2, 2, 1]
    fields = entries[0]
    assert fields[b"alert"].decode() == MESSAGE.alert
    assert fields[b"version"] == b"1"
    assert fields[b"kind"] == b"exercise"
    assert float(fields[b"expires"]) == pytest.approx(MESSAGE.expires)
    assert fields[b"sender"] == b"BE-Alert"
    assert json.loads(fields[b"texts"]) == MESSAGE.texts
    assert len({f[b"batch"] for f in entries}) == 3


async def test_removal_removes_the_personal_data_and_the_recipient(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, streams: dict[Channel, str]
) -> None:
    keep = await add_subscriber(pg_pool, phone="+32470000030", points=[CENTRE])
    gone = await add_subscriber(
        pg_pool, phone="+32470000031", email="gone@example.org", points=[CENTRE, NEAR]
    )
    await subscribers.remove(pool=pg_pool, redis=redis_client, subscriber_id=gone)
    with pytest.raises(NotFound):
        await subscribers.remove(pool=pg_pool, redis=redis_client, subscriber_id=gone)
    rows = await pg_pool.fetch(
        "SELECT s::text FROM subscribers s UNION ALL SELECT a::text FROM addresses a"
    )
    dump = " ".join(r[0] for r in rows)
    assert "+32470000031" not in dump
    assert "gone@example.org" not in dump
    left = await pg_pool.fetchval("SELECT count(*) FROM addresses WHERE subscriber_id = $1", gone)
    assert left == 0
    assert keep > 0
    zone = circle(lon=CENTRE[0], lat=CENTRE[1], radius_m=1000)
    await run(pg_pool, redis_client, zone=zone)
    assert await stream_recipients(redis_client, streams[Channel.SMS]) == [("+32470000030", "nl")]
    assert (await preview(pool=pg_pool, zone=zone, group_ids=[])).counts.total(Channel.SMS) == 1


async def test_counts_kept_by_registration_equal_a_rebuild(pg_pool: asyncpg.Pool) -> None:
    a = await add_subscriber(pg_pool, phone="+32470000040", points=[CENTRE, FAR])
    await add_subscriber(
        pg_pool, phone="+32470000041", channels=frozenset({Channel.VOICE}), points=[CENTRE]
    )
    await subscribers.update(
        pool=pg_pool,
        subscriber_id=a,
        data=subscribers.SubscriberData(
            phone="+32470000040",
            email="x@example.org",
            language="fr",
            channels=frozenset({Channel.SMS, Channel.EMAIL}),
            addresses=(subscribers.Address(kind="home", lon=NEAR[0], lat=NEAR[1]),),
        ),
    )
    kept = sorted(map(tuple, await pg_pool.fetch("SELECT * FROM cell_counts")))
    async with pg_pool.acquire() as conn:
        await rebuild_counts(conn=conn)
    assert sorted(map(tuple, await pg_pool.fetch("SELECT * FROM cell_counts"))) == kept
    # Per count resolution, (centre's cell, nl) and (centre's cell, fr): FAR was moved away.
    assert len(kept) == 2 * len(COUNT_RESOLUTIONS)
    assert sorted({(cell >> 52) & 15 for cell, *_ in kept}) == list(COUNT_RESOLUTIONS)


@pytest.mark.parametrize(
    ("phone", "field"),
    [("0470123456", "phone"), ("+3247012345", "phone"), ("+3221234567", "channels")],
)
async def test_registration_names_the_wrong_field(
    pg_pool: asyncpg.Pool, phone: str, field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await add_subscriber(pg_pool, phone=phone, points=[CENTRE])
    assert caught.value.field == field


async def test_registration_refuses_points_outside_and_unknown_languages(
    pg_pool: asyncpg.Pool,
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await add_subscriber(pg_pool, points=[CENTRE, (4.35, 48.85)])
    assert caught.value.field == "addresses[1].lat"
    with pytest.raises(InvalidArgument) as caught:
        await add_subscriber(pg_pool, language="es", points=[CENTRE])
    assert caught.value.field == "language"


async def test_issuers_target_only_their_territory_and_groups(pg_pool: asyncpg.Pool) -> None:
    mayor = await make_entity(pg_pool)
    police = await make_entity(pg_pool, type_=2, name="Politiezone")
    group = await make_group(pg_pool, entity_id=police, members=[{"phone": "+32470000050"}])
    inside = circle(lon=CENTRE[0], lat=CENTRE[1], radius_m=1000)
    outside = circle(lon=3.0, lat=51.1, radius_m=1000)
    async with pg_pool.acquire() as conn:
        await check_issuer(conn=conn, entity_id=mayor, zone=inside, group_ids=[])
        await check_issuer(conn=conn, entity_id=police, zone=None, group_ids=[group])
        with pytest.raises(PermissionDenied):
            await check_issuer(conn=conn, entity_id=mayor, zone=outside, group_ids=[])
        with pytest.raises(PermissionDenied):
            await check_issuer(conn=conn, entity_id=police, zone=inside, group_ids=[])
        with pytest.raises(PermissionDenied):
            await check_issuer(conn=conn, entity_id=mayor, zone=None, group_ids=[group])
        with pytest.raises(NotFound):
            await check_issuer(conn=conn, entity_id=mayor, zone=None, group_ids=[group + 99])


async def test_destinations_are_json_escaped_in_stream_entries(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, streams: dict[Channel, str]
) -> None:
    entity = await make_entity(pg_pool)
    odd = 'o"brien\\x@example.org'
    group = await make_group(
        pg_pool, entity_id=entity, members=[{"email": odd, "language": "fr", "channels": 4}]
    )
    await run(pg_pool, redis_client, zone=None, group_ids=[group])
    assert await stream_recipients(redis_client, streams[Channel.EMAIL]) == [(odd, "fr")]


async def test_concurrent_registrations_and_removals_keep_counts_exact(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    ids = await asyncio.gather(
        *(
            add_subscriber(pg_pool, phone=f"+324700002{i:02d}", points=[CENTRE, NEAR, FAR])
            for i in range(20)
        )
    )
    await asyncio.gather(
        *(subscribers.remove(pool=pg_pool, redis=redis_client, subscriber_id=s) for s in ids[:7])
    )
    kept = sorted(map(tuple, await pg_pool.fetch("SELECT * FROM cell_counts")))
    async with pg_pool.acquire() as conn:
        await rebuild_counts(conn=conn)
    assert sorted(map(tuple, await pg_pool.fetch("SELECT * FROM cell_counts"))) == kept
    assert sum(row[2] for row in kept if row[0] == kept[0][0]) == 13


async def test_resolve_stops_once_the_alert_is_cancelled(
    pg_pool: asyncpg.Pool, redis_client: aioredis.Redis, streams: dict[Channel, str]
) -> None:
    await add_subscriber(pg_pool, phone="+32470000060", points=[CENTRE])
    zone = circle(lon=CENTRE[0], lat=CENTRE[1], radius_m=500)
    await redis_client.set(f"tocsin:alert:{MESSAGE.alert}:cancelled", "1")
    progress = await run(pg_pool, redis_client, zone=zone)
    assert progress[-1].done
    assert progress[-1].stopped
    assert await stream_recipients(redis_client, streams[Channel.SMS]) == []
    await redis_client.delete(f"tocsin:alert:{MESSAGE.alert}:cancelled")
    await redis_client.set(f"tocsin:alert:{MESSAGE.alert}:version", "2")
    assert (await run(pg_pool, redis_client, zone=zone))[-1].stopped
