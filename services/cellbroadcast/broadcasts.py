"""Broadcast, update and withdraw requests for an alert: queued durably, then sent by the Sender."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.cellbroadcast import identifiers, store
from services.cellbroadcast.model import Action, AlertVersion, Channel, Request
from services.cellbroadcast.sender import Sender
from services.kernel.errors import InvalidArgument

#: Highest warning period osmo-cbc takes (seconds).
MAX_WARNING_PERIOD_S = 65_535
#: Longest validity asked of an LB-SMS platform (seconds).
MAX_VALIDITY_S = 86_400
#: How long a withdrawal is tried past the alert's expiry (the CBC may still hold it).
WITHDRAW_GRACE = timedelta(hours=1)
#: CBS update numbers run modulo 16.
UPDATE_NUMBERS = 16
#: Largest zone passed on to an LB-SMS platform (alerting bounds zones well below this).
MAX_ZONE_BYTES = 1 << 20
#: GeoJSON geometries an LB-SMS platform takes as the zone.
ZONE_TYPES = ("Polygon", "MultiPolygon")


@dataclass(frozen=True)
class Platforms:
    """Operators that have a CBC, and those that have an LB-SMS platform."""

    cbc: Collection[str]
    lbsms: Collection[str]
    #: Operators whose LB-SMS platform takes the zone as a polygon rather than as cells.
    lbsms_polygon: Collection[str] = field(default_factory=frozenset)


def update_number(version: int) -> int:
    """The serial number's update number of an alert version (the first is 0)."""
    return (version - 1) % UPDATE_NUMBERS


def cbs_payload(alert: AlertVersion, *, msg_code: int, cells: tuple[str, ...]) -> dict[str, Any]:
    """The stored payload of a cell broadcast request (CBS messages encoded once, here)."""
    try:
        messages = identifiers.messages(
            kind=alert.kind,
            severity=alert.severity,
            urgency=alert.urgency,
            certainty=alert.certainty,
            texts=list(alert.texts),
        )
    except identifiers.TextTooLong as exc:
        raise InvalidArgument("texts", str(exc)) from None
    except ValueError as exc:
        raise InvalidArgument("kind", str(exc)) from None
    left = (alert.expires - datetime.now(UTC)).total_seconds()
    return {
        "messages": [
            {
                "message_id": m.message_id,
                "dcs": m.pages.dcs,
                "pages": [p.hex() for p in m.pages.pages],
            }
            for m in messages
        ],
        "msg_code": msg_code,
        "update_nr": update_number(alert.version),
        "cells": list(cells),
        "warning_period_s": max(1, min(MAX_WARNING_PERIOD_S, int(left))),
    }


def lbsms_payload(
    alert: AlertVersion, *, cells: tuple[str, ...], polygon: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The stored payload of an LB-SMS request (one request id per alert version); the zone is
    the polygon when given (the operator's setting), else the cells."""
    left = (alert.expires - datetime.now(UTC)).total_seconds()
    return {
        "request_id": f"{alert.alert_id}.v{alert.version}",
        "texts": dict(alert.texts),
        "cells": list(cells),
        "polygon": polygon,
        "validity_s": max(1, min(MAX_VALIDITY_S, int(left))),
        "sender": alert.sender,
    }


def zone(alert: AlertVersion) -> dict[str, Any] | None:
    """The alert's zone as GeoJSON (None without one); InvalidArgument names a malformed one."""
    if not alert.zone_geojson:
        return None
    if len(alert.zone_geojson.encode()) > MAX_ZONE_BYTES:
        raise InvalidArgument("zone_geojson", f"at most {MAX_ZONE_BYTES} bytes")
    try:
        geometry = json.loads(alert.zone_geojson)
    except ValueError:
        raise InvalidArgument("zone_geojson", "not JSON") from None
    if not isinstance(geometry, dict) or geometry.get("type") not in ZONE_TYPES:
        raise InvalidArgument("zone_geojson", f"a GeoJSON {' or '.join(ZONE_TYPES)}")
    if not isinstance(geometry.get("coordinates"), list) or not geometry["coordinates"]:
        raise InvalidArgument("zone_geojson", "coordinates: a non-empty list")
    return {"type": geometry["type"], "coordinates": geometry["coordinates"]}


def check(alert: AlertVersion) -> None:
    """Refuse a request that cannot be queued, naming the field."""
    if not alert.alert_id:
        raise InvalidArgument("alert_id", "required")
    if alert.version < 1:
        raise InvalidArgument("version", "1 or more")
    if not alert.texts:
        raise InvalidArgument("texts", "at least one language")
    if alert.expires <= datetime.now(UTC):
        raise InvalidArgument("expires_unix_s", "the alert has already expired")


class Broadcasts:
    """The service's requests: recorded first, then sent to every operator at once."""

    def __init__(
        self, *, pool: asyncpg.Pool, sender: Sender, platforms: Platforms, answer_wait_s: float
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._platforms = platforms
        self._wait = answer_wait_s

    async def broadcast(self, alert: AlertVersion, *, channel: Channel) -> list[Request]:
        """Queue the version for every operator with cells in the zone (LB-SMS: or whose
        platform takes the zone as a polygon); their first answers."""
        check(alert)
        polygon = zone(alert)
        if channel is Channel.CELL_BROADCAST:
            by_polygon: frozenset[str] = frozenset()
            platforms = self._platforms.cbc
        else:
            # A platform that takes the polygon finds the phones itself: it is asked even when
            # the cell table knows none of its cells in the zone.
            platforms = self._platforms.lbsms
            by_polygon = frozenset(self._platforms.lbsms_polygon) if polygon else frozenset()
        cells = {
            op: alert.cells.get(op, ())
            for op in sorted(set(alert.cells) | by_polygon)
            if op in platforms and (alert.cells.get(op) or op in by_polygon)
        }
        async with self._pool.acquire() as conn, conn.transaction():
            msg_code = await store.message_code(
                conn, alert_id=alert.alert_id, expires=alert.expires
            )
            per_operator = {
                op: (
                    len(ids),
                    cbs_payload(alert, msg_code=msg_code, cells=ids)
                    if channel is Channel.CELL_BROADCAST
                    else lbsms_payload(
                        alert, cells=ids, polygon=polygon if op in by_polygon else None
                    ),
                )
                for op, ids in sorted(cells.items())
            }
            ids = await store.enqueue(
                conn,
                alert_id=alert.alert_id,
                version=alert.version,
                channel=channel,
                action=Action.BROADCAST,
                per_operator=per_operator,
                expires=alert.expires,
            )
        return await self._send(ids)

    async def withdraw(self, *, alert_id: str) -> list[Request]:
        """Queue a withdrawal at every operator the alert was sent to; their first answers."""
        if not alert_id:
            raise InvalidArgument("alert_id", "required")
        earlier = await store.of_alert(self._pool, alert_id=alert_id)
        targets = sorted({(r.channel, r.operator) for r in earlier if r.action is Action.BROADCAST})
        ids: list[int] = []
        async with self._pool.acquire() as conn, conn.transaction():
            for channel, operator in targets:
                expires = max(r.expires for r in earlier if r.operator == operator)
                ids += await store.enqueue(
                    conn,
                    alert_id=alert_id,
                    version=0,
                    channel=channel,
                    action=Action.WITHDRAW,
                    per_operator={operator: (0, {})},
                    expires=max(expires, datetime.now(UTC)) + WITHDRAW_GRACE,
                )
        return await self._send(ids)

    async def status(self, *, alert_id: str) -> list[Request]:
        """Every request of the alert, oldest first."""
        if not alert_id:
            raise InvalidArgument("alert_id", "required")
        return await store.of_alert(self._pool, alert_id=alert_id)

    async def _send(self, ids: list[int]) -> list[Request]:
        self._sender.start(ids)
        await self._sender.first_answers(ids, timeout_s=self._wait)
        return await store.fetch(self._pool, ids)
