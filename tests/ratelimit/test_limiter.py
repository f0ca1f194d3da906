"""The Limiter on the real Redis: lease size, pacing, retry-after, rules changed at run time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from bench.loadgen import warm
from ratelimit import (
    LeaseExhaustedError,
    Limiter,
    Rules,
    RulesError,
    RulesFileWatcher,
    UnknownBucketError,
    keys,
    publish_rules,
    withdraw_rules,
)
from ratelimit.config import DEFAULT_HEADROOM

RULES = """
lease = 20
max_wait = 1.0
[bucket."sms:global"]
rate = 100
capacity = 40
[bucket."sms:op:*"]
parent = "sms:global"
share = 0.5
capacity = 30
[bucket."sms:bind:*"]
rate = 1000
capacity = 100
"""
BUCKETS = ["sms:global", "sms:op:orange", "sms:bind:orange:1"]
#: The share of each configured rate the limiter paces at (the default headroom kept free).
PACED = 1 - DEFAULT_HEADROOM


def _sample(name: str, bucket: str) -> float:
    return REGISTRY.get_sample_value(name, {"bucket": bucket}) or 0.0


@pytest.fixture
async def limiter(redis_client: aioredis.Redis) -> Limiter:
    await warm(redis_client)
    return Limiter.from_rules(redis_client, Rules.from_toml(RULES))


async def test_a_lease_is_at_most_the_smallest_capacity(limiter: Limiter) -> None:
    assert (await limiter.lease(BUCKETS)).granted == 20
    assert (await limiter.lease(BUCKETS, 500)).granted == 30


async def test_sends_in_a_lease_are_spaced_at_the_tightest_rate(limiter: Limiter) -> None:
    lease = await limiter.lease(BUCKETS, 10)
    # The operator bucket (half of 100/s) is the tightest: one send every 20 ms, less the headroom.
    assert lease.interval == pytest.approx(1 / (50 * PACED))
    loop = asyncio.get_running_loop()
    times = [loop.time() async for _ in lease.paced()]
    assert len(times) == 10
    for i, t in enumerate(times):
        assert t >= lease.start + i * lease.interval - 1e-3
    with pytest.raises(LeaseExhaustedError):
        await lease.take()


async def test_a_throttled_caller_sleeps_on_retry_after_instead_of_polling(
    redis_client: aioredis.Redis,
) -> None:
    await warm(redis_client)
    rules = Rules.from_toml('max_wait = 0.05\n[bucket."b"]\nrate = 100\ncapacity = 10\n')
    limiter = Limiter.from_rules(redis_client, rules)
    refusals = _sample("tocsin_ratelimit_refusals_total", "b")
    await limiter.lease(["b"], 10)
    # The next ten tokens are 100 ms away, beyond the 50 ms a lease may be reserved ahead: one
    # refusal with a retry-after hint, one sleep, then a lease reserved ahead.
    await limiter.lease(["b"], 10)
    assert limiter.driver.acquire_calls == 3
    assert _sample("tocsin_ratelimit_refusals_total", "b") == refusals + 1


async def test_callers_of_one_process_queue_for_the_same_buckets(limiter: Limiter) -> None:
    leases = await asyncio.gather(*(limiter.lease(BUCKETS, 20) for _ in range(5)))
    assert [lease.granted for lease in leases] == [20] * 5
    assert limiter.driver.acquire_calls == 5
    starts = sorted(lease.start for lease in leases)
    # 100 tokens through a 50/s operator bucket holding 30: the last lease starts >= 1.4 s later.
    assert starts[-1] - starts[0] >= (100 - 30) / 50 - 0.05


async def test_metrics_count_granted_tokens_and_show_rates(limiter: Limiter) -> None:
    before = _sample("tocsin_ratelimit_tokens_granted_total", "sms:op:orange")
    waits = _sample("tocsin_ratelimit_wait_seconds_count", "sms:bind:orange:1")
    await limiter.lease(BUCKETS, 7)
    assert _sample("tocsin_ratelimit_tokens_granted_total", "sms:op:orange") == before + 7
    assert _sample("tocsin_ratelimit_wait_seconds_count", "sms:bind:orange:1") == waits + 1
    assert _sample("tocsin_ratelimit_rate_per_second", "sms:op:orange") == 50
    assert REGISTRY.get_sample_value("tocsin_ratelimit_redis_calls_total", {"result": "ok"})


async def test_an_unknown_bucket_is_an_error(limiter: Limiter) -> None:
    with pytest.raises(UnknownBucketError, match="sms:other"):
        await limiter.lease(["sms:other"])


async def test_published_rules_apply_from_the_next_lease(
    limiter: Limiter, redis_client: aioredis.Redis
) -> None:
    await limiter.lease(BUCKETS, 1)
    lowered = RULES.replace("share = 0.5", "share = 0.1")
    await publish_rules(redis_client, lowered)
    await limiter.lease(BUCKETS, 1)  # granted under the old rules; sees the new version
    assert limiter.rules.resolve("sms:op:orange").rate == pytest.approx(10)
    lease = await limiter.lease(BUCKETS, 1)
    assert lease.interval == pytest.approx(1 / (10 * PACED))
    assert _sample("tocsin_ratelimit_rate_per_second", "sms:op:orange") == pytest.approx(10)

    await withdraw_rules(redis_client)
    await limiter.lease(BUCKETS, 1)
    assert limiter.rules.resolve("sms:op:orange").rate == pytest.approx(50)


async def test_an_idle_replica_learns_published_rules_from_its_heartbeat(
    limiter: Limiter, redis_client: aioredis.Redis
) -> None:
    async with limiter:
        await publish_rules(redis_client, RULES.replace("rate = 100", "rate = 60"))
        await limiter.refresh()
        assert limiter.rules.resolve("sms:global").rate == 60
        assert limiter.replicas == 1


async def test_invalid_rules_are_never_published(redis_client: aioredis.Redis) -> None:
    with pytest.raises(RulesError):
        await publish_rules(redis_client, '[bucket."b"]\nrate = 0\ncapacity = 1\n')
    assert await redis_client.get(keys.RULES) is None


async def test_rules_replaced_in_process_apply_from_the_next_lease(limiter: Limiter) -> None:
    limiter.update_rules(Rules.from_toml(RULES.replace("capacity = 30", "capacity = 5")))
    assert (await limiter.lease(BUCKETS, 50)).granted == 5


async def test_a_changed_rules_file_applies_from_the_next_lease(
    limiter: Limiter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    watcher = RulesFileWatcher(limiter, path)
    assert not await watcher.check()
    path.write_text(RULES.replace("share = 0.5", "share = 0.2"))
    assert await watcher.check()
    assert (await limiter.lease(BUCKETS, 1)).interval == pytest.approx(1 / (20 * PACED))
    # A broken edit is refused with one error naming rule and field; the last good rules stay.
    path.write_text(RULES.replace("share = 0.5", "share = 5"))
    assert not await watcher.check()
    assert limiter.rules.resolve("sms:op:orange").rate == pytest.approx(20)
    assert "rule 'sms:op:*', field 'share'" in caplog.text


async def test_fallback_is_exported_as_zero_while_redis_answers(limiter: Limiter) -> None:
    bucket = "sms:op:healthy"
    await limiter.lease(["sms:global", bucket], 1)
    assert not limiter.in_fallback
    assert REGISTRY.get_sample_value("tocsin_ratelimit_fallback", {"bucket": bucket}) == 0.0
