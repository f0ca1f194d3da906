"""The alerting domain's values: kinds, channels, states, roles and the alert itself."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Kind(enum.StrEnum):
    """What an alert is; the value is the one written to work streams."""

    #: Threatening danger: every channel, never refused for lack of prepaid units.
    EMERGENCY = "emergency"
    #: General interest: registrations and groups only.
    GENERAL = "general"
    #: An exercise: marked as such in every text, CAP status Exercise.
    EXERCISE = "exercise"
    #: A test: marked as such in every text, CAP status Test.
    TEST = "test"


class Channel(enum.StrEnum):
    """A dissemination channel."""

    #: SMS to registered numbers and group members (costs units).
    SMS = "sms"
    #: Voice message to registered numbers and group members (costs units).
    VOICE = "voice"
    #: E-mail to registered addresses and group members (free).
    EMAIL = "email"
    #: Location-based SMS to every phone present in the zone (free, operators).
    LB_SMS = "lb_sms"
    #: Cell broadcast to every phone in the zone's cells (free, operators).
    CELL_BROADCAST = "cell_broadcast"
    #: Public CAP 1.2 feed (free).
    CAP_FEED = "cap_feed"


#: Channels reaching registrations and groups, resolved by targeting.
REGISTERED_CHANNELS = (Channel.SMS, Channel.VOICE, Channel.EMAIL)
#: Channels reaching everyone present in a zone: only for threatening danger.
PRESENCE_CHANNELS = (Channel.LB_SMS, Channel.CELL_BROADCAST, Channel.CAP_FEED)
#: Channels that cost communication units.
PAID_CHANNELS = (Channel.SMS, Channel.VOICE)


class State(enum.StrEnum):
    """Where an alert is in its life."""

    #: Created, not sent; may be previewed and sent.
    DRAFT = "draft"
    #: SendAlert is resolving the audience; a failure leaves it here, stopped, to be resumed by
    #: SendAlert or cancelled (lifecycle.send_failed).
    SENDING = "sending"
    #: Dispatched; messages under way.
    SENT = "sent"
    #: Every targeted message has a final outcome.
    COMPLETE = "complete"
    #: Cancelled: nothing more is handed to operators.
    CANCELLED = "cancelled"
    #: Past its expiry before completing.
    EXPIRED = "expired"


#: States in which an alert still dispatches.
LIVE_STATES = (State.SENDING, State.SENT)


class Role(enum.StrEnum):
    """What a user may do."""

    #: Creates and sends the alerts of their own entity.
    ISSUER = "issuer"
    #: Crisis centre: entities, users, groups, packages, reports, audit.
    ADMIN = "admin"


class MsgType(enum.StrEnum):
    """CAP 1.2 msgType."""

    #: The first message of an alert.
    ALERT = "Alert"
    #: New texts for the same audience.
    UPDATE = "Update"
    #: The alert is withdrawn.
    CANCEL = "Cancel"


#: Languages an alert may be written in.
LANGUAGES = ("nl", "fr", "de", "en")


@dataclass(frozen=True)
class Info:
    """The texts of one language (CAP <info>)."""

    language: str
    event: str
    headline: str
    description: str
    instruction: str


@dataclass(frozen=True)
class AlertSpec:
    """What the issuer asked for: kind, CAP codes, texts, audience, channels, expiry."""

    kind: Kind
    category: str
    urgency: str
    severity: str
    certainty: str
    infos: tuple[Info, ...]
    zone_geojson: str
    area_description: str
    group_ids: tuple[int, ...]
    channels: tuple[Channel, ...]
    expires: datetime
    sender: str


@dataclass(frozen=True)
class ChannelCounts:
    """Progress of one channel of one alert."""

    channel: Channel
    targeted: int = 0
    submitted: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    units: int = 0
    #: Whether the channel's service has reported on this alert at all.
    reported: bool = False

    @property
    def queued(self) -> int:
        """Targeted messages not yet handed to an operator, failed or dropped."""
        return max(0, self.targeted - self.submitted - self.failed - self.dropped)

    @property
    def finished(self) -> bool:
        """Whether every targeted message has a final outcome (delivered, failed, dropped)."""
        return self.delivered + self.failed + self.dropped >= self.targeted


@dataclass(frozen=True)
class Alert:
    """An alert as stored."""

    id: str
    entity_id: int
    created_by: str
    state: State
    version: int
    msg_type: MsgType
    spec: AlertSpec
    created_at: datetime
    sent_at: datetime | None
    cancelled_at: datetime | None
    units_prepaid: int
    units_postpaid: int
    cap_xml: str
    progress: tuple[ChannelCounts, ...] = field(default=())
