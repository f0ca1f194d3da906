"""ErrorInterceptor: ServiceError to status and field, unexpected errors hidden, calls counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from services.kernel.errors import InvalidArgument
from services.kernel.interceptors import ErrorInterceptor

METHOD = "/test.Echo/Say"


async def _say(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    if request == b"bad":
        raise InvalidArgument("zone.coordinates", "ring is not closed")
    if request == b"boom":
        raise RuntimeError("secret internals")
    return request


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[ErrorInterceptor(service="test")])
    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Say": grpc.unary_unary_rpc_method_handler(_say)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
            yield chan
    finally:
        await server.stop(None)


def _count(code: str) -> float:
    value = REGISTRY.get_sample_value(
        "tocsin_grpc_requests_total", {"service": "test", "method": "Say", "code": code}
    )
    return value or 0.0


async def test_invalid_argument_names_the_field(channel: grpc.aio.Channel) -> None:
    before = _count("INVALID_ARGUMENT")
    say: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await say(b"bad")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "zone.coordinates: ring is not closed"
    assert _count("INVALID_ARGUMENT") == before + 1


async def test_unexpected_error_is_internal_without_internals(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    say: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await say(b"boom")
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "secret internals" not in (info.value.details() or "")
    assert "request id" in (info.value.details() or "")
    assert "secret internals" in caplog.text  # logged for the operator, not sent to the caller


async def test_success_is_counted_ok(channel: grpc.aio.Channel) -> None:
    before = _count("OK")
    say: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
    assert await say(b"hi") == b"hi"
    assert _count("OK") == before + 1
