"""gRPC servicer of the cell-broadcast service: protobuf in, domain calls, protobuf out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
from tocsin.cellbroadcast.v1 import cellbroadcast_pb2 as pb
from tocsin.cellbroadcast.v1 import cellbroadcast_pb2_grpc

from services.cellbroadcast.broadcasts import Broadcasts
from services.cellbroadcast.model import AlertVersion, Channel, Request, State
from services.kernel.errors import InvalidArgument


def _ack(request: Request) -> pb.OperatorAck:
    return pb.OperatorAck(
        operator=request.operator,
        accepted=request.state is State.ACCEPTED,
        reference=str(request.id),
        error=request.reason,
        state=request.state.value,
        cells=request.cells,
        phones=request.phones or 0,
    )


def alert_version(request: pb.BroadcastRequest) -> AlertVersion:
    """The domain's view of a broadcast request."""
    if request.expires_unix_s <= 0:
        raise InvalidArgument("expires_unix_s", "required")
    return AlertVersion(
        alert_id=request.alert_id,
        version=request.version,
        kind=request.kind,
        severity=request.severity,
        urgency=request.urgency,
        certainty=request.certainty,
        texts=tuple((t.language, t.text) for t in request.texts),
        expires=datetime.fromtimestamp(request.expires_unix_s, UTC),
        sender=request.sender,
        cells={c.operator: tuple(c.cell_ids) for c in request.cells},
        zone_geojson=request.zone_geojson,
    )


class CellBroadcastServicer(cellbroadcast_pb2_grpc.CellBroadcastServiceServicer):
    """Translates the API to the Broadcasts domain."""

    def __init__(self, broadcasts: Broadcasts) -> None:
        self._broadcasts = broadcasts

    async def Broadcast(
        self, request: pb.BroadcastRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.BroadcastResponse:
        channel = Channel.LB_SMS if request.location_based_sms else Channel.CELL_BROADCAST
        done = await self._broadcasts.broadcast(alert_version(request), channel=channel)
        return pb.BroadcastResponse(acks=[_ack(r) for r in done])

    async def Withdraw(
        self, request: pb.WithdrawRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.WithdrawResponse:
        done = await self._broadcasts.withdraw(alert_id=request.alert_id)
        return pb.WithdrawResponse(acks=[_ack(r) for r in done])

    async def GetAlertStatus(
        self, request: pb.GetAlertStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AlertStatus:
        rows = await self._broadcasts.status(alert_id=request.alert_id)
        return pb.AlertStatus(
            operators=[
                pb.OperatorStatus(
                    operator=r.operator,
                    channel=r.channel.value,
                    action=r.action.value,
                    version=r.version,
                    state=r.state.value,
                    reason=r.reason,
                    cells=r.cells,
                    phones=r.phones or 0,
                    attempts=r.attempts,
                )
                for r in rows
            ]
        )
