"""gRPC servicer of the voice service: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from typing import Any

import grpc
from tocsin.voice.v1 import voice_pb2, voice_pb2_grpc

from services.channel.model import State
from services.kernel import context
from services.voice.api import CallStatus, VoiceApi

Ctx = grpc.aio.ServicerContext[Any, Any]

_STATE = {
    State.QUEUED: voice_pb2.CALL_STATE_QUEUED,
    State.SUBMITTED: voice_pb2.CALL_STATE_ANSWERED,
    State.DELIVERED: voice_pb2.CALL_STATE_COMPLETED,
    State.FAILED: voice_pb2.CALL_STATE_FAILED,
    State.EXPIRED: voice_pb2.CALL_STATE_EXPIRED,
    State.CANCELLED: voice_pb2.CALL_STATE_CANCELLED,
    State.SUPERSEDED: voice_pb2.CALL_STATE_CANCELLED,
}


def _state(status: CallStatus) -> voice_pb2.CallState:
    if status.state is State.FAILED:
        if status.error.startswith("busy"):
            return voice_pb2.CALL_STATE_BUSY
        if status.error.startswith("no answer"):
            return voice_pb2.CALL_STATE_NO_ANSWER
    return _STATE[status.state]


def context_caller() -> str:
    """The identity the kernel admitted ('' on a plaintext development server)."""
    return context.caller.get()


class VoiceServicer(voice_pb2_grpc.VoiceServiceServicer):
    """Translates VoiceService calls to VoiceApi."""

    def __init__(self, api: VoiceApi) -> None:
        self._api = api

    async def PlaceCalls(
        self, request: voice_pb2.PlaceCallsRequest, context: Ctx
    ) -> voice_pb2.PlaceCallsResponse:
        placed = await self._api.place(
            caller=context_caller(),
            key=request.idempotency_key,
            numbers=list(request.numbers),
            language=request.language,
            text=request.text,
            ttl_s=request.ttl_seconds,
        )
        return voice_pb2.PlaceCallsResponse(
            batch_id=placed.batch_id, accepted=placed.accepted, duplicate=placed.duplicate
        )

    async def GetCall(self, request: voice_pb2.GetCallRequest, context: Ctx) -> voice_pb2.Call:
        status = await self._api.call(caller=context_caller(), call_id=request.call_id)
        return voice_pb2.Call(
            call_id=request.call_id,
            state=_state(status),
            number=status.number,
            attempts=status.attempts,
            error=status.error,
            trunk=status.trunk,
        )
