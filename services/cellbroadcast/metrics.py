"""Metrics of the cell broadcast service (docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter

ATTEMPTS = Counter(
    "tocsin_cellbroadcast_attempts",
    "Requests sent to an operator's CBC or LB-SMS platform.",
    ["operator", "channel", "action"],
)
OUTCOMES = Counter(
    "tocsin_cellbroadcast_outcomes",
    "Outcomes of the attempts (accepted, refused, retrying).",
    ["operator", "channel", "state"],
)
