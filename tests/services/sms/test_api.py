"""The SMS gRPC API: idempotent sends, status queries, input errors naming the field."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from tocsin.sms.v1 import sms_pb2

from services.channel import codec, keys
from tests.services.sms.conftest import StartSms, StartSmscs, numbers, wait_outcomes


async def test_a_batch_sent_twice_with_one_key_is_sent_once(
    smscs: StartSmscs, start_sms: StartSms, pg_pool: asyncpg.Pool
) -> None:
    sims = await smscs()
    service = await start_sms(sims)
    request = sms_pb2.SendBatchRequest(
        idempotency_key="ops-drill-42", to=numbers(120), text="Drill: ignore this message."
    )

    first, again = await service.stub.SendBatch(request), await service.stub.SendBatch(request)

    assert (first.batch_id, first.accepted, first.duplicate) == ("api:ops-drill-42", 120, False)
    assert (again.batch_id, again.accepted, again.duplicate) == ("api:ops-drill-42", 120, True)
    await wait_outcomes(pg_pool, alert=first.batch_id, total=120, states=["delivered"])
    assert sims.messages() == dict.fromkeys(numbers(120), 1)
    status = await service.stub.GetBatch(sms_pb2.GetBatchRequest(batch_id=first.batch_id))
    assert status.total == 120
    assert [(c.state, c.count) for c in status.counts] == [(sms_pb2.STATE_DELIVERED, 120)]
    message = await service.stub.GetMessage(
        sms_pb2.GetMessageRequest(batch_id=first.batch_id, to=numbers(2)[1])
    )
    assert (message.state, message.operator, message.segments) == (
        sms_pb2.STATE_DELIVERED,
        "opB",
        1,
    )


async def test_send_one_sms_and_follow_it(
    smscs: StartSmscs, start_sms: StartSms, pg_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    sims = await smscs()
    service = await start_sms(sims)
    long_text = "Flood warning for the Meuse valley. " * 6  # 216 characters: two segments

    sent = await service.stub.SendSms(
        sms_pb2.SendSmsRequest(idempotency_key="one", to="+32470000001", text=long_text)
    )

    await wait_outcomes(pg_pool, alert=sent.batch_id, total=1, states=["delivered"])
    assert sims.messages() == {"+32470000001": 1}
    assert sum(sims.by_name["opA"].segments.values()) == 2
    progress = await service.stub.GetAlertProgress(
        sms_pb2.GetAlertProgressRequest(alert_id=sent.batch_id)
    )
    assert progress.versions[0].segments_submitted == 2


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            sms_pb2.SendBatchRequest(idempotency_key="k", to=["+32470000001", "0470"], text="x"),
            "to[1]",
        ),
        (sms_pb2.SendBatchRequest(idempotency_key="k", to=["+32470000001"], text="  "), "text"),
        (sms_pb2.SendBatchRequest(idempotency_key="k", to=[], text="x"), "to"),
        (sms_pb2.SendBatchRequest(idempotency_key="k", to=numbers(10_001), text="x"), "to"),
        (
            sms_pb2.SendBatchRequest(idempotency_key="", to=["+32470000001"], text="x"),
            "idempotency_key",
        ),
        (
            sms_pb2.SendBatchRequest(idempotency_key="k", to=["+32470000001"], text="x" * 1600),
            "text",
        ),
        (
            sms_pb2.SendBatchRequest(
                idempotency_key="k", to=["+32470000001"], text="x", sender="far too long a sender"
            ),
            "sender",
        ),
    ],
)
async def test_bad_input_is_refused_naming_the_field(
    smscs: StartSmscs,
    start_sms: StartSms,
    redis_client: aioredis.Redis,
    request_: sms_pb2.SendBatchRequest,
    field: str,
) -> None:
    service = await start_sms(await smscs())

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.stub.SendBatch(request_)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(f"{field}: ")
    assert await redis_client.xlen("tocsin:stream:sms") == 0


async def test_send_sms_names_its_single_number_field(
    smscs: StartSmscs, start_sms: StartSms
) -> None:
    service = await start_sms(await smscs())

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.stub.SendSms(
            sms_pb2.SendSmsRequest(idempotency_key="k", to="+0123", text="x")
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("to: ")


async def test_unknown_batch_is_not_found(smscs: StartSmscs, start_sms: StartSms) -> None:
    service = await start_sms(await smscs())

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.stub.GetBatch(sms_pb2.GetBatchRequest(batch_id="api:nothing"))

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_api_traffic_goes_in_the_bulk_lane_as_its_callers_own(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    service = await start_sms(await smscs())

    sent = await service.stub.SendBatch(
        sms_pb2.SendBatchRequest(idempotency_key="lane-1", to=numbers(3), text="API message")
    )
    await wait_outcomes(pg_pool, alert=sent.batch_id, total=3, states=["delivered"])

    bulk: Any = await redis_client.xrange(keys.stream("sms", codec.Priority.BULK))
    assert [codec.decode(f).header.entity for _, f in bulk] == ["api:"]
    for lane in (codec.Priority.EMERGENCY, codec.Priority.GENERAL):
        assert await redis_client.xlen(keys.stream("sms", lane)) == 0
