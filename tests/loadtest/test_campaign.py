"""The campaign benchmark's rules file and its reading of the simulators' per-second arrivals."""

from __future__ import annotations

import pytest

from loadtest.campaign import OPEN_RATE, rules_text, synthetic_operators, windows
from ratelimit.config import Rules
from stack.services import operators


def test_the_default_rules_keep_the_national_rate_and_let_an_operator_take_all_of_it() -> None:
    text, rate = rules_text(limit="default", rate=None)
    rules = Rules.from_toml(text)
    national = Rules.default().resolve("sms:global")
    assert rate == pytest.approx(2_000_000 / 45 / 60)
    assert rules.resolve("sms:global").rate == pytest.approx(national.rate)
    assert rules.resolve("sms:global").capacity == national.capacity
    assert rules.resolve("sms:op:proximus").rate == pytest.approx(national.rate)


def test_a_scaled_rate_and_the_open_limiter() -> None:
    _, scaled = rules_text(limit="default", rate=1481.5)
    assert scaled == 1481.5
    text, rate = rules_text(limit="open", rate=None)
    assert rate == OPEN_RATE
    assert Rules.from_toml(text).resolve("sms:op:base").rate == pytest.approx(OPEN_RATE)


def test_the_rate_is_judged_on_the_steady_seconds() -> None:
    # partial, first full (with the initial burst), steady ..., last full (tail), partial
    counts = [150, 840, 740, 742, 738, 741, 739, 600, 90]
    found = windows(counts)
    assert found["per_second"] == counts
    assert found["first_full_window"] == 840
    assert found["max_window_per_s"] == 742
    assert found["mean_window_per_s"] == 740.0
    assert found["max_5s_window_per_s"] == 740.0


def test_a_quiet_second_inside_the_run_counts_as_zero() -> None:
    found = windows([5, 10, 0, 10, 10, 10, 5])
    assert found["mean_window_per_s"] == pytest.approx(20 / 3, abs=0.1)


def test_no_arrivals() -> None:
    assert windows([])["max_window_per_s"] == 0


def test_the_operators_share_the_synthetic_numbers_evenly() -> None:
    ops = synthetic_operators({"proximus": 1, "orange": 2, "base": 3})
    digits = sorted(p for op in ops for p in op.prefixes)
    assert digits == [f"324{d}" for d in range(10)]
    assert [len(op.prefixes) for op in ops] == [4, 3, 3]
    assert [op.name for op in ops] == [op.name for op in operators()]
