"""trim_processed: a work stream keeps what a group may still need, and loses what it processed."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from services.kernel.streams import trim_processed
from tests.services.kernel.test_streams import GROUP, STREAM, add, read

OTHER = "other"


@pytest.fixture
async def stream(redis_client: aioredis.Redis) -> aioredis.Redis:
    """The test stream, emptied, with its group from the start."""
    await redis_client.delete(STREAM)
    await redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    return redis_client


async def groups(redis: aioredis.Redis) -> list[dict[str, Any]]:
    """XINFO GROUPS, as the consumer reads it."""
    return list(await redis.xinfo_groups(STREAM))


async def ids(redis: aioredis.Redis) -> list[str]:
    """The ids left in the stream."""
    entries = await redis.xrange(STREAM)
    assert entries is not None
    return [i.decode() if isinstance(i, bytes) else str(i) for i, _ in entries]


async def test_only_entries_read_and_acknowledged_go(stream: aioredis.Redis) -> None:
    written = await add(stream, 10)
    await read(stream, 6)
    # The first four are acknowledged; the fifth and sixth are delivered but still pending.
    await stream.xack(STREAM, GROUP, *written[:4])
    removed = await trim_processed(stream, STREAM, await groups(stream), approximate=False)
    assert removed == 4
    assert await ids(stream) == written[4:]
    # Pending entries stay claimable.
    claimed = await stream.xautoclaim(STREAM, GROUP, "c2", min_idle_time=0, start_id="0-0")
    assert [i.decode() for i, _ in claimed[1]] == written[4:6]


async def test_the_last_delivered_entry_stays_for_the_lag_count(stream: aioredis.Redis) -> None:
    written = await add(stream, 5)
    await read(stream, 3)
    await stream.xack(STREAM, GROUP, *written[:3])
    await trim_processed(stream, STREAM, await groups(stream), approximate=False)
    # Nothing pending: everything before the last delivered entry went, it and the unread stay.
    assert await ids(stream) == written[2:]


async def test_the_slowest_group_decides(stream: aioredis.Redis) -> None:
    written = await add(stream, 8)
    await stream.xgroup_create(STREAM, OTHER, id="0")
    await read(stream, 8)
    await stream.xack(STREAM, GROUP, *written)
    await stream.xreadgroup(OTHER, "c1", {STREAM: ">"}, count=3)
    await stream.xack(STREAM, OTHER, *written[:3])
    await trim_processed(stream, STREAM, await groups(stream), approximate=False)
    assert await ids(stream) == written[2:]


async def test_a_stream_without_groups_or_progress_is_left_alone(stream: aioredis.Redis) -> None:
    written = await add(stream, 4)
    assert await trim_processed(stream, STREAM, await groups(stream), approximate=False) == 0
    assert await trim_processed(stream, STREAM, [], approximate=False) == 0
    assert await ids(stream) == written


async def test_the_approximate_trim_removes_whole_nodes_only_of_processed_entries(
    stream: aioredis.Redis,
) -> None:
    written = await add(stream, 450)
    await read(stream, 450)
    await stream.xack(STREAM, GROUP, *written[:320])
    removed = await trim_processed(stream, STREAM, await groups(stream))
    left = await ids(stream)
    # Whole nodes of 100 entries went, and not one entry that was still pending.
    assert removed >= 100
    assert removed % 100 == 0
    assert left == written[removed:]
    assert written[320] in left
