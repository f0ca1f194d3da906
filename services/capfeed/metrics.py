"""Metrics of the CAP feed (names fixed in docs/metrics.md), served on its own `/metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REQUESTS = Counter("tocsin_capfeed_requests_total", "requests answered", ["resource", "status"])
RENDERS = Counter("tocsin_capfeed_renders_total", "snapshots rendered (one per change)")
ENTRIES = Gauge("tocsin_capfeed_entries", "alerts in force in the feed")
FEED_BYTES = Gauge("tocsin_capfeed_feed_bytes", "size of the Atom feed")

#: Label children bound once: a lookup per request would cost more than the increment.
FEED_OK = REQUESTS.labels("feed", "200")
FEED_NOT_MODIFIED = REQUESTS.labels("feed", "304")
DOCUMENT_OK = REQUESTS.labels("document", "200")
DOCUMENT_NOT_MODIFIED = REQUESTS.labels("document", "304")
DOCUMENT_NOT_FOUND = REQUESTS.labels("document", "404")
