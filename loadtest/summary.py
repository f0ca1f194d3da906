"""The load test's figures from Locust's statistics: overall, for the alerting mix, per method."""

from __future__ import annotations

from typing import Any

from locust.stats import RequestStats, StatsEntry

#: The calls whose combined rate and latency the target is about (1,000/s, p99 < 20 ms).
MIX = ("PreviewAlert", "GetAlert", "CreateAlert")
#: The issue's target for the mix; reported, never asserted.
TARGET_RPS = 1000.0
TARGET_P99_MS = 20.0


def figures(entry: StatsEntry) -> dict[str, Any]:
    """Rate, latency percentiles (ms) and failures of one statistics entry."""
    return {
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "rps": round(entry.total_rps, 1),
        "p50_ms": entry.get_response_time_percentile(0.5) or 0,
        "p95_ms": entry.get_response_time_percentile(0.95) or 0,
        "p99_ms": entry.get_response_time_percentile(0.99) or 0,
        "max_ms": round(entry.max_response_time or 0, 1),
    }


def summarize(stats: RequestStats) -> dict[str, Any]:
    """Everything `bench/results/loadtest.json` holds."""
    mix = StatsEntry(stats, "mix", "grpc")
    by_method: dict[str, Any] = {}
    for (name, _method), entry in sorted(stats.entries.items()):
        by_method[name] = figures(entry)
        if name in MIX:
            mix.extend(entry)
    overall = figures(stats.total)
    mixed = figures(mix)
    return {
        **overall,
        "mix": mixed,
        "by_method": by_method,
        "target": {
            "mix_rps": TARGET_RPS,
            "mix_p99_ms": TARGET_P99_MS,
            "met": mixed["rps"] >= TARGET_RPS and 0 < mixed["p99_ms"] < TARGET_P99_MS,
        },
        "errors": {f"{err.name}: {err.error}": err.occurrences for err in stats.errors.values()},
    }
