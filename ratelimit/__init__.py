"""Distributed token-bucket rate limiter: one wiring point.

    limiter = Limiter.from_rules(redis, "rules.toml")
    async with limiter:
        lease = await limiter.lease(["sms:global", "sms:op:proximus", "sms:bind:proximus:1"])
        async for _ in lease.paced():
            ...  # one send per token, evenly spaced

docs/ratelimit.md describes the rules file, the Redis script and the fallback.
"""

from ratelimit.config import Rule, Rules, RulesError, UnknownBucketError
from ratelimit.limiter import Lease, LeaseExhaustedError, Limiter, LimiterSettings
from ratelimit.redis import RedisUnavailableError, ScriptDriver, publish_rules, withdraw_rules
from ratelimit.watch import RulesFileWatcher

__all__ = [
    "Lease",
    "LeaseExhaustedError",
    "Limiter",
    "LimiterSettings",
    "RedisUnavailableError",
    "Rule",
    "Rules",
    "RulesError",
    "RulesFileWatcher",
    "ScriptDriver",
    "UnknownBucketError",
    "publish_rules",
    "withdraw_rules",
]
