"""Metrics of the information line (names in docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from services.alerting.model import LANGUAGES

LINES = Gauge(
    "tocsin_infoline_lines", "information lines by state (closed ones not counted)", ["state"]
)
OVERDUE = Gauge(
    "tocsin_infoline_overdue_lines",
    "information lines not open one hour after their request (or their desired opening if later)",
)
OPENED_LATE = Counter(
    "tocsin_infoline_opened_late_total", "information lines that opened after their promised time"
)
CALLS = Counter(
    "tocsin_infoline_calls_total",
    "calls the provider reported per language line and outcome",
    ["language", "outcome"],
)
OPERATORS = Gauge(
    "tocsin_infoline_operators",
    "operators of the open lines' latest hour, actual and recommended (Erlang C)",
    ["language", "staffing"],
)

# Every language line's series from the start (at zero), so that the dashboard's panels and a
# scrape show "no calls" rather than nothing before the first line reports.
for _language in LANGUAGES:
    for _outcome in ("offered", "answered", "abandoned"):
        CALLS.labels(_language, _outcome)
    for _staffing in ("actual", "recommended"):
        OPERATORS.labels(_language, _staffing).set(0)
