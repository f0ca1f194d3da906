"""The channel worker: one process's consumer, lanes and recorder for one channel.

A channel service makes a `Recorder` (its operators' receipts go to it), its `Channel`, and a
`ChannelWorker` over both, runs `worker.run()` in the background and `worker.drain()` on SIGTERM
(docs/channel.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Generic

import asyncpg
import redis.asyncio as aioredis

from services.channel import keys
from services.channel.codec import PRIORITIES
from services.channel.consumer import STORES_AWAY, ConsumerConfig, StreamConsumer
from services.channel.control import ControlCache
from services.channel.erase import Tombstones
from services.channel.lanes import Lane
from services.channel.ports import Channel, J
from services.channel.recorder import Recorder
from services.channel.settings import ChannelSettings
from services.channel.slots import Slots

logger = logging.getLogger(__name__)

#: Seconds a shutdown may spend writing what is done before it gives up.
DRAIN_WRITE_S = 10.0


def make_recorder(*, channel: str, settings: ChannelSettings, pool: asyncpg.Pool) -> Recorder:
    """The recorder of `channel`; made first, because the operators' receipts go to it."""
    return Recorder(
        channel=channel,
        pool=pool,
        write_batch=settings.write_batch,
        write_interval_s=settings.write_interval_s,
        receipt_hold_s=settings.receipt_hold_s,
    )


class ChannelWorker(Generic[J]):
    """Consumer, lanes and recorder of one channel in one process."""

    def __init__(
        self,
        *,
        channel: Channel[J],
        settings: ChannelSettings,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        recorder: Recorder,
    ) -> None:
        self.channel = channel
        self.recorder = recorder
        lanes = dict(channel.lanes())
        if not lanes:
            raise ValueError(f"channel {channel.name} has no route")
        # A slot per delivery that can be at an operator without a durable trace.
        self.durability = Slots(sum(lanes.values()))
        control = ControlCache(redis)
        #: Addresses erased while their work was in hand: never sent, recorded under placeholders.
        self.tombstones = Tombstones(redis, channel.name)
        recorder.tombstones = self.tombstones
        #: The control keys' verdicts, for a channel's last check before it hands work over.
        self.control = control
        self.lanes = {
            route: Lane(
                channel=channel,
                route=route,
                senders=senders,
                recorder=recorder,
                durability=self.durability,
                verdict=control.verdict,
                erased=self.tombstones.erased,
                retry_min_s=settings.retry_min_s,
                retry_max_s=settings.retry_max_s,
            )
            for route, senders in lanes.items()
        }
        self.consumer = StreamConsumer(
            config=ConsumerConfig(
                streams={p: keys.stream(channel.name, p) for p in PRIORITIES},
                group=keys.group(channel.name),
                consumer=settings.consumer_name,
                read_count=settings.read_count,
                read_block_ms=settings.read_block_ms,
                max_in_flight=settings.max_in_flight,
                claim_idle_s=settings.claim_idle_s,
                claim_count=settings.claim_count,
                control_refresh_s=settings.control_refresh_s,
            ),
            channel=channel,
            redis=redis,
            pool=pool,
            lanes=self.lanes,
            recorder=recorder,
            control=control,
            durability=self.durability,
            tombstones=self.tombstones,
        )
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Run every part until cancelled (by `drain`, or by the kernel)."""
        self._task = asyncio.current_task()
        name = self.channel.name
        async with asyncio.TaskGroup() as group:
            group.create_task(self.recorder.run(), name=f"{name}-recorder")
            for lane in self.lanes.values():
                group.create_task(lane.run(), name=f"{name}-lane-{lane.route}")
            group.create_task(self.consumer.run(), name=f"{name}-consumer")

    async def drain(self, *, timeout: float, write_timeout: float = DRAIN_WRITE_S) -> None:
        """Stop reading; let work in hand finish for up to `timeout` s; stop; write what is done;
        hand what is not back to the group at once.

        Unfinished entries are marked idle for `claim_idle_s`, so another consumer claims them
        at its next XAUTOCLAIM instead of after the whole idle time. Their recipients still
        `queued` are delivered by that consumer: at most the durability window twice, as after a
        crash.
        """
        self.consumer.stop_reading()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.consumer.idle.wait()
        task = self._task
        if task is not None and not task.done():
            task.cancel()  # no delivery after this point: what is handed back is ours no more
            await asyncio.wait([task])
        try:
            async with asyncio.timeout(write_timeout):
                await self.recorder.drain()
                await self.consumer.flush_acks()
                handed = await self.consumer.hand_back()
                await self.consumer.leave()
        except STORES_AWAY:
            # Not written means not acknowledged: a claiming consumer redoes it (resending only
            # what was in the durability window), so stopping now loses nothing.
            logger.exception("could not write the last %s states on shutdown", self.channel.name)
            return
        if handed:
            logger.warning(
                "handed %d unfinished %s entries back to the group", handed, self.channel.name
            )
