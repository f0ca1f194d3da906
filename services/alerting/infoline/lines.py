"""The information line's life: activation, liaison updates, second line, closure, staffing."""

from __future__ import annotations

import json
import logging
import uuid

import asyncpg

from services.alerting.auth import Principal
from services.alerting.infoline import erlang, rights, store, validate
from services.alerting.infoline.model import (
    OPENING_PROMISE,
    TAKING_CALLS,
    Arrangements,
    Figures,
    Form,
    LanguageStaffing,
    LiaisonUpdate,
    Line,
    LineState,
    QuestionAnswer,
    Staffing,
)
from services.alerting.infoline.ports import Clock, ContactCentre
from services.kernel.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)

logger = logging.getLogger(__name__)

#: Service-level target unless the caller names one: 80 % of calls answered within 20 s.
DEFAULT_ANSWERED_RATIO = 0.8
DEFAULT_TARGET_S = 20


class InfoLines:
    """The information lines of every entity, with the provider behind its port."""

    def __init__(self, *, pool: asyncpg.Pool, provider: ContactCentre, clock: Clock) -> None:
        self._pool = pool
        self.provider = provider
        self.clock = clock

    async def visible(self, *, principal: Principal, line_id: str) -> Line:
        """A line of the caller's entity (any line for an admin)."""
        line = await store.load_line(self._pool, line_id=_line_id(line_id))
        if not principal.is_admin and principal.entity_id != line.entity_id:
            raise NotFound(f"information line {line_id} does not exist")
        return line

    async def of_entity(self, *, principal: Principal, entity_id: int) -> list[Line]:
        """The entity's lines, newest first."""
        if not principal.is_admin and principal.entity_id != entity_id:
            raise PermissionDenied("only the entity's own users or an admin may see its lines")
        rows = await self._pool.fetch(
            f"{store.LINE_SELECT} WHERE l.entity_id = $1 ORDER BY l.requested_at DESC", entity_id
        )
        return [store.line_from_row(r) for r in rows]

    async def activate(self, *, principal: Principal, form: Form) -> Line:
        """Record the activation and hand it to the provider (retried until acknowledged)."""
        if principal.entity_id is None:
            raise PermissionDenied("an information line is activated by an entity's own account")
        entity_id = principal.entity_id
        now = self.clock()
        open_by = max(now + OPENING_PROMISE, form.desired_opening or now)
        line_id = str(uuid.uuid4())
        async with self._pool.acquire() as conn, conn.transaction():
            await rights.line_entity(conn, entity_id=entity_id)
            await rights.require_authorised(conn, principal=principal, entity_id=entity_id)
            if not form.exercise and await rights.phase_in_force(conn, entity_id=entity_id) is None:
                raise FailedPrecondition(
                    "no emergency phase is declared for the entity: the information line opens"
                    " only during a municipal (or higher) phase, or as an exercise"
                )
            own = await conn.fetch(
                "SELECT id::text FROM alerts WHERE entity_id = $1 AND id = ANY($2::uuid[])",
                entity_id,
                list(form.alert_ids),
            )
            found = {r["id"] for r in own}
            for i, alert_id in enumerate(form.alert_ids):
                if alert_id not in found:
                    raise InvalidArgument(
                        f"form.alert_ids[{i}]", f"{alert_id} is not an alert of the entity"
                    )
            await store.insert_line(
                conn,
                line_id=line_id,
                entity_id=entity_id,
                user_id=principal.user_id,
                form=form,
                now=now,
                open_by=open_by,
            )
        line = await store.load_line(self._pool, line_id=line_id)
        try:
            await self.provider.activate(line=line)
        except Unavailable as exc:
            # Recorded and promised all the same: the syncer hands it over again until it lands.
            logger.warning("line %s: activation not handed over yet: %s", line_id, exc.message)
        return line

    async def publish_liaison(
        self, *, principal: Principal, line_id: str, items: list[QuestionAnswer]
    ) -> LiaisonUpdate:
        """A new version of the operators' questions and answers, by the entity's liaison."""
        checked = validate.liaison_items(items)
        line = await self.visible(principal=principal, line_id=line_id)
        if principal.entity_id != line.entity_id:
            raise PermissionDenied("liaison updates come from the activating entity")
        if line.state is LineState.CLOSED:
            raise FailedPrecondition("the line is closed")
        now = self.clock()
        async with self._pool.acquire() as conn, conn.transaction():
            version: int = await conn.fetchval(
                "UPDATE infoline_lines SET liaison_version = liaison_version + 1 WHERE id = $1"
                " RETURNING liaison_version",
                line.id,
            )
            await conn.execute(
                "INSERT INTO infoline_liaison (line_id, version, items, published_at,"
                " published_by) VALUES ($1, $2, $3, $4, $5)",
                line.id,
                version,
                json.dumps([{"question": i.question, "answer": i.answer} for i in checked]),
                now,
                principal.username,
            )
        update = LiaisonUpdate(line.id, version, checked, now, principal.username)
        await deliver_liaison(self._pool, provider=self.provider, update=update)
        return update

    async def open_second_line(self, *, principal: Principal, line_id: str, number: str) -> Line:
        """A local second line has opened: the provider transfers callers to it."""
        checked = validate.phone(number, field="number")
        line = await self.visible(principal=principal, line_id=line_id)
        await rights.require_authorised(self._pool, principal=principal, entity_id=line.entity_id)
        if line.state not in (LineState.ACKNOWLEDGED, *TAKING_CALLS):
            raise FailedPrecondition(f"the line is {line.state.value}: nothing to transfer from")
        await self.provider.transfer(line_id=line.id, number=checked)
        await self._pool.execute(
            "UPDATE infoline_lines SET second_line = $2 WHERE id = $1", line.id, checked
        )
        return await store.load_line(self._pool, line_id=line.id)

    async def close(
        self,
        *,
        principal: Principal,
        line_id: str,
        statement: str,
        final: bool,
        hours: str,
        operators: int,
        forward_to: str,
    ) -> Line:
        """Written closure by an authorised person: final, or a step down."""
        written = validate.text(statement, field="statement")
        line = await self.visible(principal=principal, line_id=line_id)
        await rights.require_authorised(self._pool, principal=principal, entity_id=line.entity_id)
        if line.state in (LineState.CLOSING, LineState.CLOSED):
            raise FailedPrecondition(f"the line is {line.state.value} already")
        if final:
            await self.provider.close(
                line_id=line.id, statement=written, confirmed_by=principal.username
            )
            await self._pool.execute(
                "UPDATE infoline_lines SET state = 'closing' WHERE id = $1", line.id
            )
            return await store.load_line(self._pool, line_id=line.id)
        if line.state not in TAKING_CALLS:
            raise FailedPrecondition(
                f"the line is {line.state.value}: a step down needs an open line (or close it)"
            )
        step = validate.arrangements(
            hours=hours,
            operators_kept=operators,
            forward_to=forward_to,
            current=Arrangements(line.opening_hours, line.operators, line.forward_to),
        )
        await self.provider.arrange(line_id=line.id, arrangements=step)
        await self._pool.execute(
            "UPDATE infoline_lines SET state = 'reduced', opening_hours = $2, operators = $3,"
            " forward_to = $4 WHERE id = $1",
            line.id,
            step.opening_hours,
            step.operators,
            step.forward_to,
        )
        return await store.load_line(self._pool, line_id=line.id)

    async def staffing(
        self, *, principal: Principal, line_id: str, answered_ratio: float, target_s: int
    ) -> Staffing:
        """Per language line, its latest hour: actual operators and Erlang C's recommendation."""
        ratio = answered_ratio or DEFAULT_ANSWERED_RATIO
        if not 0 < ratio < 1:
            raise InvalidArgument("target_answered_ratio", "between 0 and 1, e.g. 0.8")
        target = target_s or DEFAULT_TARGET_S
        if not 0 < target <= 3600:
            raise InvalidArgument("target_answer_s", "1 to 3600 seconds")
        line = await self.visible(principal=principal, line_id=line_id)
        return recommend(
            line_id=line.id,
            figures=await store.figures_of(self._pool, line_id=line.id),
            answered_ratio=ratio,
            target_s=target,
        )


def recommend(
    *, line_id: str, figures: list[Figures], answered_ratio: float, target_s: int
) -> Staffing:
    """The latest hour of each language line next to what Erlang C recommends for its calls."""
    latest: dict[str, Figures] = {}
    for f in figures:
        if f.language not in latest or f.hour_start > latest[f.language].hour_start:
            latest[f.language] = f
    languages = []
    for language in sorted(latest):
        f = latest[language]
        erlangs = erlang.traffic(calls_per_hour=f.offered, aht_s=f.aht_s)
        needed = erlang.operators_needed(
            calls_per_hour=f.offered,
            aht_s=f.aht_s,
            answered_ratio=answered_ratio,
            target_s=target_s,
        )
        languages.append(
            LanguageStaffing(
                figures=f,
                recommended=needed,
                service_level_actual=erlang.service_level(
                    operators=f.operators, erlangs=erlangs, aht_s=f.aht_s, target_s=target_s
                ),
                service_level_recommended=erlang.service_level(
                    operators=needed, erlangs=erlangs, aht_s=f.aht_s, target_s=target_s
                ),
            )
        )
    return Staffing(line_id, answered_ratio, target_s, tuple(languages))


async def deliver_liaison(
    pool: asyncpg.Pool, *, provider: ContactCentre, update: LiaisonUpdate
) -> bool:
    """Hand a liaison version to the provider; whether it landed (else the syncer retries)."""
    try:
        await provider.liaison(line_id=update.line_id, version=update.version, items=update.items)
    except Unavailable as exc:
        logger.warning(
            "line %s: liaison v%d not handed over yet: %s",
            update.line_id,
            update.version,
            exc.message,
        )
        return False
    await pool.execute(
        "UPDATE infoline_liaison SET delivered = true WHERE line_id = $1 AND version = $2",
        update.line_id,
        update.version,
    )
    return True


def _line_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument("line_id", "not a line id (UUID)") from None
