"""Consumer-group lag (`tocsin_stream_lag`) on any Redis the project runs on.

Redis 7 reports it in XINFO GROUPS (`lag`, nil when it cannot tell); Redis 6.2, the embedded one,
does not. There it is counted on the Redis side by one small Lua script that walks
`XRANGE key (after upto COUNT step` and answers only how many entries it saw and the last id, never
the entries.

Walking costs Redis about 2 us per small entry and 6 to 25 us per entry of 500 recipients (the
script copies every field into Lua), so a backlog is never walked whole on every reading:

- A `GroupLag` keeps an exact count of the entries in (anchor, front]. Each reading moves the
  anchor to the group's last-delivered-id (minus the entries it passes) and the front towards the
  stream's last id (plus the entries it passes): the work is what was delivered or added since the
  last reading, not the backlog.
- One script call walks at most `step` entries (a few ms of Redis), one reading at most `budget`
  entries in all; a reading that could not finish answers None (no new value) and goes on from
  there next time.
- Counting stops at `cap`: above it the lag reads `cap` (the gauge saturates there on Redis < 7).
- The count assumes undelivered entries are not deleted (nothing trims the work streams). It
  starts afresh when the stream's first entry moves past the anchor (trimmed past the group, or
  the stream made again) and, for entries deleted one by one, every `recount_s` while not caught
  up.

When the group's last-delivered-id is at or past the stream's last entry, the lag is 0 with no
script call at all: the usual case, readings cost one XINFO STREAM.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis

#: Largest lag counted on Redis < 7: the gauge reads this above it (100,000 entries of a few
#: hundred recipients is tens of millions of messages).
CAP = 100_000
#: Most entries one script call walks: a few ms of Redis at most, so that the rate limiter's
#: script (250 ms time limit) and the consumers' reads never wait long behind it.
STEP = 250
#: Most entries one reading walks in all (up to about 50 ms of Redis for large entries).
BUDGET = 2_000
#: Seconds after which a count that is not caught up is started afresh.
RECOUNT_S = 300.0

#: KEYS[1] stream; ARGV: after (exclusive), upto (inclusive), most entries. Answers {n, last id}.
COUNT_SCRIPT = """
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], ARGV[2], 'COUNT', ARGV[3])
local n = #entries
if n == 0 then
  return {0}
end
return {n, entries[n][1]}
"""

StreamId = tuple[int, int]


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _sid(text: str) -> StreamId:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True, slots=True)
class _Count:
    """`n` entries in (anchor, front], exactly; counted from scratch at `since` (monotonic).

    `first` is the stream's first entry id when last seen: should it move past the anchor,
    undelivered entries were trimmed (or the stream made again) and the count starts afresh.
    """

    anchor: str
    front: str
    n: int
    since: float
    first: str | None


class GroupLag:
    """The lag of one consumer group on one stream, for a gauge read every few seconds.

    One instance per (stream, group) and process, used by one task at a time.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str,
        *,
        cap: int = CAP,
        step: int = STEP,
        budget: int = BUDGET,
        recount_s: float = RECOUNT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(cap, step, budget) < 1:
            raise ValueError("cap, step and budget must be positive")
        self._redis = redis
        self.stream = stream
        self.cap = cap
        self.step = step
        self.budget = budget
        self.recount_s = recount_s
        self._clock = clock
        self._script = redis.register_script(COUNT_SCRIPT)
        self._count: _Count | None = None

    async def measure(self, group: Mapping[str, Any]) -> int | None:
        """Entries not yet delivered to the group, from its XINFO GROUPS entry.

        Redis' own `lag` when the entry has one (not nil); otherwise counted, up to `cap`. None
        when the count needs more readings to finish (keep the previous value).
        """
        lag = group.get("lag")
        if lag is not None:
            self._count = None
            return int(lag)
        delivered = _text(group["last-delivered-id"])
        info = await self._redis.xinfo_stream(self.stream)
        last = _text(info["last-generated-id"])
        first_entry, last_entry = info.get("first-entry"), info.get("last-entry")
        first = _text(first_entry[0]) if first_entry else None
        now = self._clock()
        if not last_entry or _sid(delivered) >= _sid(_text(last_entry[0])):
            # Nothing in (delivered, last]: entries added after XINFO STREAM have larger ids.
            self._count = _Count(delivered, last, 0, now, first)
            return 0
        count = self._count
        if (
            count is None
            or _sid(delivered) < _sid(count.anchor)  # the group was set back
            or _sid(last) < _sid(count.front)  # the stream was made again
            or (first != count.first and first is not None and _sid(first) > _sid(count.anchor))
            or now - count.since >= self.recount_s
        ):
            count = _Count(delivered, delivered, 0, now, first)
        budget = self.budget
        if _sid(delivered) >= _sid(count.front):
            count = _Count(delivered, delivered, 0, count.since, first)
        elif _sid(delivered) > _sid(count.anchor):
            passed, _, done = await self._walk(count.anchor, delivered, budget)
            budget -= passed
            if done:
                count = _Count(delivered, count.front, count.n - passed, count.since, first)
            else:
                count = _Count(delivered, delivered, 0, now, first)
        if _sid(count.front) < _sid(last) and count.n < self.cap:
            added, seen, done = await self._walk(count.front, last, min(budget, self.cap - count.n))
            front = last if done else seen
            count = _Count(count.anchor, front, count.n + added, count.since, first)
        self._count = count = replace(count, first=first)
        if _sid(count.front) >= _sid(last):
            return count.n
        if count.n >= self.cap:
            return self.cap
        return None

    async def _walk(self, after: str, upto: str, limit: int) -> tuple[int, str, bool]:
        """Entries in (after, upto], at most `limit`: (how many, last id seen, all counted)."""
        counted, cursor = 0, after
        while counted < limit:
            want = min(self.step, limit - counted)
            reply = await self._script(keys=[self.stream], args=[cursor, upto, want])
            n = int(reply[0])
            counted += n
            if n < want:
                return counted, cursor if n == 0 else _text(reply[1]), True
            cursor = _text(reply[1])
        return counted, cursor, False


async def trim_processed(
    redis: aioredis.Redis,
    stream: str,
    groups: Sequence[Mapping[str, Any]],
    *,
    approximate: bool = True,
) -> int:
    """XTRIM the entries every group of the stream has read and acknowledged; how many went.

    An entry may go once each group has delivered it (it is at or before the group's
    last-delivered-id) and none holds it pending (before the oldest pending entry). Entries still
    unread or unacknowledged, which a consumer may yet claim, stay; so does the group's
    last-delivered entry itself, which `GroupLag` counts from. The trim is approximate (`~`) unless
    told otherwise: Redis then removes only whole macro nodes (100 entries), never more than
    asked, so it is cheap to repeat. A stream without groups is left alone: nothing is known to
    be processed.
    """
    floor: StreamId | None = None
    for group in groups:
        bound = _sid(_text(group.get("last-delivered-id") or "0-0"))
        if int(group.get("pending") or 0) > 0:
            summary = await redis.xpending(stream, _text(group.get("name")))
            oldest = summary.get("min")
            if oldest is not None:
                bound = min(bound, _sid(_text(oldest)))
        floor = bound if floor is None else min(floor, bound)
    if floor is None or floor == (0, 0):
        return 0
    minid = f"{floor[0]}-{floor[1]}"
    removed: int = await redis.xtrim(stream, minid=minid, approximate=approximate)
    return removed
