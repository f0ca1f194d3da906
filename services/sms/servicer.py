"""gRPC servicer of the SMS service: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from typing import Any

import grpc
from tocsin.sms.v1 import sms_pb2, sms_pb2_grpc

from services.sms.api import Progress, Sent, SmsApi
from services.sms.model import State

_STATE = {
    State.QUEUED: sms_pb2.STATE_QUEUED,
    State.SUBMITTED: sms_pb2.STATE_SUBMITTED,
    State.DELIVERED: sms_pb2.STATE_DELIVERED,
    State.FAILED: sms_pb2.STATE_FAILED,
    State.EXPIRED: sms_pb2.STATE_EXPIRED,
    State.CANCELLED: sms_pb2.STATE_CANCELLED,
    State.SUPERSEDED: sms_pb2.STATE_SUPERSEDED,
}

Ctx = grpc.aio.ServicerContext[Any, Any]


def _sent(sent: Sent) -> sms_pb2.SendResponse:
    return sms_pb2.SendResponse(
        batch_id=sent.batch_id, accepted=sent.accepted, duplicate=sent.duplicate
    )


def _counts(progress: Progress) -> list[sms_pb2.StateCount]:
    return [
        sms_pb2.StateCount(state=_STATE[state], count=n)
        for state, n in sorted(progress.counts.items(), key=lambda kv: _STATE[kv[0]])
    ]


class SmsServicer(sms_pb2_grpc.SmsServiceServicer):
    """Translates SmsService calls to SmsApi."""

    def __init__(self, api: SmsApi) -> None:
        self._api = api

    async def SendSms(self, request: sms_pb2.SendSmsRequest, context: Ctx) -> sms_pb2.SendResponse:
        sent = await self._api.send(
            key=request.idempotency_key,
            to=[request.to],
            text=request.text,
            sender=request.sender,
            ttl_s=request.ttl_seconds,
            field="to",
        )
        return _sent(sent)

    async def SendBatch(
        self, request: sms_pb2.SendBatchRequest, context: Ctx
    ) -> sms_pb2.SendResponse:
        sent = await self._api.send(
            key=request.idempotency_key,
            to=list(request.to),
            text=request.text,
            sender=request.sender,
            ttl_s=request.ttl_seconds,
            field="to",
        )
        return _sent(sent)

    async def GetMessage(self, request: sms_pb2.GetMessageRequest, context: Ctx) -> sms_pb2.Message:
        m = await self._api.message(batch_id=request.batch_id, address=request.to)
        return sms_pb2.Message(
            batch_id=m.batch_id,
            to=m.address,
            state=_STATE[m.state],
            operator=m.operator,
            segments=m.segments,
            attempts=m.attempts,
            error=m.error,
        )

    async def GetBatch(self, request: sms_pb2.GetBatchRequest, context: Ctx) -> sms_pb2.BatchStatus:
        progress = await self._api.batch(batch_id=request.batch_id)
        return sms_pb2.BatchStatus(
            batch_id=request.batch_id, total=progress.total, counts=_counts(progress)
        )

    async def GetAlertProgress(
        self, request: sms_pb2.GetAlertProgressRequest, context: Ctx
    ) -> sms_pb2.AlertProgress:
        versions = await self._api.alert_progress(alert=request.alert_id, version=request.version)
        return sms_pb2.AlertProgress(
            alert_id=request.alert_id,
            versions=[
                sms_pb2.VersionProgress(
                    version=p.version,
                    total=p.total,
                    counts=_counts(p),
                    segments_submitted=p.segments_submitted,
                )
                for p in versions
            ],
        )
