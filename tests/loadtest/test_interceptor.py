"""The Locust interceptor reports each call once: name, latency, size, and the error of a non-OK."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from loadtest.interceptor import REQUEST_TYPE, LocustInterceptor, method_name


class Recorder:
    """Collects what the interceptor fires."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


@pytest.fixture
def address() -> Iterator[str]:
    """A sync gRPC server with the standard health service on loopback."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    servicer.set("up", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait(5)


@pytest.fixture
def recorded(address: str) -> Iterator[tuple[health_pb2_grpc.HealthStub, Recorder]]:
    """A health stub whose calls go through the interceptor, and what it reported."""
    hook = Recorder()
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(grpc.intercept_channel(channel, LocustInterceptor(hook)))
        yield stub, hook


def test_method_name_is_the_last_path_part() -> None:
    assert method_name("/tocsin.alerting.v1.AlertingService/GetAlert") == "GetAlert"


def test_an_ok_unary_call_is_reported_without_exception(
    recorded: tuple[health_pb2_grpc.HealthStub, Recorder],
) -> None:
    stub, hook = recorded
    reply = stub.Check(health_pb2.HealthCheckRequest(service="up"), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    [call] = hook.calls
    assert call["request_type"] == REQUEST_TYPE
    assert call["name"] == "Check"
    assert call["exception"] is None
    assert call["response_length"] == reply.ByteSize()
    assert 0 < call["response_time"] < 5000


def test_a_non_ok_status_is_reported_as_the_rpc_error_and_still_raised(
    recorded: tuple[health_pb2_grpc.HealthStub, Recorder],
) -> None:
    stub, hook = recorded
    with pytest.raises(grpc.RpcError) as raised:
        stub.Check(health_pb2.HealthCheckRequest(service="unknown"), timeout=5)
    [call] = hook.calls
    assert isinstance(call["exception"], grpc.RpcError)
    assert call["exception"].code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_stream_is_reported_once_when_cancelled_after_its_messages(
    recorded: tuple[health_pb2_grpc.HealthStub, Recorder],
) -> None:
    stub, hook = recorded
    stream = stub.Watch(health_pb2.HealthCheckRequest(service="up"), timeout=5)
    first = next(stream)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    assert hook.calls == []
    stream.cancel()
    stream.cancel()
    [call] = hook.calls
    assert call["name"] == "Watch"
    assert call["exception"] is None
    assert call["response_length"] == first.ByteSize()


def test_a_stream_ending_in_an_error_is_reported_with_it(
    recorded: tuple[health_pb2_grpc.HealthStub, Recorder],
) -> None:
    stub, hook = recorded
    stream = stub.Watch(health_pb2.HealthCheckRequest(service="up"), timeout=0.3)
    assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError):
        next(stream)
    [call] = hook.calls
    assert call["exception"].code() == grpc.StatusCode.DEADLINE_EXCEEDED
