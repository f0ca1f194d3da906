"""Protobuf messages to domain values and back (the servicer's only vocabulary)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting import admin, ledger
from services.alerting.alerts import Preview
from services.alerting.model import (
    Alert,
    AlertSpec,
    Channel,
    ChannelCounts,
    Info,
    Kind,
    Role,
    State,
)
from services.kernel.errors import InvalidArgument

KINDS = {
    pb.ALERT_KIND_EMERGENCY: Kind.EMERGENCY,
    pb.ALERT_KIND_GENERAL_INTEREST: Kind.GENERAL,
    pb.ALERT_KIND_EXERCISE: Kind.EXERCISE,
    pb.ALERT_KIND_TEST: Kind.TEST,
}
KINDS_PB = {v: k for k, v in KINDS.items()}
CHANNELS = {
    pb.CHANNEL_SMS: Channel.SMS,
    pb.CHANNEL_VOICE: Channel.VOICE,
    pb.CHANNEL_EMAIL: Channel.EMAIL,
    pb.CHANNEL_LB_SMS: Channel.LB_SMS,
    pb.CHANNEL_CELL_BROADCAST: Channel.CELL_BROADCAST,
    pb.CHANNEL_CAP_FEED: Channel.CAP_FEED,
}
CHANNELS_PB = {v: k for k, v in CHANNELS.items()}
STATES_PB = {
    State.DRAFT: pb.ALERT_STATE_DRAFT,
    State.SENDING: pb.ALERT_STATE_SENDING,
    State.SENT: pb.ALERT_STATE_SENT,
    State.COMPLETE: pb.ALERT_STATE_COMPLETE,
    State.CANCELLED: pb.ALERT_STATE_CANCELLED,
    State.EXPIRED: pb.ALERT_STATE_EXPIRED,
}
ROLES = {pb.ROLE_ISSUER: Role.ISSUER, pb.ROLE_ADMIN: Role.ADMIN}
ROLES_PB = {v: k for k, v in ROLES.items()}
#: Originator shown on phones when the request names none.
DEFAULT_SENDER = "BE-Alert"


def timestamp(moment: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp, or None for no moment."""
    if moment is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


#: Timestamps accepted: 1970 to 9999 (what a datetime and PostgreSQL both hold).
_MAX_SECONDS = 253_402_300_799


def moment(value: Timestamp, *, field: str) -> datetime:
    """A request's Timestamp as an aware datetime; out of range is INVALID_ARGUMENT."""
    if not 0 <= value.seconds <= _MAX_SECONDS or not 0 <= value.nanos < 1_000_000_000:
        raise InvalidArgument(field, "a time between 1970 and 9999")
    return value.ToDatetime(tzinfo=UTC)


def channels(values: Sequence[pb.Channel], *, field: str) -> tuple[Channel, ...]:
    """Channels from their protobuf values."""
    out = []
    for i, value in enumerate(values):
        if value not in CHANNELS:
            raise InvalidArgument(f"{field}[{i}]", "unknown channel")
        out.append(CHANNELS[value])
    return tuple(out)


def infos(values: list[pb.Info] | tuple[pb.Info, ...]) -> tuple[Info, ...]:
    """Texts from their protobuf form."""
    return tuple(
        Info(i.language, i.event, i.headline, i.description, i.instruction) for i in values
    )


def spec(msg: pb.AlertSpec) -> AlertSpec:
    """An alert spec from the request (checked further by the domain)."""
    if msg.kind not in KINDS:
        raise InvalidArgument("spec.kind", "emergency, general interest, exercise or test")
    if not msg.HasField("expires"):
        raise InvalidArgument("spec.expires", "required")
    return AlertSpec(
        kind=KINDS[msg.kind],
        category=msg.category,
        urgency=msg.urgency,
        severity=msg.severity,
        certainty=msg.certainty,
        infos=infos(list(msg.infos)),
        zone_geojson=msg.zone_geojson,
        area_description=msg.area_description,
        group_ids=tuple(msg.group_ids),
        channels=channels(list(msg.channels), field="spec.channels"),
        expires=moment(msg.expires, field="spec.expires"),
        sender=msg.sender or DEFAULT_SENDER,
    )


def spec_pb(value: AlertSpec) -> pb.AlertSpec:
    """The protobuf form of a spec."""
    return pb.AlertSpec(
        kind=KINDS_PB[value.kind],
        category=value.category,
        urgency=value.urgency,
        severity=value.severity,
        certainty=value.certainty,
        infos=[
            pb.Info(
                language=i.language,
                event=i.event,
                headline=i.headline,
                description=i.description,
                instruction=i.instruction,
            )
            for i in value.infos
        ],
        zone_geojson=value.zone_geojson,
        area_description=value.area_description,
        group_ids=list(value.group_ids),
        channels=[CHANNELS_PB[c] for c in value.channels],
        expires=timestamp(value.expires),
        sender=value.sender,
    )


def progress_pb(counts: ChannelCounts) -> pb.ChannelProgress:
    """One channel's progress."""
    return pb.ChannelProgress(
        channel=CHANNELS_PB[counts.channel],
        targeted=counts.targeted,
        queued=counts.queued,
        submitted=counts.submitted,
        delivered=counts.delivered,
        failed=counts.failed,
        dropped=counts.dropped,
        units=counts.units,
    )


def alert_pb(alert: Alert) -> pb.Alert:
    """The protobuf form of an alert."""
    return pb.Alert(
        id=alert.id,
        entity_id=alert.entity_id,
        created_by=alert.created_by,
        state=STATES_PB[alert.state],
        version=alert.version,
        spec=spec_pb(alert.spec),
        created_at=timestamp(alert.created_at),
        sent_at=timestamp(alert.sent_at),
        cancelled_at=timestamp(alert.cancelled_at),
        msg_type=alert.msg_type.value,
        cap_xml=alert.cap_xml,
        units_prepaid=alert.units_prepaid,
        units_postpaid=alert.units_postpaid,
        progress=[progress_pb(c) for c in alert.progress],
    )


def alert_progress_pb(alert: Alert, *, final: bool) -> pb.AlertProgress:
    """A WatchAlert message."""
    return pb.AlertProgress(
        alert_id=alert.id,
        state=STATES_PB[alert.state],
        version=alert.version,
        channels=[progress_pb(c) for c in alert.progress],
        units=alert.units_prepaid + alert.units_postpaid,
        final=final,
    )


def preview_pb(value: Preview) -> pb.PreviewAlertResponse:
    """The protobuf form of a preview."""
    return pb.PreviewAlertResponse(
        audiences=[
            pb.Audience(
                channel=CHANNELS_PB[a.channel],
                language=a.language,
                recipients=a.recipients,
                units=a.units,
            )
            for a in value.audiences
        ],
        cells=value.cells,
        estimated_units=value.units,
        estimated_cost_cents=value.cost_cents,
        prepaid_units_available=value.prepaid_available,
        units_from_prepaid=value.billing.prepaid,
        units_postpaid=value.billing.postpaid,
        would_be_refused=bool(value.refusal),
        refusal=value.refusal,
    )


def entity_pb(value: admin.Entity) -> pb.Entity:
    """The protobuf form of an entity."""
    return pb.Entity(
        id=value.id,
        name=value.name,
        type=value.type,
        territory_kind=value.territory_kind,
        territory_geojson=value.territory_geojson,
        postpaid=value.postpaid,
        prepaid_units=value.prepaid_units,
        activated_at=timestamp(value.activated_at),
    )


def user_pb(value: admin.User) -> pb.User:
    """The protobuf form of a user (never the credential)."""
    return pb.User(
        id=value.id,
        username=value.username,
        entity_id=value.entity_id or 0,
        role=ROLES_PB[value.role],
        disabled=value.disabled,
    )


def group_pb(value: admin.Group) -> pb.Group:
    """The protobuf form of a group."""
    return pb.Group(
        id=value.id,
        entity_id=value.entity_id,
        name=value.name,
        kind=value.kind,
        members=value.members,
    )


def usage_pb(value: ledger.UsageReport) -> pb.UsageReport:
    """The protobuf form of a monthly report."""
    return pb.UsageReport(
        entity_id=value.entity_id,
        month=value.month,
        alerts_sent=value.alerts_sent,
        alerts_by_kind=value.alerts_by_kind,
        units_prepaid=value.units_prepaid,
        units_postpaid=value.units_postpaid,
        lines=[
            pb.UsageLine(item=line.item, quantity=line.quantity, amount_cents=line.amount_cents)
            for line in value.lines
        ],
        total_cents=value.total_cents,
        prepaid_units_left=value.prepaid_units_left,
    )
