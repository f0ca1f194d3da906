"""Metrics of the SMS service (names fixed in docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SUBMITTED = Counter(
    "tocsin_sms_submitted_total", "submit_sm answered with success", ["operator", "bind"]
)
THROTTLED = Counter(
    "tocsin_sms_throttled_total", "submit_sm answered 0x58 / 0x14", ["operator", "bind"]
)
FAILED = Counter("tocsin_sms_failed_total", "final failures", ["operator", "reason"])
DELIVERED = Counter("tocsin_sms_delivered_total", "receipts with state DELIVERED", ["operator"])
RECEIPT_LATENCY = Histogram(
    "tocsin_sms_receipt_latency_seconds",
    "submit to delivery receipt",
    ["operator"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
BIND_UP = Gauge("tocsin_smpp_bind_up", "1 while the bind is bound", ["operator", "bind"])
SEGMENTS = Counter(
    "tocsin_sms_segments_total", "segments submitted (communication units)", ["operator"]
)
WITHDRAWN = Counter(
    "tocsin_sms_withdrawn_total",
    "texts withdrawn unsent inside a bind: their alert was cancelled, superseded or expired"
    " while they waited for it (SMSC down)",
    ["operator"],
)
SESSIONS_HELD = Gauge(
    "tocsin_smpp_sessions_held",
    "SMPP sessions of this process holding one of the operator's session slots",
    ["operator"],
)
SESSION_LIMIT = Gauge(
    "tocsin_smpp_session_limit",
    "SMPP sessions the operator allows over every sms process (max_sessions)",
    ["operator"],
)
API_BATCHES_REQUEUED = Counter(
    "tocsin_sms_api_batches_requeued_total",
    "SMS API batches whose stream entries Redis lost, written again from PostgreSQL",
)
API_RECIPIENTS_REQUEUED = Counter(
    "tocsin_sms_api_recipients_requeued_total",
    "recipients still queued of SMS API batches whose stream entries Redis lost, queued again",
)
