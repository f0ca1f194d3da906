"""Metrics of the alerting service (names fixed in docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ALERTS_LIVE = Gauge(
    "tocsin_alerts_live", "alerts sent and not yet complete, expired or cancelled", ["kind"]
)
ALERT_MESSAGES = Counter(
    "tocsin_alert_messages_total", "messages per channel reaching a state", ["channel", "state"]
)
UNITS_CHARGED = Counter("tocsin_units_charged_total", "communication units charged", ["billing"])
ALERTS = Counter("tocsin_alerts_total", "lifecycle actions", ["kind", "action"])
AUDIT_BATCHES = Counter(
    "tocsin_audit_batches_total",
    "audit batches written, and rewritten after another writer appended first",
    ["outcome"],
)

# -- service-level signals (ops, issue 18): what citizens feel, measured from the alerts' rows --
CHANNEL_BACKLOG = Gauge(
    "tocsin_channel_backlog_recipients",
    "recipients of live alerts not yet handed to an operator, failed or dropped",
    ["channel"],
)
FIRST_MESSAGE = Histogram(
    "tocsin_alert_first_message_seconds",
    "SendAlert to the first message of the alert handed to an operator",
    ["channel"],
    buckets=(1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600, 1800),
)
RECIPIENTS_FINAL = Counter(
    "tocsin_alert_recipients_final_total",
    "recipients with a final outcome: reached in the alert's target time, reached late, or not",
    ["channel", "reached"],
)
# -- end service-level signals ------------------------------------------------------------------
