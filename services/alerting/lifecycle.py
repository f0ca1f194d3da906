"""The alert's state machine: the one module that moves an alert from state to state.

    draft ──send──▶ sending ──resolved──▶ sent ──every outcome in──▶ complete
                    │   ▲                  ▲ │                          │
      resolve failed└───┘resumed           │ └──────update─────────────┘ (sent again)
    any of draft, sending, sent, complete ──cancel──▶ cancelled
    sending, sent ──past expiry──▶ expired

A send whose audience could not be resolved stays `sending`, marked as stopped (`sent_at` NULL):
part of its audience may already be queued on the channels, so it never goes back to draft (its
texts could then be edited under messages already out). SendAlert resumes it (`resume_send`: the
channels drop the recipients they already have); CancelAlert stops it and what it queued.

Every transition goes through `move`, which refuses one the table does not allow
(`IllegalTransition`) before any SQL runs, and applies it only from the states it names (a
concurrent change makes it a no-op, which the caller sees). The SQL state literals of the alerts
table live here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from services.alerting.model import State
from services.alerting.store import Conn

#: From each state, the states an alert may move to.
TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.DRAFT: frozenset({State.SENDING, State.CANCELLED}),
    State.SENDING: frozenset({State.SENDING, State.SENT, State.CANCELLED, State.EXPIRED}),
    State.SENT: frozenset({State.SENT, State.COMPLETE, State.CANCELLED, State.EXPIRED}),
    State.COMPLETE: frozenset({State.SENT, State.CANCELLED}),
    State.CANCELLED: frozenset(),
    State.EXPIRED: frozenset(),
}
#: States after which nothing changes.
FINAL = frozenset(s for s, to in TRANSITIONS.items() if not to)
#: States a settler looks at: dispatching, and recently ended (late outcomes still charge).
SETTLED_WHILE = (State.SENT, State.CANCELLED, State.EXPIRED)


class IllegalTransition(ValueError):
    """A transition the state machine does not allow: a bug in the caller, not a user error."""


def check(before: State, after: State) -> None:
    """Refuse `before -> after` unless the table allows it."""
    if after not in TRANSITIONS[before]:
        raise IllegalTransition(f"an alert cannot go from {before.value} to {after.value}")


async def move(
    conn: Conn,
    *,
    alert_id: str,
    to: State,
    only_from: Collection[State],
    sets: Mapping[str, str] | None = None,
    where: str = "",
    args: Sequence[Any] = (),
    returning: str = "id",
) -> Any:
    """Move the alert to `to` if it is in one of `only_from`; the RETURNING value, or None when
    it was in none of them. `sets` are further `column = expression` assignments and `where` a
    further condition, whose parameters `args` are numbered from $3."""
    for before in only_from:
        check(before, to)
    assignments = ", ".join(["state = $2", *(f"{c} = {e}" for c, e in (sets or {}).items())])
    extra = f" AND {where}" if where else ""
    sql = (
        f"UPDATE alerts SET {assignments} WHERE id = $1::uuid"
        f" AND state IN ({', '.join(repr(s.value) for s in only_from)}){extra}"
        f" RETURNING {returning}"
    )
    return await conn.fetchval(sql, alert_id, to.value, *args)


async def claim_send(conn: Conn, *, alert_id: str, now: datetime) -> bool:
    """draft -> sending, at version 1: True if this call claimed it."""
    claimed = await move(
        conn,
        alert_id=alert_id,
        to=State.SENDING,
        only_from=(State.DRAFT,),
        sets={"version": "1", "msg_type": "'Alert'", "sent_at": "$3"},
        args=(now,),
    )
    return claimed is not None


async def send_failed(conn: Conn, *, alert_id: str) -> bool:
    """sending -> sending, stopped (sent_at NULL), when resolving the audience failed part-way:
    True if it was still sending. SendAlert resumes it; CancelAlert stops it."""
    stopped = await move(
        conn, alert_id=alert_id, to=State.SENDING, only_from=(State.SENDING,), sets=_STOPPED
    )
    return stopped is not None


async def resume_send(conn: Conn, *, alert_id: str, now: datetime) -> bool:
    """A stopped send -> sending again (sent_at now): True if this call claimed the resume."""
    resumed = await move(
        conn,
        alert_id=alert_id,
        to=State.SENDING,
        only_from=(State.SENDING,),
        sets={"sent_at": "$3"},
        where="sent_at IS NULL",
        args=(now,),
    )
    return resumed is not None


#: What marks a send as stopped: no dispatch runs for it until SendAlert resumes it.
_STOPPED = {"sent_at": "NULL"}


async def reopen_for_update(
    conn: Conn, *, alert_id: str, infos_json: str, base_version: int
) -> int | None:
    """sent or complete -> sent with the next version's texts: that version, or None when the
    alert changed meanwhile (another state, or another version)."""
    version: int | None = await move(
        conn,
        alert_id=alert_id,
        to=State.SENT,
        only_from=(State.SENT, State.COMPLETE),
        sets={"version": "version + 1", "infos": "$3::jsonb", "msg_type": "'Update'"},
        where="version = $4",
        args=(infos_json, base_version),
        returning="version",
    )
    return version


async def cancel(conn: Conn, *, alert_id: str, now: datetime, dispatched: bool) -> bool:
    """Any live state -> cancelled (msgType Cancel once dispatched): True if it moved."""
    moved = await move(
        conn,
        alert_id=alert_id,
        to=State.CANCELLED,
        only_from=(State.DRAFT, State.SENDING, State.SENT, State.COMPLETE),
        sets={"cancelled_at": "$3", "msg_type": "CASE WHEN $4 THEN 'Cancel' ELSE msg_type END"},
        args=(now, dispatched),
    )
    return moved is not None


async def resolved(conn: Conn, *, alert_id: str) -> bool:
    """sending -> sent once the send's audience is resolved: True if it was still sending."""
    moved = await move(conn, alert_id=alert_id, to=State.SENT, only_from=(State.SENDING,))
    return moved is not None


async def state_of(conn: Conn | Any, *, alert_id: str) -> State | None:
    """The alert's state now (None if there is no such alert)."""
    found = await conn.fetchval("SELECT state FROM alerts WHERE id = $1::uuid", alert_id)
    return None if found is None else State(found)


def after_settle(state: State, *, complete: bool, expired: bool) -> State:
    """The state once the channels' outcomes are folded in: complete when every message has an
    outcome, expired when past expiry while dispatching, else unchanged."""
    if state is State.SENT and complete:
        after = State.COMPLETE
    elif state in (State.SENDING, State.SENT) and expired:
        after = State.EXPIRED
    else:
        return state
    check(state, after)
    return after


async def edit_draft(conn: Conn | Any, *, alert_id: str, infos_json: str) -> None:
    """New texts for a draft (no transition: a sent alert is updated with `reopen_for_update`)."""
    await conn.execute(
        f"UPDATE alerts SET infos = $2::jsonb WHERE id = $1::uuid AND state = '{State.DRAFT}'",
        alert_id,
        infos_json,
    )


async def stale_sends(conn: Conn | Any, *, older_than: datetime) -> list[str]:
    """Alerts left `sending` since before `older_than` (their process died), marked as taken
    now so that one settler resumes each."""
    rows = await conn.fetch(
        f"UPDATE alerts SET sent_at = now() WHERE state = '{State.SENDING}' AND sent_at < $1"
        " RETURNING id::text AS id",
        older_than,
    )
    return [r["id"] for r in rows]


async def to_settle(conn: Conn | Any) -> list[str]:
    """Alerts a settler folds outcomes into: sent ones, and those cancelled or expired within
    the hour (messages handed over before the end are still charged when they are recorded)."""
    rows = await conn.fetch(
        f"SELECT id::text AS id FROM alerts WHERE state = '{State.SENT}'"
        f" OR (state = '{State.CANCELLED}' AND cancelled_at > now() - interval '1 hour')"
        f" OR (state = '{State.EXPIRED}' AND expires_at > now() - interval '1 hour')"
    )
    return [r["id"] for r in rows]


async def controlled(conn: Conn | Any) -> list[Any]:
    """Alerts not expired whose control keys consumers consult: (id, state, version) of those
    sending, sent, complete or cancelled (a draft has no work anywhere)."""
    rows: list[Any] = await conn.fetch(
        "SELECT id::text AS id, state, version FROM alerts WHERE expires_at > now()"
        f" AND state IN ('{State.SENDING}', '{State.SENT}', '{State.COMPLETE}',"
        f" '{State.CANCELLED}')"
    )
    return rows


async def live(conn: Conn | Any) -> list[Any]:
    """Alerts still dispatching (sending or sent): kind, targeted and progress of each."""
    rows: list[Any] = await conn.fetch(
        f"SELECT kind, targeted, progress FROM alerts"
        f" WHERE state IN ('{State.SENDING}', '{State.SENT}')"
    )
    return rows
