"""Metrics of the alerting service (names fixed in docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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
