"""Rate-limiter metrics; the names are fixed by docs/metrics.md, section "Rate limiter"."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TOKENS_GRANTED = Counter("tocsin_ratelimit_tokens_granted", "tokens granted", ["bucket"])
TOKENS_FORFEITED = Counter(
    "tocsin_ratelimit_tokens_forfeited",
    "tokens of a lease not sent because their slot had passed (a late sender under-sends)",
    ["bucket"],
)
REFUSALS = Counter("tocsin_ratelimit_refusals", "lease requests refused", ["bucket"])
WAIT_SECONDS = Histogram(
    "tocsin_ratelimit_wait_seconds",
    "time a caller waited for tokens",
    ["bucket"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
REDIS_CALLS = Counter("tocsin_ratelimit_redis_calls", "script calls to Redis", ["result"])
FALLBACK = Gauge(
    "tocsin_ratelimit_fallback", "1 while the local fallback bucket is in use", ["bucket"]
)
RATE = Gauge("tocsin_ratelimit_rate_per_second", "configured rate", ["bucket"])
