"""One TCP connection to an SMSC speaking SMPP 3.4, as an asyncio.Protocol.

The session frames PDUs, matches responses to requests by sequence number, answers the SMSC's
enquire_link, unbind and deliver_sm, and turns anything it cannot read into a dropped session.
It knows nothing of reconnecting or windows: `gateways.smpp.client` does that.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateways.smpp import pdu as P
from gateways.smpp.errors import (
    CommandStatus,
    ConnectionLostError,
    ProtocolError,
    SessionError,
)
from gateways.smpp.receipts import DeliveryReceipt, ReceiptError, receipt_from_deliver_sm
from gateways.smpp.wire import PduProtocol

log = logging.getLogger(__name__)

ReceiptHandler = Callable[[DeliveryReceipt], Awaitable[None] | None]

#: Response to a request: (command_id, command_status, message_id). LOST marks a dropped session.
Response = tuple[int, int, str]
LOST: Response = (0, -1, "")


class Session(PduProtocol):
    """A single SMPP connection; requests return futures of `Response`."""

    def __init__(self, *, name: str, on_receipt: ReceiptHandler | None) -> None:
        super().__init__()
        self.name = name
        self._on_receipt = on_receipt
        self._seq = P.SequenceGenerator()
        #: seq -> (future, monotonic send time); insertion order keeps the oldest first.
        self.pending: dict[int, tuple[asyncio.Future[Response], float]] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self.last_rx = self.loop.time()
        self.closed: asyncio.Future[SessionError] = self.loop.create_future()

    # -- asyncio.Protocol -------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        """Note the time (for the dead-link check), then frame and dispatch."""
        self.last_rx = self.loop.time()
        super().data_received(data)

    def on_garbage(self, exc: P.PduError) -> None:
        """Bytes that are not SMPP: the stream cannot be resynchronised, drop the session."""
        self.drop(ProtocolError(f"{self.name}: undecodable bytes from SMSC: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        """Resolve everything outstanding as lost."""
        self._finish(ConnectionLostError(f"{self.name}: connection lost: {exc or 'closed'}"))

    # -- requests -----------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """True until the connection is closed or aborted."""
        return not self.closed.done()

    def next_sequence(self) -> int:
        """Allocate a sequence number."""
        return self._seq()

    def request(self, data: bytes, sequence: int) -> asyncio.Future[Response]:
        """Send a request PDU already encoded with `sequence` and return its response future."""
        fut: asyncio.Future[Response] = self.loop.create_future()
        if not self.is_open:
            fut.set_result(LOST)
            return fut
        self.pending[sequence] = (fut, self.loop.time())
        self.send(data)
        return fut

    def oldest_pending_age(self) -> float:
        """Seconds the oldest unanswered request has waited (0 if none)."""
        for _fut, sent in self.pending.values():
            return self.loop.time() - sent
        return 0.0

    def drop(self, error: SessionError) -> None:
        """Drop the connection at once (no unbind), failing everything outstanding."""
        if self.is_open:
            log.warning("%s: dropping session: %s", self.name, error)
        self._finish(error)
        self.abort()

    # -- internals ----------------------------------------------------------------------------

    def _finish(self, error: SessionError) -> None:
        if self.closed.done():
            return
        self.closed.set_result(error)
        pending, self.pending = self.pending, {}
        for fut, _sent in pending.values():
            if not fut.done():
                fut.set_result(LOST)

    def on_pdu(self, raw: bytes) -> None:
        """Dispatch one PDU from the SMSC."""
        _length, command_id, status, sequence = P.header(raw)
        if command_id == P.SUBMIT_SM_RESP:
            self._resolve(command_id, sequence, P.decode_resp(raw))
        elif command_id == P.DELIVER_SM:
            self._on_deliver_sm(raw, sequence)
        elif command_id & P.RESP:
            self._resolve(command_id, sequence, (status, sequence, ""))
        elif command_id == P.ENQUIRE_LINK:
            self.send(P.encode_other("enquire_link_resp", sequence=sequence))
        elif command_id == P.UNBIND:
            self.send(P.encode_other("unbind_resp", sequence=sequence))
            self.unbinding = True
            self._finish(ConnectionLostError(f"{self.name}: SMSC unbound"))
            self.close()
        else:
            log.warning("%s: unsupported %s from SMSC", self.name, P.command_name(command_id))
            self.send(
                P.encode_other(
                    "generic_nack", sequence=sequence, status=CommandStatus.ESME_RINVCMDID
                )
            )

    def _resolve(self, command_id: int, sequence: int, resp: tuple[int, int, str]) -> None:
        entry = self.pending.pop(sequence, None)
        if entry is None:
            if command_id == P.GENERIC_NACK and sequence == 0:
                log.warning("%s: generic_nack 0x%x without sequence", self.name, resp[0])
            elif command_id != P.ENQUIRE_LINK_RESP:
                log.warning(
                    "%s: %s for unknown sequence %d",
                    self.name,
                    P.command_name(command_id),
                    sequence,
                )
            return
        fut = entry[0]
        if not fut.done():
            fut.set_result((command_id, resp[0], resp[2]))

    def _on_deliver_sm(self, raw: bytes, sequence: int) -> None:
        pdu = P.decode_deliver_sm(raw)
        if not pdu.is_receipt or self._on_receipt is None:
            self._ack(sequence, CommandStatus.ESME_ROK)
            return
        try:
            receipt = receipt_from_deliver_sm(pdu)
        except ReceiptError as exc:
            log.warning("%s: unreadable receipt acknowledged and dropped: %s", self.name, exc)
            self._ack(sequence, CommandStatus.ESME_ROK)
            return
        try:
            result = self._on_receipt(receipt)
        except Exception:
            log.exception("%s: receipt handler failed; answering ESME_RX_T_APPN", self.name)
            self._ack(sequence, CommandStatus.ESME_RX_T_APPN)
            return
        if isinstance(result, asyncio.Future):
            # A plain future (the SMS service's recorder): no task, no isawaitable ABC check.
            result.add_done_callback(functools.partial(self._after_future, sequence))
            return
        if not inspect.isawaitable(result):
            self._ack(sequence, CommandStatus.ESME_ROK)
            return
        task = asyncio.ensure_future(result)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._after_handler(t, sequence))

    def _after_future(self, sequence: int, fut: asyncio.Future[Any]) -> None:
        self._after_handler(fut, sequence)

    def _after_handler(self, task: asyncio.Future[Any], sequence: int) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            self._ack(sequence, CommandStatus.ESME_RX_T_APPN)
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s: receipt handler failed: %r; answering ESME_RX_T_APPN", self.name, exc)
            self._ack(sequence, CommandStatus.ESME_RX_T_APPN)
        else:
            self._ack(sequence, CommandStatus.ESME_ROK)

    def _ack(self, sequence: int, status: int) -> None:
        if self.is_open:
            self.send(P.encode_resp(P.DELIVER_SM_RESP, sequence, status))
