"""Run a real service process for kernel tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stack.embedded import free_port


@dataclass
class ServiceProcess:
    """A service running as its own process, with the ports it was given."""

    popen: subprocess.Popen[bytes]
    grpc_port: int
    metrics_port: int
    #: Where its output goes: a file, never a pipe nobody reads (a service that logs its
    #: retries for a while would fill the pipe and block on its next line).
    log: IO[bytes] | None = None

    def output(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def state(self) -> str:
        """Whether it still runs, and the end of its output: for a failure's message."""
        code = self.popen.poll()
        alive = "running" if code is None else f"exited with {code}"
        return f"{alive}; its output ends:\n{self.output()[-3000:]}"

    @property
    def target(self) -> str:
        """gRPC target of the service."""
        return f"127.0.0.1:{self.grpc_port}"


def service_env(**extra: str) -> dict[str, str]:
    """The environment for a service process: ours, less any TOCSIN_/store settings.

    Plaintext (the development flag) unless the test gives TOCSIN_TLS_DIR: these tests are
    about serving; test_tls.py runs the same processes with mutual TLS.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TOCSIN_") and k not in {"DATABASE_URL", "REDIS_URL"}
    }
    if "TOCSIN_TLS_DIR" not in extra:
        env["TOCSIN_INSECURE_DEV"] = "true"
    env.update(extra)
    return env


async def watch_until(target: str, wanted: int, *, timeout: float = 30) -> None:
    """Follow the service's health stream until it reports `wanted`."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                async with grpc.aio.insecure_channel(target) as channel:
                    stub = health_pb2_grpc.HealthStub(channel)
                    async for reply in stub.Watch(health_pb2.HealthCheckRequest(service="")):
                        if reply.status == wanted:
                            return
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                await asyncio.sleep(0.1)  # the process is still starting: nothing to await yet


@pytest.fixture
def start_service() -> Iterator[object]:
    """Start `python -m services.<name>` with the given stores; stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def start(name: str, *, database_url: str, redis_url: str, **env: str) -> ServiceProcess:
        grpc_port = free_port()
        # The caller may choose the metrics port (0: any free one, for itself and its workers).
        metrics_port = int(env.pop("TOCSIN_METRICS_PORT", None) or free_port())
        log = tempfile.TemporaryFile()  # noqa: SIM115 (closed after the test, below)
        logs.append(log)
        popen = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=service_env(
                DATABASE_URL=database_url,
                REDIS_URL=redis_url,
                TOCSIN_GRPC_PORT=str(grpc_port),
                TOCSIN_METRICS_PORT=str(metrics_port),
                TOCSIN_HEALTH_INTERVAL_S="0.2",
                TOCSIN_HEALTH_TIMEOUT_S="0.5",
                **env,
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(popen)
        return ServiceProcess(popen, grpc_port, metrics_port, log)

    yield start
    for popen in started:
        if popen.poll() is None:
            popen.kill()
        popen.wait(10)
    for log in logs:
        log.close()


@pytest.fixture
async def voice_service(
    start_service: object, pg_dsn: str, private_redis: object
) -> ServiceProcess:
    """The voice service, SERVING, on this test's database and its own Redis."""
    from stack.embedded import ManagedProcess

    assert isinstance(private_redis, ManagedProcess)
    service: ServiceProcess = start_service(  # type: ignore[operator]
        "voice", database_url=pg_dsn, redis_url=private_redis.url
    )
    await watch_until(service.target, health_pb2.HealthCheckResponse.SERVING)
    return service
