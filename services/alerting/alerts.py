"""The alert lifecycle: create, preview, send, update, cancel, read."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis

from services.alerting import cap, entities, ledger, presence, store
from services.alerting.auth import Principal, require_entity
from services.alerting.metrics import ALERT_MESSAGES, ALERTS
from services.alerting.model import (
    REGISTERED_CHANNELS,
    Alert,
    AlertSpec,
    Channel,
    Info,
    Kind,
    MsgType,
    State,
)
from services.alerting.permissions import EntityInfo, check_alert
from services.alerting.ports import AudienceCount, Broadcasts, Targeting
from services.alerting.presence import BROADCAST_CHANNELS
from services.alerting.texts import channel_texts, sms_segments
from services.alerting.validation import check_idempotency_key, check_infos, check_spec
from services.kernel import keys
from services.kernel.errors import FailedPrecondition, InvalidArgument, NotFound

#: Largest page of ListAlerts.
MAX_PAGE = 500


@dataclass(frozen=True)
class Audience:
    """Recipients of one channel in one language and the units they cost."""

    channel: Channel
    language: str
    recipients: int
    units: int


@dataclass(frozen=True)
class Preview:
    """Audience, cost and how it would be billed."""

    audiences: tuple[Audience, ...]
    cells: int
    units: int
    cost_cents: int
    prepaid_available: int
    billing: ledger.Billing
    refusal: str


def now_utc() -> datetime:
    """The current instant, aware, UTC."""
    return datetime.now(UTC)


def parse_alert_id(alert_id: str) -> str:
    """The alert id in canonical UUID form; INVALID_ARGUMENT otherwise."""
    try:
        return str(uuid.UUID(alert_id))
    except ValueError:
        raise InvalidArgument("alert_id", "not an alert id (UUID)") from None


def _registered(spec: AlertSpec) -> tuple[Channel, ...]:
    return tuple(c for c in spec.channels if c in REGISTERED_CHANNELS)


class Alerts:
    """The lifecycle of alerts, for callers already authenticated."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        targeting: Targeting,
        broadcasts: Broadcasts,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._targeting = targeting
        self._broadcasts = broadcasts

    async def visible(self, *, principal: Principal, alert_id: str) -> Alert:
        """An alert the caller may read: their entity's own (an admin reads any)."""
        alert = await store.fetch(self._pool, alert_id=parse_alert_id(alert_id))
        if alert is None or (alert.entity_id != principal.entity_id and not principal.is_admin):
            raise NotFound(f"alert {alert_id} does not exist")
        return alert

    async def _own(self, *, principal: Principal, alert_id: str) -> Alert:
        """An alert the caller may act on: their entity's own, and only theirs."""
        entity_id = require_entity(principal)
        alert = await store.fetch(self._pool, alert_id=parse_alert_id(alert_id))
        if alert is None or alert.entity_id != entity_id:
            raise NotFound(f"alert {alert_id} does not exist")
        return alert

    async def _check_rules(self, *, entity_id: int, spec: AlertSpec) -> EntityInfo:
        entity = await entities.load(self._pool, entity_id=entity_id)
        owned = await entities.own_groups(self._pool, entity_id=entity_id, group_ids=spec.group_ids)
        check_alert(entity=entity, spec=spec, own_groups=owned)
        return entity

    async def create(self, *, principal: Principal, idempotency_key: str, spec: AlertSpec) -> Alert:
        """Store a draft; a repeated idempotency key returns the first draft."""
        entity_id = require_entity(principal)
        check_idempotency_key(idempotency_key)
        check_spec(spec, now=now_utc())
        await self._check_rules(entity_id=entity_id, spec=spec)
        fingerprint = store.request_hash(spec)
        async with self._pool.acquire() as conn, conn.transaction():
            created = await conn.fetchval(
                "INSERT INTO alerts (id, entity_id, created_by, idempotency_key, request_hash,"
                " kind, spec, infos, state, expires_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, 'draft', $9)"
                " ON CONFLICT (entity_id, idempotency_key) DO NOTHING RETURNING id::text",
                uuid.uuid4(),
                entity_id,
                principal.user_id,
                idempotency_key,
                fingerprint,
                spec.kind.value,
                store.spec_json(spec),
                store.infos_json(spec.infos),
                spec.expires,
            )
            if created is None:
                first = await conn.fetchrow(
                    "SELECT id::text AS id, request_hash FROM alerts"
                    " WHERE entity_id = $1 AND idempotency_key = $2",
                    entity_id,
                    idempotency_key,
                )
                assert first is not None
                if first["request_hash"] != fingerprint:
                    raise InvalidArgument(
                        "idempotency_key", "already used for a different alert of this entity"
                    )
                created = first["id"]
            else:
                ALERTS.labels(spec.kind.value, "create").inc()
        alert = await store.fetch(self._pool, alert_id=created)
        assert alert is not None
        return alert

    async def list(
        self, *, principal: Principal, page_size: int, page_token: str
    ) -> tuple[list[Alert], str]:
        """The caller's entity's alerts, newest first, and the next page's token."""
        entity_id = require_entity(principal)
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(page_size or 50, MAX_PAGE)
        offset = 0
        if page_token:
            if not page_token.isdigit():
                raise InvalidArgument("page_token", "not a token from ListAlerts")
            offset = int(page_token)
        rows = await self._pool.fetch(
            f"{store.SELECT_ALERT} WHERE a.entity_id = $1"
            " ORDER BY a.created_at DESC, a.id LIMIT $2 OFFSET $3",
            entity_id,
            size + 1,
            offset,
        )
        alerts = [store.to_alert(r) for r in rows[:size]]
        return alerts, str(offset + size) if len(rows) > size else ""

    async def _audience(self, alert: Alert) -> tuple[tuple[Audience, ...], int, int]:
        """Audiences with their units, total units (targeting's figure) and cells."""
        spec = alert.spec
        channels = _registered(spec)
        texts = channel_texts(kind=spec.kind, infos=spec.infos)
        cells = 0
        if spec.zone_geojson and any(c in BROADCAST_CHANNELS for c in spec.channels):
            found_cells = await self._targeting.cells(
                entity_id=alert.entity_id, zone_geojson=spec.zone_geojson
            )
            cells = sum(len(ids) for ids in found_cells.values())
        if not channels:
            return (), 0, cells
        found = await self._targeting.preview(
            entity_id=alert.entity_id,
            zone_geojson=spec.zone_geojson,
            group_ids=spec.group_ids,
            channels=channels,
            texts=texts,
        )
        fallback = texts.get("en") or next(iter(texts.values()))
        audiences = tuple(
            Audience(a.channel, a.language, a.recipients, _units(a, texts, fallback))
            for a in found.audiences
        )
        return audiences, found.units, cells

    async def preview(self, *, principal: Principal, alert_id: str) -> Preview:
        """Audience per channel and language, estimated cost, and how it would be billed."""
        alert = await self._own(principal=principal, alert_id=alert_id)
        audiences, units, cells = await self._audience(alert)
        account = await ledger.account(self._pool, entity_id=alert.entity_id)
        refusal = ""
        try:
            billing = ledger.plan(
                units=units, account=account, emergency=alert.spec.kind is Kind.EMERGENCY
            )
        except FailedPrecondition as exc:
            refusal = exc.message
            prepaid = min(units, account.prepaid_units)
            billing = ledger.Billing(prepaid, units - prepaid)
        return Preview(
            audiences=audiences,
            cells=cells,
            units=units,
            cost_cents=ledger.to_cents(ledger.units_cost(units)),
            prepaid_available=account.prepaid_units,
            billing=billing,
            refusal=refusal,
        )

    async def send(self, *, principal: Principal, alert_id: str) -> Alert:
        """Dispatch a draft; a repeat returns the alert and dispatches nothing more."""
        alert = await self._own(principal=principal, alert_id=alert_id)
        if alert.state is not State.DRAFT:
            if alert.state is State.CANCELLED and alert.sent_at is None:
                raise FailedPrecondition("the alert was cancelled before it was sent")
            return alert
        now = now_utc()
        if alert.spec.expires <= now:
            raise FailedPrecondition("the alert expired before it was sent")
        entity = await self._check_rules(entity_id=alert.entity_id, spec=alert.spec)
        if _registered(alert.spec):
            _, units, _ = await self._audience(alert)
            account = await ledger.account(self._pool, entity_id=alert.entity_id)
            ledger.plan(units=units, account=account, emergency=alert.spec.kind is Kind.EMERGENCY)
        await ledger.ensure_account(self._pool, entity_id=alert.entity_id, now=now)
        sending = replace(alert, version=1, msg_type=MsgType.ALERT)
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetchval(
                "UPDATE alerts SET state = 'sending', version = 1, msg_type = 'Alert',"
                " sent_at = $2 WHERE id = $1::uuid AND state = 'draft' RETURNING id",
                alert.id,
                now,
            )
            if claimed is not None:
                cap_xml = await self._record_cap(
                    conn, alert=sending, entity=entity, msg_type=MsgType.ALERT
                )
        if claimed is None:
            return await self.visible(principal=principal, alert_id=alert.id)
        await self._redis.set(keys.alert_version(alert.id), 1, ex=keys.ALERT_CONTROL_TTL_S)
        try:
            targeted = await self._dispatch(sending)
        except BaseException:
            await self._pool.execute(
                "UPDATE alerts SET state = 'draft', version = 0, sent_at = NULL"
                " WHERE id = $1::uuid AND state = 'sending'",
                alert.id,
            )
            raise
        await self._add_targeted(alert.id, targeted, to_state=State.SENT, only_from=State.SENDING)
        await self._broadcast(sending, cap_xml)
        ALERTS.labels(alert.spec.kind.value, "send").inc()
        return await self.visible(principal=principal, alert_id=alert.id)

    async def update(
        self, *, principal: Principal, alert_id: str, infos: tuple[Info, ...], base_version: int
    ) -> Alert:
        """New texts for the same audience: version + 1, CAP msgType Update, re-resolved."""
        alert = await self._own(principal=principal, alert_id=alert_id)
        check_infos(infos, field="infos")
        if base_version and base_version != alert.version:
            raise FailedPrecondition(
                f"the alert is at version {alert.version}, not {base_version}: get it and retry"
            )
        if alert.state is State.DRAFT:
            await self._pool.execute(
                "UPDATE alerts SET infos = $2::jsonb WHERE id = $1::uuid AND state = 'draft'",
                alert.id,
                store.infos_json(infos),
            )
            return await self.visible(principal=principal, alert_id=alert.id)
        if alert.state in (State.CANCELLED, State.EXPIRED):
            raise FailedPrecondition(f"the alert is {alert.state.value}: it cannot be updated")
        if alert.state is State.SENDING:
            raise FailedPrecondition("the alert is still being sent: retry in a moment")
        if alert.spec.expires <= now_utc():
            raise FailedPrecondition("the alert has expired: it cannot be updated")
        entity = await entities.load(self._pool, entity_id=alert.entity_id)
        async with self._pool.acquire() as conn, conn.transaction():
            version = await conn.fetchval(
                "UPDATE alerts SET version = version + 1, infos = $2::jsonb, msg_type = 'Update',"
                " state = 'sent' WHERE id = $1::uuid AND state IN ('sent', 'complete')"
                " AND version = $3 RETURNING version",
                alert.id,
                store.infos_json(infos),
                alert.version,
            )
            if version is None:
                raise FailedPrecondition("the alert changed meanwhile: get it and retry")
            updated = replace(
                alert,
                version=version,
                msg_type=MsgType.UPDATE,
                spec=replace(alert.spec, infos=infos),
            )
            cap_xml = await self._record_cap(
                conn, alert=updated, entity=entity, msg_type=MsgType.UPDATE
            )
        # Consumers drop unsent work of older versions from here on.
        await self._redis.set(keys.alert_version(alert.id), version, ex=keys.ALERT_CONTROL_TTL_S)
        targeted = await self._dispatch(updated)
        await self._add_targeted(alert.id, targeted, to_state=None, only_from=None)
        await self._broadcast(updated, cap_xml)
        ALERTS.labels(alert.spec.kind.value, "update").inc()
        return await self.visible(principal=principal, alert_id=alert.id)

    async def cancel(self, *, principal: Principal, alert_id: str) -> Alert:
        """Stop everything not yet handed to an operator; CAP msgType Cancel. Idempotent."""
        alert = await self._own(principal=principal, alert_id=alert_id)
        entity = await entities.load(self._pool, entity_id=alert.entity_id)
        async with self._pool.acquire() as conn, conn.transaction():
            state = State(
                await conn.fetchval(
                    "SELECT state FROM alerts WHERE id = $1::uuid FOR UPDATE", alert.id
                )
            )
            if state in (State.CANCELLED, State.EXPIRED):
                return await self.visible(principal=principal, alert_id=alert.id)
            dispatched = state is not State.DRAFT
            if dispatched:
                # Consumers check this key before handing each message to an operator.
                await self._redis.set(
                    keys.alert_cancelled(alert.id), "1", ex=keys.ALERT_CONTROL_TTL_S
                )
            await conn.execute(
                "UPDATE alerts SET state = 'cancelled', cancelled_at = $2,"
                " msg_type = CASE WHEN $3 THEN 'Cancel' ELSE msg_type END WHERE id = $1::uuid",
                alert.id,
                now_utc(),
                dispatched,
            )
            if dispatched:
                await self._record_cap(
                    conn,
                    alert=replace(alert, msg_type=MsgType.CANCEL),
                    entity=entity,
                    msg_type=MsgType.CANCEL,
                )
        if dispatched:
            await presence.withdraw(broadcasts=self._broadcasts, alert=alert)
        ALERTS.labels(alert.spec.kind.value, "cancel").inc()
        return await self.visible(principal=principal, alert_id=alert.id)

    async def _dispatch(self, alert: Alert) -> dict[Channel, int]:
        """Resolve the audience of the alert's current version into the work streams."""
        spec = alert.spec
        channels = _registered(spec)
        if not channels:
            return {}
        targeted = await self._targeting.resolve(
            entity_id=alert.entity_id,
            alert_id=alert.id,
            version=alert.version,
            kind=spec.kind.value,
            expires=spec.expires.timestamp(),
            sender=spec.sender,
            texts=channel_texts(kind=spec.kind, infos=spec.infos),
            channels=channels,
            zone_geojson=spec.zone_geojson,
            group_ids=spec.group_ids,
        )
        for channel, n in targeted.items():
            ALERT_MESSAGES.labels(channel.value, "queued").inc(n)
        return targeted

    async def _broadcast(self, alert: Alert, cap_xml: str) -> None:
        """Request the presence channels and add what was requested to the alert's counts."""
        requested = await presence.broadcast(
            targeting=self._targeting, broadcasts=self._broadcasts, alert=alert, cap_xml=cap_xml
        )
        if not requested:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT targeted, progress FROM alerts WHERE id = $1::uuid FOR UPDATE", alert.id
            )
            assert row is not None, alert.id
            targeted, progress = json.loads(row["targeted"]), json.loads(row["progress"])
            for channel, req in requested.items():
                name = channel.value
                targeted[name] = targeted.get(name, 0) + req.cells
                seen = progress.setdefault(name, {})
                seen["submitted"] = seen.get("submitted", 0) + req.accepted
                seen["failed"] = seen.get("failed", 0) + req.refused
            await conn.execute(
                "UPDATE alerts SET targeted = $2::jsonb, progress = $3::jsonb WHERE id = $1::uuid",
                alert.id,
                json.dumps(targeted),
                json.dumps(progress),
            )

    async def _add_targeted(
        self,
        alert_id: str,
        targeted: dict[Channel, int],
        *,
        to_state: State | None,
        only_from: State | None,
    ) -> None:
        """Add resolved recipients to the alert's counts (they add up over versions)."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT state, targeted FROM alerts WHERE id = $1::uuid FOR UPDATE", alert_id
            )
            assert row is not None, alert_id
            counts = json.loads(row["targeted"])
            for channel, n in targeted.items():
                counts[channel.value] = counts.get(channel.value, 0) + n
            state = row["state"]
            if to_state is not None and (only_from is None or state == only_from.value):
                state = to_state.value
            await conn.execute(
                "UPDATE alerts SET targeted = $2::jsonb, state = $3 WHERE id = $1::uuid",
                alert_id,
                json.dumps(counts),
                state,
            )

    async def _record_cap(
        self,
        conn: store.Conn,
        *,
        alert: Alert,
        entity: EntityInfo,
        msg_type: MsgType,
    ) -> str:
        """Store the CAP document of this message, referencing the alert's earlier ones."""
        earlier = await conn.fetch(
            "SELECT xml FROM cap_messages WHERE alert_id = $1::uuid ORDER BY seq", alert.id
        )
        refs = tuple(cap.reference(cap.parse(r["xml"])) for r in earlier)
        seq = len(earlier) + 1
        message = cap.for_alert(
            alert,
            seq=seq,
            msg_type=msg_type,
            sent=now_utc(),
            sender_name=entity.name,
            references=refs,
        )
        xml = cap.render(message)
        await conn.execute(
            "INSERT INTO cap_messages (alert_id, seq, msg_type, version, identifier, sent_at, xml)"
            " VALUES ($1::uuid, $2, $3, $4, $5, $6, $7)",
            alert.id,
            seq,
            msg_type.value,
            alert.version,
            message.identifier,
            message.sent,
            xml,
        )
        return xml


def _units(audience: AudienceCount, texts: dict[str, str], fallback: str) -> int:
    if audience.channel is Channel.SMS:
        return audience.recipients * sms_segments(texts.get(audience.language, fallback))
    if audience.channel is Channel.VOICE:
        return audience.recipients
    return 0
