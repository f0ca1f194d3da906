"""Alerts in PostgreSQL: rows to domain values and back."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.alerting.model import (
    Alert,
    AlertSpec,
    Channel,
    ChannelCounts,
    Info,
    Kind,
    MsgType,
    State,
)

#: A connection, as acquired from a pool or opened alone.
Conn = asyncpg.Connection | PoolConnectionProxy

ALERT_COLUMNS = (
    "a.id::text AS id, a.entity_id, u.username AS created_by, a.state, a.version, a.msg_type,"
    " a.kind, a.spec, a.infos, a.expires_at, a.created_at, a.sent_at, a.cancelled_at,"
    " a.units_prepaid, a.units_postpaid, a.targeted, a.progress,"
    " (SELECT xml FROM cap_messages c WHERE c.alert_id = a.id ORDER BY seq DESC LIMIT 1) AS cap"
)
SELECT_ALERT = f"SELECT {ALERT_COLUMNS} FROM alerts a JOIN users u ON u.id = a.created_by"


def spec_json(spec: AlertSpec) -> str:
    """The spec less texts and expiry (stored in their own columns) as JSON."""
    return json.dumps(
        {
            "category": spec.category,
            "urgency": spec.urgency,
            "severity": spec.severity,
            "certainty": spec.certainty,
            "zone_geojson": spec.zone_geojson,
            "area_description": spec.area_description,
            "group_ids": list(spec.group_ids),
            "channels": [c.value for c in spec.channels],
            "sender": spec.sender,
        },
        sort_keys=True,
    )


def infos_json(infos: tuple[Info, ...]) -> str:
    """Texts as a JSON array."""
    return json.dumps([asdict(i) for i in infos], ensure_ascii=False)


def request_hash(spec: AlertSpec, *, spec_doc: str, infos_doc: str) -> str:
    """Fingerprint of a CreateAlert request, to spot a reused idempotency key.

    `spec_doc` and `infos_doc` are `spec_json(spec)` and `infos_json(spec.infos)`, which the
    caller stores too.
    """
    doc = spec_doc + infos_doc + spec.kind.value + spec.expires.isoformat()
    return hashlib.sha256(doc.encode()).hexdigest()


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def parse_infos(value: Any) -> tuple[Info, ...]:
    """Texts from their JSON column."""
    return tuple(Info(**i) for i in _json(value))


def counts(row: asyncpg.Record, spec: dict[str, Any]) -> tuple[ChannelCounts, ...]:
    """Progress per channel stored with the alert, in the order of `spec` (the row's, parsed)."""
    targeted = _json(row["targeted"])
    progress = _json(row["progress"])
    out = []
    for name in spec["channels"]:
        seen = progress.get(name, {})
        out.append(
            ChannelCounts(
                Channel(name),
                targeted=int(targeted.get(name, 0)),
                submitted=int(seen.get("submitted", 0)),
                delivered=int(seen.get("delivered", 0)),
                failed=int(seen.get("failed", 0)),
                dropped=int(seen.get("dropped", 0)),
                units=int(seen.get("units", 0)),
                reported=name in progress,
            )
        )
    return tuple(out)


def to_alert(row: asyncpg.Record) -> Alert:
    """An alert from a row of SELECT_ALERT."""
    spec = _json(row["spec"])
    expires: datetime = row["expires_at"]
    return Alert(
        id=row["id"],
        entity_id=row["entity_id"],
        created_by=row["created_by"],
        state=State(row["state"]),
        version=row["version"],
        msg_type=MsgType(row["msg_type"]),
        spec=AlertSpec(
            kind=Kind(row["kind"]),
            category=spec["category"],
            urgency=spec["urgency"],
            severity=spec["severity"],
            certainty=spec["certainty"],
            infos=parse_infos(row["infos"]),
            zone_geojson=spec["zone_geojson"],
            area_description=spec["area_description"],
            group_ids=tuple(spec["group_ids"]),
            channels=tuple(Channel(c) for c in spec["channels"]),
            expires=expires,
            sender=spec["sender"],
        ),
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        cancelled_at=row["cancelled_at"],
        units_prepaid=row["units_prepaid"],
        units_postpaid=row["units_postpaid"],
        cap_xml=row["cap"] or "",
        progress=counts(row, spec),
    )


async def fetch(conn: Conn | asyncpg.Pool, *, alert_id: str) -> Alert | None:
    """One alert by id, or None."""
    row = await conn.fetchrow(f"{SELECT_ALERT} WHERE a.id = $1::uuid", alert_id)
    return None if row is None else to_alert(row)


# Adds per-channel numbers to the `targeted` and per-channel, per-name numbers to the `progress`
# jsonb counters in the UPDATE itself: the row lock of the statement is the only lock, and no
# value is read into Python and written back.
_ADD_COUNTS = """
UPDATE alerts a SET
    targeted = a.targeted || coalesce((
        SELECT jsonb_object_agg(
            d.key, coalesce((a.targeted ->> d.key)::bigint, 0) + d.value::bigint)
        FROM jsonb_each_text($2::jsonb) AS d), '{}'),
    progress = a.progress || coalesce((
        SELECT jsonb_object_agg(c.key, coalesce(a.progress -> c.key, '{}') || (
            SELECT jsonb_object_agg(
                f.key, coalesce((a.progress -> c.key ->> f.key)::bigint, 0) + f.value::bigint)
            FROM jsonb_each_text(c.value) AS f))
        FROM jsonb_each($3::jsonb) AS c), '{}')
WHERE a.id = $1::uuid
"""


async def add_counts(
    conn: Conn | asyncpg.Pool,
    *,
    alert_id: str,
    targeted: dict[str, int] | None = None,
    progress: dict[str, dict[str, int]] | None = None,
) -> None:
    """Add to the alert's counters: recipients targeted per channel, and progress counts per
    channel and name (submitted, failed...), atomically."""
    await conn.execute(
        _ADD_COUNTS, alert_id, json.dumps(targeted or {}), json.dumps(progress or {})
    )
