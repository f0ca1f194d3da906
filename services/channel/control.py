"""Cancelled and superseded alerts, from the shared control keys (docs/streams.md)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis.asyncio as aioredis

from services.channel.model import State
from services.kernel import keys

logger = logging.getLogger(__name__)

#: Prefix of alert ids that stand for API batches: they have no control keys.
API_PREFIX = "api:"


class ControlCache:
    """What the control keys say about the alerts in flight, refreshed in one pipeline."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        #: alert -> (cancelled, current version or 0 when unknown)
        self._known: dict[str, tuple[bool, int]] = {}

    def verdict(self, alert: str, version: int) -> State | None:
        """CANCELLED or SUPERSEDED when work of this alert version must not be sent, else None."""
        cancelled, current = self._known.get(alert, (False, 0))
        if cancelled:
            return State.CANCELLED
        if current > version:
            return State.SUPERSEDED
        return None

    async def refresh(self, alerts: Iterable[str]) -> None:
        """Read the control keys of `alerts` (API batches skipped) in one round trip."""
        wanted = sorted({a for a in alerts if not a.startswith(API_PREFIX)})
        if not wanted:
            self._known.clear()
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for alert in wanted:
                pipe.get(keys.alert_cancelled(alert))
                pipe.get(keys.alert_version(alert))
            replies = await pipe.execute()
        known: dict[str, tuple[bool, int]] = {}
        for i, alert in enumerate(wanted):
            cancelled, version = replies[2 * i], replies[2 * i + 1]
            try:
                current = int(version) if version is not None else 0
            except ValueError:
                logger.warning("alert %s has a malformed version key %r", alert, version)
                current = 0
            known[alert] = (cancelled is not None and cancelled not in (b"0", b""), current)
        self._known = known
