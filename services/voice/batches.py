"""Voice API batches: the voice channel's `ApiBatches` (services/channel/apibatches.py), kept in
`voice_api_batches` (migrations/0100_voice_api_batches.sql) with their language, so that the
repair (services/channel/apirepair.py) can write their stream entries again after Redis lost
its data (docs/voice.md, "Faults").
"""

from __future__ import annotations

from services.channel import codec
from services.channel.apibatches import ApiBatches
from services.voice import keys as voice_keys
from services.voice import metrics
from services.voice.channel import NAME


def _count_expired(trunk: str, n: int) -> None:
    """`tocsin_voice_calls_total`, as the channel counts a call that expired unplaced."""
    metrics.CALLS.labels(trunk=trunk, outcome="gave_up_expired").inc(n)


#: API calls go after every alert: the bulk lane, with tests and exercises. Each batch is
#: spoken in its own language (the table's `language` column).
BATCHES = ApiBatches(
    channel=NAME,
    lane=codec.Priority.BULK,
    intact_key=voice_keys.API_INTACT,
    lock_key=voice_keys.API_REPAIR_LOCK,
    written_key=voice_keys.api_batch_written,
    language="",
    batches_requeued=metrics.API_BATCHES_REQUEUED,
    recipients_requeued=metrics.API_CALLS_REQUEUED,
    count_expired=_count_expired,
)
