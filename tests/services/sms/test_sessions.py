"""An operator's session slots leased in Redis: never above the limit, renewed while held, given
back on close, and kept by open sessions (but granted to no new one) while Redis is away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest
import redis.asyncio as aioredis

from services.kernel.redis_client import connect
from services.sms import keys, sessions
from services.sms.sessions import SessionLeases
from stack.embedded import ManagedProcess, start_redis

KEY = keys.operator_sessions("opA")


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting binds ask again every few tens of milliseconds (production: half a second)."""
    monkeypatch.setattr(sessions, "POLL_S", 0.05)
    monkeypatch.setattr(sessions, "RENEW_RETRY_S", 0.1)


@contextlib.asynccontextmanager
async def redis_at(url: str) -> AsyncIterator[aioredis.Redis]:
    """A client as the services make one, with short timeouts (Redis is stopped in tests)."""
    client = connect(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        yield client
    finally:
        await client.aclose()


async def until(predicate: Callable[[], bool], *, timeout: float = 10) -> None:
    """Wait for `predicate` (a log record, a task's end: nothing to await on directly)."""
    async with asyncio.timeout(timeout):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.02)


def told(caplog: pytest.LogCaptureFixture, words: str) -> list[logging.LogRecord]:
    """WARNING records of the sessions module containing `words`."""
    return [
        r
        for r in caplog.records
        if r.name == sessions.__name__ and r.levelno == logging.WARNING and words in r.message
    ]


async def lease_end(redis: aioredis.Redis) -> float:
    """When the one lease of the operator lapses, on Redis' clock."""
    rows = cast(list[tuple[bytes, float]], await redis.zrange(KEY, 0, -1, withscores=True))
    [(_member, end)] = rows
    return float(end)


async def redis_time(redis: aioredis.Redis) -> float:
    """Redis' clock, the one leases are scored on."""
    seconds, micros = await redis.time()
    return float(seconds) + micros / 1_000_000


@pytest.mark.timeout(30)
async def test_no_slot_above_the_limit_and_a_freed_one_goes_to_the_waiting_bind(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=sessions.__name__)
    async with redis_at(redis_url) as redis, contextlib.AsyncExitStack() as held:
        # Two processes' worth of leases on one operator that allows two sessions.
        first = SessionLeases(redis, limits={"opA": 2}, lease_s=2)
        second = SessionLeases(redis, limits={"opA": 2}, lease_s=2)
        gate_1, gate_2 = first.gate("opA"), second.gate("opA")
        assert gate_1 is not None
        assert gate_2 is not None
        assert first.gate("opB") is None  # no max_sessions: no gate, no Redis
        one = gate_1("opA-0/transceiver")
        await one.__aenter__()
        await held.enter_async_context(gate_1("opA-1/transceiver"))

        waiting = asyncio.create_task(held.enter_async_context(gate_2("opA-0/transceiver")))
        await until(lambda: bool(told(caplog, "waits for one to close")))
        (warning,) = told(caplog, "waits for one to close")
        assert warning.message.startswith("opA: all 2 SMPP sessions")
        assert not waiting.done()
        assert await redis.zcard(KEY) == 2

        await one.__aexit__(None, None, None)  # the first process's session closed
        await asyncio.wait_for(waiting, 10)
        assert await redis.zcard(KEY) == 2
        # Told once per wait, however many times it asked.
        assert len(told(caplog, "waits for one to close")) == 1
    assert await redis_empty(redis_url)


async def redis_empty(url: str) -> bool:
    """Whether every slot was given back."""
    async with redis_at(url) as redis:
        return not await redis.zcard(KEY)


@pytest.mark.timeout(30)
async def test_a_held_lease_is_renewed_past_its_lease_time(redis_url: str) -> None:
    lease_s = 0.6
    async with redis_at(redis_url) as redis:
        leases = SessionLeases(redis, limits={"opA": 1}, lease_s=lease_s)
        gate = leases.gate("opA")
        assert gate is not None
        async with gate("opA-0/transceiver"):
            first_end = await lease_end(redis)
            await asyncio.sleep(3 * lease_s)  # three lease times: unrenewed, it would be gone
            end = await lease_end(redis)
            assert end > first_end
            assert end > await redis_time(redis)
            # Still the one slot: another process's bind gets none.
            other = SessionLeases(redis, limits={"opA": 1}, lease_s=lease_s).gate("opA")
            assert other is not None
            waiting = asyncio.create_task(other("opA-0/transceiver").__aenter__())
            done, _ = await asyncio.wait([waiting], timeout=2 * lease_s)
            assert not done
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
        assert await redis.zcard(KEY) == 0  # given back on close, the cancelled wait took none


@pytest.mark.timeout(60)
async def test_redis_away_open_sessions_keep_their_slot_new_ones_wait(
    private_redis: ManagedProcess,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A failed renewal is retried within 0.75 s: far slower than the waiting bind's polls, so
    # only the settling time of a Redis that lost its leases keeps the bind from their slot.
    monkeypatch.setattr(sessions, "RENEW_RETRY_S", 0.5)
    lease_s = 3.0
    port = int(private_redis.url.rsplit(":", 1)[1].split("/")[0])
    restarted: ManagedProcess | None = None
    try:
        async with redis_at(private_redis.url) as redis:
            leases = SessionLeases(redis, limits={"opA": 1}, lease_s=lease_s)
            gate = leases.gate("opA")
            assert gate is not None
            async with gate("opA-0/transceiver"):
                private_redis.stop()
                # A new bind waits for Redis instead of opening a session without a slot.
                new_bind = gate("opA-1/transceiver")
                waiting = asyncio.create_task(new_bind.__aenter__())
                await until(lambda: bool(told(caplog, "Redis unreachable")))
                # The open session's renewal fails and it keeps its slot: no error reaches it.
                await until(lambda: bool(told(caplog, "session lease not renewed")))
                assert not waiting.done()
                assert told(caplog, "Redis unreachable")[0].message.startswith("opA: ")

                # Redis back, empty (it lost every lease): the open session writes its lease
                # back, and the waiting bind does not get the slot that looked free meanwhile.
                restarted = start_redis(data_dir=None, port=port)
                await until_count(redis, 1)
                assert await holders(redis) == ["opA-0"]
                await asyncio.sleep(lease_s)  # well past the settling time: still the holder's
                assert await holders(redis) == ["opA-0"]
                assert not waiting.done()
            # Closed: the slot goes to the waiting bind.
            await asyncio.wait_for(waiting, 10)
            assert await holders(redis) == ["opA-1"]
            await new_bind.__aexit__(None, None, None)
    finally:
        if restarted is not None:
            restarted.stop()


async def holders(redis: aioredis.Redis) -> list[str]:
    """The binds (`opA-0`) holding the operator's slots."""
    held = cast(list[bytes], await redis.zrange(KEY, 0, -1))
    return sorted(m.decode().split("/")[1] for m in held)


async def until_count(redis: aioredis.Redis, n: int, *, timeout: float = 10) -> None:
    """Wait until the operator's set holds `n` leases (renewals come on their own schedule)."""
    async with asyncio.timeout(timeout):
        while True:
            if await redis.zcard(KEY) == n:
                return
            await asyncio.sleep(0.05)
