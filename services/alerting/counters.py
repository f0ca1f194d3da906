"""The channels' progress as alerting reads it: the counters every channel worker moves in the
same transaction as its recipients' outcomes (`channel_progress`, docs/channel.md), and the
PostgreSQL notifications that say when to look again, instead of asking every channel service on
a timer.

Two notification channels: `tocsin_progress` (payload: an alert id) from the channel workers at
each commit that moved an alert's counters, which wakes the settler; `tocsin_alert` (an alert
id) from the settler once it folded them into the alert, which wakes the alert's watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from services.alerting.model import Channel
from services.alerting.ports import Sent
from services.alerting.store import Conn
from services.kernel.errors import DATABASE_UNAVAILABLE

logger = logging.getLogger(__name__)

#: Notified by the channel workers when an alert's counters moved (services/channel/store.py).
PROGRESS = "tocsin_progress"
#: Notified by the settler when an alert's row changed.
ALERT_CHANGED = "tocsin_alert"
#: Seconds between attempts to listen again after the listening connection was lost.
RELISTEN_S = 1.0

_SENT = """
SELECT channel, state, sum(recipients)::bigint AS n, sum(units)::bigint AS units
FROM channel_progress WHERE alert = $1 GROUP BY channel, state
"""
#: Counter states as alerting counts them: handed over, final failures, dropped before sending.
_SUBMITTED = ("submitted", "delivered")
_FAILED = ("failed", "expired")
_DROPPED = ("cancelled", "superseded")


async def sent(conn: Conn | asyncpg.Pool, *, alert_id: str) -> dict[Channel, Sent]:
    """Counts per channel of the alert, every version together, from the counters."""
    per: dict[Channel, dict[str, int]] = {}
    for row in await conn.fetch(_SENT, alert_id):
        try:
            channel = Channel(row["channel"])
        except ValueError:
            continue  # a channel alerting does not know (a test channel)
        seen = per.setdefault(channel, {"units": 0})
        seen[row["state"]] = seen.get(row["state"], 0) + int(row["n"])
        seen["units"] += int(row["units"])
    return {
        channel: Sent(
            submitted=sum(s.get(k, 0) for k in _SUBMITTED),
            delivered=s.get("delivered", 0),
            failed=sum(s.get(k, 0) for k in _FAILED),
            dropped=sum(s.get(k, 0) for k in _DROPPED),
            units=s["units"],
        )
        for channel, s in per.items()
    }


async def notify_changed(conn: Conn, *, alert_id: str) -> None:
    """Wake the alert's watchers (delivered when the caller's transaction commits)."""
    await conn.execute("SELECT pg_notify($1, $2)", ALERT_CHANGED, alert_id)


class ChannelCounters:
    """The Deliveries port over the counters, woken by PostgreSQL notifications."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._progressed: set[str] = set()
        self._progress_wake = asyncio.Event()
        self._watchers: dict[str, set[asyncio.Event]] = {}

    async def sent(self, *, alert_id: str) -> dict[Channel, Sent]:
        """Counts per channel for the alert."""
        return await sent(self._pool, alert_id=alert_id)

    async def progressed(self) -> set[str]:
        """Wait until some alerts' counters moved; which ones (at least one)."""
        while not self._progressed:
            self._progress_wake.clear()
            await self._progress_wake.wait()
        ids, self._progressed = self._progressed, set()
        return ids

    async def changed(self, *, alert_id: str, timeout: float) -> None:
        """Wait until the alert's row may have changed, or `timeout` seconds."""
        event = asyncio.Event()
        waiting = self._watchers.setdefault(alert_id, set())
        waiting.add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            waiting.discard(event)
            if not waiting:
                self._watchers.pop(alert_id, None)

    def _on_progress(self, *args: object) -> None:
        self._progressed.add(str(args[3]))
        self._progress_wake.set()

    def _on_alert(self, *args: object) -> None:
        for event in self._watchers.get(str(args[3]), ()):
            event.set()

    async def run(self) -> None:
        """Listen for ever on a connection of its own, again after it is lost.

        Watchers are woken whenever listening (re)starts: what changed while nobody listened is
        read then; the settler's periodic pass settles it.
        """
        listeners: tuple[tuple[str, Callable[..., None]], ...] = (
            (PROGRESS, self._on_progress),
            (ALERT_CHANGED, self._on_alert),
        )
        while True:
            lost = asyncio.Event()

            def on_lost(_conn: object, lost: asyncio.Event = lost) -> None:
                lost.set()

            try:
                async with self._pool.acquire() as conn:
                    conn.add_termination_listener(on_lost)
                    for name, callback in listeners:
                        await conn.add_listener(name, callback)
                    try:
                        self._wake_everyone()
                        await lost.wait()
                    finally:
                        with contextlib.suppress(Exception):
                            for name, callback in listeners:
                                await conn.remove_listener(name, callback)
            except DATABASE_UNAVAILABLE as exc:
                logger.warning(
                    "listening for progress failed, again in %.0f s: %r", RELISTEN_S, exc
                )
            await asyncio.sleep(RELISTEN_S)

    def _wake_everyone(self) -> None:
        for waiting in self._watchers.values():
            for event in waiting:
                event.set()
        self._progress_wake.set()
