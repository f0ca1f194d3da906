"""A background task that fails stops its process: a dead loop must not go unseen."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import pytest

from services.kernel.serve import Kernel, serve
from services.kernel.settings import ServiceSettings


class _Settings(ServiceSettings):
    default_grpc_port: ClassVar[int] = 0
    default_metrics_port: ClassVar[int] = 0


def _settings(pg_dsn: str, redis_url: str) -> _Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": pg_dsn,
        "REDIS_URL": redis_url,
        "grpc_port": 0,
        "metrics_port": 0,
        "shutdown_grace_s": 1.0,
        "insecure_dev": True,
    }
    return _Settings(**values)


async def test_a_background_task_that_fails_stops_the_process_and_says_which(
    pg_dsn: str, redis_url: str, metrics_servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    other_stopped = asyncio.Event()

    async def fails() -> None:
        await asyncio.sleep(0.3)
        raise RuntimeError("lost its way")

    async def runs_on() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            other_stopped.set()

    async def build(kernel: Kernel[_Settings]) -> None:
        kernel.add_background(runs_on(), name="runs-on")
        kernel.add_background(fails(), name="fails")

    with caplog.at_level(logging.CRITICAL, logger="services.kernel.serve"):
        async with asyncio.timeout(30):
            await serve(name="kernel-test", settings=_settings(pg_dsn, redis_url), build=build)
    (record,) = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert record.getMessage() == "background task fails failed; stopping the process"
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "lost its way"
    # The usual shutdown followed: the other tasks were stopped too.
    assert other_stopped.is_set()


async def test_a_background_task_that_returns_or_ends_in_the_shutdown_stops_nothing(
    pg_dsn: str, redis_url: str, metrics_servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def returns() -> None:
        await asyncio.sleep(0.05)

    async def turns_cancel_into_error() -> None:
        # As a library may: the cancellation of the shutdown comes out as an error of its own.
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionError("connection closed") from None

    async def build(kernel: Kernel[_Settings]) -> None:
        kernel.add_background(returns(), name="returns")
        kernel.add_background(turns_cancel_into_error(), name="turns")

    ready = asyncio.Event()
    task = asyncio.create_task(
        serve(name="kernel-test", settings=_settings(pg_dsn, redis_url), build=build, ready=ready)
    )
    async with asyncio.timeout(30):
        await ready.wait()
    await asyncio.sleep(0.5)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert "background task turns ended while stopping: ConnectionError('connection closed')" in [
        r.getMessage() for r in caplog.records
    ]
