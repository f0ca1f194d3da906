"""SMPP 3.4 gateway: an asyncio ESME client that speaks SMPP and nothing else.

Routing between operators, throttling decisions and billing belong to the SMS service; this package
only binds, submits, reports outcomes and hands over delivery receipts. See docs/smpp.md.
"""

from gateways.smpp.client import (
    BindConfig,
    BindMode,
    SessionGate,
    SmppClient,
    SubmitRequest,
    SubmitResult,
)
from gateways.smpp.errors import (
    BindRefusedError,
    CommandStatus,
    ConnectionLostError,
    DeadLinkError,
    GenericNackError,
    ProtocolError,
    SessionError,
    SmppError,
    SubmitOutcome,
    TransactionError,
    classify_status,
)
from gateways.smpp.gsm import encode_text, is_gsm, segment_count
from gateways.smpp.ids import IdFormat
from gateways.smpp.pool import SmppPool
from gateways.smpp.receipts import DeliveryReceipt, ReceiptState

__all__ = [
    "BindConfig",
    "BindMode",
    "BindRefusedError",
    "CommandStatus",
    "ConnectionLostError",
    "DeadLinkError",
    "DeliveryReceipt",
    "GenericNackError",
    "IdFormat",
    "ProtocolError",
    "ReceiptState",
    "SessionError",
    "SessionGate",
    "SmppClient",
    "SmppError",
    "SmppPool",
    "SubmitOutcome",
    "SubmitRequest",
    "SubmitResult",
    "TransactionError",
    "classify_status",
    "encode_text",
    "is_gsm",
    "segment_count",
]
