"""Adapters from the ports to the targeting and cell broadcast services' gRPC APIs (chosen in
__main__)."""

from __future__ import annotations

import grpc
from tocsin.cellbroadcast.v1 import cellbroadcast_pb2 as cbpb
from tocsin.cellbroadcast.v1 import cellbroadcast_pb2_grpc
from tocsin.targeting.v1 import targeting_pb2 as tpb
from tocsin.targeting.v1 import targeting_pb2_grpc

from services.alerting.model import Channel
from services.alerting.ports import (
    AudienceCount,
    AudiencePreview,
    BroadcastContent,
    OperatorAck,
    OperatorStatus,
)
from services.kernel.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PeerDown,
    PermissionDenied,
    ServiceError,
    Unavailable,
    Unimplemented,
)

TO_TARGETING = {
    Channel.SMS: tpb.CHANNEL_SMS,
    Channel.VOICE: tpb.CHANNEL_VOICE,
    Channel.EMAIL: tpb.CHANNEL_EMAIL,
}
FROM_TARGETING = {v: k for k, v in TO_TARGETING.items()}


def remote_error(exc: grpc.aio.AioRpcError, *, service: str) -> ServiceError:
    """The error the caller sees for a peer's refusal: its status where it concerns the caller."""
    details = exc.details() or ""
    code = exc.code()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, sep, message = details.partition(": ")
        return InvalidArgument(field if sep else service, message if sep else details)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(f"{service}: {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"{service}: {details}")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPrecondition(f"{service}: {details}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return Unimplemented(f"{service}: {details}")
    if code == grpc.StatusCode.UNAVAILABLE:
        return PeerDown(f"{service} unavailable ({code.name}): retry")
    return Unavailable(f"{service} unavailable ({code.name}): retry")


def _zone(zone_geojson: str) -> tpb.Zone | None:
    return tpb.Zone(geojson=zone_geojson) if zone_geojson else None


class TargetingClient:
    """The Targeting port over the targeting service's gRPC API."""

    def __init__(self, stub: targeting_pb2_grpc.TargetingAsyncStub, *, timeout_s: float) -> None:
        self._stub = stub
        self._timeout = timeout_s

    async def preview(
        self,
        *,
        entity_id: int,
        zone_geojson: str,
        group_ids: tuple[int, ...],
        channels: tuple[Channel, ...],
        texts: dict[str, str],
    ) -> AudiencePreview:
        """Counts per channel and language, and units."""
        try:
            reply = await self._stub.Preview(
                tpb.PreviewRequest(
                    entity_id=entity_id,
                    zone=_zone(zone_geojson),
                    group_ids=list(group_ids),
                    channels=[TO_TARGETING[c] for c in channels],
                    texts=texts,
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise remote_error(exc, service="targeting") from None
        audiences = tuple(
            AudienceCount(FROM_TARGETING[count.channel], lang.language, lang.recipients)
            for count in reply.channels
            for lang in count.languages
        )
        return AudiencePreview(audiences, reply.units)

    async def cells(self, *, entity_id: int, zone_geojson: str) -> dict[str, tuple[str, ...]]:
        """The operators' cells covering the zone."""
        try:
            found = await self._stub.CellsForZone(
                tpb.CellsForZoneRequest(entity_id=entity_id, zone=_zone(zone_geojson)),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise remote_error(exc, service="targeting") from None
        return {o.operator: tuple(o.cell_ids) for o in found.operators}

    async def resolve(
        self,
        *,
        entity_id: int,
        alert_id: str,
        version: int,
        kind: str,
        expires: float,
        sender: str,
        texts: dict[str, str],
        channels: tuple[Channel, ...],
        zone_geojson: str,
        group_ids: tuple[int, ...],
    ) -> dict[Channel, int]:
        """Stream the audience into the work streams; recipients enqueued per channel."""
        request = tpb.ResolveRequest(
            entity_id=entity_id,
            alert_id=alert_id,
            version=version,
            kind=kind,
            expires=expires,
            sender=sender,
            texts=texts,
            channels=[TO_TARGETING[c] for c in channels],
            zone=_zone(zone_geojson),
            group_ids=list(group_ids),
        )
        counts: dict[Channel, int] = {c: 0 for c in channels}
        done = False
        try:
            async for progress in self._stub.Resolve(request, timeout=self._timeout * 20):
                for count in progress.channels:
                    counts[FROM_TARGETING[count.channel]] = count.recipients
                done = done or progress.done
        except grpc.aio.AioRpcError as exc:
            raise remote_error(exc, service="targeting") from None
        if not done:
            raise PeerDown("targeting ended Resolve before everything was enqueued: retry")
        return counts


class CellBroadcastClient:
    """The Broadcasts port over the cell broadcast service's gRPC API."""

    def __init__(
        self, stub: cellbroadcast_pb2_grpc.CellBroadcastServiceAsyncStub, *, timeout_s: float
    ) -> None:
        self._stub = stub
        self._timeout = timeout_s

    async def broadcast(
        self,
        *,
        alert_id: str,
        cap_xml: str,
        cells: dict[str, tuple[str, ...]],
        location_based_sms: bool,
        content: BroadcastContent,
    ) -> tuple[OperatorAck, ...]:
        """Ask every operator to broadcast the CAP document in its cells."""
        request = cbpb.BroadcastRequest(
            alert_id=alert_id,
            cap_xml=cap_xml.encode(),
            cells=[
                cbpb.OperatorCells(operator=op, cell_ids=list(ids)) for op, ids in cells.items()
            ],
            location_based_sms=location_based_sms,
            version=content.version,
            kind=content.kind,
            severity=content.severity,
            urgency=content.urgency,
            certainty=content.certainty,
            texts=[cbpb.LanguageText(language=lang, text=t) for lang, t in content.texts],
            expires_unix_s=content.expires_unix_s,
            sender=content.sender,
            zone_geojson=content.zone_geojson,
        )
        try:
            reply = await self._stub.Broadcast(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise remote_error(exc, service="cellbroadcast") from None
        return tuple(_ack(a) for a in reply.acks)

    async def withdraw(self, *, alert_id: str) -> tuple[OperatorAck, ...]:
        """Withdraw the alert's broadcasts."""
        try:
            reply = await self._stub.Withdraw(
                cbpb.WithdrawRequest(alert_id=alert_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise remote_error(exc, service="cellbroadcast") from None
        return tuple(_ack(a) for a in reply.acks)

    async def status(self, *, alert_id: str) -> tuple[OperatorStatus, ...]:
        """Every operator's requests for the alert."""
        try:
            reply = await self._stub.GetAlertStatus(
                cbpb.GetAlertStatusRequest(alert_id=alert_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise remote_error(exc, service="cellbroadcast") from None
        return tuple(
            OperatorStatus(
                o.operator,
                Channel(o.channel),
                o.action,
                o.version,
                o.state,
                o.reason,
                o.cells,
                o.phones,
            )
            for o in reply.operators
        )


def _ack(a: cbpb.OperatorAck) -> OperatorAck:
    return OperatorAck(a.operator, a.accepted, a.error, a.state, a.cells, a.phones)
