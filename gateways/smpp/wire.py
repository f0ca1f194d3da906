"""The byte side of an SMPP connection, shared by the ESME session and the SMSC simulator.

Frames PDUs out of the stream, coalesces the PDUs written during one event-loop turn and the next
into one write (a windowed peer otherwise pays a syscall per PDU) and disables Nagle's algorithm.
"""

from __future__ import annotations

import asyncio
import socket
from typing import cast

from gateways.smpp.pdu import Framer, PduError


class PduProtocol(asyncio.Protocol):
    """asyncio.Protocol that hands whole PDUs to `on_pdu` and unreadable bytes to `on_garbage`."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._framer = Framer()
        self._out: list[bytes] = []
        self._flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport and set TCP_NODELAY."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        """Dispatch every whole PDU received."""
        try:
            for raw in self._framer.feed(data):
                self.on_pdu(raw)
        except PduError as exc:
            self.on_garbage(exc)

    def on_pdu(self, raw: bytes) -> None:
        """Handle one whole PDU (raise PduError if it cannot be read)."""
        raise NotImplementedError

    def on_garbage(self, exc: PduError) -> None:
        """Handle bytes that are not SMPP."""
        raise NotImplementedError

    @property
    def writable(self) -> bool:
        """True while the transport accepts writes."""
        return self.transport is not None and not self.transport.is_closing()

    def send(self, data: bytes) -> None:
        """Queue a PDU; everything queued in this loop turn and the next goes out in one write."""
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_next_turn)

    def _flush_next_turn(self) -> None:
        # One turn later: the tasks woken by what this turn read (answers, freed window slots)
        # send in the next turn; waiting for them halves the writes, and the peer's reads.
        self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is queued now."""
        self._flush_scheduled = False
        if self._out and self.writable:
            assert self.transport is not None
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def close(self) -> None:
        """Flush, then close gracefully."""
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping anything unsent."""
        self._out.clear()
        if self.transport is not None:
            self.transport.abort()
