"""The one measure of arrivals per window, against counting every window by brute force."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.windows import busiest_window, per_window, rate_share


def _brute_force(times: list[float], width: float) -> int:
    """Every window [t, t + width) whose start is an event, or just after one."""
    starts = [*times, *(t + 1e-9 for t in times)]
    return max((sum(1 for u in times if s <= u < s + width) for s in starts), default=0)


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=60))
def test_the_busiest_window_is_the_busiest_of_all(ticks: list[int]) -> None:
    times = [t / 100 for t in ticks]  # whole hundredths: many events exactly one width apart
    assert busiest_window(times) == _brute_force(times, 1.0)


def test_an_event_exactly_one_width_later_falls_in_the_next_window() -> None:
    assert busiest_window([0.0, 0.5, 1.0]) == 2
    assert busiest_window([0.0, 0.5, 0.999]) == 3
    assert busiest_window([3.0, 1.0, 2.0, 0.0]) == 1  # unsorted input is sorted first
    assert busiest_window([]) == 0
    assert busiest_window([0.0, 0.25, 0.5], width=0.5) == 2


def test_aligned_windows_count_from_the_origin_with_quiet_ones_as_zero() -> None:
    assert per_window([10.2, 10.9, 11.0, 13.5], origin=10.0) == [2, 1, 0, 1]
    assert per_window([10.2, 10.9], origin=9.5) == [1, 1]
    assert per_window([], origin=0.0) == []


def test_the_rate_share_counts_intervals_from_the_first_event_to_the_last() -> None:
    # 11 events over 1 s: 10 per second, half of a 20/s limit.
    assert rate_share([i / 10 for i in range(11)], 20.0) == pytest.approx(0.5)
    assert rate_share([], 20.0) == 0.0
    assert rate_share([1.0, 1.0], 20.0) == 0.0
