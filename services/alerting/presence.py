"""Presence channels: cell broadcast and LB-SMS requests to the operators, with the CAP document."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.alerting.model import Alert, AlertSpec, Channel
from services.alerting.ports import BroadcastContent, Broadcasts, OperatorStatus, Targeting
from services.alerting.texts import channel_text
from services.cellbroadcast import identifiers
from services.kernel.errors import InvalidArgument, ServiceError

logger = logging.getLogger(__name__)

#: Channels requested from the operators' cell broadcast centres.
BROADCAST_CHANNELS = (Channel.CELL_BROADCAST, Channel.LB_SMS)


@dataclass(frozen=True)
class Requested:
    """Cells a presence channel was requested for, and how many the operators accepted."""

    cells: int
    accepted: int
    #: Cells whose operator has not answered yet (retried by the cell broadcast service).
    pending: int = 0

    @property
    def refused(self) -> int:
        """Cells whose operator refused or could not be asked."""
        return self.cells - self.accepted - self.pending


def content(alert: Alert) -> BroadcastContent:
    """What the operators broadcast of the alert's current version: the channels' own texts."""
    spec = alert.spec
    return BroadcastContent(
        version=alert.version,
        kind=spec.kind.value,
        severity=spec.severity,
        urgency=spec.urgency,
        certainty=spec.certainty,
        texts=tuple((i.language, channel_text(kind=spec.kind, info=i)) for i in spec.infos),
        expires_unix_s=spec.expires.timestamp(),
        sender=spec.sender,
        zone_geojson=spec.zone_geojson,
    )


def check_pages(spec: AlertSpec, *, field: str = "spec.infos") -> None:
    """Refuse at CreateAlert and UpdateAlert a text cell broadcast cannot carry (over 15 pages);
    `field` names the infos in the request (`infos` for UpdateAlert)."""
    if Channel.CELL_BROADCAST not in spec.channels:
        return
    texts = [(i.language, channel_text(kind=spec.kind, info=i)) for i in spec.infos]
    try:
        identifiers.check_pages(texts)
    except identifiers.TextTooLong as exc:
        where = [n for n, i in enumerate(spec.infos) if i.language == exc.language]
        named = f"{field}[{where[0]}].description" if where else field
        raise InvalidArgument(named, f"too long for cell broadcast: {exc}") from None


async def operators(*, broadcasts: Broadcasts, alert: Alert) -> tuple[OperatorStatus, ...]:
    """Each operator's latest request per presence channel (WatchAlert); none if unknown now."""
    if not any(c in BROADCAST_CHANNELS for c in alert.spec.channels):
        return ()
    try:
        rows = await broadcasts.status(alert_id=alert.id)
    except ServiceError as exc:
        logger.info("operators' state of alert %s unknown: %s", alert.id, exc.details)
        return ()
    latest: dict[tuple[str, Channel], OperatorStatus] = {}
    for row in rows:  # oldest first: a newer version overrides, a pending withdrawal shows
        if row.action == "broadcast" or row.state != "accepted":
            latest[(row.operator, row.channel)] = row
    return tuple(latest[k] for k in sorted(latest))


async def broadcast(
    *, targeting: Targeting, broadcasts: Broadcasts, alert: Alert, cap_xml: str
) -> dict[Channel, Requested]:
    """Request every presence channel of the alert; a refusal is counted, never raised.

    The registered channels are on their way when this runs: an operator's or the cell
    broadcast service's failure must not undo them, so it shows as refused cells instead.
    """
    channels = [c for c in alert.spec.channels if c in BROADCAST_CHANNELS]
    if not channels or not alert.spec.zone_geojson:
        return {}
    try:
        cells = await targeting.cells(
            entity_id=alert.entity_id, zone_geojson=alert.spec.zone_geojson
        )
    except ServiceError as exc:
        logger.warning("cells of alert %s unknown, no broadcast: %s", alert.id, exc.details)
        return {c: Requested(0, 0) for c in channels}
    total = sum(len(ids) for ids in cells.values())
    out: dict[Channel, Requested] = {}
    for channel in channels:
        try:
            acks = await broadcasts.broadcast(
                alert_id=alert.id,
                cap_xml=cap_xml,
                cells=cells,
                location_based_sms=channel is Channel.LB_SMS,
                content=content(alert),
            )
        except ServiceError as exc:
            logger.warning(
                "%s request of alert %s failed: %s", channel.value, alert.id, exc.details
            )
            out[channel] = Requested(total, 0)
            continue
        for ack in acks:
            if not ack.accepted and ack.state not in ("requested", "retrying"):
                logger.warning(
                    "%s refused by %s for alert %s: %s",
                    channel.value,
                    ack.operator,
                    alert.id,
                    ack.error,
                )
        accepted = sum(len(cells.get(a.operator, ())) for a in acks if a.accepted)
        pending = sum(
            len(cells.get(a.operator, ())) for a in acks if a.state in ("requested", "retrying")
        )
        out[channel] = Requested(total, accepted, pending)
    return out


async def withdraw(*, broadcasts: Broadcasts, alert: Alert) -> None:
    """Withdraw the alert's broadcasts; a failure is logged (the cancel itself stands)."""
    if not any(c in BROADCAST_CHANNELS for c in alert.spec.channels):
        return
    try:
        acks = await broadcasts.withdraw(alert_id=alert.id)
    except ServiceError as exc:
        logger.warning("withdrawing alert %s failed: %s", alert.id, exc.details)
        return
    for ack in acks:
        if not ack.accepted:
            logger.warning(
                "withdraw refused by %s for alert %s: %s", ack.operator, alert.id, ack.error
            )
