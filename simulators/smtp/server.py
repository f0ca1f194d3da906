"""The relay simulator: an aiosmtpd server in the caller's event loop, counting per recipient."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import weakref
from collections import Counter
from datetime import datetime
from email.utils import format_datetime, make_msgid
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from simulators.smtp.config import RelayConfig

log = logging.getLogger(__name__)


def dsn(*, reporting: str, envelope_from: str, recipient: str, status: str, text: str) -> bytes:
    """An RFC 3464 delivery status notification saying the recipient failed, as an MTA writes it."""
    boundary = make_msgid(domain=reporting).strip("<>")
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting}>",
        f"To: {envelope_from}",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {format_datetime(datetime.now().astimezone())}",
        f"Message-ID: {make_msgid(domain=reporting)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"Your message could not be delivered to {recipient}: {text}",
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {reporting}",
        "",
        f"Final-Recipient: rfc822; {recipient}",
        "Action: failed",
        f"Status: {status}",
        f"Diagnostic-Code: smtp; 550 {text}",
        "",
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode()


async def send_dsn(report: bytes, *, to: str, host: str, port: int) -> None:
    """Hand a DSN to a mail server with the null return path (`MAIL FROM:<>`, RFC 5321 4.5.5)."""
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=10) as client:
        await client.sendmail("", [to], report)


class _Handler:
    def __init__(self, sim: RelaySimulator) -> None:
        self.sim = sim

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        sim, c = self.sim, self.sim.config
        if c.delay_s:
            await asyncio.sleep(c.delay_s)
        sim.rcpts[address] += 1
        if len(envelope.rcpt_tos) >= c.max_recipients:
            return "452 4.5.3 Too many recipients"
        if sim.permanent and sim.permanent.search(address):
            sim.refused_permanent[address] += 1
            return "550 5.1.1 No such user here"
        tries = sim.refused_temporary[address]
        if (
            sim.temporary
            and sim.temporary.search(address)
            and (not c.temporary_times or tries < c.temporary_times)
        ):
            sim.refused_temporary[address] += 1
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        sim, c = self.sim, self.sim.config
        if c.delay_s:
            await asyncio.sleep(c.delay_s)
        sim.data_commands += 1
        drop = c.drop_every and sim.data_commands % c.drop_every == 0
        if drop and not c.drop_after_data:
            sim.drops += 1
            _abort(server)
            return "421 4.4.2 dropped"
        sim.transactions += 1
        sim.largest_transaction = max(sim.largest_transaction, len(envelope.rcpt_tos))
        content = envelope.original_content or b""
        for address in envelope.rcpt_tos:
            sim.received[address] += 1
            if c.keep_messages:
                sim.messages.setdefault(address, []).append(content)
            if sim.bounce and sim.bounce.search(address) and c.bounce_to:
                sim.pending_bounces.append((envelope.mail_from or "", address))
        if sim.pending_bounces:
            sim.wake.set()
        async with sim.taken:
            sim.taken.notify_all()
        if drop:
            # The worst case: the relay took the message, the client never hears it.
            sim.drops += 1
            _abort(server)
        return "250 2.0.0 Queued"


class _FastSMTP(SMTP):
    """aiosmtpd's server, with a fast path for the plain `<local@domain>` the client sends.

    aiosmtpd parses every address with the email package's header parser: three quarters of the
    simulator's CPU per recipient, which a benchmark would measure instead of the service.
    """

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        text = arg.strip()
        if text.startswith("<"):
            address, closed, rest = text[1:].partition(">")
            if closed and address.count("@") == 1 and not any(c in address for c in ' "\\()'):
                return address, rest.strip()
        return super()._getaddr(arg)


def _abort(server: SMTP) -> None:
    if isinstance(server.transport, asyncio.Transport):
        server.transport.abort()


class RelaySimulator:
    """A relay on loopback; `received` counts per recipient every message it took."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.temporary = re.compile(config.temporary_pattern) if config.temporary_pattern else None
        self.permanent = re.compile(config.permanent_pattern) if config.permanent_pattern else None
        self.bounce = re.compile(config.bounce_pattern) if config.bounce_pattern else None
        #: Messages taken per recipient (a value above 1 is a duplicate).
        self.received: Counter[str] = Counter()
        self.rcpts: Counter[str] = Counter()
        self.refused_temporary: Counter[str] = Counter()
        self.refused_permanent: Counter[str] = Counter()
        self.messages: dict[str, list[bytes]] = {}
        #: The port it listens on, once started.
        self.port = 0
        self.transactions = 0
        #: Most recipients taken in one transaction.
        self.largest_transaction = 0
        self.data_commands = 0
        self.drops = 0
        self.connections = 0
        self.bounces_sent = 0
        self.pending_bounces: list[tuple[str, str]] = []
        self.wake = asyncio.Event()
        self.taken = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._bouncer: asyncio.Task[None] | None = None
        self._tls: ssl.SSLContext | None = None
        self._protocols: weakref.WeakSet[SMTP] = weakref.WeakSet()
        if config.tls_cert:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(config.tls_cert, config.tls_key)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.config.username
            and data.password.decode() == self.config.password
        )
        return AuthResult(success=ok, handled=False)

    def _protocol(self) -> SMTP:
        self.connections += 1
        c = self.config
        protocol = _FastSMTP(
            _Handler(self),
            hostname=c.name,
            tls_context=self._tls,
            require_starttls=bool(c.username) and self._tls is not None,
            auth_required=bool(c.username),
            authenticator=self._authenticate if c.username else None,
            auth_require_tls=self._tls is not None,
        )
        self._protocols.add(protocol)
        return protocol

    async def start(self) -> int:
        """Listen; the port it listens on."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.config.host, self.config.port)
        if self.config.bounce_to:
            self._bouncer = asyncio.create_task(self._bounce_loop())
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def wait_received(self, count: int) -> None:
        """Wait until the relay has taken `count` messages (recipients counted once each time)."""
        async with self.taken:
            await self.taken.wait_for(lambda: sum(self.received.values()) >= count)

    def drop_connections(self) -> None:
        """Drop every open connection at once (a relay restarting, an idle timeout)."""
        for protocol in list(self._protocols):
            _abort(protocol)

    async def _bounce_loop(self) -> None:
        host, _, port = self.config.bounce_to.rpartition(":")
        while True:
            await self.wake.wait()
            self.wake.clear()
            pending, self.pending_bounces = self.pending_bounces, []
            for envelope_from, recipient in pending:
                report = dsn(
                    reporting=self.config.name,
                    envelope_from=envelope_from,
                    recipient=recipient,
                    status="5.1.1",
                    text="mailbox unavailable",
                )
                try:
                    await send_dsn(report, to=envelope_from, host=host, port=int(port))
                    self.bounces_sent += 1
                except (aiosmtplib.SMTPException, OSError) as exc:
                    log.warning("bounce to %s not delivered: %s", envelope_from, exc)
                    self.pending_bounces.append((envelope_from, recipient))
                    await asyncio.sleep(0.2)
                    self.wake.set()

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._bouncer is not None:
            self._bouncer.cancel()
        if self._server is not None:
            self._server.close()
            self.drop_connections()
            await self._server.wait_closed()
