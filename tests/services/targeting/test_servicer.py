"""The gRPC API: errors name their field, and no answer ever carries a phone number or e-mail."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from tocsin.targeting.v1 import targeting_pb2 as pb
from tocsin.targeting.v1 import targeting_pb2_grpc

from gateways.smpp import segment_count
from services.channel.units import Units
from services.kernel.interceptors import ErrorInterceptor
from services.targeting.servicer import TargetingServicer
from tests.services.targeting.conftest import make_entity, make_group, stream_recipients

if TYPE_CHECKING:
    from tocsin.targeting.v1.targeting_pb2_grpc import TargetingAsyncStub as Stub

PHONE = "+32470111222"
EMAIL = "private.person@example.org"
CENTRE = pb.Circle(lon=4.3517, lat=50.8503, radius_m=2000)


@pytest.fixture
async def stub(pg_pool: asyncpg.Pool, redis_client: aioredis.Redis) -> AsyncIterator[Stub]:
    server = grpc.aio.server(interceptors=[ErrorInterceptor(service="targeting")])
    servicer = TargetingServicer(
        pool=pg_pool, redis=redis_client, batch_size=100, units=Units(segment_count)
    )
    targeting_pb2_grpc.add_TargetingServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield targeting_pb2_grpc.TargetingStub(channel)
    finally:
        await server.stop(None)


def subscriber(**overrides: object) -> pb.Subscriber:
    fields: dict[str, object] = {
        "phone": PHONE,
        "email": EMAIL,
        "language": "fr",
        "channels": [pb.CHANNEL_SMS, pb.CHANNEL_EMAIL],
        "addresses": [pb.Address(kind=pb.ADDRESS_KIND_HOME, lon=4.3517, lat=50.8503)],
    }
    fields.update(overrides)
    return pb.Subscriber(**fields)  # type: ignore[arg-type]


async def test_no_answer_to_an_issuer_carries_a_phone_number_or_e_mail(
    stub: Stub, pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    registered = await stub.RegisterSubscriber(
        pb.RegisterSubscriberRequest(subscriber=subscriber())
    )
    entity = await make_entity(pg_pool)
    group = await make_group(
        pg_pool, entity_id=entity, members=[{"phone": "+32470999888", "channels": 1}]
    )
    await pg_pool.execute(
        "INSERT INTO cell_sites VALUES ('proximus', 'PRO-1', 4.3517, 50.8503, 800)"
    )
    zone = pb.Zone(circle=CENTRE)
    answers: list[bytes] = [registered.SerializeToString()]
    preview = await stub.Preview(
        pb.PreviewRequest(entity_id=entity, zone=zone, group_ids=[group], texts={"fr": "Alerte"})
    )
    answers.append(preview.SerializeToString())
    resolve = pb.ResolveRequest(
        entity_id=entity,
        alert_id="0b9a7c55-1111-4c2e-9d51-000000000001",
        version=1,
        kind="test",
        expires=time.time() + 600,
        sender="BE-Alert",
        texts={"fr": "TEST: alerte"},
        channels=[pb.CHANNEL_SMS, pb.CHANNEL_EMAIL],
        zone=zone,
        group_ids=[group],
    )
    progress = [p async for p in stub.Resolve(resolve)]
    answers += [p.SerializeToString() for p in progress]
    cells = await stub.CellsForZone(pb.CellsForZoneRequest(entity_id=entity, zone=zone))
    answers.append(cells.SerializeToString())
    answers.append((await stub.ValidateZone(pb.ValidateZoneRequest(zone=zone))).SerializeToString())
    for answer in answers:
        for secret in (PHONE, "470111222", EMAIL, "+32470999888"):
            assert secret.encode() not in answer
    # ...while the work streams, inside the sending path, do carry them.
    assert (PHONE, "fr") in await stream_recipients(redis_client, "tocsin:stream:sms")
    assert progress[-1].done
    sms = next(c for c in progress[-1].channels if c.channel == pb.CHANNEL_SMS)
    assert sms.recipients == 2
    # Two people in the zone: "fewer than PRIVACY_MIN_COUNT", so neither counts nor units tell.
    assert (preview.units, preview.exact) == (0, False)
    assert preview.cost_eur_cents == 0
    assert [(o.operator, list(o.cell_ids)) for o in cells.operators] == [("proximus", ["PRO-1"])]


async def test_update_and_remove_through_the_api(stub: Stub, pg_pool: asyncpg.Pool) -> None:
    sid = (
        await stub.RegisterSubscriber(pb.RegisterSubscriberRequest(subscriber=subscriber()))
    ).subscriber_id
    await stub.UpdateSubscriber(
        pb.UpdateSubscriberRequest(subscriber_id=sid, subscriber=subscriber(language="de"))
    )
    assert await pg_pool.fetchval("SELECT language FROM subscribers WHERE id = $1", sid) == "de"
    await stub.RemoveSubscriber(pb.RemoveSubscriberRequest(subscriber_id=sid))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RemoveSubscriber(pb.RemoveSubscriberRequest(subscriber_id=sid))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("sub", "detail"),
    [
        (subscriber(phone="0470 11 12 22"), "subscriber.phone:"),
        (subscriber(language="xx"), "subscriber.language:"),
        (
            subscriber(addresses=[pb.Address(kind=pb.ADDRESS_KIND_WORK, lon=4.35, lat=52.5)]),
            "subscriber.addresses[0].lat:",
        ),
    ],
)
async def test_registration_errors_name_the_field(
    stub: Stub, sub: pb.Subscriber, detail: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RegisterSubscriber(pb.RegisterSubscriberRequest(subscriber=sub))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(detail)


async def test_an_invalid_zone_is_refused_with_its_field(
    stub: Stub,
) -> None:
    open_ring = json.dumps(
        {"type": "Polygon", "coordinates": [[[4.3, 50.8], [4.4, 50.8], [4.4, 50.9], [4.3, 50.81]]]}
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ValidateZone(pb.ValidateZoneRequest(zone=pb.Zone(geojson=open_ring)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("zone.geojson.coordinates[0]:")


async def test_a_type_2_entity_may_not_preview_a_zone(stub: Stub, pg_pool: asyncpg.Pool) -> None:
    police = await make_entity(pg_pool, type_=2, name="Politiezone")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Preview(pb.PreviewRequest(entity_id=police, zone=pb.Zone(circle=CENTRE)))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_small_zone_counts_are_reported_as_fewer_than_the_threshold() -> None:
    from services.targeting.model import Channel, Counts
    from services.targeting.servicer import PRIVACY_MIN_COUNT, _counts_pb, _has_small

    counts = Counts()
    counts.add(Channel.SMS, "nl", 2)
    counts.add(Channel.SMS, "fr", PRIVACY_MIN_COUNT)
    assert _has_small(counts)
    sms = next(c for c in _counts_pb(counts, hide_small=True) if c.recipients)
    assert sms.recipients == PRIVACY_MIN_COUNT + 2  # the total is not small
    assert [lang.recipients for lang in sms.languages if lang.recipients] == [PRIVACY_MIN_COUNT]
