"""The Limiter: leases of tokens over several buckets at once, retry-after sleeps and pacing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from prometheus_client import Counter
from redis.asyncio import Redis

from ratelimit import keys, metrics
from ratelimit.clock import RedisClock
from ratelimit.config import Rules, RulesError
from ratelimit.fallback import LocalBuckets
from ratelimit.model import Answer, BucketSpec
from ratelimit.redis import RedisUnavailableError, ScriptDriver
from ratelimit.window import DEFAULT_MARGIN, SendLog, window_limit

logger = logging.getLogger(__name__)

#: Shortest sleep after a refusal, so that a tiny retry-after never turns into polling.
MIN_RETRY_SECONDS = 0.001

#: A sleep that ends more than this before its slot sleeps again. uvloop rounds a delay to whole
#: milliseconds from a time read at the start of its loop iteration, so it often wakes up to a
#: millisecond early; a shorter remainder would round to no sleep at all and spin.
EARLY_WAKE_SECONDS = 0.0005

#: A token sent more than this after its slot counts as caught up (Lease.caught_up).
SLOT_LATE_SECONDS = 0.002

#: The clock of lease slots: CLOCK_MONOTONIC, which asyncio's loop.time() reads too. Read here
#: rather than through the loop because uvloop's loop.time() only has millisecond resolution.
_clock = time.monotonic


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
    #: The group whose live replicas share this limiter's buckets (the service's name): the
    #: fallback's share and the catch-up rule count only these (keys.replicas_key).
    replica_group: str = ""
    #: Whether a sender late for its slots sends the overdue tokens as soon as every bucket's
    #: send window allows (True), or forfeits slots more than `slot_tolerance` past (False).
    catch_up: bool = True
    #: Seconds a send window spans beyond one second: the jitter between a send recorded here and
    #: its count at the SMSC that a full window still tolerates (docs/ratelimit.md).
    window_margin: float = DEFAULT_MARGIN
    #: Without catch-up: seconds a token's slot may already be past and the token still be sent;
    #: a later one is forfeited (when the buckets' capacity exceeds the lease, the burst it
    #: allows is added).
    slot_tolerance: float = 0.002


class LeaseExhaustedError(RuntimeError):
    """Every token of a lease has been taken."""


class Lease:
    """Tokens granted together; `take()` hands them out evenly spaced at the tightest bucket's rate.

    Token `i` has the slot `start + i * interval`, and is sent at its slot or, when the sender is
    late, as soon as each send window in `windows` (a bucket's `SendLog` and the most sends it may
    hold) allows: overdue tokens are caught up without any window holding more than its limit. A
    slot already more than `slack` seconds in the past when a caller reaches it is forfeited:
    skipped and counted, never sent (`slack` is unbounded when the limiter catches up).
    `clock` and `sleep` are the process' (time.monotonic, asyncio.sleep) unless a test drives the
    lease on a clock of its own.
    """

    def __init__(
        self,
        *,
        buckets: tuple[str, ...],
        granted: int,
        interval: float,
        start: float,
        slack: float = math.inf,
        forfeit_counters: Sequence[Counter] = (),
        windows: Sequence[tuple[SendLog, int]] = (),
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        gate: asyncio.Lock | None = None,
    ) -> None:
        #: The buckets the tokens came from.
        self.buckets = buckets
        #: Tokens in this lease.
        self.granted = granted
        #: Seconds between two sends.
        self.interval = interval
        #: Time (`time.monotonic()`, the event loop's clock) of the first token's slot.
        self.start = start
        #: Seconds a slot may be in the past and still be used; later ones are forfeited.
        self.slack = slack
        #: Slots handed out or forfeited so far.
        self.taken = 0
        #: Slots forfeited because nobody took them in time.
        self.forfeited = 0
        #: Tokens sent more than SLOT_LATE_SECONDS after their slot: caught up, not forfeited.
        self.caught_up = 0
        self._counters = tuple(forfeit_counters)
        self._windows = tuple(windows)
        #: Taken by whoever waits for the send windows. `Limiter` gives every lease it hands out
        #: the same one, since they share the windows: waiters then go in the order they came.
        #: With a gate per lease, each lease had one waiter at the windows and those of all the
        #: live leases raced for every freed place, so a lease's queued tokens got a share of
        #: the window that shrank with the number of leases racing (a campaign's stragglers
        #: left 10-40 s after the others).
        self._gate = gate or asyncio.Lock()
        self._clock = clock or _clock
        self._sleep = sleep or asyncio.sleep

    @property
    def remaining(self) -> int:
        """Tokens not yet taken; unused ones are lost (under-sending, never over-sending)."""
        return self.granted - self.taken

    async def take(self) -> bool:
        """Wait for the next usable slot: True when one token may be sent now.

        False when the lease ran out because its last slots were forfeited (nothing may be sent;
        ask for a new lease). Raises LeaseExhaustedError when called with no slot left.
        """
        return await self._take() is not None

    async def paced(self) -> AsyncIterator[int]:
        """Yield the index of each slot used (forfeited ones are skipped), each at its slot."""
        while self.taken < self.granted:
            slot = await self._take()
            if slot is not None:
                yield slot

    async def _take(self) -> int | None:
        if self.taken >= self.granted:
            raise LeaseExhaustedError(f"all {self.granted} tokens of this lease are taken")
        clock, sleep = self._clock, self._sleep
        while self.taken < self.granted:
            now = clock()
            if now - (self.start + self.taken * self.interval) > self.slack:
                # Every slot already past the slack is forfeited at once, however many there are.
                usable = math.ceil((now - self.slack - self.start) / self.interval)
                skipped = max(1, min(usable, self.granted) - self.taken)
                self.taken += skipped
                self._forfeit(skipped)
                continue
            # Claimed before sleeping, so that concurrent callers each wait for a slot of their own.
            slot = self.taken
            self.taken += 1
            due = self.start + slot * self.interval
            if due > now:
                await sleep(due - now)
                now = clock()
                while due - now > EARLY_WAKE_SECONDS:  # woke early (uvloop): sleep the rest
                    await sleep(due - now)
                    now = clock()
            if self._windows:
                # One caller at a time waits for the windows, in the order they came: the others
                # queue without waking up at every send that a full window lets through.
                async with self._gate:
                    # The clock read again: a send recorded at a time before the wait for the
                    # gate would leave the window early and let one too many through later.
                    now = await self._window_open(clock())
                    if now - due <= self.slack:
                        self._send(now, due)
                        return slot
            elif now - due <= self.slack:
                self._send(now, due)
                return slot
            self._forfeit(1)  # woke too late (the event loop was busy): this slot is lost too
        return None

    async def _window_open(self, now: float) -> float:
        """Wait until one more send fits every send window; return the time it does.

        No await lies between the last look and the caller's record, so concurrent callers
        never overfill a window; a wake-up even slightly early looks again.
        """
        windows = self._windows
        while True:
            at = max(log.free_at(now, limit) for log, limit in windows)
            if at <= now:
                return now
            await self._sleep(at - now)
            now = self._clock()

    def _send(self, now: float, due: float) -> None:
        if now - due > SLOT_LATE_SECONDS:
            self.caught_up += 1
        for log, _ in self._windows:
            log.record(now)

    def _forfeit(self, tokens: int) -> None:
        self.forfeited += tokens
        for counter in self._counters:
            counter.inc(tokens)


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
        #: bucket -> clock time at which the last lease of this process on it is paced out.
        self._paced_until: dict[str, float] = {}
        #: bucket -> the sends of this process on it over the last window (what catch-up may use).
        self._sent: dict[str, SendLog] = {}
        #: bucket -> its configured rate (before the headroom) under the rules in force.
        self._configured: dict[str, float] = {}
        self._redis_clock = RedisClock()
        self._heartbeat: asyncio.Task[None] | None = None
        #: The one queue for the send windows of every lease this limiter hands out.
        self._window_gate = asyncio.Lock()

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
                await self._driver.leave(
                    self._settings.replica_id, group=self._settings.replica_group
                )

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
        asked = _clock()
        async with self._pipelines.setdefault(names, asyncio.Lock()):
            while True:
                specs = [self._spec(name) for name in names]
                want = min(n or self._rules.lease, *(s.capacity for s in specs))
                called = _clock()
                answer = await self._acquire(specs, want)
                read = _clock()
                if answer.clock is not None:
                    self._redis_clock.observe(answer.clock, called, read)
                if answer.granted:
                    break
                metrics.REFUSALS.labels(bucket=answer.limiting or names[0]).inc()
                await asyncio.sleep(max(answer.wait, MIN_RETRY_SECONDS))
            for spec in specs:
                metrics.TOKENS_GRANTED.labels(bucket=spec.name).inc(want)
            # Redis' wait counts from the moment the script ran, on Redis' clock: mapped to this
            # process' clock, neither a slow call nor a reply read late shifts the lease. The
            # fallback answers on this process' clock, as the call returns, at a share of the rates
            # and capacities.
            if answer.clock is None:
                share, anchor = self.replicas, read
            else:
                share, anchor = 1, self._redis_clock.local(answer.clock)
            start, slack = self._tile(specs, want, anchor + answer.wait, share)
            delay = start - _clock()
            if delay > 0:
                await asyncio.sleep(delay)
        waited = _clock() - asked
        for spec in specs:
            metrics.WAIT_SECONDS.labels(bucket=spec.name).observe(waited)
        return Lease(
            buckets=names,
            granted=want,
            interval=share / min(s.rate for s in specs),
            start=start,
            slack=slack,
            forfeit_counters=[metrics.TOKENS_FORFEITED.labels(bucket=name) for name in names],
            windows=self._windows(specs, want, share),
            gate=self._window_gate,
        )

    def _windows(
        self, specs: Sequence[BucketSpec], n: int, share: int
    ) -> list[tuple[SendLog, int]]:
        """Each bucket's send log and the most sends one window of it may hold: floor(rate) at
        the configured rate (a share of it on the fallback), plus the burst the rules allow.

        No window for a bucket whose burst holds the whole lease (wide-open rules): catching up
        could not send more at once than the rules allow, and a log of a huge rate would be large.
        """
        width = 1.0 + self._settings.window_margin
        found = []
        for spec in specs:
            capacity = spec.capacity / share
            burst = max(0.0, capacity - max(n, min(capacity, self._rules.lease)))
            if burst >= n:
                continue
            log = self._sent.get(spec.name)
            if log is None or log.width != width:
                log = self._sent[spec.name] = SendLog(width)
            rate = self._configured.get(spec.name, spec.rate)
            found.append((log, window_limit(rate / share, burst)))
        return found

    def _tile(
        self, specs: Sequence[BucketSpec], n: int, start: float, share: int
    ) -> tuple[float, float]:
        """Start a lease of `n` tokens no earlier than this process' last lease on each of its
        buckets is paced out, less the burst the bucket allows; return the start and the slack.

        Redis placed the lease after every token reserved before it; here its start is only known
        to within the clock's error, and a lease smaller than the one before it would be placed
        to start inside it (the bucket waits for `n` tokens, not for the bucket to be paced out).
        The burst a bucket allows is what its capacity holds beyond a lease of the rules' size:
        none when the capacity is the lease, as in the default rules.

        The slack (`Lease.slack`) is how late a slot may still be used: the slot tolerance, or the
        tightest bucket's burst in seconds at its rate; unbounded when every bucket's burst holds
        the whole lease, since catching up could then never send more at once than the rules
        allow (wide-open rules).
        """
        lease = self._rules.lease
        burst_tokens, burst_seconds = math.inf, math.inf
        for spec in specs:
            rate, capacity = spec.rate / share, spec.capacity / share
            tokens = max(0.0, capacity - max(n, min(capacity, lease)))
            burst_tokens = min(burst_tokens, tokens)
            burst_seconds = min(burst_seconds, tokens / rate)
            end = self._paced_until.get(spec.name)
            if end is not None:
                start = max(start, end - tokens / rate)
        if len(self._paced_until) > 1000:
            now = _clock()
            self._paced_until = {k: v for k, v in self._paced_until.items() if v > now}
            self._sent = {k: v for k, v in self._sent.items() if v.last + v.width > now}
        for spec in specs:
            end = start + n * share / spec.rate
            self._paced_until[spec.name] = max(self._paced_until.get(spec.name, end), end)
        if burst_tokens >= n or self._catches_up():
            return start, math.inf
        return start, max(self._settings.slot_tolerance, burst_seconds)

    def _catches_up(self) -> bool:
        """Whether late slots are sent as the send windows allow rather than forfeited: only
        while this is the one live limiter on its Redis (on the fallback too: then its share is
        the whole rate), since the windows count this process' sends alone and another
        replica's would be on top of a catch-up (docs/ratelimit.md)."""
        return self._settings.catch_up and self.replicas <= 1

    def _spec(self, name: str) -> BucketSpec:
        spec = self._specs.get(name)
        if spec is None:
            rule = self._rules.resolve(name)
            # Granted and paced below the configured rate by the headroom (docs/ratelimit.md).
            spec = BucketSpec(name, self._rules.paced(rule), rule.capacity)
            self._specs[name] = spec
            self._configured[name] = rule.rate
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
                self._settings.replica_id,
                ttl=keys.REPLICA_TTL_SECONDS,
                group=self._settings.replica_group,
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
