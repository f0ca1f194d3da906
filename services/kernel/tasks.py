"""Background tasks that stop when told to, even where a library swallowed the cancellation.

On Python 3.11 `asyncio.wait_for` (used inside redis-py and asyncpg) may return a result instead
of raising the CancelledError that arrived meanwhile (CPython gh-86296). The task's
`cancelling()` count still says it was asked to stop: a loop checks it, and whoever stops tasks
asks again until they end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

logger = logging.getLogger(__name__)


def raise_if_cancelling() -> None:
    """Raise CancelledError if this task is being cancelled: a library may have swallowed the
    cancellation (or turned it into a connection error), and a loop that goes on would keep
    whoever stops it waiting for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[object]], *, timeout_s: float, every_s: float = 0.5
) -> list[asyncio.Task[object]]:
    """Cancel `tasks` and wait for them, cancelling again every `every_s` those that swallowed
    it; the tasks still running after `timeout_s` (logged, left to the loop's end)."""
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(every_s, left))
    for task in pending:
        logger.warning("task %s did not stop within %.1f s", task.get_name(), timeout_s)
    return sorted(pending, key=lambda t: t.get_name())
