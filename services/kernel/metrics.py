"""Metrics every service exports (names fixed in docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

GRPC_REQUESTS = Counter(
    "tocsin_grpc_requests_total",
    "gRPC calls finished, by status code",
    ["service", "method", "code"],
)
GRPC_DURATION = Histogram(
    "tocsin_grpc_request_duration_seconds",
    "gRPC call latency",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DEPENDENCY_UP = Gauge(
    "tocsin_dependency_up", "1 when the last health probe reached it", ["service", "dependency"]
)
SERVING = Gauge("tocsin_serving", "1 while health is SERVING", ["service"])
STREAM_LENGTH = Gauge("tocsin_stream_length", "XLEN of a work stream", ["stream"])
STREAM_LAG = Gauge(
    "tocsin_stream_lag", "entries not yet delivered to the group", ["stream", "group"]
)
STREAM_PENDING = Gauge(
    "tocsin_stream_pending", "entries delivered but not acknowledged", ["stream", "group"]
)
