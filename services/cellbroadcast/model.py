"""The cell broadcast service's values: channels, actions, request states, the alert as asked."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class Channel(enum.StrEnum):
    """A presence channel (alerting's names)."""

    #: CBS messages through the operator's CBC.
    CELL_BROADCAST = "cell_broadcast"
    #: An SMS to every phone in the zone, through the operator's LB-SMS platform.
    LB_SMS = "lb_sms"


class Action(enum.StrEnum):
    """What a request asks of an operator."""

    #: Broadcast an alert version (an update replaces the earlier version).
    BROADCAST = "broadcast"
    #: Withdraw the alert (every version).
    WITHDRAW = "withdraw"


class State(enum.StrEnum):
    """Where a request to one operator is."""

    #: Recorded, not yet answered.
    REQUESTED = "requested"
    #: The operator did not answer or failed: tried again with backoff until the alert expires.
    RETRYING = "retrying"
    #: The operator took it.
    ACCEPTED = "accepted"
    #: The operator refused it (the reason says why), or the alert expired first.
    REFUSED = "refused"
    #: A broadcast the alert's withdrawal ended.
    WITHDRAWN = "withdrawn"
    #: A broadcast a newer version replaced before it was accepted.
    SUPERSEDED = "superseded"


#: States still worked on.
OPEN_STATES = (State.REQUESTED, State.RETRYING)


@dataclass(frozen=True)
class AlertVersion:
    """One version of an alert as the service is asked to broadcast it."""

    alert_id: str
    version: int
    kind: str
    severity: str
    urgency: str
    certainty: str
    #: (language, text) in the alert's order: the first is the primary language.
    texts: tuple[tuple[str, str], ...]
    expires: datetime
    sender: str
    #: The operators' cells in the zone.
    cells: dict[str, tuple[str, ...]]
    #: The alert's zone (GeoJSON Polygon or MultiPolygon), for LB-SMS platforms that take one.
    zone_geojson: str = ""


@dataclass(frozen=True)
class Request:
    """One request to one operator, as stored."""

    id: int
    alert_id: str
    version: int
    channel: Channel
    operator: str
    action: Action
    payload: dict[str, Any]
    cells: int
    state: State
    reason: str
    attempts: int
    phones: int | None
    expires: datetime
