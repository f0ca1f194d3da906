"""Progress of sent alerts: outcomes from the channels, units charged, completion, expiry."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg
from redis.exceptions import RedisError

from services.alerting import counters, ledger, lifecycle, store
from services.alerting.dispatch import Dispatcher, now_utc
from services.alerting.metrics import (
    ALERT_MESSAGES,
    ALERTS_LIVE,
    CHANNEL_BACKLOG,
    FIRST_MESSAGE,
    RECIPIENTS_FINAL,
)
from services.alerting.model import (
    PAID_CHANNELS,
    REGISTERED_CHANNELS,
    Alert,
    Channel,
    Kind,
    State,
)
from services.alerting.ports import Deliveries, Sent
from services.kernel.errors import DATABASE_UNAVAILABLE, ServiceError
from services.kernel.tasks import raise_if_cancelling

logger = logging.getLogger(__name__)

#: Counters of tocsin_alert_messages_total fed from the channels' reports.
REPORTED_STATES = ("submitted", "delivered", "failed")


# -- service-level signals (ops, issue 18) -----------------------------------------------------
#: An alert's target time: recipients reached later count as late (SLO in docs/operations.md).
#: The national budget, 2,000,000 SMS in 45 minutes; an alert expiring sooner has its expiry.
REACH_TARGET = timedelta(minutes=45)


def observe_outcomes(
    channel: str,
    before: dict[str, int],
    after: dict[str, int],
    *,
    sent_at: datetime | None,
    expires_at: datetime,
    now: datetime,
) -> None:
    """Count one channel's new outcomes of one alert into the service-level metrics, once.

    Called under the alert's row lock with the stored and the new counts, so each recipient and
    each first message is counted by exactly one alerting replica.
    """
    if sent_at is None:
        return
    if before.get("submitted", 0) == 0 and after["submitted"] > 0:
        FIRST_MESSAGE.labels(channel).observe((now - sent_at).total_seconds())
    delivered = after["delivered"] - before.get("delivered", 0)
    if delivered > 0:
        in_time = now - sent_at <= min(REACH_TARGET, expires_at - sent_at)
        RECIPIENTS_FINAL.labels(channel, "in_time" if in_time else "late").inc(delivered)
    failed = after["failed"] - before.get("failed", 0)
    if failed > 0:
        RECIPIENTS_FINAL.labels(channel, "no").inc(failed)


def publish_backlog(rows: list[asyncpg.Record]) -> None:
    """Set the per-channel backlog gauge from the live alerts' targeted counts and progress.

    Channels whose services report per recipient only: presence channels (cell broadcast,
    LB-SMS) have their outcome with the operators and no recipients to wait.
    """
    backlog = {channel.value: 0 for channel in REGISTERED_CHANNELS}
    for row in rows:
        progress = json.loads(row["progress"])
        for channel, targeted in json.loads(row["targeted"]).items():
            if channel in backlog:
                seen = progress.get(channel, {})
                done = sum(seen.get(k, 0) for k in ("submitted", "failed", "dropped"))
                backlog[channel] += max(0, int(targeted) - done)
    for channel, n in backlog.items():
        CHANNEL_BACKLOG.labels(channel).set(n)


# -- end service-level signals -----------------------------------------------------------------


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


async def settle(pool: asyncpg.Pool, *, deliveries: Deliveries, alert_id: str) -> Alert | None:
    """Fold the channels' reports into the alert: charge new units, complete or expire it.

    The one place that charges the ledger for units handed to operators: the settler calls it,
    never a watcher. None for an id that is no alert (an SMS API batch).
    """
    reports = await deliveries.sent(alert_id=alert_id)
    now = now_utc()
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT entity_id, state, kind, targeted, progress, units_prepaid, units_postpaid,"
            " expires_at, sent_at FROM alerts WHERE id = $1::uuid FOR UPDATE",
            alert_id,
        )
        if row is None:
            return None
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
            observe_outcomes(
                channel,
                before.get(channel, {}),
                counts,
                sent_at=row["sent_at"],
                expires_at=row["expires_at"],
                now=now,
            )
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
        state = lifecycle.after_settle(
            state,
            complete=_complete(alert, reports, json.loads(row["targeted"])),
            expired=row["expires_at"] <= now,
        )
        progress = {**before, **after}
        if progress != before or state.value != row["state"] or billing.prepaid or billing.postpaid:
            await conn.execute(
                "UPDATE alerts SET progress = $2::jsonb, state = $3,"
                " units_prepaid = units_prepaid + $4, units_postpaid = units_postpaid + $5"
                " WHERE id = $1::uuid",
                alert_id,
                json.dumps(progress),
                state.value,
                billing.prepaid,
                billing.postpaid,
            )
            await counters.notify_changed(conn, alert_id=alert_id)
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

    Reads only: the settler folds the channels' counters into the alert and notifies; a watch
    wakes on that notification (or after `interval` at the latest) and reads the row.

    `extra` reads more of the alert's state whose change is a change too (the operators').
    """
    last: tuple[object, ...] | None = None
    while True:
        fresh = await store.fetch(pool, alert_id=alert.id)
        assert fresh is not None
        alert = fresh
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
        await deliveries.changed(alert_id=alert.id, timeout=interval)


def _done(alert: Alert) -> bool:
    """Complete, expired, or cancelled with every message accounted for (or past expiry)."""
    if alert.state in (State.COMPLETE, State.EXPIRED):
        return True
    if alert.state is State.CANCELLED:
        return _settled(alert) or alert.spec.expires <= now_utc()
    return False


def _settled(alert: Alert) -> bool:
    """A cancelled alert is settled once every reporting channel has an outcome for each message,
    and at least one channel with messages has reported (the counters lag the cancel a little).

    Until then messages handed over before the cancel may still be delivered, and the rest are
    being dropped: the watcher sees both counts come in.
    """
    channels = [c for c in alert.progress if c.channel in REGISTERED_CHANNELS and c.targeted]
    reported = [c for c in channels if c.reported]
    return not channels or (bool(reported) and all(c.finished for c in reported))


async def settle_live(pool: asyncpg.Pool, *, deliveries: Deliveries) -> None:
    """Settle every live alert once and publish how many there are per kind."""
    # Cancelled and expired alerts stay for an hour: messages handed over before the end are
    # still charged when the SMS service records them.
    for alert_id in await lifecycle.to_settle(pool):
        await settle(pool, deliveries=deliveries, alert_id=alert_id)
    live = await lifecycle.live(pool)
    publish_backlog(live)
    counts: dict[str, int] = {}
    for r in live:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
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
    """Forever: settle the alerts whose counters moved as they move; every `interval`, resume
    stalled dispatches and settle every live alert (expiry, and anything a notification missed).
    """
    async with asyncio.TaskGroup() as group:
        group.create_task(_settle_progressed(pool, deliveries=deliveries), name="settle-moved")
        while True:
            try:
                await dispatcher.repair_lost_redis()
                await dispatcher.resume_stale(older_than=stale_after)
                await settle_live(pool, deliveries=deliveries)
            except _TRANSIENT as exc:
                # A library may have turned the cancellation into an error, or swallowed it.
                raise_if_cancelling()
                logger.warning("settling live alerts failed, retrying: %r", exc)
            raise_if_cancelling()
            await asyncio.sleep(interval)


_TRANSIENT: tuple[type[Exception], ...] = (ServiceError, RedisError, *DATABASE_UNAVAILABLE)


async def _settle_progressed(pool: asyncpg.Pool, *, deliveries: Deliveries) -> None:
    """Settle each alert whose counters moved, as the notifications come."""
    while True:
        for alert_id in sorted(await deliveries.progressed()):
            if not _is_uuid(alert_id):
                continue  # an SMS API batch: no alert to settle
            try:
                await settle(pool, deliveries=deliveries, alert_id=alert_id)
            except _TRANSIENT as exc:
                raise_if_cancelling()
                logger.warning("settling alert %s failed: %r", alert_id, exc)
        raise_if_cancelling()


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
