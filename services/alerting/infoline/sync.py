"""Follow the provider's reports of every live line, and watch the one-hour promise.

One round (`sync_once`) hands over what has not landed yet (activations, liaison versions),
applies the new reports in order (acknowledged, opened, hourly figures with their costs, closed),
and sets the metrics; the service runs a round every few seconds. Several replicas may run rounds
at once: a report is applied only by the round that moves the line's sequence number past it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import asyncpg

from services.alerting import audit
from services.alerting.infoline import costs, erlang, store
from services.alerting.infoline.lines import (
    DEFAULT_ANSWERED_RATIO,
    DEFAULT_TARGET_S,
    deliver_liaison,
)
from services.alerting.infoline.metrics import CALLS, LINES, OPENED_LATE, OPERATORS, OVERDUE
from services.alerting.infoline.model import (
    NOT_OPEN_YET,
    TAKING_CALLS,
    EventType,
    Line,
    LineState,
    ProviderEvent,
)
from services.alerting.infoline.ports import Clock, ContactCentre
from services.alerting.model import LANGUAGES
from services.kernel.errors import FailedPrecondition, Unavailable

logger = logging.getLogger(__name__)


class Syncer:
    """Applies the provider's reports to the lines and keeps the promise metrics."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        provider: ContactCentre,
        clock: Clock,
        tariff: costs.Tariff,
        audit_key: bytes,
    ) -> None:
        self._pool = pool
        #: The audit chain's key (the gate's): the syncer's entries chain like the calls'.
        self._audit_key = audit_key
        self._provider = provider
        self._clock = clock
        self._tariff = tariff

    async def run(self, *, interval_s: float) -> None:
        """A round every `interval_s` until cancelled; a provider outage only delays the next."""
        while True:
            try:
                await self.sync_once()
            except (Unavailable, OSError, asyncpg.PostgresError) as exc:
                logger.warning("information line sync round failed: %r", exc)
            await asyncio.sleep(interval_s)

    async def sync_once(self) -> list[Line]:
        """One round over every line not closed; return them as they are afterwards."""
        rows = await self._pool.fetch(f"{store.LINE_SELECT} WHERE l.state <> 'closed'")
        lines = []
        for row in rows:
            line = store.line_from_row(row)
            try:
                line = await self._follow(line)
            except (Unavailable, FailedPrecondition) as exc:
                # One line the provider cannot answer for must not hold back the others.
                logger.warning("line %s: %s", line.id, exc.message)
            lines.append(line)
        await self._note_overdue(lines)
        await self._set_gauges()
        return lines

    async def _follow(self, line: Line) -> Line:
        if line.state is LineState.REQUESTED:
            await self._provider.activate(line=line)
        for update in await store.undelivered_liaison(self._pool, line_id=line.id):
            if not await deliver_liaison(self._pool, provider=self._provider, update=update):
                break
        seq = await store.event_seq(self._pool, line_id=line.id)
        events = await self._provider.events(line_id=line.id, after=seq)
        for event in events:
            if event.seq <= seq:
                continue
            if not await self._apply(line, event, after=seq):
                break  # another replica applied it first; it goes on from there
            seq = event.seq
        return await store.load_line(self._pool, line_id=line.id)

    async def _apply(self, line: Line, event: ProviderEvent, *, after: int) -> bool:
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            moved = await conn.execute(
                "UPDATE infoline_lines SET event_seq = $3 WHERE id = $1 AND event_seq = $2",
                line.id,
                after,
                event.seq,
            )
            if moved == "UPDATE 0":
                return False
            if event.type is EventType.ACKNOWLEDGED:
                await conn.execute(
                    "UPDATE infoline_lines SET acknowledged_at = coalesce(acknowledged_at, $2),"
                    " number = $3, state = CASE WHEN state = 'requested' THEN 'acknowledged'"
                    " ELSE state END WHERE id = $1",
                    line.id,
                    now,
                    event.number,
                )
            elif event.type is EventType.OPENED:
                await conn.execute(
                    "UPDATE infoline_lines SET opened_at = coalesce(opened_at, $2),"
                    " number = CASE WHEN $3 = '' THEN number ELSE $3 END,"
                    " state = CASE WHEN state IN ('requested', 'acknowledged') THEN 'open'"
                    " ELSE state END WHERE id = $1",
                    line.id,
                    now,
                    event.number,
                )
                if now > line.open_by and line.opened_at is None:
                    OPENED_LATE.inc()
            elif event.type is EventType.FIGURES and event.figures is not None:
                f = event.figures
                await conn.execute(
                    "INSERT INTO infoline_figures (line_id, language, hour_start, offered,"
                    " answered, abandoned, aht_s, operators) VALUES ($1, $2, $3, $4, $5, $6, $7,"
                    " $8) ON CONFLICT DO NOTHING",
                    line.id,
                    f.language,
                    f.hour_start,
                    f.offered,
                    f.answered,
                    f.abandoned,
                    f.aht_s,
                    f.operators,
                )
                await costs.charge(conn, line=line, figures=f, tariff=self._tariff)
                CALLS.labels(f.language, "offered").inc(f.offered)
                CALLS.labels(f.language, "answered").inc(f.answered)
                CALLS.labels(f.language, "abandoned").inc(f.abandoned)
            elif event.type is EventType.CLOSED:
                await conn.execute(
                    "UPDATE infoline_lines SET state = 'closed', closed_at = $2 WHERE id = $1",
                    line.id,
                    now,
                )
        if event.type is not EventType.FIGURES:
            await self._audit(
                line,
                action=f"InfoLine{event.type.value.capitalize()}",
                detail=f"provider seq={event.seq} number={event.number}",
            )
        return True

    async def _note_overdue(self, lines: list[Line]) -> None:
        now = self._clock()
        overdue = [line for line in lines if line.state in NOT_OPEN_YET and line.overdue(now)]
        OVERDUE.set(len(overdue))
        for line in overdue:
            noted = await self._pool.execute(
                "UPDATE infoline_lines SET overdue_noted = true"
                " WHERE id = $1 AND NOT overdue_noted",
                line.id,
            )
            if noted == "UPDATE 1":
                logger.warning("line %s not open by %s", line.id, line.open_by.isoformat())
                await self._audit(
                    line, action="InfoLineOverdue", detail=f"open_by={line.open_by.isoformat()}"
                )

    async def _set_gauges(self) -> None:
        rows = await self._pool.fetch(
            "SELECT state, count(*) AS n FROM infoline_lines WHERE state <> 'closed' GROUP BY state"
        )
        by_state = Counter({r["state"]: int(r["n"]) for r in rows})
        for state in LineState:
            if state is not LineState.CLOSED:
                LINES.labels(state.value).set(by_state[state.value])
        latest = await self._pool.fetch(
            "SELECT DISTINCT ON (f.line_id, f.language) f.* FROM infoline_figures f"
            " JOIN infoline_lines l ON l.id = f.line_id WHERE l.state = ANY($1::text[])"
            " ORDER BY f.line_id, f.language, f.hour_start DESC",
            [s.value for s in TAKING_CALLS],
        )
        actual: Counter[str] = Counter()
        recommended: Counter[str] = Counter()
        for r in latest:
            actual[r["language"]] += r["operators"]
            recommended[r["language"]] += erlang.operators_needed(
                calls_per_hour=r["offered"],
                aht_s=r["aht_s"],
                answered_ratio=DEFAULT_ANSWERED_RATIO,
                target_s=DEFAULT_TARGET_S,
            )
        # Languages whose lines closed go back to 0 rather than keep their last hour.
        for language in set(LANGUAGES) | set(actual) | set(recommended):
            OPERATORS.labels(language, "actual").set(actual[language])
            OPERATORS.labels(language, "recommended").set(recommended[language])

    async def _audit(self, line: Line, *, action: str, detail: str) -> None:
        await audit.append(
            self._pool,
            user_id=None,
            username="contact-centre",
            entity_id=line.entity_id,
            action=action,
            target=f"infoline:{line.id}",
            peer="provider",
            result="OK",
            detail=detail,
            key=self._audit_key,
        )
