"""Catch-up bounded by the send window: a starved sender loses no token and no second holds more
than the rate. Driven on a clock of the test's own (deterministic, nothing timed)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.loadgen import warm
from bench.windows import busiest_window
from ratelimit import Lease, Limiter, LimiterSettings, Rules
from ratelimit.window import DEFAULT_MARGIN, SendLog, window_limit
from services.kernel.redis_client import connect as connect_redis
from tests.ratelimit.conftest import RestartableRedis

#: The national rate of the built-in rules, and the pace the headroom leaves (733.33/s).
RATE = 2_000_000 / 45 / 60
PACED = RATE * (1 - Rules.default().headroom)
LEASE = 50
WIDTH = 1.0 + DEFAULT_MARGIN
LIMIT = window_limit(RATE)


class StarvedLoop:
    """A clock and a sleep on it: each sleep ends late by the next of `delays` (the process was
    descheduled, the event loop ran something else), and `block` stalls the loop outright."""

    def __init__(self, delays: Iterator[float]) -> None:
        self.now = 0.0
        self._delays = delays

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds) + next(self._delays, 0.0)

    def block(self, seconds: float) -> None:
        self.now += seconds


async def _send_leases(
    loop: StarvedLoop, *, leases: int, stall_at: int | None = None, stall: float = 0.0
) -> tuple[list[float], list[Lease]]:
    """Send every token of `leases` back-to-back leases as a sender of one bucket does (one log
    for all of them); the loop stalls for `stall` seconds before token `stall_at`."""
    log = SendLog(WIDTH)
    interval = 1 / PACED
    sent: list[float] = []
    done: list[Lease] = []
    for k in range(leases):
        lease = Lease(
            buckets=("sms:global",),
            granted=LEASE,
            interval=interval,
            start=k * LEASE * interval,
            windows=[(log, LIMIT)],
            clock=loop.clock,
            sleep=loop.sleep,
        )
        while lease.remaining:
            if len(sent) == stall_at:
                loop.block(stall)
            assert await lease.take()
            slot = lease.taken - 1
            # Never before its slot: caught up late, never sent early.
            assert loop.now >= lease.start + slot * interval - 1e-9
            sent.append(loop.now)
        done.append(lease)
    return sent, done


def test_the_window_limit_is_whole_messages_at_the_configured_rate() -> None:
    assert LIMIT == 740
    assert window_limit(740.0) == 740
    assert window_limit(0.5) == 1
    assert window_limit(100.0, burst=25.0) == 125


def test_a_send_log_allows_a_send_only_while_its_window_holds_fewer_than_the_limit() -> None:
    log = SendLog(1.0)
    for t in (0.0, 0.1, 0.2):
        assert log.free_at(t, 3) == t
        log.record(t)
    # A fourth send must wait until the first leaves the window (0.0, 1.0].
    assert log.free_at(0.5, 3) == 1.0
    assert log.free_at(1.0, 3) == 1.0
    log.record(1.0)
    assert log.free_at(1.0, 3) == 1.1
    assert busiest_window([0.0, 0.1, 0.2, 1.0], 1.0) == 3


async def test_an_event_loop_blocked_for_300_ms_catches_up_without_a_second_over_the_rate() -> None:
    loop = StarvedLoop(iter(()))
    # Ten leases (about 0.68 s) on time, then the loop stalls 300 ms, then 30 more leases.
    sent, leases = await _send_leases(loop, leases=40, stall_at=10 * LEASE, stall=0.3)
    # Nothing is forfeited: every token goes out.
    assert len(sent) == 40 * LEASE
    assert sum(lease.forfeited for lease in leases) == 0
    # The 220 tokens whose slots passed in the stall leave as soon as it ends, not a second later.
    after = [t for t in sent if t >= sent[10 * LEASE]]
    assert sum(1 for t in after if t == after[0]) >= 200
    assert sum(lease.caught_up for lease in leases) >= 220
    # And no window of one second (nor of the margin's 1.005 s) holds more than floor(rate).
    assert busiest_window(sent, WIDTH) <= LIMIT
    assert busiest_window(sent, 1.0) <= LIMIT
    # Everything sent by the time the slots end plus the stall: the backlog drained.
    last_slot = (40 * LEASE - 1) / PACED
    assert sent[-1] <= last_slot + 0.3


async def test_without_starvation_every_token_leaves_at_its_slot() -> None:
    loop = StarvedLoop(iter(()))
    sent, leases = await _send_leases(loop, leases=30)
    assert sent == pytest.approx([i / PACED for i in range(30 * LEASE)], abs=1e-9)
    assert sum(lease.caught_up for lease in leases) == 0
    # 733.33/s: 737 or 738 tokens in any 1.005 s, below 740: the window never binds.
    assert busiest_window(sent, WIDTH) <= math.floor(PACED * WIDTH) + 1 < LIMIT


@settings(max_examples=60, deadline=None)
@given(
    delays=st.lists(
        st.one_of(
            st.just(0.0),
            st.floats(min_value=0.0, max_value=0.02),  # descheduled for a time slice
            st.floats(min_value=0.0, max_value=0.4),  # a long stall
        ),
        min_size=1,
        max_size=400,
    ),
    stall_at=st.integers(min_value=0, max_value=30 * LEASE),
    stall=st.floats(min_value=0.0, max_value=1.5),
)
async def test_under_any_starvation_nothing_is_lost_and_no_window_is_over_the_rate(
    delays: list[float], stall_at: int, stall: float
) -> None:
    loop = StarvedLoop(iter(delays))
    sent, leases = await _send_leases(loop, leases=30, stall_at=stall_at, stall=stall)
    assert len(sent) == 30 * LEASE
    assert sum(lease.forfeited for lease in leases) == 0
    assert busiest_window(sent, WIDTH) <= LIMIT
    # Caught up as soon as the window allows: never later than every delay added up, and the
    # window's own slack (740 - 737 per 1.005 s) lets nothing lag for ever.
    assert sent[-1] <= (30 * LEASE - 1) / PACED + sum(delays) + stall + 1e-6


async def test_concurrent_senders_never_overfill_the_window() -> None:
    # Sixty senders share a lease whose slots all passed while the loop was blocked: the window
    # alone decides, with no await between its last look and the send's record.
    log = SendLog(1.0)
    for i in range(8):
        log.record(i * 0.1)
    loop = StarvedLoop(iter(()))
    loop.now = 0.75
    lease = Lease(
        buckets=("b",),
        granted=60,
        interval=0.001,
        start=0.0,
        windows=[(log, 10)],
        clock=loop.clock,
        sleep=loop.sleep,
    )
    sent: list[float] = []

    async def sender() -> None:
        if await lease.take():
            sent.append(loop.now)

    await asyncio.gather(*(sender() for _ in range(60)))
    assert len(sent) == 60
    assert busiest_window([i * 0.1 for i in range(8)] + sent, 1.0) <= 10


def _catch_up_rules() -> Rules:
    return Rules.from_toml(
        """
lease = 10
[bucket."g"]
rate = 200
capacity = 10
"""
    )


async def test_a_lone_started_limiter_catches_up_a_blocked_loop(
    redis_client: aioredis.Redis,
) -> None:
    await warm(redis_client)
    async with Limiter.from_rules(redis_client, _catch_up_rules()) as limiter:
        assert limiter.replicas == 1
        lease = await limiter.lease(["g"])
        assert lease.slack == math.inf
        assert await lease.take()
        waiter = asyncio.create_task(lease.take())
        await asyncio.sleep(0)
        time.sleep(0.03)  # noqa: ASYNC251 - the point: the event loop is busy while slots pass
        assert await waiter
        while lease.remaining:
            assert await lease.take()
        # The slots that passed in the block were sent late, none forfeited.
        assert lease.forfeited == 0
        assert lease.caught_up >= 1


async def test_with_a_second_replica_late_slots_are_forfeited_again(
    redis_client: aioredis.Redis,
) -> None:
    await warm(redis_client)
    rules = _catch_up_rules()
    async with (
        Limiter.from_rules(redis_client, rules) as first,
        Limiter.from_rules(redis_client, rules) as second,
    ):
        await first.refresh()
        # Each window counts its own process' sends: another replica's would come on top.
        assert first.replicas == second.replicas == 2
        lease = await first.lease(["g"])
        assert lease.slack == LimiterSettings().slot_tolerance
    # Catch-up can also be turned off outright.
    async with Limiter.from_rules(
        redis_client, rules, settings=LimiterSettings(catch_up=False)
    ) as alone:
        assert (await alone.lease(["g"])).slack == LimiterSettings().slot_tolerance


async def test_limiters_of_another_service_on_the_same_redis_are_not_counted_as_replicas(
    redis_client: aioredis.Redis,
) -> None:
    await warm(redis_client)
    rules = _catch_up_rules()
    async with (
        Limiter.from_rules(
            redis_client, rules, settings=LimiterSettings(replica_group="sms")
        ) as sms,
        Limiter.from_rules(
            redis_client, rules, settings=LimiterSettings(replica_group="voice")
        ) as voice,
    ):
        await sms.refresh()
        await voice.refresh()
        # Voice's calls-per-second buckets are not SMS's: each is alone in its group.
        assert sms.replicas == voice.replicas == 1
        assert (await sms.lease(["g"])).slack == math.inf
        async with Limiter.from_rules(
            redis_client, rules, settings=LimiterSettings(replica_group="sms")
        ) as second_sms:
            await sms.refresh()
            assert sms.replicas == second_sms.replicas == 2
            assert voice.replicas == 1


async def test_on_the_fallback_a_lone_replica_still_catches_up_and_an_unknown_one_does_not(
    restartable_redis: RestartableRedis,
) -> None:
    client = connect_redis(restartable_redis.url, socket_connect_timeout=0.2)
    settings = LimiterSettings(redis_timeout=0.2, probe_interval=60.0)
    rules = _catch_up_rules()
    try:
        async with Limiter.from_rules(client, rules, settings=settings) as limiter:
            assert limiter.replicas == 1
            restartable_redis.stop()
            lease = await limiter.lease(["g"])
            # Alone before Redis went away: its fallback share is the whole rate, its window
            # sees every send of the bucket.
            assert limiter.in_fallback
            assert lease.slack == math.inf
        # A limiter that never reached Redis assumes the rules' four replicas: no catch-up.
        async with Limiter.from_rules(client, rules, settings=settings) as stranger:
            lease = await stranger.lease(["g"])
            assert stranger.in_fallback
            assert lease.slack == settings.slot_tolerance
    finally:
        await client.aclose()


async def test_callers_held_back_by_a_full_window_queue_instead_of_waking_at_each_send() -> None:
    # A short window (50 ms, five sends) already full, and twenty callers of a lease whose slots
    # all passed: each send the window lets through wakes one caller, not all those waiting.
    log = SendLog(0.05)
    now = time.monotonic()
    earlier = [now - 0.04 + i * 0.01 for i in range(5)]  # leaving the window one by one
    for t in earlier:
        log.record(t)
    sleeps = 0

    async def counted(seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        await asyncio.sleep(seconds)

    lease = Lease(
        buckets=("b",),
        granted=20,
        interval=0.0001,
        start=now - 1.0,
        windows=[(log, 5)],
        sleep=counted,
    )
    sent: list[float] = []

    async def sender() -> None:
        assert await lease.take()
        sent.append(time.monotonic())

    await asyncio.wait_for(asyncio.gather(*(sender() for _ in range(20))), timeout=30)
    assert len(sent) == 20
    assert lease.caught_up == 20
    # One sleep per send (or early wake-up), not one per waiting caller per send (about 200).
    assert sleeps <= 3 * 20
    assert busiest_window(earlier + sent, 0.05) <= 5


def _shared_window_run(*, shared_gate: bool, seconds: float = 2.0) -> tuple[int, int]:
    """The most sends that went out while one `take()` waited, over every take of a run where
    three operators' pacers (16 senders each, a new lease of 50 whenever the last is claimed)
    send faster than the window they share lets through, as a campaign does once its senders
    have fallen behind; and the busiest window of the times the takes returned (the sends).
    Real time, on uvloop as the services run."""
    import uvloop

    rate, limit, pacers, senders, lease_size = 740.0, 600, 3, 16, 50

    async def run() -> tuple[int, int]:
        log = SendLog(WIDTH)
        gate = asyncio.Lock() if shared_gate else None
        t0 = time.monotonic()
        end = t0 + seconds
        sent, worst = 0, 0
        times: list[float] = []
        current: dict[int, Lease] = {}
        made = [0] * pacers

        def lease_of(k: int) -> Lease:
            lease = current.get(k)
            if lease is None or lease.remaining <= 0:
                start = t0 + (pacers * made[k] + k) * lease_size / rate  # tiled, as Redis does
                lease = current[k] = Lease(
                    buckets=("sms:global", f"sms:op:{k}"),
                    granted=lease_size,
                    interval=1 / rate,
                    start=max(start, time.monotonic()),
                    windows=[(log, limit)],
                    gate=gate,
                )
                made[k] += 1
            return lease

        async def sender(k: int) -> None:
            nonlocal sent, worst
            while time.monotonic() < end:
                before = sent
                if await lease_of(k).take():
                    times.append(time.monotonic())
                    worst = max(worst, sent - before)
                    sent += 1

        await asyncio.gather(*(sender(k) for k in range(pacers) for _ in range(senders)))
        return worst, busiest_window(times, WIDTH)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run())


def test_tokens_of_every_lease_wait_their_turn_for_a_shared_window() -> None:
    overtaken, busiest = _shared_window_run(shared_gate=True)
    # With a gate per lease, the waiters of every live lease raced for each freed place and a
    # token was overtaken by up to 500 sends in these two seconds (140 to 500 from run to run
    # on the shared machine, growing with the run); queued in the order they came, by about
    # the senders waiting before it (115 here, every run).
    assert overtaken <= 3 * 16 * 2 + 50
    # The window holds (one send of slack: the time is read as the take returns, a moment
    # after the limiter recorded it).
    assert busiest <= 600 + 1
