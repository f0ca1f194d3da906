"""What the alerting service needs of other services, as small interfaces (wired in __main__)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.alerting.model import Channel


@dataclass(frozen=True)
class AudienceCount:
    """Recipients of one channel in one language."""

    channel: Channel
    language: str
    recipients: int


@dataclass(frozen=True)
class AudiencePreview:
    """Targeting's answer to "whom would this reach, at what cost"."""

    audiences: tuple[AudienceCount, ...]
    #: Communication units (SMS segments plus voice messages).
    units: int


@dataclass(frozen=True)
class Sent:
    """What a channel reports for one alert, over all its versions."""

    #: Handed to an operator (delivered ones included).
    submitted: int = 0
    delivered: int = 0
    failed: int = 0
    #: Not sent: cancelled, or superseded by a newer version, before it was handed over.
    dropped: int = 0
    #: Communication units handed to operators (SMS segments, voice messages).
    units: int = 0


class Targeting(Protocol):
    """Counts an audience and resolves it into the channels' work streams."""

    async def preview(
        self,
        *,
        entity_id: int,
        zone_geojson: str,
        group_ids: tuple[int, ...],
        channels: tuple[Channel, ...],
        texts: dict[str, str],
    ) -> AudiencePreview:
        """Recipients per channel and language, and the units the texts would use."""
        ...

    async def cells(self, *, entity_id: int, zone_geojson: str) -> dict[str, tuple[str, ...]]:
        """The operators' cells covering the zone, per operator."""
        ...

    async def resolve(
        self,
        *,
        entity_id: int,
        alert_id: str,
        version: int,
        kind: str,
        expires: float,
        sender: str,
        texts: dict[str, str],
        channels: tuple[Channel, ...],
        zone_geojson: str,
        group_ids: tuple[int, ...],
    ) -> dict[Channel, int]:
        """Enqueue every recipient; return how many per channel."""
        ...


@dataclass(frozen=True)
class OperatorAck:
    """One operator's answer to a broadcast request."""

    operator: str
    accepted: bool
    error: str = ""
    #: requested, retrying, accepted, refused, withdrawn, superseded.
    state: str = ""
    cells: int = 0
    #: LB-SMS: phones reached.
    phones: int = 0


@dataclass(frozen=True)
class BroadcastContent:
    """What the operators broadcast of an alert version (identifiers follow kind and severity)."""

    version: int
    kind: str
    severity: str
    urgency: str
    certainty: str
    #: (language, final text), the primary language first.
    texts: tuple[tuple[str, str], ...]
    expires_unix_s: float
    sender: str
    #: The alert's zone (GeoJSON), for LB-SMS platforms that take a polygon rather than cells.
    zone_geojson: str = ""


@dataclass(frozen=True)
class OperatorStatus:
    """Where one operator is with one presence channel of an alert."""

    operator: str
    channel: Channel
    action: str
    version: int
    state: str
    reason: str
    cells: int
    phones: int


class Broadcasts(Protocol):
    """Requests to the operators' cell broadcast centres (cell broadcast and LB-SMS)."""

    async def broadcast(
        self,
        *,
        alert_id: str,
        cap_xml: str,
        cells: dict[str, tuple[str, ...]],
        location_based_sms: bool,
        content: BroadcastContent,
    ) -> tuple[OperatorAck, ...]:
        """Ask every operator to broadcast the CAP document in its cells."""
        ...

    async def withdraw(self, *, alert_id: str) -> tuple[OperatorAck, ...]:
        """Withdraw the alert's broadcasts everywhere."""
        ...

    async def status(self, *, alert_id: str) -> tuple[OperatorStatus, ...]:
        """Every operator's requests for the alert (WatchAlert)."""
        ...


class Deliveries(Protocol):
    """Per-alert outcomes reported by the channel services, and when to look again."""

    async def sent(self, *, alert_id: str) -> dict[Channel, Sent]:
        """Counts per channel for the alert (channels without any message may be absent)."""
        ...

    async def progressed(self) -> set[str]:
        """Wait until some alerts' outcomes moved; their ids."""
        ...

    async def changed(self, *, alert_id: str, timeout: float) -> None:
        """Wait until the alert's row may have changed (settled), or `timeout` seconds."""
        ...
