"""Erlang C against published worked examples and tables.

References (figures as printed there):
- Call Centre Helper, "Erlang C Formula - Made Simple With an Easy Worked Example": 100 calls per
  half hour (200 an hour), AHT 180 s, 80 % within 20 s. Traffic 10 Erlangs; with 11 agents the
  probability of waiting is 68.21 % and the service level 39.0 %; 14 agents are needed (88.8 %).
- Mitan Ltd, "The Erlang-C Formula" (www.mitan.co.uk/erlang/elgcmath.htm): 360 calls per half
  hour, 4 minutes each, 55 agents, 15 s target. Traffic 48 Erlangs, occupancy 87.3 %, probability
  of waiting 24.0 %, average speed of answer 8.2 s, service level 84.6 %.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.alerting.infoline import erlang


def test_call_centre_helper_worked_example() -> None:
    a = erlang.traffic(calls_per_hour=200, aht_s=180)
    assert a == pytest.approx(10.0)
    assert erlang.wait_probability(operators=11, erlangs=a) == pytest.approx(0.6821, abs=5e-5)
    assert erlang.service_level(operators=11, erlangs=a, aht_s=180, target_s=20) == pytest.approx(
        0.39, abs=0.005
    )
    assert erlang.service_level(operators=13, erlangs=a, aht_s=180, target_s=20) < 0.8
    assert erlang.service_level(operators=14, erlangs=a, aht_s=180, target_s=20) == pytest.approx(
        0.888, abs=0.001
    )
    needed = erlang.operators_needed(calls_per_hour=200, aht_s=180, answered_ratio=0.8, target_s=20)
    assert needed == 14


def test_mitan_worked_example() -> None:
    a = erlang.traffic(calls_per_hour=720, aht_s=240)
    assert a == pytest.approx(48.0)
    assert a / 55 == pytest.approx(0.873, abs=5e-4)
    assert erlang.wait_probability(operators=55, erlangs=a) == pytest.approx(0.2387, abs=5e-5)
    assert erlang.average_speed_of_answer(operators=55, erlangs=a, aht_s=240) == pytest.approx(
        8.18, abs=0.01
    )
    assert erlang.service_level(operators=55, erlangs=a, aht_s=240, target_s=15) == pytest.approx(
        0.846, abs=0.001
    )


def test_overload_and_no_calls() -> None:
    assert erlang.wait_probability(operators=10, erlangs=10) == 1.0
    assert erlang.service_level(operators=9, erlangs=10, aht_s=180, target_s=20) == 0.0
    assert math.isinf(erlang.average_speed_of_answer(operators=10, erlangs=10, aht_s=180))
    assert (
        erlang.operators_needed(calls_per_hour=0, aht_s=180, answered_ratio=0.8, target_s=20) == 1
    )


def _textbook(n: int, a: float) -> float:
    """Erlang C as printed in the textbooks, with factorials (fine for small n)."""
    top = a**n / math.factorial(n) * n / (n - a)
    return top / (sum(a**k / math.factorial(k) for k in range(n)) + top)


@given(st.integers(min_value=1, max_value=60), st.floats(min_value=0.05, max_value=0.98))
def test_recursion_equals_the_textbook_form(n: int, occupancy: float) -> None:
    a = n * occupancy
    assert erlang.wait_probability(operators=n, erlangs=a) == pytest.approx(_textbook(n, a))


@given(
    st.integers(min_value=1, max_value=3000),
    st.floats(min_value=30, max_value=900),
    st.floats(min_value=0.5, max_value=0.95),
)
def test_recommendation_is_the_fewest_that_meet_the_target(
    calls: int, aht: float, ratio: float
) -> None:
    n = erlang.operators_needed(calls_per_hour=calls, aht_s=aht, answered_ratio=ratio, target_s=20)
    a = erlang.traffic(calls_per_hour=calls, aht_s=aht)
    assert erlang.service_level(operators=n, erlangs=a, aht_s=aht, target_s=20) >= ratio
    if n > 1:
        assert erlang.service_level(operators=n - 1, erlangs=a, aht_s=aht, target_s=20) < ratio
