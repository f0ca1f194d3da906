"""Stopping tasks that swallow a cancellation, as redis-py's and asyncpg's `wait_for` may."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from services.kernel.tasks import cancel_and_wait, raise_if_cancelling


async def _swallows_once(stopped: list[str]) -> None:
    """A loop that loses the first cancellation, as gh-86296 makes a library do."""
    swallowed = False
    while True:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if swallowed:
                stopped.append("second")
                raise
            swallowed = True


async def _stubborn(release: asyncio.Event) -> None:
    while not release.is_set():
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            continue


async def test_a_task_that_swallowed_one_cancellation_is_asked_again() -> None:
    stopped: list[str] = []
    task = asyncio.create_task(_swallows_once(stopped), name="swallows")
    await asyncio.sleep(0.02)
    assert await cancel_and_wait([task], timeout_s=5, every_s=0.05) == []
    assert stopped == ["second"]
    assert task.cancelled()


async def test_a_task_that_never_stops_is_reported_not_waited_for() -> None:
    release = asyncio.Event()
    task = asyncio.create_task(_stubborn(release), name="stubborn")
    await asyncio.sleep(0.02)
    left = await cancel_and_wait([task], timeout_s=0.3, every_s=0.05)
    assert [t.get_name() for t in left] == ["stubborn"]
    assert not task.done()
    release.set()
    await task


async def test_a_loop_that_checks_stops_even_when_the_cancellation_was_lost() -> None:
    async def loop() -> None:
        while True:
            with contextlib.suppress(asyncio.CancelledError):  # lost, as inside a library
                await asyncio.sleep(0.01)
            raise_if_cancelling()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.03)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
