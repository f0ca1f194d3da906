"""Metrics of the e-mail service (names fixed in docs/metrics.md); the worker's are
`tocsin_channel_*{channel="email"}`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

#: Dispositions of a recipient in a transaction, as the gateway sorts the relay's answers.
DISPOSITIONS = ("accepted", "temporary", "permanent", "unknown")

RECIPIENTS = Counter(
    "tocsin_email_recipients_total",
    "recipients by the relay's answer in their transaction",
    ["relay", "disposition"],
)
TRANSACTION_SIZE = Histogram(
    "tocsin_email_transaction_recipients",
    "recipients per SMTP transaction",
    ["relay"],
    buckets=(1, 5, 10, 25, 50, 75, 100, 250, 500, 1000),
)
GAVE_UP = Counter(
    "tocsin_email_gave_up_total",
    "recipients ended without the relay (invalid, expired, temporary until expiry)",
    ["relay", "reason"],
)
BOUNCES = Counter(
    "tocsin_email_bounces_total", "DSN reports received, by action", ["relay", "action"]
)
CONNECTIONS = Gauge(
    "tocsin_email_relay_connections",
    "connections of this process to the relay: busy in a transaction, and the pool's limit",
    ["relay", "state"],
)
