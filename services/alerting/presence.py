"""Presence channels: cell broadcast and LB-SMS requests to the operators, with the CAP document."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.alerting.model import Alert, Channel
from services.alerting.ports import Broadcasts, Targeting
from services.kernel.errors import ServiceError

logger = logging.getLogger(__name__)

#: Channels requested from the operators' cell broadcast centres.
BROADCAST_CHANNELS = (Channel.CELL_BROADCAST, Channel.LB_SMS)


@dataclass(frozen=True)
class Requested:
    """Cells a presence channel was requested for, and how many the operators accepted."""

    cells: int
    accepted: int

    @property
    def refused(self) -> int:
        """Cells whose operator refused or could not be asked."""
        return self.cells - self.accepted


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
            )
        except ServiceError as exc:
            logger.warning(
                "%s request of alert %s failed: %s", channel.value, alert.id, exc.details
            )
            out[channel] = Requested(total, 0)
            continue
        for ack in acks:
            if not ack.accepted:
                logger.warning(
                    "%s refused by %s for alert %s: %s",
                    channel.value,
                    ack.operator,
                    alert.id,
                    ack.error,
                )
        accepted = sum(len(cells.get(a.operator, ())) for a in acks if a.accepted)
        out[channel] = Requested(total, accepted)
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
