"""The sends of one bucket in this process over the last second: what bounds a catch-up.

A sender that fell behind its slots (the process was descheduled, the event loop was busy) sends
its overdue tokens as soon as this log allows: a send at time `x` is allowed when fewer than
`limit` sends were recorded in `(x - width, x]`, so that no window `[t, t + width)` ever holds more
than `limit`. `width` is a second plus a margin for what moves a send between the moment it is
recorded and the moment the operator's SMSC counts it (docs/ratelimit.md, "Pacing without
bursts"). Pure and clock-free: the caller passes the time, so tests drive it with any schedule.
"""

from __future__ import annotations

import math
from collections import deque

#: Seconds a window spans beyond one second by default: the jitter between a send recorded here
#: and its count at the SMSC that a full window still tolerates (LimiterSettings.window_margin).
DEFAULT_MARGIN = 0.005


def window_limit(rate: float, burst: float = 0.0) -> int:
    """Sends one window may hold: whole messages, so floor(rate) (740 for 740.74/s), plus the
    burst the rules allow on top; at least 1, so that a rate below 1/s still sends."""
    return max(1, math.floor(rate + burst + 1e-9))


class SendLog:
    """Times of the sends of one bucket in this process, the last `width` seconds of them."""

    __slots__ = ("_times", "width")

    def __init__(self, width: float = 1.0 + DEFAULT_MARGIN) -> None:
        if width <= 0:
            raise ValueError(f"a send window is longer than 0 s, not {width}")
        #: Seconds a window spans.
        self.width = width
        self._times: deque[float] = deque()

    def __len__(self) -> int:
        return len(self._times)

    @property
    def last(self) -> float:
        """Time of the last send recorded (-inf: none)."""
        return self._times[-1] if self._times else -math.inf

    def free_at(self, now: float, limit: int) -> float:
        """The earliest time, `now` or later, at which one more send keeps every window at most
        `limit`: `now` when fewer than `limit` sends fall in `(now - width, now]`."""
        times, width = self._times, self.width
        # One expression for "out of the window" here and in the answer below, so that a caller
        # asking again at exactly the answered time finds the send allowed (no float drift).
        while times and times[0] + width <= now:
            times.popleft()
        if len(times) < limit:
            return now
        return times[len(times) - limit] + width

    def record(self, at: float) -> None:
        """One send at `at` (not before the last one recorded)."""
        times = self._times
        if times and at < times[-1]:
            at = times[-1]  # a clock read before the last send's: count it with that one
        times.append(at)
