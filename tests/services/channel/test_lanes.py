"""Lanes: an emergency's recipients go before the tests queued ahead of it, whatever the stream
holds, and two entities' alerts in one lane take turns (the memory channel, against its peer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.channel import codec, keys
from services.channel.lanes import FairQueue
from services.channel.model import Entry, Job
from tests.services.channel import memory, work
from tests.services.sms.conftest import ServeHere, numbers

TEST = "1a7e0000-0000-4000-8000-000000000001"
EMERGENCY = "1a7e0000-0000-4000-8000-000000000002"
OTHER = "1a7e0000-0000-4000-8000-000000000003"
#: Deliveries at once: what may already be in hand when more urgent work arrives.
SENDERS = 4

StartMemory = Callable[..., Awaitable[memory.Peer]]


def job(rank: int, owner: str, address: str) -> Job:
    """A job of lane `rank` and `owner`."""
    return Job(Entry("1-0", owner, 1, 1e12, rank=rank, owner=owner), address, "peer", "x", "", 1)


def test_the_queue_serves_lanes_in_order_and_owners_in_turn() -> None:
    queue: FairQueue[Job] = FairQueue()
    queue.extend([job(2, "a", f"t{i}") for i in range(3)])
    queue.extend([job(1, "a", f"a{i}") for i in range(3)])
    queue.extend([job(1, "b", f"b{i}") for i in range(2)])
    queue.push(job(0, "c", "e0"))
    queue.push(job(1, "b", "b-again"), first=True)

    order = [queue.pop().address for _ in range(len(queue))]

    assert order == ["e0", "a0", "b-again", "a1", "b0", "a2", "b1", "t0", "t1", "t2"]
    with pytest.raises(IndexError):
        queue.pop()


def test_each_kind_has_its_lane_and_unnamed_work_the_least_urgent() -> None:
    assert [codec.priority_of(k) for k in codec.KINDS] == [
        codec.Priority.EMERGENCY,
        codec.Priority.GENERAL,
        codec.Priority.BULK,
        codec.Priority.BULK,
    ]
    assert keys.stream("sms") == keys.stream("sms", codec.Priority.BULK) == "tocsin:stream:sms"
    assert keys.stream("sms", codec.Priority.EMERGENCY) == "tocsin:stream:sms:emergency"


@pytest.fixture
async def start_memory(
    pg_dsn: str, redis_url: str, pg_pool: asyncpg.Pool, serve_here: ServeHere
) -> AsyncIterator[StartMemory]:
    """The memory channel served in this process, against a peer that takes `delay_s` each."""
    await pg_pool.execute(memory.TABLES_SQL)
    peers: list[memory.Peer] = []

    async def start(*, delay_s: float, **extra: Any) -> memory.Peer:
        peer = memory.Peer(delay_s=delay_s)
        await peer.start()
        peers.append(peer)
        settings = memory.Settings(
            database_url=pg_dsn,
            redis_url=redis_url,
            grpc_port=0,
            metrics_port=0,
            peer=f"127.0.0.1:{peer.port}",
            senders=SENDERS,
            shutdown_grace_s=1.0,
            log_level="WARNING",
            insecure_dev=True,
            **extra,
        )
        await serve_here("memory", settings, memory.build)
        return peer

    yield start
    for peer in peers:
        await peer.stop()


async def wait_taken(peer: memory.Peer, addresses: list[str], *, timeout: float = 60) -> None:
    """Wait until the peer took every one of `addresses`."""
    async with asyncio.timeout(timeout):
        await peer.wait_taken(addresses)


async def test_an_emergency_goes_before_the_test_messages_queued_ahead_of_it(
    start_memory: StartMemory, redis_client: aioredis.Redis
) -> None:
    tests, emergency = numbers(1000), numbers(50, start=10_000)
    # Most of the test alert stays in its stream: one stream read in turn would reach the
    # emergency's entry only once the test alert had gone.
    await work.add_work(
        redis_client, channel="memory", alert=TEST, to=tests, texts={"en": "t"}, per_entry=100
    )
    peer = await start_memory(delay_s=0.002, max_in_flight=200, read_count=1)
    await wait_taken(peer, tests[:20])

    await work.add_work(
        redis_client,
        channel="memory",
        alert=EMERGENCY,
        to=emergency,
        texts={"en": "e"},
        kind="emergency",
        per_entry=100,
    )
    await wait_taken(peer, emergency)

    urgent = set(emergency)
    positions = [i for i, a in enumerate(peer.order) if a in urgent]
    between = [a for a in peer.order[positions[0] : positions[-1]] if a not in urgent]
    after = len(tests) - sum(1 for a in peer.order[: positions[-1]] if a not in urgent)
    # Once the first emergency message left, only what senders already had in hand went in
    # between; most of the test alert waited.
    assert len(between) <= SENDERS
    assert after > len(tests) // 2
    await wait_taken(peer, tests)
    assert sum(peer.received.values()) == len(tests) + len(emergency)


async def test_two_entities_in_one_lane_take_turns(
    start_memory: StartMemory, redis_client: aioredis.Redis
) -> None:
    big, small = numbers(1000), numbers(50, start=10_000)
    await work.add_work(
        redis_client,
        channel="memory",
        alert=TEST,
        to=big,
        texts={"en": "a"},
        kind="general",
        entity="1",
    )
    peer = await start_memory(delay_s=0.002)
    await wait_taken(peer, big[:20])

    await work.add_work(
        redis_client,
        channel="memory",
        alert=OTHER,
        to=small,
        texts={"en": "b"},
        kind="general",
        entity="2",
    )
    await wait_taken(peer, small)

    second = set(small)
    positions = [i for i, a in enumerate(peer.order) if a in second]
    first_meanwhile = [a for a in peer.order[positions[0] : positions[-1]] if a not in second]
    # One of each in turn: about as many of the big alert as of the small one went meanwhile,
    # where one queue in arrival order would have sent the whole big alert first.
    assert len(first_meanwhile) <= len(small) + SENDERS
    assert len(peer.order) < len(big) + len(small)
