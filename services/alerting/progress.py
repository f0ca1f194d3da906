"""Progress of sent alerts: outcomes from the channels, units charged, completion, expiry."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import asyncpg

from services.alerting import ledger, store
from services.alerting.dispatch import Dispatcher, now_utc
from services.alerting.metrics import ALERT_MESSAGES, ALERTS_LIVE
from services.alerting.model import (
    LIVE_STATES,
    PAID_CHANNELS,
    REGISTERED_CHANNELS,
    Alert,
    Channel,
    Kind,
    State,
)
from services.alerting.ports import Deliveries, Sent
from services.kernel.errors import ServiceError, Unavailable

logger = logging.getLogger(__name__)

#: Counters of tocsin_alert_messages_total fed from the channels' reports.
REPORTED_STATES = ("submitted", "delivered", "failed")


def _complete(alert: Alert, reports: dict[Channel, Sent], targeted: dict[str, int]) -> bool:
    """Every registered channel of the alert has a final outcome for every recipient."""
    channels = [c for c in alert.spec.channels if c in REGISTERED_CHANNELS]
    if not channels:
        return False  # presence channels only: their outcome lies with the operators
    for channel in channels:
        seen = reports.get(channel, Sent())
        if seen.delivered + seen.failed + seen.dropped < targeted.get(channel.value, 0):
            return False
    return True


async def settle(pool: asyncpg.Pool, *, deliveries: Deliveries, alert_id: str) -> Alert:
    """Fold the channels' reports into the alert: charge new units, complete or expire it."""
    reports = await deliveries.sent(alert_id=alert_id)
    now = now_utc()
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT entity_id, state, kind, targeted, progress, units_prepaid, units_postpaid,"
            " expires_at FROM alerts WHERE id = $1::uuid FOR UPDATE",
            alert_id,
        )
        assert row is not None, alert_id
        state = State(row["state"])
        if state is State.DRAFT:
            alert = await store.fetch(conn, alert_id=alert_id)
            assert alert is not None
            return alert
        before = json.loads(row["progress"])
        after = {
            channel.value: {
                "submitted": sent.submitted,
                "delivered": sent.delivered,
                "failed": sent.failed,
                "dropped": sent.dropped,
                "units": sent.units,
            }
            for channel, sent in reports.items()
        }
        for channel, counts in after.items():
            for name in REPORTED_STATES:
                delta = counts[name] - before.get(channel, {}).get(name, 0)
                if delta > 0:
                    ALERT_MESSAGES.labels(channel, name).inc(delta)
        units = sum(s.units for c, s in reports.items() if c in PAID_CHANNELS)
        billing = await ledger.charge(
            conn,
            entity_id=row["entity_id"],
            alert_id=alert_id,
            units=units - row["units_prepaid"] - row["units_postpaid"],
            now=now,
        )
        alert = await store.fetch(conn, alert_id=alert_id)
        assert alert is not None
        if state is State.SENT and _complete(alert, reports, json.loads(row["targeted"])):
            state = State.COMPLETE
        elif state in LIVE_STATES and row["expires_at"] <= now:
            state = State.EXPIRED
        await conn.execute(
            "UPDATE alerts SET progress = $2::jsonb, state = $3,"
            " units_prepaid = units_prepaid + $4, units_postpaid = units_postpaid + $5"
            " WHERE id = $1::uuid",
            alert_id,
            json.dumps({**before, **after}),
            state.value,
            billing.prepaid,
            billing.postpaid,
        )
        alert = await store.fetch(conn, alert_id=alert_id)
        assert alert is not None
        return alert


async def watch(
    pool: asyncpg.Pool,
    *,
    deliveries: Deliveries,
    alert: Alert,
    interval: float,
    extra: Callable[[Alert], Awaitable[object]] | None = None,
) -> AsyncIterator[tuple[Alert, bool]]:
    """The alert after every change, and whether it is the last one (see `_done`).

    `extra` reads more of the alert's state whose change is a change too (the operators').
    """
    last: tuple[object, ...] | None = None
    while True:
        alert = await _refresh(pool, deliveries=deliveries, alert=alert)
        done = _done(alert)
        seen = (
            alert.state,
            alert.version,
            alert.progress,
            alert.units_prepaid,
            alert.units_postpaid,
            None if extra is None else await extra(alert),
        )
        if seen != last or done:
            last = seen
            yield alert, done
        if done:
            return
        await asyncio.sleep(interval)


async def _refresh(pool: asyncpg.Pool, *, deliveries: Deliveries, alert: Alert) -> Alert:
    """The alert settled, or as stored while a channel service is unreachable."""
    if alert.state is not State.DRAFT:
        # A watch outlives a restart of the SMS service: it reports what is known meanwhile.
        try:
            return await settle(pool, deliveries=deliveries, alert_id=alert.id)
        except Unavailable as exc:
            logger.info("progress of alert %s not refreshed: %s", alert.id, exc.details)
    fresh = await store.fetch(pool, alert_id=alert.id)
    assert fresh is not None
    return fresh


def _done(alert: Alert) -> bool:
    """Complete, expired, or cancelled with every message accounted for (or past expiry)."""
    if alert.state in (State.COMPLETE, State.EXPIRED):
        return True
    if alert.state is State.CANCELLED:
        return _settled(alert) or alert.spec.expires <= now_utc()
    return False


def _settled(alert: Alert) -> bool:
    """A cancelled alert is settled once every reporting channel has an outcome for each message.

    Until then messages handed over before the cancel may still be delivered, and the rest are
    being dropped: the watcher sees both counts come in.
    """
    return all(c.finished for c in alert.progress if c.reported)


async def settle_live(pool: asyncpg.Pool, *, deliveries: Deliveries) -> None:
    """Settle every live alert once and publish how many there are per kind."""
    # Cancelled and expired alerts stay for an hour: messages handed over before the end are
    # still charged when the SMS service records them.
    rows = await pool.fetch(
        "SELECT id::text AS id FROM alerts WHERE state = 'sent'"
        " OR (state = 'cancelled' AND cancelled_at > now() - interval '1 hour')"
        " OR (state = 'expired' AND expires_at > now() - interval '1 hour')"
    )
    for row in rows:
        await settle(pool, deliveries=deliveries, alert_id=row["id"])
    live = await pool.fetch(
        "SELECT kind, count(*) AS n FROM alerts WHERE state IN ('sending', 'sent') GROUP BY kind"
    )
    counts = {r["kind"]: r["n"] for r in live}
    for kind in Kind:
        ALERTS_LIVE.labels(kind.value).set(counts.get(kind.value, 0))


async def run_settler(
    pool: asyncpg.Pool,
    *,
    deliveries: Deliveries,
    dispatcher: Dispatcher,
    interval: float,
    stale_after: timedelta,
) -> None:
    """Forever: resume stalled dispatches, settle live alerts (charging units unwatched)."""
    while True:
        try:
            await dispatcher.resume_stale(older_than=stale_after)
            await settle_live(pool, deliveries=deliveries)
        except (ServiceError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            logger.warning("settling live alerts failed, retrying: %r", exc)
        await asyncio.sleep(interval)
