"""Where the feed's messages come from: PostgreSQL, re-read when an alert changes.

A change is noticed three ways: a NOTIFY on `tocsin_cap` (migration 0040, at once), a change
counter polled every few seconds (a notification lost with a dropped connection), and the clock
(an alert in force expires and leaves the feed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from services.capfeed import metrics
from services.capfeed.render import FeedInfo, Message, Snapshot, snapshot
from services.kernel.errors import DATABASE_UNAVAILABLE

log = logging.getLogger(__name__)

CHANNEL = "tocsin_cap"

_MESSAGES = """
SELECT c.alert_id::text AS alert_id, c.seq, c.identifier, c.sent_at, c.xml, a.expires_at
  FROM cap_messages c JOIN alerts a ON a.id = c.alert_id
 WHERE a.expires_at > $1
 ORDER BY c.alert_id, c.seq
"""
# Rows and the newest row: any insert or delete (a reverted send) changes one of them.
_STAMP = "SELECT count(*), max(sent_at), max(seq) FROM cap_messages"
_ONE = """
SELECT c.alert_id::text AS alert_id, c.seq, c.identifier, c.sent_at, c.xml, a.expires_at
  FROM cap_messages c JOIN alerts a ON a.id = c.alert_id WHERE c.identifier = $1
"""


def _message(row: asyncpg.Record) -> Message:
    return Message(
        alert_id=row["alert_id"],
        seq=row["seq"],
        identifier=row["identifier"],
        sent=row["sent_at"],
        xml=row["xml"],
        expires=row["expires_at"],
    )


async def load(
    pool: asyncpg.Pool, *, info: FeedInfo, retention: timedelta, now: datetime
) -> tuple[Snapshot, tuple[object, ...]]:
    """Read the retained messages and render them; also the change stamp they were read at."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        stamp = tuple(await conn.fetchrow(_STAMP) or ())
        rows = await conn.fetch(_MESSAGES, now - retention)
    return snapshot(info=info, messages=[_message(r) for r in rows], now=now), stamp


async def old_document(pool: asyncpg.Pool, *, identifier: str) -> Message | None:
    """A document older than the retention, straight from PostgreSQL."""
    row = await pool.fetchrow(_ONE, identifier)
    return None if row is None else _message(row)


class Watcher:
    """Keeps `current` up to date: re-renders on NOTIFY, on a changed stamp, and at expiry."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        dsn: str,
        info: FeedInfo,
        retention: timedelta,
        poll_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._info = info
        self._retention = retention
        self._poll_s = poll_s
        self._clock = clock
        self._wake = asyncio.Event()
        self._stamp: tuple[object, ...] = ()
        self.current: Snapshot | None = None
        #: Renders done (one per change, not per request).
        self.renders = 0
        self._rendered = asyncio.Condition()

    async def refresh(self) -> None:
        """Render now."""
        self.current, self._stamp = await load(
            self._pool, info=self._info, retention=self._retention, now=self._clock()
        )
        metrics.RENDERS.inc()
        metrics.ENTRIES.set(self.current.entries)
        metrics.FEED_BYTES.set(len(self.current.feed.body))
        async with self._rendered:
            self.renders += 1
            self._rendered.notify_all()

    async def rendered_after(self, count: int) -> Snapshot:
        """Wait until more than `count` renders are done; the snapshot then current."""
        async with self._rendered:
            await self._rendered.wait_for(lambda: self.renders > count)
        assert self.current is not None
        return self.current

    def _notified(self, *args: object) -> None:
        self._wake.set()

    async def _listen(self) -> asyncpg.Connection | None:
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(self._dsn)
            await conn.add_listener(CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("LISTEN %s failed (%s): polling only until it works", CHANNEL, exc)
            if conn is not None:
                conn.terminate()  # connected, but LISTEN failed: not left to the collector
            return None
        except BaseException:
            if conn is not None:
                conn.terminate()
            raise
        return conn

    async def run(self) -> None:
        """Watch until cancelled; PostgreSQL outages are logged and outlived."""
        listener = await self._listen()
        try:
            with contextlib.suppress(*DATABASE_UNAVAILABLE):
                await self.refresh()  # at once; until it works, readiness says not loaded
            while True:
                timeout = self._poll_s
                current = self.current
                if current is not None and current.next_expiry is not None:
                    until = (current.next_expiry - self._clock()).total_seconds()
                    timeout = max(0.0, min(timeout, until + 0.001))
                notified = False
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
                    notified = True
                except TimeoutError:
                    pass
                self._wake.clear()
                try:
                    if listener is None or listener.is_closed():
                        if listener is not None:
                            await listener.close()
                        listener = await self._listen()
                    await self._refresh_if_changed(notified=notified)
                except DATABASE_UNAVAILABLE as exc:
                    log.warning("CAP feed not refreshed: %s", exc)
        finally:
            if listener is not None:
                # At once, without a round trip that a second cancellation could cut short
                # (the connection would then be left to the garbage collector).
                listener.terminate()

    async def _refresh_if_changed(self, *, notified: bool) -> None:
        stamp = tuple(await self._pool.fetchrow(_STAMP) or ())
        current = self.current
        expired = (
            current is not None
            and current.next_expiry is not None
            and current.next_expiry <= self._clock()
        )
        if notified or current is None or stamp != self._stamp or expired:
            await self.refresh()
