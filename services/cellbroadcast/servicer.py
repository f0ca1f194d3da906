"""gRPC servicer of the cell-broadcast service."""

from __future__ import annotations

from typing import Any

import grpc
from tocsin.cellbroadcast.v1 import cellbroadcast_pb2, cellbroadcast_pb2_grpc

from services.kernel.errors import Unimplemented

NOT_YET = "operator cell-broadcast and LB-SMS requests are not built yet"


class CellBroadcastServicer(cellbroadcast_pb2_grpc.CellBroadcastServiceServicer):
    """Declares the cell-broadcast API; every call answers UNIMPLEMENTED for now."""

    async def Broadcast(
        self,
        request: cellbroadcast_pb2.BroadcastRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> cellbroadcast_pb2.BroadcastResponse:
        raise Unimplemented(NOT_YET)

    async def Withdraw(
        self,
        request: cellbroadcast_pb2.WithdrawRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> cellbroadcast_pb2.WithdrawResponse:
        raise Unimplemented(NOT_YET)
