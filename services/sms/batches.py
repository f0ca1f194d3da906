"""SMS API batches: the SMS channel's `ApiBatches` (services/channel/apibatches.py), kept in
`sms_api_batches` (migrations/0080_sms_api_batches.sql), so that the repair
(services/sms/repair.py) can write their stream entries again after Redis lost its data
(docs/sms.md, "Faults").

The send (services/sms/api.py) records the batch's row in the transaction that queues its
recipients, and writes the entries before that transaction commits; a batch's row goes a day
after its expiry (`ApiBatches.forget_expired`, run by the SMS service's retention).
"""

from __future__ import annotations

from services.channel import codec
from services.channel.apibatches import ApiBatches
from services.channel.control import API_PREFIX
from services.sms import keys as sms_keys
from services.sms import metrics
from services.sms.channel import NAME

#: The one language of an API batch's text.
LANGUAGE = "en"


def _count_expired(operator: str, n: int) -> None:
    """`tocsin_sms_failed_total`, as the channel counts a text that expired unsent."""
    metrics.FAILED.labels(operator, "expired").inc(n)


#: API traffic goes after every alert: the bulk lane, with tests and exercises.
BATCHES = ApiBatches(
    channel=NAME,
    lane=codec.Priority.BULK,
    intact_key=sms_keys.API_INTACT,
    lock_key=sms_keys.API_REPAIR_LOCK,
    written_key=sms_keys.api_batch_written,
    language=LANGUAGE,
    batches_requeued=metrics.API_BATCHES_REQUEUED,
    recipients_requeued=metrics.API_RECIPIENTS_REQUEUED,
    count_expired=_count_expired,
)


def entity_of(caller: str) -> str:
    """The caller's share of the bulk lane: the API's callers share it fairly, each as one."""
    return f"{API_PREFIX}{caller}"
