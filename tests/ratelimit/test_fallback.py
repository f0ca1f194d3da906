"""The local fallback: a conservative share of each bucket while Redis cannot be reached."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from ratelimit import Limiter, LimiterSettings, Rules
from ratelimit.config import DEFAULT_HEADROOM
from ratelimit.fallback import LocalBuckets
from ratelimit.model import BucketSpec
from stack.embedded import free_port

SPEC = BucketSpec("b", rate=100.0, capacity=40)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_local_bucket_starts_empty_at_its_share_of_the_rate() -> None:
    clock = FakeClock()
    local = LocalBuckets(clock=clock)
    first = local.acquire([SPEC], 10, max_wait=1.0, replicas=4)
    # 25/s for this replica, nothing in hand: ten tokens are 0.4 s away.
    assert first.granted
    assert first.wait == pytest.approx(0.4)
    refused = local.acquire([SPEC], 10, max_wait=0.5, replicas=4)
    assert not refused.granted
    assert refused.wait == pytest.approx(0.3)
    clock.now += 100
    # A long pause fills it to its share of the capacity (10 of 40), never more.
    assert local.acquire([SPEC], 10, max_wait=0.0, replicas=4).wait == 0.0
    assert not local.acquire([SPEC], 1, max_wait=0.0, replicas=4).granted


def test_grants_are_owed_to_redis_only_since_its_last_failure() -> None:
    local = LocalBuckets(clock=FakeClock())
    local.acquire([SPEC], 5, max_wait=10.0, replicas=1)
    local.redis_failed()
    local.acquire([SPEC], 7, max_wait=10.0, replicas=1)
    assert local.owed() == {"b": 7}
    assert local.drain() == {"b": 7}
    assert local.owed() == {}
    assert local.buckets == set()


async def test_without_redis_leases_continue_from_the_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens on this loopback port: every Redis call fails at once.
    client = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    rules = Rules.from_toml('[fallback]\nreplicas = 4\n[bucket."b"]\nrate = 100\ncapacity = 40\n')
    settings = LimiterSettings(redis_timeout=0.2, probe_interval=60.0)
    try:
        async with Limiter.from_rules(client, rules, settings=settings) as limiter:
            lease = await limiter.lease(["b"], 5)
            assert limiter.in_fallback
            assert lease.granted == 5
            # Never reached Redis: the rules' assumed four replicas, 25/s each (less the headroom).
            assert lease.interval == pytest.approx(1 / (25 * (1 - DEFAULT_HEADROOM)))
            assert REGISTRY.get_sample_value("tocsin_ratelimit_fallback", {"bucket": "b"}) == 1
            errors = REGISTRY.get_sample_value(
                "tocsin_ratelimit_redis_calls_total", {"result": "error"}
            )
            await limiter.lease(["b"], 5)
            # Redis is tried again only after the probe interval, not on every lease.
            assert (
                REGISTRY.get_sample_value("tocsin_ratelimit_redis_calls_total", {"result": "error"})
                == errors
            )
    finally:
        await client.aclose()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "local fallback" in warnings[0].getMessage()


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=0.5), st.integers(min_value=1, max_value=40)),
        min_size=1,
        max_size=60,
    ),
    max_wait=st.floats(min_value=0.0, max_value=2.0),
)
def test_leases_never_start_faster_than_rate_plus_capacity(
    steps: list[tuple[float, int]], max_wait: float
) -> None:
    clock = FakeClock()
    local = LocalBuckets(clock=clock)
    starts: list[tuple[float, int]] = []
    for pause, n in steps:
        clock.now += pause
        answer = local.acquire([SPEC], n, max_wait=max_wait, replicas=1)
        if answer.granted:
            starts.append((clock.now + answer.wait, n))
    starts.sort()
    # Tokens of leases starting within any [a, b] fit in a full bucket plus the refill meanwhile.
    for i, (a, _) in enumerate(starts):
        for b, _ in starts[i:]:
            tokens = sum(n for s, n in starts if a <= s <= b)
            assert tokens <= SPEC.capacity + SPEC.rate * (b - a) + 1e-6
