"""The campaign benchmark's rules file and its reading of the simulators' per-second arrivals."""

from __future__ import annotations

import argparse
import asyncio
import time

import pytest
from tocsin.alerting.v1 import alerting_pb2

from bench.realtime import prioritise
from bench.windows import busiest_window, per_window, rate_share
from loadtest.campaign import (
    OPEN_RATE,
    Marks,
    Memory,
    Stalls,
    _figures,
    _simulator_priority,
    rules_text,
    synthetic_operators,
    windows,
)
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


def _figures_of(cpu_hog: int) -> dict[str, object]:
    arrivals = [i / 700 for i in range(701)]  # 700 submit_sm/s over one second
    marks = Marks(sent=-0.1, first_submit=arrivals[0], last_submit=arrivals[-1], accepted=701)
    return _figures(
        args=argparse.Namespace(limit="default", recipients=None, cpu_hog=cpu_hog),
        rate=740.74,
        last=alerting_pb2.ChannelProgress(targeted=701, delivered=701),
        marks=marks,
        memory=Memory(),
        cpu={},
        per_second=per_window(arrivals, origin=-0.5),
        sliding=busiest_window(arrivals),
        share=rate_share(arrivals, 740.74),
        tokens={"tokens_granted": 701.0, "tokens_forfeited": 0.0},
        radius_m=1000.0,
    )


def test_a_campaign_under_a_cpu_hog_reports_the_share_of_the_rate_it_kept() -> None:
    loaded = _figures_of(2)
    assert loaded["cpu_hog_processes"] == 2
    assert loaded["rate_share_under_cpu_load"] == pytest.approx(700 / 740.74, abs=1e-4)
    assert loaded["max_sliding_window_per_s"] == 700  # the 701st is exactly 1 s after the first
    assert loaded["never_above_sliding"] is True
    quiet = _figures_of(0)
    assert "rate_share_under_cpu_load" not in quiet
    assert quiet["rate_share"] == loaded["rate_share"]


async def test_a_stall_of_the_simulators_loop_is_measured() -> None:
    stalls = Stalls()
    watcher = asyncio.create_task(stalls.watch())
    await asyncio.sleep(0.01)
    time.sleep(0.06)  # noqa: ASYNC251 - the point: the loop that would stamp arrivals is blocked
    await asyncio.sleep(0.01)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert stalls.longest >= 0.05
    assert stalls.over_10ms >= 1


def test_the_simulators_run_above_the_hog_unless_told_otherwise() -> None:
    def args(hog: int, priority: str | None) -> argparse.Namespace:
        return argparse.Namespace(cpu_hog=hog, simulator_priority=priority)

    assert _simulator_priority(args(2, None)) == "fifo"
    assert _simulator_priority(args(0, None)) == "normal"
    assert _simulator_priority(args(2, "nice")) == "nice"
    # Back to normal is always allowed.
    assert prioritise("normal") == "normal"
