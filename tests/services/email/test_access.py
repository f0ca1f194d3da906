"""The e-mail service's API over mutual TLS: alerting is admitted, anyone else refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from tocsin.email.v1 import email_pb2, email_pb2_grpc

from services.kernel.tls import channel_to, load_material
from tests.services.email.conftest import ALERT, Relay, StartEmail


async def test_only_alerting_reads_progress(
    relay: Relay, start_email: StartEmail, tls_dirs: dict[str, Path]
) -> None:
    sim = await relay()
    service = await start_email(sim.port, tls_dir=tls_dirs["email"])
    assert await service.progress() == {}  # as alerting: admitted, nothing sent yet
    address = f"127.0.0.1:{service.settings.grpc_bind_port}"
    request = email_pb2.GetAlertProgressRequest(alert_id=ALERT)
    async with channel_to(
        address, service="email", material=load_material(tls_dirs["targeting"])
    ) as other:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await email_pb2_grpc.EmailServiceStub(other).GetAlertProgress(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with channel_to(address, service="email", material=None) as plain:
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await email_pb2_grpc.EmailServiceStub(plain).GetAlertProgress(request, timeout=10)
    assert anonymous.value.code() == grpc.StatusCode.UNAVAILABLE  # no TLS, no handshake
    async with channel_to(
        address, service="email", material=load_material(tls_dirs["alerting"])
    ) as ok:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await email_pb2_grpc.EmailServiceStub(ok).GetAlertProgress(
                email_pb2.GetAlertProgressRequest(alert_id=""), timeout=10
            )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "alert_id" in (bad.value.details() or "")
