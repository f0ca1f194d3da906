"""A receiver for bounces: an SMTP server (aiosmtpd) that hands every DSN's reports to a callback.

A DSN is answered 250 only once the callback has returned (the outcome is durable), so a failure
there answers 451 and the reporting MTA tries again later. Anything that is not a DSN (an
auto-reply, spam) is accepted and dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateways.smtp import dsn

log = logging.getLogger(__name__)

#: Called with the tags of the envelope's recipients (`bounces+<tag>@`) and the reports.
OnBounces = Callable[[Sequence[str], Sequence[dsn.Bounce]], Awaitable[None]]


class _Handler:
    def __init__(self, receiver: BounceReceiver) -> None:
        self.receiver = receiver

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reports = dsn.parse(envelope.original_content or b"")
        tags = [t for t in (dsn.tag_of(a) for a in envelope.rcpt_tos) if t is not None]
        self.receiver.received += 1
        if not reports or not tags:
            self.receiver.ignored += 1
            return "250 2.0.0 Accepted"
        try:
            await self.receiver.on_bounces(tags, reports)
        except Exception:  # the reporting MTA keeps the DSN and retries: nothing is lost
            log.exception("bounce not recorded; answering 451")
            return "451 4.3.0 Not recorded, try again later"
        return "250 2.0.0 Recorded"


class BounceReceiver:
    """Listen for DSNs on loopback or an interface; `on_bounces` records them."""

    def __init__(self, *, on_bounces: OnBounces, host: str = "127.0.0.1", port: int = 0) -> None:
        self.on_bounces = on_bounces
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        #: Messages received, and those that were no DSN of ours.
        self.received = 0
        self.ignored = 0

    async def start(self) -> int:
        """Listen; the port it listens on."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(_Handler(self), hostname="bounces"), self._host, self._port
        )
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
