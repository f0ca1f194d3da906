"""gRPC servicer of the e-mail service: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
from tocsin.email.v1 import email_pb2, email_pb2_grpc

from services.email.api import Outcome, alert_progress

_STATE = {
    Outcome.QUEUED: email_pb2.STATE_QUEUED,
    Outcome.ACCEPTED: email_pb2.STATE_ACCEPTED,
    Outcome.BOUNCED: email_pb2.STATE_BOUNCED,
    Outcome.FAILED: email_pb2.STATE_FAILED,
    Outcome.EXPIRED: email_pb2.STATE_EXPIRED,
    Outcome.CANCELLED: email_pb2.STATE_CANCELLED,
    Outcome.SUPERSEDED: email_pb2.STATE_SUPERSEDED,
}

Ctx = grpc.aio.ServicerContext[Any, Any]


class EmailServicer(email_pb2_grpc.EmailServiceServicer):
    """Translates EmailService calls to the domain."""

    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def GetAlertProgress(
        self, request: email_pb2.GetAlertProgressRequest, context: Ctx
    ) -> email_pb2.AlertProgress:
        """Counts per outcome per version of an alert."""
        versions = await alert_progress(self._pool, alert=request.alert_id, version=request.version)
        return email_pb2.AlertProgress(
            alert_id=request.alert_id,
            versions=[
                email_pb2.VersionProgress(
                    version=p.version,
                    total=p.total,
                    counts=[
                        email_pb2.StateCount(state=_STATE[o], count=n)
                        for o, n in sorted(p.counts.items(), key=lambda kv: _STATE[kv[0]])
                    ],
                )
                for p in versions
            ],
        )
