"""Metrics of the channel worker, one series per channel (names fixed in docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OUTCOMES = Counter(
    "tocsin_channel_outcomes_total",
    "recipients' state changes written, by the state reached",
    ["channel", "route", "state"],
)
RECEIPT_LATENCY = Histogram(
    "tocsin_channel_receipt_latency_seconds",
    "hand-over to the operator's delivery answer",
    ["channel", "route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
DEAD_LETTERS = Counter(
    "tocsin_channel_dead_letters_total",
    "malformed stream entries moved to the dead-letter stream",
    ["channel"],
)
IN_FLIGHT = Gauge(
    "tocsin_channel_in_flight", "recipients read and without a durable outcome", ["channel"]
)
# -- faults (issue 16) -------------------------------------------------------------------------
RECEIPTS_UNMATCHED = Counter(
    "tocsin_channel_receipts_unmatched_total",
    "operator receipts that matched no message within the hold time (dropped)",
    ["channel", "route"],
)
STALLS = Counter(
    "tocsin_channel_stalls_total",
    "times the process did not run for half of claim_idle_s or more (others may have claimed"
    " its entries): nothing delivered until it looked for work taken over",
    ["channel"],
)
LAPSES = Counter(
    "tocsin_channel_lease_lapses_total",
    "times the process could not keep its entries fresh in Redis for half of claim_idle_s (others"
    " may claim them): nothing delivered until Redis answered and it looked for work taken over",
    ["channel"],
)
GROUP_LOST = Counter(
    "tocsin_channel_group_lost_total",
    "times the channel's consumer group was found gone (NOGROUP) and created again",
    ["channel"],
)
GROUP_MISSING = Gauge(
    "tocsin_channel_group_missing",
    "1 from finding the channel's consumer group gone until it is created again",
    ["channel"],
)
