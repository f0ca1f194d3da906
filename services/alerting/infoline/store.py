"""The information line's rows: lines, persons, phases, figures, liaison versions."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from services.alerting import store
from services.alerting.infoline.model import (
    Contact,
    Figures,
    Form,
    LiaisonUpdate,
    Line,
    LineKind,
    LineState,
    QuestionAnswer,
)
from services.kernel.errors import NotFound

Conn = store.Conn | asyncpg.Pool

LINE_SELECT = (
    "SELECT l.*, u.username AS requested_by_name,"
    " coalesce((SELECT array_agg(a.alert_id::text ORDER BY a.alert_id) FROM infoline_line_alerts a"
    " WHERE a.line_id = l.id), '{}') AS alert_ids"
    " FROM infoline_lines l JOIN users u ON u.id = l.requested_by"
)


def form_json(form: Form) -> str:
    """The form as stored in `infoline_lines.form` (alerts are rows of their own)."""
    return json.dumps(form.details())


def line_from_row(row: asyncpg.Record) -> Line:
    """A line from a LINE_SELECT row."""
    doc: dict[str, Any] = json.loads(row["form"])
    desired = doc["desired_opening"]
    form = Form(
        kind=LineKind(row["kind"]),
        exercise=row["exercise"],
        description=doc["description"],
        advice=doc["advice"],
        liaison=Contact(**doc["liaison"]),
        opening_hours=doc["opening_hours"],
        operators=doc["operators"],
        desired_opening=None if desired is None else datetime.fromisoformat(desired),
        alert_ids=tuple(row["alert_ids"]),
    )
    return Line(
        id=str(row["id"]),
        entity_id=row["entity_id"],
        requested_by=row["requested_by_name"],
        form=form,
        state=LineState(row["state"]),
        requested_at=row["requested_at"],
        open_by=row["open_by"],
        acknowledged_at=row["acknowledged_at"],
        opened_at=row["opened_at"],
        closed_at=row["closed_at"],
        number=row["number"],
        second_line=row["second_line"],
        opening_hours=row["opening_hours"],
        operators=row["operators"],
        forward_to=row["forward_to"],
        liaison_version=row["liaison_version"],
    )


async def load_line(conn: Conn, *, line_id: str, lock: bool = False) -> Line:
    """One line; NotFound if there is none."""
    if lock:
        await conn.execute("SELECT 1 FROM infoline_lines WHERE id = $1 FOR UPDATE", line_id)
    row = await conn.fetchrow(f"{LINE_SELECT} WHERE l.id = $1", line_id)
    if row is None:
        raise NotFound(f"information line {line_id} does not exist")
    return line_from_row(row)


async def event_seq(conn: Conn, *, line_id: str) -> int:
    """The last provider report applied to the line."""
    seq: int = await conn.fetchval("SELECT event_seq FROM infoline_lines WHERE id = $1", line_id)
    return seq


async def insert_line(
    conn: store.Conn,
    *,
    line_id: str,
    entity_id: int,
    user_id: int,
    form: Form,
    now: datetime,
    open_by: datetime,
) -> None:
    """Record a new line and the alerts it supports."""
    await conn.execute(
        "INSERT INTO infoline_lines (id, entity_id, requested_by, kind, exercise, form, state,"
        " requested_at, open_by, opening_hours, operators)"
        " VALUES ($1, $2, $3, $4, $5, $6, 'requested', $7, $8, $9, $10)",
        line_id,
        entity_id,
        user_id,
        form.kind.value,
        form.exercise,
        form_json(form),
        now,
        open_by,
        form.opening_hours,
        form.operators,
    )
    await conn.executemany(
        "INSERT INTO infoline_line_alerts (line_id, alert_id) VALUES ($1, $2)",
        [(line_id, a) for a in form.alert_ids],
    )


async def figures_of(conn: Conn, *, line_id: str) -> list[Figures]:
    """Every hour's figures of the line, by language then hour."""
    rows = await conn.fetch(
        "SELECT * FROM infoline_figures WHERE line_id = $1 ORDER BY language, hour_start", line_id
    )
    return [
        Figures(
            r["language"],
            r["hour_start"],
            r["offered"],
            r["answered"],
            r["abandoned"],
            r["aht_s"],
            r["operators"],
        )
        for r in rows
    ]


def liaison_from_row(row: asyncpg.Record) -> LiaisonUpdate:
    """A liaison version from its row."""
    items = tuple(QuestionAnswer(i["question"], i["answer"]) for i in json.loads(row["items"]))
    return LiaisonUpdate(
        str(row["line_id"]), row["version"], items, row["published_at"], row["published_by"]
    )


async def undelivered_liaison(conn: Conn, *, line_id: str) -> list[LiaisonUpdate]:
    """Versions the provider has not confirmed receiving yet, oldest first."""
    rows = await conn.fetch(
        "SELECT * FROM infoline_liaison WHERE line_id = $1 AND NOT delivered ORDER BY version",
        line_id,
    )
    return [liaison_from_row(r) for r in rows]
