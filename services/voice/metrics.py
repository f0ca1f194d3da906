"""Metrics of the voice service (docs/metrics.md); the channel worker's are labelled voice."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CALLS = Counter(
    "tocsin_voice_calls_total", "Call attempts by trunk and outcome.", ["trunk", "outcome"]
)
CHANNELS_IN_USE = Gauge(
    "tocsin_voice_channels_in_use", "Channels of the trunk this process holds now.", ["trunk"]
)
TRUNK_CHANNELS = Gauge(
    "tocsin_voice_trunk_channels",
    "Channels of the trunk held by all replicas, as last counted in Redis.",
    ["trunk"],
)
TRUNK_CHANNEL_LIMIT = Gauge(
    "tocsin_voice_trunk_channel_limit", "Channels the trunk sells.", ["trunk"]
)
PROMPTS_RENDERED = Counter(
    "tocsin_voice_prompts_rendered_total", "Messages synthesised, by language.", ["language"]
)
FAILOVERS = Counter(
    "tocsin_voice_trunk_failovers_total",
    "Times a trunk in trouble (5xx, no answer at all) was passed over for the next one.",
    ["trunk"],
)
API_BATCHES_REQUEUED = Counter(
    "tocsin_voice_api_batches_requeued_total",
    "Voice API batches whose stream entries Redis lost, written again from PostgreSQL.",
)
API_CALLS_REQUEUED = Counter(
    "tocsin_voice_api_calls_requeued_total",
    "Calls still queued of voice API batches whose stream entries Redis lost, queued again.",
)
