"""The load test's phases and report (loadtest/run.py), without running Locust."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from loadtest import run


def _args(*argv: str) -> argparse.Namespace:
    return run.parser().parse_args(list(argv))


def _figures(rps: float, p99: dict[str, float]) -> dict[str, Any]:
    entry = {"requests": 1, "failures": 0, "rps": rps, "p50_ms": 1, "p95_ms": 1, "max_ms": 1}
    return {
        **entry,
        "p99_ms": max(p99.values()),
        "mix": {**entry, "p99_ms": 1},
        "target": {"mix_rps": 1000.0, "mix_p99_ms": 20.0, "met": False},
        "by_method": {name: {**entry, "p99_ms": v} for name, v in p99.items()},
    }


def test_the_steady_phase_paces_every_user_to_offer_the_steady_rate_together() -> None:
    phases = {
        p.name: p
        for p in run._phases(
            _args("--phases", "mix,steady,full", "--steady-rate", "490", "--users", "70")
        )
    }
    assert list(phases) == ["mix", "steady", "full"]
    steady = phases["steady"]
    assert steady.users == 70
    assert steady.user_rate * steady.users == pytest.approx(490.0)
    assert steady.classes == ()  # every kind of user, as the full phase
    assert phases["full"].user_rate == 20.0


def test_the_report_gives_the_slowest_read_of_the_steady_phase() -> None:
    results = {
        "mix": _figures(900, {"GetAlert": 15, "PreviewAlert": 18, "CreateAlert": 19}),
        "steady": _figures(
            480, {"GetAlert": 40, "WatchAlert": 75, "GetBatch": 12, "CreateAlert": 300}
        ),
        "full": _figures(700, {"GetAlert": 320, "WatchAlert": 260}),
    }
    report = run._report(results, _args())
    steady = report["steady"]
    # A write (CreateAlert) is not a read: its 300 ms is not the reads' figure.
    assert steady["reads_p99_ms"] == 75
    assert set(steady["reads"]) == {"GetAlert", "WatchAlert", "GetBatch"}
    assert steady["offered_rps"] == 500.0
    assert report["p99_ms"] == 320  # the top level stays the full phase's


def test_an_unknown_phase_is_refused_with_the_known_ones() -> None:
    with pytest.raises(SystemExit, match="mix, steady, full"):
        run._phases(_args("--phases", "mix,burst"))
