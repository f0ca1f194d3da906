"""What the information line needs from outside: the contact-centre provider and the clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from services.alerting.infoline.model import Arrangements, Line, ProviderEvent, QuestionAnswer


class ContactCentre(Protocol):
    """The provider on standby: takes activations and changes, reports in an ordered feed.

    Every call is idempotent for the same line (and version): a retry after a lost answer does
    not act twice.
    """

    async def activate(self, *, line: Line) -> None:
        """Hand the activation form over."""
        ...

    async def events(self, *, line_id: str, after: int) -> list[ProviderEvent]:
        """The line's reports after sequence number `after`, in order."""
        ...

    async def liaison(
        self, *, line_id: str, version: int, items: tuple[QuestionAnswer, ...]
    ) -> None:
        """Hand over a version of the liaison officer's questions and answers."""
        ...

    async def transfer(self, *, line_id: str, number: str) -> None:
        """Transfer callers to a local second line."""
        ...

    async def arrange(self, *, line_id: str, arrangements: Arrangements) -> None:
        """Reduce the line (a gradual closure step)."""
        ...

    async def close(self, *, line_id: str, statement: str, confirmed_by: str) -> None:
        """Close the line, with the authorised person's written confirmation."""
        ...


class Clock(Protocol):
    """Now, injected so that the one-hour promise is tested without waiting an hour."""

    def __call__(self) -> datetime:
        """The current time, aware, UTC."""
        ...


def utc_now() -> datetime:
    """The wall clock (the production `Clock`)."""
    return datetime.now(UTC)
