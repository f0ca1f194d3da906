"""The small interfaces the e-mail service needs from an SMTP gateway.

The concrete one (`gateways.smtp`) is wired in `__main__` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol


class RelayReply(Protocol):
    """The relay's answer for one recipient of a transaction."""

    @property
    def address(self) -> str: ...

    @property
    def disposition(self) -> str:
        """`accepted`, `temporary` (4xx, or no answer), `permanent` (5xx), or `unknown`
        (the connection was lost after the message went: it may have been taken)."""
        ...

    @property
    def code(self) -> int: ...

    @property
    def text(self) -> str: ...


class Relay(Protocol):
    """A pool of connections to the relay; one transaction per call."""

    async def send(
        self, *, envelope_from: str, recipients: Sequence[str], message: bytes
    ) -> Sequence[RelayReply]:
        """MAIL, one RCPT per recipient, DATA; the answer per recipient, in order."""
        ...


class Composer(Protocol):
    """Builds (and signs, where configured) the message bytes: once per alert version and
    language, whatever the number of recipients."""

    def __call__(
        self, *, subject: str, text: str, language: str, message_id: str, date: datetime
    ) -> bytes: ...


class ReturnPath(Protocol):
    """The envelope sender of one transaction, carrying its tag (`bounces+<tag>@domain`)."""

    def __call__(self, tag: str) -> str: ...
