"""Dispatch of sent and updated alerts: resolve the audience, request broadcasts, keep counts.

Runs shielded from the calling RPC: once an alert is claimed for sending, a caller that hangs up
must not leave it half-dispatched. A process that dies mid-way leaves the alert `sending`; the
settler resumes it (`resume_stale`), and the channels drop what they already recorded. A send
whose resolution fails part-way stays `sending`, stopped (lifecycle.send_failed): SendAlert
resumes it, CancelAlert stops everything it queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from services.alerting import cap, lifecycle, presence, store
from services.alerting.infoline.hooks import cap_contact, cap_web, open_number, with_number
from services.alerting.metrics import ALERT_MESSAGES, ALERTS
from services.alerting.model import (
    REGISTERED_CHANNELS,
    Alert,
    AlertSpec,
    Channel,
    MsgType,
    State,
)
from services.alerting.permissions import EntityInfo
from services.alerting.ports import Broadcasts, Targeting
from services.alerting.texts import channel_texts
from services.kernel import keys
from services.kernel.errors import PeerDown

logger = logging.getLogger(__name__)

#: Seconds before the first new try of a Resolve cut by targeting going away, doubled up to
#: RESOLVE_BACKOFF_MAX_S between the next.
RESOLVE_BACKOFF_S = 0.25
RESOLVE_BACKOFF_MAX_S = 2.0


def now_utc() -> datetime:
    """The current instant, aware, UTC."""
    return datetime.now(UTC)


def registered(spec: AlertSpec) -> tuple[Channel, ...]:
    """The alert's channels that reach registrations and groups (resolved by targeting)."""
    return tuple(c for c in spec.channels if c in REGISTERED_CHANNELS)


class Dispatcher:
    """Hands alerts to targeting and the cell broadcast service, and records what it did."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        targeting: Targeting,
        broadcasts: Broadcasts,
        resolve_retry_s: float = 20.0,
    ) -> None:
        self._pool = pool
        #: For how long a Resolve cut by targeting going away (a restart) is tried again
        #: before the send stops part-way (then SendAlert resumes it).
        self._resolve_retry_s = resolve_retry_s
        self._redis = redis
        self._targeting = targeting
        self._broadcasts = broadcasts
        #: Dispatches running on after their caller hung up (kept referenced until done).
        self._tasks: set[asyncio.Task[None]] = set()

    async def finish_send(self, alert: Alert, cap_xml: str) -> None:
        """Resolve a claimed alert's audience and mark it sent; if that fails, part of the
        audience may be queued already: the alert stays `sending`, stopped, to be resumed or
        cancelled (never back to draft)."""
        await self._redis.set(keys.alert_version(alert.id), 1, ex=keys.ALERT_CONTROL_TTL_S)
        try:
            targeted = await self._resolve(alert)
        except Exception:
            logger.warning("the send of alert %s stopped part-way", alert.id, exc_info=True)
            async with self._pool.acquire() as conn:
                await lifecycle.send_failed(conn, alert_id=alert.id)
            raise
        if not await self._add_targeted(alert.id, targeted, resolved_send=True):
            return  # cancelled (or expired) while resolving: nothing to broadcast
        await self._broadcast(alert, cap_xml)
        if await lifecycle.state_of(self._pool, alert_id=alert.id) is State.CANCELLED:
            await self.withdraw(alert)  # cancelled while broadcasting: take it back
        ALERTS.labels(alert.spec.kind.value, "send").inc()

    async def shielded(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` to its end even if the awaiting call is cancelled."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.shield(task)

    async def drain(self) -> None:
        """Wait for every dispatch in flight (graceful shutdown: finish, do not drop)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def resume_stale(self, *, older_than: timedelta) -> list[str]:
        """Finish sends whose process died while resolving; the channels drop duplicates."""
        stale = await lifecycle.stale_sends(self._pool, older_than=now_utc() - older_than)
        resumed = []
        for alert_id in stale:
            alert = await store.fetch(self._pool, alert_id=alert_id)
            cap_xml = await self._pool.fetchval(
                "SELECT xml FROM cap_messages WHERE alert_id = $1::uuid AND seq = 1", alert_id
            )
            if alert is None or cap_xml is None:
                continue
            logger.warning("resuming the dispatch of alert %s", alert.id)
            await self.shielded(self.finish_send(alert, cap_xml))
            resumed.append(alert.id)
        return resumed

    async def repair_lost_redis(self) -> list[str]:
        """If Redis lost its data, restore it from PostgreSQL, the truth; the ids of the alerts
        whose audience was resolved again (none when Redis is intact).

        Lost with it: the cancel and version keys (consumers would send cancelled or superseded
        work) and the work streams' unread entries (their recipients would never be reached).
        The keys are written back from the alerts' rows, then every sent alert's current
        version is resolved again; the channels drop the recipients they already recorded, so
        nobody gets a second message. The marker is set last: a repair cut short runs again.
        """
        if await self._redis.exists(keys.REDIS_MARKER):
            return []
        rows = await lifecycle.controlled(self._pool)
        if rows:
            logger.error(
                "Redis lost its data: restoring the control keys of %d alerts from PostgreSQL",
                len(rows),
            )
        async with self._redis.pipeline(transaction=False) as pipe:
            for row in rows:
                if State(row["state"]) is State.CANCELLED:
                    pipe.set(keys.alert_cancelled(row["id"]), "1", ex=keys.ALERT_CONTROL_TTL_S)
                else:
                    pipe.set(
                        keys.alert_version(row["id"]), row["version"], ex=keys.ALERT_CONTROL_TTL_S
                    )
            await pipe.execute()
        resolved = []
        for row in rows:
            if State(row["state"]) is not State.SENT:
                continue  # sending: resume_stale finishes it; complete: nothing left to send
            alert = await store.fetch(self._pool, alert_id=row["id"])
            if alert is None:
                continue
            logger.warning("resolving alert %s again: its queued work was lost", alert.id)
            await self._resolve(alert, count=False)
            resolved.append(alert.id)
        await self._redis.set(keys.REDIS_MARKER, "1")
        return resolved

    async def finish_update(self, alert: Alert, cap_xml: str) -> None:
        """Resolve the audience again with the new version's texts."""
        # Consumers drop unsent work of older versions from here on.
        await self._redis.set(
            keys.alert_version(alert.id), alert.version, ex=keys.ALERT_CONTROL_TTL_S
        )
        targeted = await self._resolve(alert)
        await self._add_targeted(alert.id, targeted, resolved_send=False)
        await self._broadcast(alert, cap_xml)
        ALERTS.labels(alert.spec.kind.value, "update").inc()

    async def _resolve(self, alert: Alert, *, count: bool = True) -> dict[Channel, int]:
        """Resolve the audience of the alert's current version into the work streams (`count`:
        a first resolution of this version, counted in the metrics)."""
        spec = alert.spec
        channels = registered(spec)
        if not channels:
            return {}
        texts = with_number(
            channel_texts(kind=spec.kind, infos=spec.infos),
            number=await open_number(self._pool, alert_id=alert.id),
        )
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._resolve_retry_s
        pause = RESOLVE_BACKOFF_S
        while True:
            try:
                targeted = await self._targeting.resolve(
                    entity_id=alert.entity_id,
                    alert_id=alert.id,
                    version=alert.version,
                    kind=spec.kind.value,
                    expires=spec.expires.timestamp(),
                    sender=spec.sender,
                    texts=texts,
                    channels=channels,
                    zone_geojson=spec.zone_geojson,
                    group_ids=spec.group_ids,
                )
                break
            except PeerDown as exc:
                # Targeting went away (a restart): what it queued stays queued, and the
                # channels drop the recipients a second resolution queues again.
                if loop.time() + pause > give_up or not await self._still_wanted(alert):
                    raise
                logger.warning(
                    "resolving alert %s version %d was cut (%s): trying again in %.2f s",
                    alert.id,
                    alert.version,
                    exc.message,
                    pause,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, RESOLVE_BACKOFF_MAX_S)
        for channel, n in targeted.items():
            if count:
                ALERT_MESSAGES.labels(channel.value, "queued").inc(n)
        return targeted

    async def _still_wanted(self, alert: Alert) -> bool:
        """Whether the alert's current version is still to be sent (not cancelled, expired or
        replaced by a newer version meanwhile)."""
        current = await store.fetch(self._pool, alert_id=alert.id)
        return (
            current is not None
            and current.version == alert.version
            and current.state in (State.SENDING, State.SENT)
        )

    async def _broadcast(self, alert: Alert, cap_xml: str) -> None:
        """Request the presence channels and add what was requested to the alert's counts."""
        requested = await presence.broadcast(
            targeting=self._targeting, broadcasts=self._broadcasts, alert=alert, cap_xml=cap_xml
        )
        if not requested:
            return
        await store.add_counts(
            self._pool,
            alert_id=alert.id,
            targeted={c.value: req.cells for c, req in requested.items()},
            progress={
                c.value: {"submitted": req.accepted, "failed": req.refused}
                for c, req in requested.items()
            },
        )

    async def _add_targeted(
        self,
        alert_id: str,
        targeted: dict[Channel, int],
        *,
        resolved_send: bool,
    ) -> bool:
        """Add resolved recipients to the alert's counts (they add up over versions); a send
        whose audience is resolved becomes sent. False: the send was no longer `sending`."""
        async with self._pool.acquire() as conn, conn.transaction():
            await store.add_counts(
                conn, alert_id=alert_id, targeted={c.value: n for c, n in targeted.items()}
            )
            if resolved_send:
                return await lifecycle.resolved(conn, alert_id=alert_id)
        return True

    async def record_cap(
        self,
        conn: store.Conn,
        *,
        alert: Alert,
        entity: EntityInfo,
        msg_type: MsgType,
    ) -> str:
        """Store the CAP document of this message, referencing the alert's earlier ones."""
        earlier = await conn.fetch(
            "SELECT xml FROM cap_messages WHERE alert_id = $1::uuid ORDER BY seq", alert.id
        )
        refs = tuple(cap.reference(cap.parse(r["xml"])) for r in earlier)
        seq = len(earlier) + 1
        number = await open_number(conn, alert_id=alert.id)
        message = cap.for_alert(
            alert,
            seq=seq,
            msg_type=msg_type,
            sent=now_utc(),
            sender_name=entity.name,
            references=refs,
            web=cap_web(number),
            contact=cap_contact(number),
        )
        xml = cap.render(message)
        await conn.execute(
            "INSERT INTO cap_messages (alert_id, seq, msg_type, version, identifier, sent_at, xml)"
            " VALUES ($1::uuid, $2, $3, $4, $5, $6, $7)",
            alert.id,
            seq,
            msg_type.value,
            alert.version,
            message.identifier,
            message.sent,
            xml,
        )
        return xml

    async def withdraw(self, alert: Alert) -> None:
        """Withdraw the alert's broadcasts (a failure is logged)."""
        await presence.withdraw(broadcasts=self._broadcasts, alert=alert)
