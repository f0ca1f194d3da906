"""The serving kernel, through a real service process: health, settings, shutdown, metrics."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from stack.embedded import ManagedProcess, start_redis
from tests.services.kernel.conftest import ServiceProcess, service_env, watch_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_health_follows_redis_down_and_back(
    voice_service: ServiceProcess, private_redis: ManagedProcess
) -> None:
    port = int(private_redis.url.rsplit(":", 1)[1].split("/")[0])
    private_redis.stop()
    await watch_until(voice_service.target, NOT_SERVING)
    restarted = start_redis(data_dir=None, port=port)
    try:
        await watch_until(voice_service.target, SERVING)
    except TimeoutError:
        raise AssertionError(f"never SERVING again: {voice_service.state()}") from None
    finally:
        restarted.stop()


async def test_health_follows_postgres_down(
    start_service: object, private_redis: ManagedProcess
) -> None:
    service: ServiceProcess = start_service(  # type: ignore[operator]
        "voice",
        database_url="postgresql://postgres@127.0.0.1:1/none",
        redis_url=private_redis.url,
    )
    await watch_until(service.target, NOT_SERVING)


def test_malformed_setting_names_the_variable_and_exits_non_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.voice"],
        env=service_env(
            DATABASE_URL="postgresql://x/y", REDIS_URL="redis://x", TOCSIN_GRPC_PORT="x"
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "TOCSIN_GRPC_PORT" in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_store_url_is_named() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.voice"],
        env=service_env(REDIS_URL="redis://x"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "tocsin-voice: invalid setting: DATABASE_URL is not set"


async def test_sigterm_stops_gracefully(voice_service: ServiceProcess) -> None:
    voice_service.popen.send_signal(signal.SIGTERM)
    code = voice_service.popen.wait(30)
    log = voice_service.output()
    assert code == 0, log
    assert "health: NOT_SERVING" in log
    assert log.rstrip().endswith("stopped")


async def test_reflection_and_metrics(voice_service: ServiceProcess) -> None:
    async with grpc.aio.insecure_channel(voice_service.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in stub.ServerReflectionInfo(iter([request])):
            names = {s.name for s in reply.list_services_response.service}
            break
    assert "tocsin.voice.v1.VoiceService" in names
    assert "grpc.health.v1.Health" in names
    url = f"http://127.0.0.1:{voice_service.metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
    assert 'tocsin_serving{service="voice"} 1.0' in body
    assert 'tocsin_dependency_up{dependency="redis",service="voice"} 1.0' in body


async def test_bad_request_answers_with_status_not_trace(
    voice_service: ServiceProcess,
) -> None:
    from tocsin.voice.v1 import voice_pb2, voice_pb2_grpc

    async with grpc.aio.insecure_channel(voice_service.target) as channel:
        stub = voice_pb2_grpc.VoiceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetCall(voice_pb2.GetCallRequest(call_id="x"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "call_id" in (info.value.details() or "")


def _get_call_count(metrics_port: int) -> float:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        body = urllib.request.urlopen(url, timeout=10).read().decode()
    except OSError:  # not listening yet
        return 0.0
    total = 0.0
    for line in body.splitlines():
        if line.startswith("tocsin_grpc_requests_total{") and 'method="GetCall"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_processes_share_a_port_only_when_told_to(
    start_service: object, pg_dsn: str, private_redis: ManagedProcess
) -> None:
    from tocsin.voice.v1 import voice_pb2, voice_pb2_grpc

    from stack.embedded import free_port

    first: ServiceProcess = start_service(  # type: ignore[operator]
        "voice", database_url=pg_dsn, redis_url=private_redis.url, TOCSIN_REUSE_PORT="true"
    )
    await watch_until(first.target, SERVING)

    def second(**extra: str) -> tuple[subprocess.Popen[bytes], int]:
        metrics_port = free_port()
        popen = subprocess.Popen(
            [sys.executable, "-m", "services.voice"],
            env=service_env(
                DATABASE_URL=pg_dsn,
                REDIS_URL=private_redis.url,
                TOCSIN_GRPC_PORT=str(first.grpc_port),
                TOCSIN_METRICS_PORT=str(metrics_port),
                **extra,
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return popen, metrics_port

    # Without the setting, a port already taken is an error, not a silent second listener.
    alone, _ = second()
    assert alone.wait(30) != 0
    sharing, sharing_metrics = second(TOCSIN_REUSE_PORT="true")
    try:
        deadline = asyncio.get_running_loop().time() + 30
        # New connections are spread over both listeners by the kernel.
        while _get_call_count(first.metrics_port) == 0 or _get_call_count(sharing_metrics) == 0:
            assert asyncio.get_running_loop().time() < deadline, "one process got no calls"
            assert sharing.poll() is None, "the second process exited"
            async with grpc.aio.insecure_channel(
                first.target, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                with pytest.raises(grpc.aio.AioRpcError):
                    await voice_pb2_grpc.VoiceServiceStub(channel).GetCall(
                        voice_pb2.GetCallRequest(call_id="x")
                    )
    finally:
        sharing.terminate()
        sharing.wait(30)
