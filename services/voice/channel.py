"""Voice as a channel of the worker: one call per recipient through a trunk, the message played
twice, the answer sorted into delivered, retry later, or failed (docs/voice.md, docs/channel.md).

A trunk is a route; its lane runs as many calls at once as the trunk has channels, and every call
also holds a channel lease in Redis (all replicas together never exceed the trunk) and one
calls-per-second token of the rate limiter. Calls of a cancelled or superseded alert version that
are still ringing are abandoned (CANCEL); a call being played is never cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Generic

from services.channel.codec import FALLBACK_LANGUAGE, Header
from services.channel.control import ControlCache
from services.channel.model import Entry, Job, State
from services.channel.ports import Answer, Sorted
from services.voice import metrics
from services.voice.capacity import CallPacer, TrunkChannels
from services.voice.ports import CallReport, Dialer, P
from services.voice.prompts import PromptCache

log = logging.getLogger(__name__)

#: The channel's name: stream `tocsin:stream:voice`, group `voice`, tables `voice_messages`, ...
NAME = "voice"
#: How a call attempt ends, as the dialer reports it (gateways/sip CallOutcome's values).
OUTCOMES = ("answered", "busy", "no_answer", "rejected", "trunk_trouble", "abandoned")
#: Dialer outcomes retried after a delay while attempts remain.
RETRIED = frozenset({"busy", "no_answer"})


def is_e164(number: str) -> bool:
    """Whether `number` is E.164 with its '+': 7 to 15 ASCII digits, no leading zero."""
    return (
        8 <= len(number) <= 16
        and number[0] == "+"
        and number[1] != "0"
        and number[1:].isascii()
        and number[1:].isdigit()
    )


@dataclass(slots=True, eq=False)
class VoiceJob(Job):
    """One recipient's call: the language its message is spoken in."""

    language: str = ""


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How the channel calls."""

    max_attempts: int  #: calls per recipient while busy or unanswered
    channel_lease_s: float  #: longest a call may hold a trunk channel (a crash frees it after)
    #: Seconds a trunk in trouble (5xx, silence) is passed over for the next trunk, unless its
    #: 503 said how long (Retry-After).
    failover_hold_s: float = 30.0


@dataclass(slots=True, eq=False)
class _Watch:
    event: asyncio.Event
    verdict: State | None = None
    calls: int = 0


class VoiceChannel(Generic[P]):
    """The voice channel: trunks are its routes, their channels its concurrency, one unit per
    answered call."""

    name = NAME

    def __init__(
        self,
        *,
        trunks: Mapping[str, int],
        dialer: Dialer[P],
        prompts: PromptCache[P],
        channels: TrunkChannels,
        pacer: CallPacer,
        control: ControlCache,
        policy: CallPolicy,
    ) -> None:
        if not trunks:
            raise ValueError("no trunk configured")
        self._trunks = dict(trunks)
        self._default = next(iter(self._trunks))
        #: Trunk -> loop time until which it is passed over (it was in trouble).
        self._held: dict[str, float] = {}
        self._dialer = dialer
        self._prompts = prompts
        self._channels = channels
        self._pacer = pacer
        self._control = control
        self._policy = policy
        self._watches: dict[tuple[str, int], _Watch] = {}
        for trunk, limit in self._trunks.items():
            # Every series exists from the start: a dashboard shows 0, not "no data".
            metrics.TRUNK_CHANNEL_LIMIT.labels(trunk=trunk).set(limit)
            metrics.TRUNK_CHANNELS.labels(trunk=trunk).set(0)
            metrics.CHANNELS_IN_USE.labels(trunk=trunk).set(0)
            metrics.FAILOVERS.labels(trunk=trunk).inc(0)
            for outcome in OUTCOMES:
                metrics.CALLS.labels(trunk=trunk, outcome=outcome).inc(0)

    def lanes(self) -> dict[str, int]:
        """Trunks and their channels."""
        return dict(self._trunks)

    def job(self, entry: Entry, header: Header, address: str, language: str) -> VoiceJob:
        """The call of one number, spoken in its language (else the text's fallback language)."""
        texts = header.texts
        spoken = (
            language
            if language in texts
            else FALLBACK_LANGUAGE
            if FALLBACK_LANGUAGE in texts
            else next(iter(texts))
        )
        # One unit: what the call costs if answered. The worker counts a recipient's units only
        # once delivered (an answered call), so an unanswered call costs nothing.
        job = VoiceJob(
            entry,
            address,
            self._default,
            header.text_for(language),
            header.sender,
            1,
            language=spoken,
        )
        if not is_e164(address):
            job.error = "invalid number"
        return job

    async def deliver(self, job: VoiceJob) -> Answer:
        """Render (once per message), wait for a channel and a call slot, call, sort."""
        entry = job.entry
        try:
            prompt = await self._prompts.get(
                alert=entry.alert, version=entry.version, language=job.language, text=job.text
            )
        except ValueError as exc:
            return Answer(Sorted.FAILED, error=f"cannot speak it: {exc}")
        with self._watching(entry.alert, entry.version) as watch:
            for trunk in self._candidates():
                called = await self._attempt(job, trunk, prompt, watch)
                if called is None:
                    return Answer(Sorted.DONE, watch.verdict or State.CANCELLED)
                report = called
                metrics.CALLS.labels(trunk=trunk, outcome=report.outcome).inc()
                job.via = trunk
                if report.outcome != "trunk_trouble":
                    break
                # The trunk's fault, not the recipient's: not an attempt; the next trunk now.
                job.attempts -= 1
                self._hold(trunk, report.retry_after)
        outcome = report.outcome
        if outcome == "answered":
            job.refs = [report.call_id]
            return Answer(Sorted.DONE, State.DELIVERED)
        if outcome == "abandoned":
            return Answer(Sorted.DONE, watch.verdict or State.CANCELLED)
        if outcome in RETRIED:
            error = f"{outcome.replace('_', ' ')} ({report.status or 'ring timeout'})"
            if job.attempts >= self._policy.max_attempts:
                plural = "s" if job.attempts > 1 else ""
                return Answer(Sorted.FAILED, error=f"{error} after {job.attempts} attempt{plural}")
            return Answer(Sorted.LATER, error=error)
        if outcome == "trunk_trouble":
            return Answer(Sorted.LATER, error=f"trunk trouble ({report.status or 'no answer'})")
        return Answer(Sorted.FAILED, error=f"rejected ({report.status})")

    async def _attempt(
        self, job: VoiceJob, trunk: str, prompt: P, watch: _Watch
    ) -> CallReport | None:
        """One call on `trunk` with its channel and call slot; None when the alert was stopped."""
        async with self._channels.hold(trunk, lease_s=self._policy.channel_lease_s):
            if watch.verdict is not None:
                return None
            await self._pacer.take(trunk)
            if watch.verdict is not None:
                return None
            job.attempts += 1
            return await self._dialer.call(
                trunk=trunk, number=job.address, prompt=prompt, abandon=watch.event
            )

    def _candidates(self) -> list[str]:
        """The trunks to try in turn: those not in trouble in configured order, else the one
        whose hold ends first."""
        now = asyncio.get_running_loop().time()
        ready = [t for t in self._trunks if self._held.get(t, 0.0) <= now]
        return ready or [min(self._trunks, key=lambda t: self._held.get(t, 0.0))]

    def _hold(self, trunk: str, retry_after: float | None) -> None:
        """Pass `trunk` over for a while; the next calls go to the other trunks first."""
        now = asyncio.get_running_loop().time()
        until = now + (retry_after or self._policy.failover_hold_s)
        if self._held.get(trunk, 0.0) <= now and len(self._trunks) > 1:
            log.warning("trunk %s in trouble: calls go to the other trunks for now", trunk)
            metrics.FAILOVERS.labels(trunk=trunk).inc()
        self._held[trunk] = max(until, self._held.get(trunk, 0.0))

    def gave_up(self, job: VoiceJob, reason: str) -> None:
        """Counted with the calls' outcomes."""
        metrics.CALLS.labels(trunk=job.route, outcome=f"gave_up_{reason}").inc()

    @contextlib.contextmanager
    def _watching(self, alert: str, version: int) -> Iterator[_Watch]:
        key = (alert, version)
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch(asyncio.Event())
            watch.verdict = self._control.verdict(alert, version)
            if watch.verdict is not None:
                watch.event.set()
        watch.calls += 1
        try:
            yield watch
        finally:
            watch.calls -= 1
            if watch.calls == 0 and watch.verdict is None:
                del self._watches[key]

    async def watch_control(self, *, every_s: float) -> None:
        """Abandon ringing calls of alert versions cancelled or superseded, as the keys say."""
        while True:
            await asyncio.sleep(every_s)
            if not self._watches:
                continue
            await self._control.refresh(alert for alert, _ in self._watches)
            for (alert, version), watch in list(self._watches.items()):
                verdict = self._control.verdict(alert, version)
                if verdict is not None and watch.verdict is None:
                    log.info(
                        "alert %s v%d %s: abandoning its ringing calls",
                        alert,
                        version,
                        verdict.value,
                    )
                    watch.verdict = verdict
                    watch.event.set()
                if watch.calls == 0:
                    del self._watches[(alert, version)]
