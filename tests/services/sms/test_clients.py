"""Platform teams on the SMS API: own keys bound to their body, own batches, senders, quotas."""

from __future__ import annotations

import json

import asyncpg
import grpc
import pytest
from tocsin.sms.v1 import sms_pb2

from services.kernel.interceptors import DEV_CALLER_HEADER
from tests.services.sms.conftest import StartSms, StartSmscs, numbers, wait_outcomes

CLIENTS = json.dumps(
    {
        "api-police": {"senders": ["POLITIE"], "daily_quota": 5},
        "api-rail": {"senders": ["NMBS"], "daily_quota": 100},
    }
)


def _as(team: str) -> tuple[tuple[str, str]]:
    # In development the kernel takes the caller from this header; with TLS, from the
    # certificate (tests/security proves that path).
    return ((DEV_CALLER_HEADER, team),)


async def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value.code(), info.value.details() or ""


async def test_teams_are_kept_apart_and_limited(
    smscs: StartSmscs, start_sms: StartSms, pg_pool: asyncpg.Pool
) -> None:
    service = await start_sms(await smscs(), api_clients=CLIENTS)
    stub = service.stub
    request = sms_pb2.SendBatchRequest(idempotency_key="drill-1", to=numbers(3), text="Drill.")
    police = await stub.SendBatch(request, metadata=_as("api-police"))
    assert police.batch_id == "api:api-police:drill-1"
    # The same key of another team is another batch, not a duplicate.
    rail = await stub.SendBatch(request, metadata=_as("api-rail"))
    assert (rail.batch_id, rail.duplicate) == ("api:api-rail:drill-1", False)
    again = await stub.SendBatch(request, metadata=_as("api-police"))
    assert again.duplicate
    # The same key with another body is refused, naming the key.
    other = sms_pb2.SendBatchRequest(idempotency_key="drill-1", to=numbers(3), text="Other.")
    code, details = await _code(stub.SendBatch(other, metadata=_as("api-police")))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert details.startswith("idempotency_key: ")
    # A team reads its own batches only.
    code, _ = await _code(
        stub.GetBatch(sms_pb2.GetBatchRequest(batch_id=rail.batch_id), metadata=_as("api-police"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, details = await _code(
        stub.GetMessage(
            sms_pb2.GetMessageRequest(batch_id="an-alert-id", to=numbers(1)[0]),
            metadata=_as("api-police"),
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert numbers(1)[0] not in details
    # Sender names: the team's own only.
    spoof = sms_pb2.SendSmsRequest(
        idempotency_key="spoof-1", to=numbers(1)[0], text="Evacuate now", sender="BE-Alert"
    )
    code, details = await _code(stub.SendSms(spoof, metadata=_as("api-police")))
    assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "sender")
    # Quotas: 3 of police's 5 are used; 3 more would pass it, and nothing is kept.
    over = sms_pb2.SendBatchRequest(idempotency_key="drill-2", to=numbers(3), text="Drill.")
    code, _ = await _code(stub.SendBatch(over, metadata=_as("api-police")))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    code, _ = await _code(stub.SendBatch(over, metadata=_as("api-nobody")))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    two = sms_pb2.SendBatchRequest(idempotency_key="drill-2", to=numbers(2), text="Drill.")
    last = await stub.SendBatch(two, metadata=_as("api-police"))
    assert last.accepted == 2
    for batch, total in ((police.batch_id, 3), (rail.batch_id, 3), (last.batch_id, 2)):
        await wait_outcomes(pg_pool, alert=batch, total=total, states=["delivered"])
