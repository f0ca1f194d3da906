"""One process's SMS pipeline: consumer -> dispatchers -> binds; recorder -> PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.sms.consumer import StreamConsumer, consumer_config
from services.sms.control import ControlCache
from services.sms.dispatch import OperatorDispatcher
from services.sms.ports import Bind, TokenSource
from services.sms.recorder import Recorder
from services.sms.routing import Router
from services.sms.settings import Settings
from services.sms.slots import Slots
from services.sms.tokens import OperatorPacer

logger = logging.getLogger(__name__)

#: Seconds a shutdown may spend writing what is done before it gives up.
DRAIN_WRITE_S = 10.0


def make_recorder(*, settings: Settings, pool: asyncpg.Pool) -> Recorder:
    """The recorder; made first, because binds hand their receipts to it."""
    return Recorder(
        pool=pool,
        write_batch=settings.write_batch,
        write_interval_s=settings.write_interval_s,
        receipt_hold_s=settings.receipt_hold_s,
    )


class SmsEngine:
    """Consumer, dispatchers and recorder of one process."""

    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        recorder: Recorder,
        binds: Mapping[str, Sequence[Bind]],
        tokens: TokenSource,
        segment_count: Callable[[str], int],
    ) -> None:
        operators = settings.operators()
        self.recorder = recorder
        self.router = Router(
            routes=[(op.name, op.prefixes) for op in operators], default=operators[0].name
        )
        # A slot per message that can be at an SMSC without a durable trace: the binds' windows.
        window = sum(b.window for op in operators for b in binds[op.name])
        self.durability = Slots(window)
        control = ControlCache(redis)
        self.dispatchers = {
            op.name: OperatorDispatcher(
                operator=op.name,
                binds=binds[op.name],
                pacer=OperatorPacer(
                    source=tokens,
                    operator=op.name,
                    lease_size=settings.lease_size,
                    throttle_min_s=settings.throttle_min_s,
                    throttle_max_s=settings.throttle_max_s,
                ),
                recorder=recorder,
                durability=self.durability,
                verdict=control.verdict,
                retry_min_s=settings.retry_min_s,
                retry_max_s=settings.retry_max_s,
            )
            for op in operators
        }
        self.consumer = StreamConsumer(
            config=consumer_config(consumer=settings.consumer_name, settings=settings),
            redis=redis,
            pool=pool,
            router=self.router,
            dispatchers=self.dispatchers,
            recorder=recorder,
            control=control,
            segment_count=segment_count,
            durability=self.durability,
        )
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Run every part until cancelled (by `drain`, or by the kernel)."""
        self._task = asyncio.current_task()
        async with asyncio.TaskGroup() as group:
            group.create_task(self.recorder.run(), name="sms-recorder")
            for dispatcher in self.dispatchers.values():
                group.create_task(dispatcher.run(), name=f"sms-dispatch-{dispatcher.operator}")
            group.create_task(self.consumer.run(), name="sms-consumer")

    async def drain(self, *, timeout: float, write_timeout: float = DRAIN_WRITE_S) -> None:
        """Stop reading; let work in hand finish for up to `timeout` s; stop; write what is done;
        hand what is not back to the group at once.

        Unfinished entries are marked idle for `claim_idle_s`, so another consumer claims them
        at its next XAUTOCLAIM instead of after the whole idle time. Their recipients still
        `queued` are sent by that consumer: at most the durability window twice, as after a crash.
        """
        self.consumer.stop_reading()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.consumer.idle.wait()
        task = self._task
        if task is not None and not task.done():
            task.cancel()  # no submission after this point: what is handed back is ours no more
            await asyncio.wait([task])
        try:
            async with asyncio.timeout(write_timeout):
                await self.recorder.drain()
                await self.consumer.flush_acks()
                handed = await self.consumer.hand_back()
        except (TimeoutError, OSError, RedisError, asyncpg.PostgresError, asyncpg.InterfaceError):
            # Not written means not acknowledged: a claiming consumer redoes it (resending only
            # what was in the durability window), so stopping now loses nothing.
            logger.exception("could not write the last SMS states on shutdown")
            return
        if handed:
            logger.warning("handed %d unfinished SMS entries back to the group", handed)
