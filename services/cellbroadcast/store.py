"""The durable queue of operator requests in PostgreSQL (table cb_requests, migration 0030).

A request row is written before anything is sent, and it is the same row for a retried call:
(alert, version, channel, operator, action) is unique. A process works on a row under a lease;
a process that dies leaves its lease to run out, and another (or itself, restarted) takes over.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.alerting.counters import ALERT_CHANGED
from services.cellbroadcast.model import OPEN_STATES, Action, Channel, Request, State

_OPEN = [s.value for s in OPEN_STATES]
#: A connection, or one borrowed from a pool.
Conn = asyncpg.Connection | PoolConnectionProxy


def _request(row: asyncpg.Record) -> Request:
    payload = row["payload"]
    return Request(
        id=row["id"],
        alert_id=row["alert_id"],
        version=row["version"],
        channel=Channel(row["channel"]),
        operator=row["operator"],
        action=Action(row["action"]),
        payload=json.loads(payload) if isinstance(payload, str) else payload,
        cells=row["cells"],
        state=State(row["state"]),
        reason=row["reason"],
        attempts=row["attempts"],
        phones=row["phones"],
        expires=row["expires_at"],
    )


async def message_code(conn: Conn, *, alert_id: str, expires: datetime) -> int:
    """The alert's CBS message code, drawn once and kept over its versions."""
    code: int = await conn.fetchval(
        "INSERT INTO cb_alerts (alert_id, message_code, expires_at)"
        " VALUES ($1, nextval('cb_message_code_seq') % 1024, $2)"
        " ON CONFLICT (alert_id) DO UPDATE SET expires_at = GREATEST(cb_alerts.expires_at,"
        " EXCLUDED.expires_at) RETURNING message_code",
        alert_id,
        expires,
    )
    return code


async def enqueue(
    conn: Conn,
    *,
    alert_id: str,
    version: int,
    channel: Channel,
    action: Action,
    per_operator: dict[str, tuple[int, dict[str, Any]]],
    expires: datetime,
) -> list[int]:
    """Record one request per operator (cells, payload); the ids, existing rows included."""
    ids: list[int] = []
    for operator, (cells, payload) in per_operator.items():
        row_id = await conn.fetchval(
            "INSERT INTO cb_requests (alert_id, version, channel, operator, action, payload,"
            " cells, expires_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)"
            " ON CONFLICT (alert_id, version, channel, operator, action) DO UPDATE"
            " SET updated_at = cb_requests.updated_at RETURNING id",
            alert_id,
            version,
            channel.value,
            operator,
            action.value,
            json.dumps(payload),
            cells,
            expires,
        )
        ids.append(row_id)
    return ids


async def claim(
    pool: asyncpg.Pool, *, request_id: int, owner: str, lease_s: float
) -> Request | None:
    """Take an open request under a lease for one more attempt (None: final, or another live
    process holds it). Attempts count when they start: one cut short by a crash counts too."""
    row = await pool.fetchrow(
        "UPDATE cb_requests SET lease_owner = $2, attempts = attempts + 1,"
        " lease_until = now() + make_interval(secs => $3)"
        " WHERE id = $1 AND state = ANY($4::text[])"
        " AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $2) RETURNING *",
        request_id,
        owner,
        lease_s,
        _OPEN,
    )
    return None if row is None else _request(row)


async def record(
    pool: asyncpg.Pool,
    *,
    request_id: int,
    state: State,
    reason: str,
    phones: int | None,
    hold_s: float,
) -> None:
    """Record an attempt's outcome (unless a withdrawal closed it meanwhile); a request to retry
    stays leased for `hold_s` (its backoff). The alert's watchers are woken (alerting's
    ALERT_CHANGED notification): WatchAlert shows the operator's new state at once."""
    await pool.execute(
        "WITH u AS (UPDATE cb_requests SET state = $2, reason = $3,"
        " phones = COALESCE($4, phones), updated_at = now(),"
        " lease_until = CASE WHEN $2 = ANY($6::text[])"
        "   THEN now() + make_interval(secs => $5) END"
        " WHERE id = $1 AND state = ANY($6::text[]) RETURNING alert_id)"
        " SELECT pg_notify($7, alert_id) FROM u",
        request_id,
        state.value,
        reason,
        phones,
        hold_s,
        _OPEN,
        ALERT_CHANGED,
    )


async def open_unleased(pool: asyncpg.Pool) -> list[int]:
    """Open requests nobody works on (a process died, or this one restarted)."""
    rows = await pool.fetch(
        "SELECT id FROM cb_requests WHERE state = ANY($1::text[])"
        " AND (lease_until IS NULL OR lease_until < now()) ORDER BY id",
        _OPEN,
    )
    return [r["id"] for r in rows]


async def fetch(pool: asyncpg.Pool, ids: list[int]) -> list[Request]:
    """The requests with these ids, in id order."""
    rows = await pool.fetch("SELECT * FROM cb_requests WHERE id = ANY($1) ORDER BY id", ids)
    return [_request(r) for r in rows]


async def of_alert(pool: asyncpg.Pool, *, alert_id: str) -> list[Request]:
    """Every request of an alert, oldest first."""
    rows = await pool.fetch("SELECT * FROM cb_requests WHERE alert_id = $1 ORDER BY id", alert_id)
    return [_request(r) for r in rows]


async def end_broadcasts(
    pool: asyncpg.Pool,
    *,
    alert_id: str,
    channel: Channel,
    operator: str,
    below_version: int | None,
    state: State,
    reason: str,
) -> None:
    """Close the alert's broadcasts at an operator: older versions superseded, or all withdrawn."""
    await pool.execute(
        "UPDATE cb_requests SET state = $5, reason = $6, updated_at = now()"
        " WHERE alert_id = $1 AND channel = $2 AND operator = $3 AND action = 'broadcast'"
        " AND ($4::int IS NULL OR version < $4)"
        " AND state = ANY($7::text[])",
        alert_id,
        channel.value,
        operator,
        below_version,
        state.value,
        reason,
        [*_OPEN, State.ACCEPTED.value] if state is State.WITHDRAWN else _OPEN,
    )


async def active(pool: asyncpg.Pool, *, operator: str) -> dict[int, tuple[str, int]]:
    """Message identifier -> (alert, version) of ours active at the operator's CBC."""
    rows = await pool.fetch(
        "SELECT message_id, alert_id, version FROM cb_active WHERE operator = $1", operator
    )
    return {r["message_id"]: (r["alert_id"], r["version"]) for r in rows}


async def set_active(
    pool: asyncpg.Pool, *, operator: str, message_id: int, alert_id: str, version: int
) -> None:
    """Record that the operator's CBC holds our message under this identifier."""
    await pool.execute(
        "INSERT INTO cb_active (operator, message_id, alert_id, version) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (operator, message_id) DO UPDATE SET alert_id = $3, version = $4",
        operator,
        message_id,
        alert_id,
        version,
    )


async def clear_active(
    pool: asyncpg.Pool, *, operator: str, message_id: int, alert_id: str
) -> None:
    """Record that the operator's CBC no longer holds the alert's message (deleted or unknown)."""
    await pool.execute(
        "DELETE FROM cb_active WHERE operator = $1 AND message_id = $2 AND alert_id = $3",
        operator,
        message_id,
        alert_id,
    )
