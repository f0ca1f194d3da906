"""An SMTP client to one relay: a pool of long-lived connections, one transaction per message.

aiosmtplib serialises commands on a connection, so throughput comes from several connections,
each carrying one transaction at a time. A transaction is MAIL, one RCPT per recipient (each
answer read on its own), DATA: 2xx accepted, 4xx temporary, 5xx permanent, per address.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import aiosmtplib

log = logging.getLogger(__name__)


class Disposition(StrEnum):
    """What the relay's answers mean for one recipient of one transaction."""

    #: The relay took the message for this address (RCPT 2xx, then DATA 2xx).
    ACCEPTED = "accepted"
    #: A 4xx (or no connection): not taken; try again later.
    TEMPORARY = "temporary"
    #: A 5xx: the relay refuses this address for good.
    PERMANENT = "permanent"
    #: The connection was lost after the message was sent but before the relay's answer: it may
    #: or may not have been taken; trying again may send it twice.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Reply:
    """The relay's answer for one recipient."""

    address: str
    disposition: Disposition
    #: SMTP reply code (0 when the connection failed before one came).
    code: int
    text: str


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Where the relay is and how to talk to it."""

    host: str
    port: int
    #: `auto` (STARTTLS when offered), `starttls` (required), `tls` (implicit TLS), `none`.
    tls: str = "auto"
    username: str = ""
    password: str = ""
    #: Connections kept open; one transaction at a time on each.
    connections: int = 4
    #: Seconds for each command's answer (DATA included).
    timeout_s: float = 30.0
    #: Name given in EHLO (empty: the local host name).
    helo_name: str = ""
    #: CA bundle (PEM) to trust instead of the system's, e.g. a private relay's.
    ca_file: str = ""
    #: Check the relay's certificate (off only for tests and private relays).
    verify_tls: bool = True

    def __post_init__(self) -> None:
        if self.tls not in ("auto", "starttls", "tls", "none"):
            raise ValueError(f"tls {self.tls!r}: one of auto, starttls, tls, none")
        if self.connections < 1:
            raise ValueError("connections: at least 1")


def _disposition(code: int) -> Disposition:
    if 200 <= code < 300:
        return Disposition.ACCEPTED
    return Disposition.PERMANENT if 500 <= code < 600 else Disposition.TEMPORARY


_LOST = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError, OSError)


class SmtpPool:
    """Long-lived connections to one relay; `send` runs one transaction on a free one."""

    def __init__(self, config: RelayConfig) -> None:
        self._config = config
        self._idle: asyncio.Queue[aiosmtplib.SMTP | None] = asyncio.Queue()
        for _ in range(config.connections):
            self._idle.put_nowait(None)
        self._closed = False
        #: Transactions run and connections opened, for metrics and benchmarks.
        self.transactions = 0
        self.connects = 0

    @property
    def busy(self) -> int:
        """Connections running a transaction (or connecting for one) now."""
        return self._config.connections - self._idle.qsize()

    def _client(self) -> aiosmtplib.SMTP:
        c = self._config
        context: ssl.SSLContext | None = None
        if c.tls != "none":
            context = ssl.create_default_context(cafile=c.ca_file or None)
            if not c.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        return aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            username=c.username or None,
            password=c.password or None,
            local_hostname=c.helo_name or None,
            timeout=c.timeout_s,
            use_tls=c.tls == "tls",
            start_tls={"auto": None, "starttls": True}.get(c.tls, False),
            tls_context=context,
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        client = self._client()
        # connect() says EHLO, upgrades with STARTTLS as configured, logs in when given an account.
        await client.connect()
        self.connects += 1
        return client

    async def send(
        self, *, envelope_from: str, recipients: Sequence[str], message: bytes
    ) -> list[Reply]:
        """One transaction: the relay's answer per recipient, in order (relay trouble: no raise)."""
        if self._closed:
            raise RuntimeError("the pool is closed")
        client = await self._idle.get()
        try:
            fresh = client is None
            for attempt in (1, 2):
                try:
                    if client is None:
                        client = await self._connect()
                        fresh = True
                    replies, keep = await self._transaction(
                        client, envelope_from, recipients, message
                    )
                except _Early as early:
                    # The connection died before anything was sent: a stale idle connection is
                    # normal (relays close idle ones), so one retry on a fresh one.
                    client = _drop(client)
                    if fresh or attempt == 2:
                        return _all(recipients, Disposition.TEMPORARY, early.code, early.text)
                    continue
                except _LOST as exc:
                    client = _drop(client)
                    log.warning(
                        "relay %s:%s unreachable: %s", self._config.host, self._config.port, exc
                    )
                    return _all(
                        recipients, Disposition.TEMPORARY, 0, str(exc) or type(exc).__name__
                    )
                except aiosmtplib.SMTPException as exc:
                    client = _drop(client)
                    code = getattr(exc, "code", 0)
                    return _all(recipients, Disposition.TEMPORARY, code, str(exc))
                if not keep:
                    client = _drop(client)
                self.transactions += 1
                return replies
            raise AssertionError("unreachable")
        finally:
            self._idle.put_nowait(client)

    async def _transaction(
        self,
        client: aiosmtplib.SMTP,
        envelope_from: str,
        recipients: Sequence[str],
        message: bytes,
    ) -> tuple[list[Reply], bool]:
        try:
            await client.mail(envelope_from)
        except aiosmtplib.SMTPResponseException as exc:
            # 421 at MAIL: the relay is closing this connection (too many messages, shutting down).
            keep = exc.code != 421 and await _reset(client)
            return _all(recipients, _disposition(exc.code), exc.code, exc.message), keep
        except _LOST as exc:
            raise _Early(0, str(exc) or type(exc).__name__) from exc
        replies: dict[str, Reply] = {}
        accepted: list[str] = []
        try:
            for address in recipients:
                wire = _wire_address(address)
                if wire is None:
                    replies[address] = Reply(address, Disposition.PERMANENT, 553, _UNSENDABLE)
                    continue
                # RCPT through execute_command: aiosmtplib's rcpt() parses every address with
                # the email package's header parser, half of the client's CPU per recipient.
                answer = await client.execute_command(b"RCPT", b"TO:" + wire)
                if answer.code in (250, 251):
                    accepted.append(address)
                replies[address] = Reply(
                    address, _disposition(answer.code), answer.code, answer.message
                )
            if not accepted:
                return [replies[a] for a in recipients], await _reset(client)
        except _LOST as exc:
            # Nothing was sent: every recipient of this transaction is still to do.
            text = str(exc) or type(exc).__name__
            return _all(recipients, Disposition.TEMPORARY, 0, text), False
        try:
            done = await client.data(message)
        except aiosmtplib.SMTPDataError as exc:
            refused = Disposition.PERMANENT if exc.code >= 500 else Disposition.TEMPORARY
            for address in accepted:
                replies[address] = Reply(address, refused, exc.code, exc.message)
            return [replies[a] for a in recipients], await _reset(client)
        except _LOST as exc:
            text = str(exc) or type(exc).__name__
            for address in accepted:
                replies[address] = Reply(address, Disposition.UNKNOWN, 0, text)
            return [replies[a] for a in recipients], False
        for address in accepted:
            replies[address] = Reply(address, Disposition.ACCEPTED, done.code, done.message)
        return [replies[a] for a in recipients], True

    async def close(self) -> None:
        """Say QUIT on every idle connection; later sends are refused."""
        self._closed = True
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client is not None and client.is_connected:
                try:
                    await asyncio.wait_for(client.quit(), timeout=2.0)
                except (*_LOST, aiosmtplib.SMTPException):
                    client.close()


class _Early(Exception):
    """The connection failed before the relay saw any recipient."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


#: What an address may not contain on the wire (we do not speak SMTPUTF8).
_UNSENDABLE = "address not sendable: non-ASCII, spaces, angle brackets or line breaks"


def _wire_address(address: str) -> bytes | None:
    """`<address>` as RCPT carries it, or None when it cannot go on the wire as is."""
    if not address.isascii() or any(c in address for c in " <>\r\n\t") or "@" not in address:
        return None
    return b"<" + address.encode("ascii") + b">"


def _all(recipients: Sequence[str], disposition: Disposition, code: int, text: str) -> list[Reply]:
    return [Reply(a, disposition, code, text) for a in recipients]


async def _reset(client: aiosmtplib.SMTP) -> bool:
    """RSET after a refused transaction; False when the connection is no longer usable."""
    try:
        await client.rset()
    except (*_LOST, aiosmtplib.SMTPException):
        return False
    return True


def _drop(client: aiosmtplib.SMTP | None) -> aiosmtplib.SMTP | None:
    """Close a connection that can no longer be trusted; None to put back in the pool."""
    if client is not None:
        client.close()
    return None
