"""Mutual TLS and the access table: who may call what, proven with real certificates."""

from __future__ import annotations

import asyncio
import datetime
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kernel import context
from services.kernel.access import ANYONE, RULES, rule_for
from services.kernel.interceptors import ErrorInterceptor
from services.kernel.settings import SettingsError
from services.kernel.tls import (
    ClientSettings,
    TlsMaterial,
    add_port,
    channel_to,
    connect,
    load_material,
)
from stack import pki
from stack.embedded import ManagedProcess, free_port
from tests.services.kernel.conftest import ServiceProcess, service_env

SAY = "/test.Echo/Say"
OPEN = "/test.Echo/Open"
TEST_RULES = {SAY: frozenset({"alerting"}), OPEN: frozenset({ANYONE})}


async def _say(request: bytes, ctx: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return context.caller.get().encode()


Connect = Callable[..., grpc.aio.Channel]


async def _serve(
    material: TlsMaterial, *, require_client_cert: bool
) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor(service="test", authorize=True, rules=TEST_RULES)]
    )
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        name: grpc.unary_unary_rpc_method_handler(_say) for name in ("Say", "Open")
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    port = add_port(server, "127.0.0.1:0", material, require_client_cert=require_client_cert)
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def targeting(tls_dirs: dict[str, Path]) -> AsyncIterator[str]:
    """A mutual-TLS server holding targeting's certificate; its address."""
    server, address = await _serve(load_material(tls_dirs["targeting"]), require_client_cert=True)
    yield address
    await server.stop(None)


async def _call(channel: grpc.aio.Channel, method: str = SAY) -> bytes:
    async with channel:
        say: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        return await say(b"", timeout=10)


async def _code(channel: grpc.aio.Channel, method: str = SAY) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(channel, method)
    return info.value.code()


async def test_the_allowed_service_is_admitted_and_named(
    targeting: str, tls_dirs: dict[str, Path]
) -> None:
    material = load_material(tls_dirs["alerting"])
    assert await _call(channel_to(targeting, service="targeting", material=material)) == b"alerting"


async def test_a_certificate_of_another_service_is_refused(
    targeting: str, tls_dirs: dict[str, Path]
) -> None:
    material = load_material(tls_dirs["sms"])
    channel = channel_to(targeting, service="targeting", material=material)
    assert await _code(channel) == grpc.StatusCode.PERMISSION_DENIED


async def test_plaintext_client_and_foreign_ca_cannot_connect(
    targeting: str, tls_dirs: dict[str, Path]
) -> None:
    assert await _code(grpc.aio.insecure_channel(targeting)) == grpc.StatusCode.UNAVAILABLE
    foreign = pki.new_authority(name="intruder CA")
    cert, key = pki.issue(foreign, "alerting")
    forged = TlsMaterial(foreign.cert_pem, cert, key)
    channel = channel_to(targeting, service="targeting", material=forged)
    assert await _code(channel) == grpc.StatusCode.UNAVAILABLE
    # Our CA trusted, but no client certificate: the handshake fails on a mutual-TLS server.
    ca_only = TlsMaterial(load_material(tls_dirs["alerting"]).ca)
    assert await _code(channel_to(targeting, service="targeting", material=ca_only)) == (
        grpc.StatusCode.UNAVAILABLE
    )


async def test_an_expired_certificate_is_refused(targeting: str, tls_dirs: dict[str, Path]) -> None:
    authority = pki.load_or_create_authority(tls_dirs["alerting"].parent / "ca")
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    cert, key = pki.issue(authority, "alerting", days=1, not_before=long_ago)
    expired = TlsMaterial(authority.cert_pem, cert, key)
    channel = channel_to(targeting, service="targeting", material=expired)
    assert await _code(channel) == grpc.StatusCode.UNAVAILABLE


async def test_the_client_checks_the_server_is_the_service_it_wanted(
    targeting: str, tls_dirs: dict[str, Path]
) -> None:
    material = load_material(tls_dirs["alerting"])
    # targeting's certificate does not say "sms": a redirected address is not trusted.
    assert await _code(channel_to(targeting, service="sms", material=material)) == (
        grpc.StatusCode.UNAVAILABLE
    )


async def test_server_auth_only_admits_anonymous_callers_to_public_methods(
    tls_dirs: dict[str, Path],
) -> None:
    server, address = await _serve(load_material(tls_dirs["alerting"]), require_client_cert=False)
    try:
        client = ClientSettings(tls_ca_file=tls_dirs["alerting"] / pki.CA_FILE)
        assert await _call(connect(address, settings=client), OPEN) == b""
        assert await _code(connect(address, settings=client)) == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(SettingsError, match="TOCSIN_TLS_CA_FILE"):
            ClientSettings().material()
    finally:
        await server.stop(None)


def test_every_method_of_every_proto_has_a_rule() -> None:
    from tocsin.alerting.v1 import alerting_pb2
    from tocsin.cellbroadcast.v1 import cellbroadcast_pb2
    from tocsin.sms.v1 import sms_pb2
    from tocsin.targeting.v1 import targeting_pb2
    from tocsin.voice.v1 import voice_pb2

    for module in (alerting_pb2, cellbroadcast_pb2, sms_pb2, targeting_pb2, voice_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rule = rule_for(f"/{service.full_name}/{method.name}")
                assert rule.anyone or rule.names or rule.prefixes, method.full_name
    assert rule_for("/tocsin.targeting.v1.Targeting/Resolve").names == {"alerting"}
    assert rule_for("/tocsin.targeting.v1.Targeting/Resolve").admits(["sms"]) is None
    assert rule_for("/tocsin.sms.v1.SmsService/SendSms").admits(["api-police"]) == "api-police"
    assert rule_for("/tocsin.sms.v1.SmsService/SendSms").admits(["alerting"]) is None
    assert rule_for("/unknown.Service/Method").admits(["alerting"]) is None
    assert "/tocsin.*" in RULES


async def test_a_service_refuses_to_start_without_tls_or_the_dev_flag(
    pg_dsn: str, private_redis: ManagedProcess
) -> None:
    env = service_env(DATABASE_URL=pg_dsn, REDIS_URL=private_redis.url)
    del env["TOCSIN_INSECURE_DEV"]
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.voice"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert b"TOCSIN_TLS_DIR is not set" in done.stderr


async def test_a_service_process_serves_mutual_tls_and_plaintext_health(
    start_service: Callable[..., ServiceProcess],
    pg_dsn: str,
    private_redis: ManagedProcess,
    tls_dirs: dict[str, Path],
) -> None:
    from tocsin.voice.v1 import voice_pb2, voice_pb2_grpc

    health_port = free_port()
    voice = start_service(
        "voice",
        database_url=pg_dsn,
        redis_url=private_redis.url,
        TOCSIN_TLS_DIR=str(tls_dirs["voice"]),
        TOCSIN_HEALTH_PORT=str(health_port),
    )
    async with asyncio.timeout(60):
        while True:
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{health_port}") as channel:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=""), timeout=5
                    )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.aio.AioRpcError:
                assert voice.popen.poll() is None, "voice exited"
            await asyncio.sleep(0.2)
    request = voice_pb2.GetCallRequest(call_id="x")
    # The health port serves nothing else.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{health_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await voice_pb2_grpc.VoiceServiceStub(channel).GetCall(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # Alerting drives voice; sms may not; plaintext does not even connect.
    outcomes = {}
    for identity in ("alerting", "sms"):
        material = load_material(tls_dirs[identity])
        async with channel_to(voice.target, service="voice", material=material) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await voice_pb2_grpc.VoiceServiceStub(channel).GetCall(request, timeout=10)
            outcomes[identity] = info.value.code()
    assert outcomes == {
        "alerting": grpc.StatusCode.INVALID_ARGUMENT,  # admitted; "x" is no call id
        "sms": grpc.StatusCode.PERMISSION_DENIED,
    }
    async with grpc.aio.insecure_channel(voice.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await voice_pb2_grpc.VoiceServiceStub(channel).GetCall(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
