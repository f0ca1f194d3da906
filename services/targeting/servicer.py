"""gRPC servicer of tocsin.targeting.v1.Targeting: protobuf in, domain calls, protobuf out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import redis.asyncio as aioredis
from tocsin.targeting.v1 import targeting_pb2 as pb
from tocsin.targeting.v1 import targeting_pb2_grpc

from services.channel.units import Units
from services.kernel.errors import InvalidArgument
from services.targeting import cost, subscribers
from services.targeting.cells import cells_for_zone
from services.targeting.issuers import check_issuer
from services.targeting.model import ALL_CHANNELS, Channel, Counts
from services.targeting.preview import preview
from services.targeting.resolve import AlertMessage, resolve
from services.targeting.zones import Zone, circle, parse_geojson, to_geojson

Ctx = grpc.aio.ServicerContext[Any, Any]

_CHANNELS = {
    pb.CHANNEL_SMS: Channel.SMS,
    pb.CHANNEL_VOICE: Channel.VOICE,
    pb.CHANNEL_EMAIL: Channel.EMAIL,
}
_CHANNELS_PB = {v: k for k, v in _CHANNELS.items()}
_KINDS = {
    pb.ADDRESS_KIND_HOME: "home",
    pb.ADDRESS_KIND_WORK: "work",
    pb.ADDRESS_KIND_FAMILY: "family",
}


def zone_from_pb(message: pb.Zone, *, field: str = "zone") -> Zone | None:
    """The request's zone, validated; None when absent."""
    shape = message.WhichOneof("shape")
    if shape == "geojson":
        return parse_geojson(message.geojson, field=f"{field}.geojson")
    if shape == "circle":
        c = message.circle
        return circle(lon=c.lon, lat=c.lat, radius_m=c.radius_m, field=f"{field}.circle")
    return None


def channels_from_pb(values: Any, *, field: str = "channels") -> frozenset[Channel]:
    """Channel enums to domain channels."""
    out = set()
    for i, value in enumerate(values):
        if value not in _CHANNELS:
            raise InvalidArgument(f"{field}[{i}]", "unknown channel")
        out.add(_CHANNELS[value])
    return frozenset(out)


def _subscriber_from_pb(message: pb.Subscriber) -> subscribers.SubscriberData:
    addresses = []
    for i, a in enumerate(message.addresses):
        if a.kind not in _KINDS:
            raise InvalidArgument(f"subscriber.addresses[{i}].kind", "home, work or family")
        addresses.append(subscribers.Address(kind=_KINDS[a.kind], lon=a.lon, lat=a.lat))
    data = subscribers.SubscriberData(
        phone=message.phone or None,
        email=message.email or None,
        language=message.language,
        channels=channels_from_pb(message.channels, field="subscriber.channels"),
        addresses=tuple(addresses),
    )
    try:
        subscribers.validate(data)
    except InvalidArgument as exc:
        raise InvalidArgument(f"subscriber.{exc.field}", exc.message) from None
    return data


#: Zone counts from 1 to this less one are answered as 0 ("fewer than PRIVACY_MIN_COUNT", the
#: response then not exact): a zone of a few metres must not tell who is registered at an address.
PRIVACY_MIN_COUNT = 5


def _shown(n: int, *, hide_small: bool) -> int:
    return 0 if hide_small and 0 < n < PRIVACY_MIN_COUNT else n


def _counts_pb(counts: Counts, *, hide_small: bool = False) -> list[pb.ChannelCount]:
    return [
        pb.ChannelCount(
            channel=_CHANNELS_PB[channel],
            recipients=_shown(counts.total(channel), hide_small=hide_small),
            languages=[
                pb.LanguageCount(language=lang, recipients=_shown(n, hide_small=hide_small))
                for lang, n in counts.by_channel[channel].items()
            ],
        )
        for channel in ALL_CHANNELS
    ]


def _has_small(counts: Counts) -> bool:
    return any(
        0 < n < PRIVACY_MIN_COUNT
        for channel in ALL_CHANNELS
        for n in (counts.total(channel), *counts.by_channel[channel].values())
    )


class TargetingServicer(targeting_pb2_grpc.TargetingServicer):
    """Answers counts, cell ids and batch progress; never a phone number or e-mail address."""

    def __init__(
        self, *, pool: asyncpg.Pool, redis: aioredis.Redis, batch_size: int, units: Units
    ) -> None:
        self._pool = pool
        self._units = units
        self._redis = redis
        self._batch_size = batch_size

    async def RegisterSubscriber(
        self, request: pb.RegisterSubscriberRequest, context: Ctx
    ) -> pb.RegisterSubscriberResponse:
        data = _subscriber_from_pb(request.subscriber)
        sid = await subscribers.register(pool=self._pool, data=data)
        return pb.RegisterSubscriberResponse(subscriber_id=sid)

    async def UpdateSubscriber(
        self, request: pb.UpdateSubscriberRequest, context: Ctx
    ) -> pb.UpdateSubscriberResponse:
        data = _subscriber_from_pb(request.subscriber)
        await subscribers.update(pool=self._pool, subscriber_id=request.subscriber_id, data=data)
        return pb.UpdateSubscriberResponse()

    async def RemoveSubscriber(
        self, request: pb.RemoveSubscriberRequest, context: Ctx
    ) -> pb.RemoveSubscriberResponse:
        await subscribers.remove(
            pool=self._pool, redis=self._redis, subscriber_id=request.subscriber_id
        )
        return pb.RemoveSubscriberResponse()

    async def _checked_zone(self, entity_id: int, zone: pb.Zone, groups: list[int]) -> Zone | None:
        parsed = await asyncio.to_thread(zone_from_pb, zone)
        if parsed is None and not groups:
            raise InvalidArgument("zone", "a zone or at least one group is required")
        async with self._pool.acquire() as conn:
            await check_issuer(conn=conn, entity_id=entity_id, zone=parsed, group_ids=groups)
        return parsed

    async def Preview(self, request: pb.PreviewRequest, context: Ctx) -> pb.PreviewResponse:
        groups = list(request.group_ids)
        zone = await self._checked_zone(request.entity_id, request.zone, groups)
        channels = channels_from_pb(request.channels) or frozenset(ALL_CHANNELS)
        result = await preview(pool=self._pool, zone=zone, group_ids=groups, channels=channels)
        units = cost.audience_units(self._units, counts=result.counts, texts=dict(request.texts))
        # Groups are the entity's own contacts; a zone's population is hidden when small.
        hide_small = zone is not None and _has_small(result.counts)
        if hide_small:
            units = 0  # units would tell the small counts again
        return pb.PreviewResponse(
            channels=_counts_pb(result.counts, hide_small=hide_small),
            units=units,
            cost_eur_cents=cost.cost_cents(units),
            exact=result.exact and not hide_small,
            zone_area_km2=zone.area_km2 if zone else 0.0,
        )

    async def Resolve(
        self, request: pb.ResolveRequest, context: Ctx
    ) -> AsyncIterator[pb.ResolveProgress]:
        groups = list(request.group_ids)
        zone = await self._checked_zone(request.entity_id, request.zone, groups)
        message = AlertMessage(
            alert=request.alert_id,
            version=request.version,
            kind=request.kind,
            expires=request.expires,
            sender=request.sender,
            texts=dict(request.texts),
            entity=str(request.entity_id or ""),
        )
        async for progress in resolve(
            pool=self._pool,
            redis=self._redis,
            message=message,
            channels=channels_from_pb(request.channels),
            zone=zone,
            group_ids=groups,
            batch_size=self._batch_size,
        ):
            yield pb.ResolveProgress(
                channels=_counts_pb(progress.counts),
                batches=progress.batches,
                done=progress.done,
                stopped=progress.stopped,
            )

    async def CellsForZone(
        self, request: pb.CellsForZoneRequest, context: Ctx
    ) -> pb.CellsForZoneResponse:
        zone = await asyncio.to_thread(zone_from_pb, request.zone)
        if zone is None:
            raise InvalidArgument("zone", "required")
        async with self._pool.acquire() as conn:
            await check_issuer(conn=conn, entity_id=request.entity_id, zone=zone, group_ids=[])
        found = await cells_for_zone(pool=self._pool, zone=zone)
        return pb.CellsForZoneResponse(
            operators=[pb.OperatorCells(operator=op, cell_ids=ids) for op, ids in found.items()]
        )

    async def ValidateZone(
        self, request: pb.ValidateZoneRequest, context: Ctx
    ) -> pb.ValidateZoneResponse:
        zone = await asyncio.to_thread(zone_from_pb, request.zone)
        if zone is None:
            raise InvalidArgument("zone", "required")
        return pb.ValidateZoneResponse(area_km2=zone.area_km2, geojson=to_geojson(zone))
