"""Erlang C: how many operators answer a given call load within a target time (M/M/N queue)."""

from __future__ import annotations

import math

#: Most operators a recommendation goes up to (a provider's whole standby pool and then some).
MAX_OPERATORS = 1000


def traffic(*, calls_per_hour: float, aht_s: float) -> float:
    """Offered load in Erlangs: calls per hour times hours of handling each."""
    return calls_per_hour * aht_s / 3600.0


def wait_probability(*, operators: int, erlangs: float) -> float:
    """Erlang C: the chance a call waits for an operator (1 when the load is too high).

    From Erlang B's recursion B(n) = A·B(n-1) / (n + A·B(n-1)), which stays accurate where the
    factorials of the textbook form overflow, then C = N·B / (N - A·(1 - B)).
    """
    if erlangs <= 0:
        return 0.0
    if operators <= erlangs:
        return 1.0
    b = 1.0
    for n in range(1, operators + 1):
        b = erlangs * b / (n + erlangs * b)
    return operators * b / (operators - erlangs * (1 - b))


def service_level(*, operators: int, erlangs: float, aht_s: float, target_s: float) -> float:
    """Share of calls answered within `target_s`: 1 - C·exp(-(N - A)·t / AHT)."""
    if erlangs <= 0:
        return 1.0
    if operators <= erlangs:
        return 0.0
    waits = wait_probability(operators=operators, erlangs=erlangs)
    return 1.0 - waits * math.exp(-(operators - erlangs) * target_s / aht_s)


def average_speed_of_answer(*, operators: int, erlangs: float, aht_s: float) -> float:
    """Mean wait before an answer, seconds: C·AHT / (N - A) (infinite when overloaded)."""
    if operators <= erlangs:
        return math.inf
    return wait_probability(operators=operators, erlangs=erlangs) * aht_s / (operators - erlangs)


def operators_needed(
    *, calls_per_hour: float, aht_s: float, answered_ratio: float, target_s: float
) -> int:
    """Fewest operators that answer `answered_ratio` of the calls within `target_s` (at least 1)."""
    erlangs = traffic(calls_per_hour=calls_per_hour, aht_s=aht_s)
    if erlangs <= 0:
        return 1
    n = max(1, math.floor(erlangs) + 1)
    while n < MAX_OPERATORS:
        level = service_level(operators=n, erlangs=erlangs, aht_s=aht_s, target_s=target_s)
        if level >= answered_ratio:
            return n
        n += 1
    return MAX_OPERATORS
