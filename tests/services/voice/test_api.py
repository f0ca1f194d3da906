"""PlaceCalls and GetCall: idempotent, validated, states of calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import grpc
import pytest
from tocsin.voice.v1 import voice_pb2, voice_pb2_grpc

from services.kernel.tls import channel_to, load_material
from simulators.siptrunk import SipTrunkSimulator
from tests.services.voice.conftest import numbers, wait_states

StartTrunk = Callable[..., Awaitable[SipTrunkSimulator]]
StartVoice = Callable[..., Awaitable[int]]


async def test_place_calls_twice_calls_once_and_get_call_tells_states(
    trunk: StartTrunk, voice_here: StartVoice, pg_pool: asyncpg.Pool
) -> None:
    answered, busy = numbers(2)
    sim = await trunk(scripts={busy: ("busy",)})
    port = await voice_here(sim, max_attempts=1)
    request = voice_pb2.PlaceCallsRequest(
        idempotency_key="k-1",
        numbers=[answered, busy, answered],
        language="fr",
        text="Ceci est un test.",
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = voice_pb2_grpc.VoiceServiceStub(channel)
        first = await stub.PlaceCalls(request, timeout=10)
        again = await stub.PlaceCalls(request, timeout=10)
        # Plaintext development server: no caller identity, the key alone names the batch.
        assert (first.batch_id, first.accepted, first.duplicate) == ("api:k-1", 2, False)
        assert (again.batch_id, again.accepted, again.duplicate) == ("api:k-1", 2, True)
        await wait_states(pg_pool, alert="api:k-1", total=2)
        done = await stub.GetCall(voice_pb2.GetCallRequest(call_id=f"api:k-1/{answered}"))
        assert (done.state, done.attempts, done.trunk) == (
            voice_pb2.CALL_STATE_COMPLETED,
            1,
            "trunkA",
        )
        failed = await stub.GetCall(voice_pb2.GetCallRequest(call_id=f"api:k-1/{busy}"))
        assert failed.state == voice_pb2.CALL_STATE_BUSY
        assert failed.error == "busy (486) after 1 attempt"
    assert {n: d.calls for n, d in sim.destinations.items()} == {answered: 1, busy: 1}


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            voice_pb2.PlaceCallsRequest(
                idempotency_key="", numbers=["+3250000001"], language="nl", text="x"
            ),
            "idempotency_key",
        ),
        (
            voice_pb2.PlaceCallsRequest(
                idempotency_key="k", numbers=["+3250000001", "0471"], language="nl", text="x"
            ),
            "numbers[1]",
        ),
        (
            voice_pb2.PlaceCallsRequest(
                idempotency_key="k", numbers=["+3250000001"], language="es", text="x"
            ),
            "language",
        ),
        (
            voice_pb2.PlaceCallsRequest(
                idempotency_key="k", numbers=["+3250000001"], language="nl", text=" "
            ),
            "text",
        ),
    ],
)
async def test_bad_requests_name_the_field(
    trunk: StartTrunk, voice_here: StartVoice, request_: voice_pb2.PlaceCallsRequest, field: str
) -> None:
    port = await voice_here(await trunk())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = voice_pb2_grpc.VoiceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.PlaceCalls(request_, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (info.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetCall(voice_pb2.GetCallRequest(call_id="api:none/+3250000009"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_callers_are_authenticated_and_see_their_own_calls(
    trunk: StartTrunk, voice_here: StartVoice, pg_pool: asyncpg.Pool, tls_dirs: dict[str, Path]
) -> None:
    number = numbers(1)[0]
    port = await voice_here(await trunk(), insecure_dev=False, tls_dir=tls_dirs["voice"])
    address = f"127.0.0.1:{port}"
    request = voice_pb2.PlaceCallsRequest(
        idempotency_key="k-tls", numbers=[number], language="en", text="A test."
    )
    team = load_material(tls_dirs["api-loadtest"])
    async with channel_to(address, service="voice", material=team) as channel:
        placed = await voice_pb2_grpc.VoiceServiceStub(channel).PlaceCalls(request, timeout=10)
    assert placed.batch_id == "api:api-loadtest:k-tls"
    await wait_states(pg_pool, alert=placed.batch_id, total=1)
    for identity, code in (
        ("sms", grpc.StatusCode.PERMISSION_DENIED),
        ("registration", grpc.StatusCode.PERMISSION_DENIED),
    ):
        material = load_material(tls_dirs[identity])
        async with channel_to(address, service="voice", material=material) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await voice_pb2_grpc.VoiceServiceStub(channel).PlaceCalls(request, timeout=10)
            assert info.value.code() == code
