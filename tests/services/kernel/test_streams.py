"""GroupLag: a consumer group's lag on Redis 6.2, counted in Redis, exactly and a little at a time.

Every test takes the group's XINFO GROUPS entry from the real server and leaves out `lag`, so the
counting path runs whatever the server's version (the embedded one is 6.2, which has no `lag`).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from services.kernel.streams import GroupLag

STREAM, GROUP = "tocsin:stream:test", "test"


async def add(redis: aioredis.Redis, n: int) -> list[str]:
    """XADD `n` entries; their ids."""
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(n):
            pipe.xadd(STREAM, {"batch": str(i), "to": '[["+32470000001", "en"]]'})
        ids = await pipe.execute()
    return [i.decode() for i in ids]


async def read(redis: aioredis.Redis, n: int) -> None:
    """Deliver the next `n` entries to the group."""
    if n:
        await redis.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=n)


async def group_info(redis: aioredis.Redis) -> dict[str, Any]:
    """The group's XINFO GROUPS entry, without Redis 7's `lag`."""
    for g in await redis.xinfo_groups(STREAM):
        if g["name"] in (GROUP, GROUP.encode()):
            return {k: v for k, v in g.items() if k != "lag"}
    raise AssertionError("no group")


async def script_calls(redis: aioredis.Redis) -> int:
    """Scripts run by the server so far."""
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("eval", "evalsha"))


@pytest.fixture
async def stream(redis_client: aioredis.Redis) -> aioredis.Redis:
    """The test stream with its group, from the start."""
    await redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    return redis_client


async def test_the_embedded_redis_has_no_lag_field(stream: aioredis.Redis) -> None:
    info = await stream.info("server")
    if int(str(info["redis_version"]).split(".")[0]) >= 7:
        pytest.skip("an external Redis 7: it reports `lag` itself")
    await add(stream, 3)
    groups = await stream.xinfo_groups(STREAM)
    assert "lag" not in groups[0]


async def test_counts_the_entries_not_yet_delivered(stream: aioredis.Redis) -> None:
    await add(stream, 25)
    await read(stream, 7)
    lag = GroupLag(stream, STREAM)
    assert await lag.measure(await group_info(stream)) == 18


async def test_zero_when_caught_up_without_a_script(stream: aioredis.Redis) -> None:
    lag = GroupLag(stream, STREAM)
    assert await lag.measure(await group_info(stream)) == 0  # empty stream
    await add(stream, 10)
    await read(stream, 10)
    before = await script_calls(stream)
    assert await lag.measure(await group_info(stream)) == 0
    assert await script_calls(stream) == before


async def test_zero_when_the_entries_after_the_last_delivered_were_deleted(
    stream: aioredis.Redis,
) -> None:
    ids = await add(stream, 5)
    await read(stream, 3)
    await stream.xdel(STREAM, *ids[3:])  # last-generated-id stays the 5th id
    assert await GroupLag(stream, STREAM).measure(await group_info(stream)) == 0


async def test_reports_the_cap_above_it(stream: aioredis.Redis) -> None:
    await add(stream, 30)
    await read(stream, 2)
    lag = GroupLag(stream, STREAM, cap=10, step=4)
    assert await lag.measure(await group_info(stream)) == 10
    await read(stream, 15)  # 13 left: still above
    assert await lag.measure(await group_info(stream)) == 10
    await read(stream, 5)  # 8 left: exact again
    assert await lag.measure(await group_info(stream)) == 8
    await add(stream, 1)
    assert await lag.measure(await group_info(stream)) == 9


async def test_follows_reads_and_writes_walking_only_what_changed(stream: aioredis.Redis) -> None:
    await add(stream, 40)
    await read(stream, 5)
    lag = GroupLag(stream, STREAM, step=10)
    before = await script_calls(stream)
    assert await lag.measure(await group_info(stream)) == 35
    assert await script_calls(stream) - before == 4  # 35 entries, 10 a call
    await read(stream, 3)
    await add(stream, 6)
    before = await script_calls(stream)
    assert await lag.measure(await group_info(stream)) == 38
    assert await script_calls(stream) - before == 2  # the 3 delivered, then the 6 added
    for delivered, added in ((20, 0), (0, 12), (30, 2), (2, 0)):
        await read(stream, delivered)
        await add(stream, added)
        info = await group_info(stream)
        assert await lag.measure(info) == await GroupLag(stream, STREAM).measure(info)
    assert await lag.measure(await group_info(stream)) == 38 - 20 + 12 - 30 + 2 - 2


async def test_a_large_backlog_is_counted_over_several_readings(stream: aioredis.Redis) -> None:
    await add(stream, 50)
    lag = GroupLag(stream, STREAM, step=5, budget=20)
    assert await lag.measure(await group_info(stream)) is None  # 20 counted
    await read(stream, 4)
    assert await lag.measure(await group_info(stream)) is None  # 4 passed, 16 more: 32
    assert await lag.measure(await group_info(stream)) == 46


async def test_a_group_set_back_or_a_stream_made_again_is_counted_afresh(
    stream: aioredis.Redis,
) -> None:
    await add(stream, 12)
    await read(stream, 10)
    lag = GroupLag(stream, STREAM)
    assert await lag.measure(await group_info(stream)) == 2
    await stream.xgroup_setid(STREAM, GROUP, "0")
    assert await lag.measure(await group_info(stream)) == 12
    await stream.delete(STREAM)
    await stream.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await add(stream, 3)
    assert await lag.measure(await group_info(stream)) == 3


async def test_a_stream_trimmed_past_the_group_is_counted_afresh(stream: aioredis.Redis) -> None:
    await add(stream, 20)
    await read(stream, 5)
    lag = GroupLag(stream, STREAM)
    assert await lag.measure(await group_info(stream)) == 15
    await stream.xtrim(STREAM, maxlen=8, approximate=False)
    assert await lag.measure(await group_info(stream)) == 8
    await read(stream, 4)
    assert await lag.measure(await group_info(stream)) == 4
    # Trimming what was delivered before the last reading leaves the running count alone.
    await stream.xtrim(STREAM, maxlen=4, approximate=False)
    await add(stream, 2)
    before = await script_calls(stream)
    assert await lag.measure(await group_info(stream)) == 6
    assert await script_calls(stream) - before == 1  # the 2 added only


async def test_undelivered_entries_deleted_are_seen_at_the_next_recount(
    stream: aioredis.Redis,
) -> None:
    now = [0.0]
    ids = await add(stream, 10)
    lag = GroupLag(stream, STREAM, recount_s=60, clock=lambda: now[0])
    assert await lag.measure(await group_info(stream)) == 10
    await stream.xdel(STREAM, *ids[2:5])
    await read(stream, 1)
    assert await lag.measure(await group_info(stream)) == 9  # the running count misses it
    now[0] = 60.0
    assert await lag.measure(await group_info(stream)) == 6


async def test_redis_7_lag_is_used_as_it_is(stream: aioredis.Redis) -> None:
    await add(stream, 5)
    info = await group_info(stream)
    before = await script_calls(stream)
    assert await GroupLag(stream, STREAM).measure({**info, "lag": 42}) == 42
    assert await script_calls(stream) == before


async def test_a_nil_redis_7_lag_is_counted(stream: aioredis.Redis) -> None:
    await add(stream, 5)
    await read(stream, 2)
    assert await GroupLag(stream, STREAM).measure({**await group_info(stream), "lag": None}) == 3
