"""The small interfaces the voice service needs: a dialer, speech, and rate-limit tokens.

The concrete ones (`gateways.sip`, `gateways.tts`, `ratelimit`) are wired in `__main__` only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, TypeVar

P = TypeVar("P")
P_contra = TypeVar("P_contra", contravariant=True)
P_co = TypeVar("P_co", covariant=True)


class CallReport(Protocol):
    """How one call attempt ended, as the dialer reports it."""

    @property
    def outcome(self) -> str:
        """answered, busy, no_answer, rejected, trunk_trouble or abandoned."""
        ...

    @property
    def status(self) -> int:
        """Final SIP status of the INVITE; 0 when none came."""
        ...

    @property
    def call_id(self) -> str:
        """The call's SIP Call-ID (recorded as the operator's reference)."""
        ...

    @property
    def retry_after(self) -> float | None:
        """Seconds a 503 asked us to keep away from the trunk; None when it did not say."""
        ...

    @property
    def heard_fully(self) -> bool:
        """Every frame of the message, both times, went out."""
        ...


class Dialer(Protocol[P_contra]):
    """Places one call on a trunk and plays a prompt to whoever answers."""

    async def call(
        self,
        *,
        trunk: str,
        number: str,
        prompt: P_contra,
        abandon: asyncio.Event,
    ) -> CallReport:
        """Ring `number`; give up before an answer once `abandon` is set; never raises."""
        ...


class Speech(Protocol[P_co]):
    """Renders text as a prompt the dialer plays (slow: tens of milliseconds and more)."""

    def render(self, *, text: str, language: str) -> P_co:
        """The prompt of `text` in `language`; ValueError names an unknown language."""
        ...


class TokenLease(Protocol):
    """Tokens granted together, handed out at the tightest bucket's pace."""

    @property
    def remaining(self) -> int:
        """Tokens not yet taken."""
        ...

    async def take(self) -> bool:
        """Wait for the next token's slot; False when the lease ran out."""
        ...


class TokenSource(Protocol):
    """The distributed rate limiter (`ratelimit.limiter.Limiter`)."""

    async def lease(self, buckets: Sequence[str]) -> TokenLease:
        """The rules' lease of tokens from every bucket at once."""
        ...
