"""What the cell broadcast service needs of an operator's CBC and LB-SMS platform.

One adapter per operator protocol (the ECBE REST one of osmo-cbc, an operator's LB-SMS request)
is wired in `__main__`; the service sees only these. An operator's answer (`Reply`, its `Outcome`)
is the one the gateways sort it into: telecom.answers, which both may import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from telecom.answers import Answer as Reply
from telecom.answers import Outcome

__all__ = ["Cbc", "CbsPayload", "LbSms", "Outcome", "Reply"]


@dataclass(frozen=True)
class CbsPayload:
    """One CBS message as encoded for the CBC."""

    message_id: int
    dcs: int
    pages: tuple[bytes, ...]


class Cbc(Protocol):
    """An operator's cell broadcast centre."""

    async def create(
        self,
        *,
        message: CbsPayload,
        msg_code: int,
        update_nr: int,
        cells: tuple[str, ...],
        warning_period_s: int,
    ) -> Reply:
        """Ask the CBC to broadcast one CBS message in the cells."""
        ...

    async def delete(self, *, message_id: int) -> Reply:
        """Ask the CBC to stop broadcasting the message with this identifier."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...


class LbSms(Protocol):
    """An operator's location-based SMS platform."""

    async def submit(
        self,
        *,
        request_id: str,
        texts: dict[str, str],
        cells: tuple[str, ...],
        validity_s: int,
        sender: str,
        polygon: str = "",
    ) -> Reply:
        """Ask for an SMS to every phone in the zone: the cells, or the polygon (GeoJSON) when
        given; the reply counts the phones reached."""
        ...

    async def cancel(self, *, request_id: str) -> Reply:
        """Stop what is not sent yet."""
        ...

    async def close(self) -> None:
        """Release the connections."""
        ...
