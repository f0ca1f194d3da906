"""Targeting metrics (names fixed in docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECIPIENTS_ENQUEUED = Counter(
    "tocsin_targeting_recipients_enqueued_total", "recipients written to work streams", ["channel"]
)
RESOLVE_SECONDS = Histogram(
    "tocsin_targeting_resolve_seconds",
    "time to resolve a zone completely",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
