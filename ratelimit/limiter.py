"""The Limiter: leases of tokens over several buckets at once, retry-after sleeps and pacing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from redis.asyncio import Redis

from ratelimit import keys, metrics
from ratelimit.config import Rules, RulesError
from ratelimit.fallback import LocalBuckets
from ratelimit.model import Answer, BucketSpec
from ratelimit.redis import RedisUnavailableError, ScriptDriver

logger = logging.getLogger(__name__)

#: Shortest sleep after a refusal, so that a tiny retry-after never turns into polling.
MIN_RETRY_SECONDS = 0.001


def _new_replica_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class LimiterSettings:
    """How one process' limiter talks to Redis; built once by the process that owns it."""

    #: Longest one Redis call may take before Redis counts as unreachable (seconds).
    redis_timeout: float = 0.25
    #: While on the local fallback, how often a lease tries Redis again (seconds).
    probe_interval: float = 0.5
    #: How often this replica announces itself in the heartbeat set (seconds).
    heartbeat_interval: float = 1.0
    #: This replica's id in the heartbeat set.
    replica_id: str = field(default_factory=_new_replica_id)


class LeaseExhaustedError(RuntimeError):
    """Every token of a lease has been taken."""


class Lease:
    """Tokens granted together; `take()` spaces them evenly at the tightest bucket's rate."""

    def __init__(
        self, *, buckets: tuple[str, ...], granted: int, interval: float, start: float
    ) -> None:
        #: The buckets the tokens came from.
        self.buckets = buckets
        #: Tokens in this lease.
        self.granted = granted
        #: Seconds between two sends.
        self.interval = interval
        #: Event-loop time at which the first token may be used.
        self.start = start
        #: Tokens handed out so far.
        self.taken = 0

    @property
    def remaining(self) -> int:
        """Tokens not yet taken; unused ones are lost (under-sending, never over-sending)."""
        return self.granted - self.taken

    async def take(self) -> None:
        """Wait for the next token's slot, `interval` after the previous one's."""
        if self.taken >= self.granted:
            raise LeaseExhaustedError(f"all {self.granted} tokens of this lease are taken")
        due = self.start + self.taken * self.interval
        self.taken += 1
        delay = due - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def paced(self) -> AsyncIterator[int]:
        """Yield 0, 1, ... for each token, each at its slot."""
        while self.taken < self.granted:
            await self.take()
            yield self.taken - 1


class Limiter:
    """Hierarchical token buckets in Redis, with a local fallback when Redis is unreachable."""

    def __init__(
        self, driver: ScriptDriver, rules: Rules, *, settings: LimiterSettings | None = None
    ) -> None:
        self._driver = driver
        self._settings = settings or LimiterSettings()
        self._base_rules = rules
        self._rules = rules
        self._specs: dict[str, BucketSpec] = {}
        self._rules_version: int | None = None
        self._local = LocalBuckets()
        self._fallback_since: float | None = None
        self._next_probe = 0.0
        self._replicas: int | None = None
        self._debts: dict[str, float] = {}
        self._pipelines: dict[tuple[str, ...], asyncio.Lock] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    @classmethod
    def from_rules(
        cls,
        redis: Redis,
        rules: Rules | str | Path | None = None,
        *,
        settings: LimiterSettings | None = None,
    ) -> Limiter:
        """Build a limiter on `redis` from rules, a rules file path, or the built-in rules."""
        settings = settings or LimiterSettings()
        if rules is None:
            rules = Rules.default()
        elif not isinstance(rules, Rules):
            rules = Rules.load(rules)
        return cls(ScriptDriver(redis, timeout=settings.redis_timeout), rules, settings=settings)

    @property
    def rules(self) -> Rules:
        """The rules in force now (published in Redis, else those the limiter started with)."""
        return self._rules

    @property
    def in_fallback(self) -> bool:
        """Whether leases come from the local fallback buckets now."""
        return self._fallback_since is not None

    @property
    def replicas(self) -> int:
        """Replicas the fallback divides each rate by."""
        return self._replicas if self._replicas is not None else self._rules.fallback_replicas

    @property
    def driver(self) -> ScriptDriver:
        """The Redis driver."""
        return self._driver

    async def start(self) -> None:
        """Announce this replica and keep announcing it, so that every fallback knows its share."""
        if self._heartbeat is None:
            await self.refresh()
            self._heartbeat = asyncio.create_task(
                self._heartbeat_loop(), name="ratelimit-heartbeat"
            )

    async def close(self) -> None:
        """Stop announcing this replica and leave the heartbeat set."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
            with contextlib.suppress(RedisUnavailableError):
                await self._driver.leave(self._settings.replica_id)

    async def __aenter__(self) -> Limiter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def update_rules(self, rules: Rules) -> None:
        """Replace the rules the limiter started with (the file changed); next lease on."""
        self._base_rules = rules
        if not self._rules_version:
            self._set_rules(rules)

    async def lease(self, buckets: Sequence[str], n: int | None = None) -> Lease:
        """Take up to `n` tokens (default: the rules' lease size) from every bucket at once.

        Waits, sleeping on the script's retry-after hints, until the lease may start. The lease is
        at most the smallest capacity among the buckets. One lease request per bucket list is in
        flight per process; other callers for the same list queue behind it.
        """
        names = tuple(buckets)
        if not names:
            raise ValueError("a lease names at least one bucket")
        if n is not None and n < 1:
            raise ValueError(f"a lease is of at least 1 token, not {n}")
        loop = asyncio.get_running_loop()
        asked = loop.time()
        async with self._pipelines.setdefault(names, asyncio.Lock()):
            while True:
                specs = [self._spec(name) for name in names]
                want = min(n or self._rules.lease, *(s.capacity for s in specs))
                answer = await self._acquire(specs, want)
                if answer.granted:
                    break
                metrics.REFUSALS.labels(bucket=answer.limiting or names[0]).inc()
                await asyncio.sleep(max(answer.wait, MIN_RETRY_SECONDS))
            for spec in specs:
                metrics.TOKENS_GRANTED.labels(bucket=spec.name).inc(want)
            if answer.wait > 0:
                await asyncio.sleep(answer.wait)
        waited = loop.time() - asked
        for spec in specs:
            metrics.WAIT_SECONDS.labels(bucket=spec.name).observe(waited)
        pace = min(s.rate for s in specs)
        if answer.rules_version is None:
            pace /= self.replicas
        return Lease(buckets=names, granted=want, interval=1.0 / pace, start=loop.time())

    def _spec(self, name: str) -> BucketSpec:
        spec = self._specs.get(name)
        if spec is None:
            rule = self._rules.resolve(name)
            spec = BucketSpec(name, rule.rate, rule.capacity)
            self._specs[name] = spec
            metrics.RATE.labels(bucket=name).set(rule.rate)
            # Exported from the first lease on, so "not in fallback" is a 0, not a missing series.
            metrics.FALLBACK.labels(bucket=name).set(1 if self.in_fallback else 0)
        return spec

    async def _acquire(self, specs: Sequence[BucketSpec], n: int) -> Answer:
        loop = asyncio.get_running_loop()
        if self._fallback_since is None or loop.time() >= self._next_probe:
            if self._fallback_since is not None:
                # One probe per interval, however many callers are waiting: Redis may be slow.
                self._next_probe = loop.time() + self._settings.probe_interval
            # Owed to Redis: debts left from an earlier recovery, and what the fallback granted
            # since Redis last failed. Taken out while the call runs, so no two calls pay them.
            names = {s.name for s in specs}
            pending = {name: self._debts.pop(name) for name in names if name in self._debts}
            local = {k: v for k, v in self._local.owed().items() if k in names}
            debts = {name: pending.get(name, 0.0) + local.get(name, 0.0) for name in names}
            try:
                answer = await self._driver.acquire(
                    specs, n, max_wait=self._rules.max_wait, debts=debts
                )
            except RedisUnavailableError as exc:
                for name, tokens in pending.items():
                    self._debts[name] = self._debts.get(name, 0.0) + tokens
                self._enter_fallback(exc)
            else:
                if self._fallback_since is not None:
                    for name, tokens in self._leave_fallback().items():
                        left = tokens - local.get(name, 0.0)
                        if left > 0:
                            self._debts[name] = self._debts.get(name, 0.0) + left
                await self._check_rules(answer.rules_version)
                return answer
        for spec in specs:
            metrics.FALLBACK.labels(bucket=spec.name).set(1)
        return self._local.acquire(specs, n, max_wait=self._rules.max_wait, replicas=self.replicas)

    def _enter_fallback(self, exc: RedisUnavailableError) -> None:
        loop = asyncio.get_running_loop()
        self._local.redis_failed()
        self._next_probe = loop.time() + self._settings.probe_interval
        if self._fallback_since is None:
            self._fallback_since = loop.time()
            logger.warning(
                "rate limiter: Redis unreachable (%s); leasing from local fallback buckets at "
                "1/%d of each rate until it answers again",
                exc,
                self.replicas,
            )

    def _leave_fallback(self) -> dict[str, float]:
        """Back on Redis; return the tokens the fallback granted since Redis last failed."""
        since = self._fallback_since or 0.0
        self._fallback_since = None
        for name in self._local.buckets:
            metrics.FALLBACK.labels(bucket=name).set(0)
        logger.warning(
            "rate limiter: Redis answers again after %.1f s on the local fallback; "
            "back on the shared buckets",
            asyncio.get_running_loop().time() - since,
        )
        return self._local.drain()

    async def _check_rules(self, version: int | None) -> None:
        """Switch to the rules published in Redis when their version changed."""
        if version is None or version == self._rules_version:
            return
        if version == 0 and self._rules_version is None:
            self._rules_version = 0
            return
        try:
            text = await self._driver.published_rules()
        except RedisUnavailableError:
            return
        self._rules_version = version
        if text is None:
            logger.info("rate limiter: no published rules; using %s", self._base_rules.source)
            self._set_rules(self._base_rules)
            return
        try:
            rules = Rules.from_toml(text, source=f"published rules v{version}")
        except RulesError as exc:
            logger.error("rate limiter: ignoring invalid published rules: %s", exc)
            return
        logger.info("rate limiter: published rules v%d in force", version)
        self._set_rules(rules)

    def _set_rules(self, rules: Rules) -> None:
        self._rules = rules
        self._specs = {}

    async def refresh(self) -> None:
        """Heartbeat now: count the live replicas and pick up rules published since."""
        try:
            count, version = await self._driver.heartbeat(
                self._settings.replica_id, ttl=keys.REPLICA_TTL_SECONDS
            )
        except RedisUnavailableError as exc:
            logger.debug("rate limiter: heartbeat failed: %s", exc)
            return
        self._replicas = max(1, count)
        await self._check_rules(version)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_interval)
            await self.refresh()
