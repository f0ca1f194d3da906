"""Arrivals per window of time: the one measure of "never above the rate" for every benchmark.

A window is half-open, [start, start + width): an event exactly `width` after another falls in
the next window, as a second on a clock does. The rate limiter's benchmark and tests and the
campaign benchmark all judge their sends with it.
"""

from __future__ import annotations

from collections.abc import Iterable


def busiest_window(times: Iterable[float], width: float = 1.0) -> int:
    """The most events in any window [t, t + width), over every t (sliding, not aligned).

    The busiest window can always be slid right until it starts at an event without losing one,
    so only the windows that start at an event are counted.
    """
    ordered = sorted(times)
    most = 0
    end = 0
    for start, t in enumerate(ordered):
        end = max(end, start)
        while end < len(ordered) and ordered[end] < t + width:
            end += 1
        most = max(most, end - start)
    return most


def per_window(times: Iterable[float], *, origin: float, width: float = 1.0) -> list[int]:
    """Events per aligned window [origin + k * width, origin + (k + 1) * width), from the first
    window holding an event to the last (empty windows between them as 0)."""
    counts: dict[int, int] = {}
    for t in times:
        k = int((t - origin) // width)
        counts[k] = counts.get(k, 0) + 1
    if not counts:
        return []
    return [counts.get(k, 0) for k in range(min(counts), max(counts) + 1)]


def rate_share(times: Iterable[float], rate: float) -> float:
    """The rate kept, as a share of `rate`: events after the first, over first to last."""
    ordered = sorted(times)
    if len(ordered) < 2 or ordered[-1] <= ordered[0] or rate <= 0:
        return 0.0
    return (len(ordered) - 1) / (ordered[-1] - ordered[0]) / rate
