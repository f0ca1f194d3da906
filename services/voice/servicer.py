"""gRPC servicer of the voice service."""

from __future__ import annotations

from typing import Any

import grpc
from tocsin.voice.v1 import voice_pb2, voice_pb2_grpc

from services.kernel.errors import Unimplemented

NOT_YET = "voice calling is not built yet; calls queued on the voice stream wait for it"


class VoiceServicer(voice_pb2_grpc.VoiceServiceServicer):
    """Declares the voice API; every call answers UNIMPLEMENTED until the SIP path exists."""

    async def PlaceCalls(
        self, request: voice_pb2.PlaceCallsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> voice_pb2.PlaceCallsResponse:
        raise Unimplemented(NOT_YET)

    async def GetCall(
        self, request: voice_pb2.GetCallRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> voice_pb2.Call:
        raise Unimplemented(NOT_YET)
