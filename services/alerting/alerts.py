"""The alert lifecycle: create, preview, send, update, cancel, read."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import asyncpg
import redis.asyncio as aioredis

from services.alerting import entities, ledger, lifecycle, store
from services.alerting.auth import Principal, require_entity
from services.alerting.deployment import check_enabled
from services.alerting.dispatch import Dispatcher, now_utc, registered
from services.alerting.metrics import ALERTS
from services.alerting.model import (
    Alert,
    AlertSpec,
    Channel,
    Info,
    Kind,
    MsgType,
    State,
)
from services.alerting.permissions import EntityInfo, check_alert
from services.alerting.ports import Broadcasts, Targeting
from services.alerting.presence import BROADCAST_CHANNELS, check_pages
from services.alerting.segments import MAX_SMS_SEGMENTS, check_sms_segments
from services.alerting.texts import channel_texts
from services.alerting.validation import check_idempotency_key, check_infos, check_spec
from services.channel.units import Units
from services.kernel import keys
from services.kernel.cache import TtlCache
from services.kernel.errors import FailedPrecondition, InvalidArgument, NotFound

#: Largest page of ListAlerts.
MAX_PAGE = 500
#: Seconds an entity's name, type and territory are kept in the process. Nothing updates those
#: rows today; the bound is for the day something does.
ENTITY_CACHE_S = 5.0
#: Entries each in-process cache keeps at most; past this, the expired ones are dropped.
MAX_CACHED = 1000


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


def parse_alert_id(alert_id: str) -> str:
    """The alert id in canonical UUID form; INVALID_ARGUMENT otherwise."""
    try:
        return str(uuid.UUID(alert_id))
    except ValueError:
        raise InvalidArgument("alert_id", "not an alert id (UUID)") from None


class Alerts:
    """The lifecycle of alerts, for callers already authenticated."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        targeting: Targeting,
        broadcasts: Broadcasts,
        enabled_channels: Iterable[Channel],
        units: Units,
        preview_cache_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        max_sms_segments: int = MAX_SMS_SEGMENTS,
        resolve_retry_s: float = 20.0,
    ) -> None:
        self._max_sms_segments = max_sms_segments
        self._pool = pool
        self._enabled = frozenset(enabled_channels)
        self._units = units
        self._redis = redis
        self._targeting = targeting
        #: audience key -> (audiences, units, cells), shared by previews for preview_cache_s.
        self._audiences: TtlCache[str, tuple[tuple[Audience, ...], int, int]] = TtlCache(
            ttl_s=preview_cache_s, max_entries=MAX_CACHED, clock=clock
        )
        #: entity id -> the entity, read at most every ENTITY_CACHE_S.
        self._entities: TtlCache[int, EntityInfo] = TtlCache(
            ttl_s=ENTITY_CACHE_S, max_entries=MAX_CACHED, clock=clock
        )
        self.dispatcher = Dispatcher(
            pool=pool,
            redis=redis,
            targeting=targeting,
            broadcasts=broadcasts,
            resolve_retry_s=resolve_retry_s,
        )

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

    async def _entity(self, entity_id: int) -> EntityInfo:
        """The entity's name, type and territory, read at most every ENTITY_CACHE_S."""
        return await self._entities.get_or_load(
            entity_id, lambda: entities.load(self._pool, entity_id=entity_id)
        )

    async def _check_rules(self, *, entity_id: int, spec: AlertSpec) -> EntityInfo:
        entity = await self._entity(entity_id)
        owned: frozenset[int] = frozenset()
        if spec.group_ids:
            owned = await entities.own_groups(
                self._pool, entity_id=entity_id, group_ids=spec.group_ids
            )
        check_alert(entity=entity, spec=spec, own_groups=owned)
        return entity

    def _check_segments(
        self, kind: Kind, infos: tuple[Info, ...], channels: Iterable[Channel], *, field: str
    ) -> None:
        check_sms_segments(
            kind=kind,
            infos=infos,
            channels=channels,
            units=self._units,
            max_segments=self._max_sms_segments,
            field=field,
        )

    async def create(self, *, principal: Principal, idempotency_key: str, spec: AlertSpec) -> Alert:
        """Store a draft; a repeated idempotency key returns the first draft."""
        entity_id = require_entity(principal)
        check_idempotency_key(idempotency_key)
        check_spec(spec, now=now_utc())
        self._check_segments(spec.kind, spec.infos, spec.channels, field="spec.infos")
        check_enabled(spec, enabled=self._enabled)
        await self._check_rules(entity_id=entity_id, spec=spec)
        spec_doc, infos_doc = store.spec_json(spec), store.infos_json(spec.infos)
        fingerprint = store.request_hash(spec, spec_doc=spec_doc, infos_doc=infos_doc)
        # One statement: the insert (atomic on its own) and the row as SELECT_ALERT reads it.
        row = await self._pool.fetchrow(
            "WITH a AS (INSERT INTO alerts (id, entity_id, created_by, idempotency_key,"
            " request_hash, kind, spec, infos, state, expires_at)"
            f" VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, '{State.DRAFT}', $9)"
            " ON CONFLICT (entity_id, idempotency_key) DO NOTHING RETURNING *)"
            f" SELECT {store.ALERT_COLUMNS} FROM a JOIN users u ON u.id = a.created_by",
            uuid.uuid4(),
            entity_id,
            principal.user_id,
            idempotency_key,
            fingerprint,
            spec.kind.value,
            spec_doc,
            infos_doc,
            spec.expires,
        )
        if row is not None:
            ALERTS.labels(spec.kind.value, "create").inc()
            return store.to_alert(row)
        first = await self._pool.fetchrow(
            f"SELECT {store.ALERT_COLUMNS}, a.request_hash FROM alerts a"
            " JOIN users u ON u.id = a.created_by"
            " WHERE a.entity_id = $1 AND a.idempotency_key = $2",
            entity_id,
            idempotency_key,
        )
        assert first is not None
        if first["request_hash"] != fingerprint:
            raise InvalidArgument(
                "idempotency_key", "already used for a different alert of this entity"
            )
        return store.to_alert(first)

    async def list_own(
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
        channels = registered(spec)
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
        audiences = tuple(
            Audience(
                a.channel,
                a.language,
                a.recipients,
                self._units.audience({(a.channel.value, a.language): a.recipients}, texts),
            )
            for a in found.audiences
        )
        return audiences, found.units, cells

    async def _shared_audience(self, alert: Alert) -> tuple[tuple[Audience, ...], int, int]:
        """`_audience`, shared for `preview_cache_s` by previews asking the same of targeting."""
        if self._audiences.ttl_s <= 0:
            return await self._audience(alert)
        # One call to targeting per key at a time: previews that miss together share it.
        return await self._audiences.get_or_load(audience_key(alert), lambda: self._audience(alert))

    async def preview(self, *, principal: Principal, alert_id: str) -> Preview:
        """Audience per channel and language, estimated cost, and how it would be billed.

        The counts may be up to `preview_cache_s` old (shared by identical previews of the
        entity); the prepaid balance and the billing are read afresh every time.
        """
        entity_id = require_entity(principal)
        # The alert and its entity's billing account in one round trip.
        row = await self._pool.fetchrow(
            f"SELECT {store.ALERT_COLUMNS}, b.postpaid AS b_postpaid,"
            " b.prepaid_units AS b_prepaid_units, b.activated_at AS b_activated_at"
            " FROM alerts a JOIN users u ON u.id = a.created_by"
            " LEFT JOIN billing_accounts b ON b.entity_id = a.entity_id"
            " WHERE a.id = $1::uuid AND a.entity_id = $2",
            parse_alert_id(alert_id),
            entity_id,
        )
        if row is None:
            raise NotFound(f"alert {alert_id} does not exist")
        alert = store.to_alert(row)
        account = ledger.Account(
            entity_id,
            bool(row["b_postpaid"]),
            row["b_prepaid_units"] or 0,
            row["b_activated_at"] or now_utc(),
        )
        audiences, units, cells = await self._shared_audience(alert)
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
        """Dispatch a draft; resume a send that stopped part-way; a repeat returns the alert and
        dispatches nothing more."""
        alert = await self._own(principal=principal, alert_id=alert_id)
        if alert.state is State.SENDING:
            await self._resume(alert)
            return await self.visible(principal=principal, alert_id=alert.id)
        if alert.state is not State.DRAFT:
            if alert.state is State.CANCELLED and alert.sent_at is None:
                raise FailedPrecondition("the alert was cancelled before it was sent")
            return alert
        now = now_utc()
        if alert.spec.expires <= now:
            raise FailedPrecondition("the alert expired before it was sent")
        entity = await self._check_rules(entity_id=alert.entity_id, spec=alert.spec)
        if registered(alert.spec):
            _, units, _ = await self._audience(alert)
            account = await ledger.account(self._pool, entity_id=alert.entity_id)
            ledger.plan(units=units, account=account, emergency=alert.spec.kind is Kind.EMERGENCY)
        await ledger.ensure_account(self._pool, entity_id=alert.entity_id, now=now)
        sending = replace(alert, version=1, msg_type=MsgType.ALERT)
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await lifecycle.claim_send(conn, alert_id=alert.id, now=now)
            if claimed:
                cap_xml = await self.dispatcher.record_cap(
                    conn, alert=sending, entity=entity, msg_type=MsgType.ALERT
                )
        if claimed:
            # Shielded: a caller that hangs up must not stop an alert half-way through its audience.
            await self.dispatcher.shielded(self.dispatcher.finish_send(sending, cap_xml))
        return await self.visible(principal=principal, alert_id=alert.id)

    async def _resume(self, alert: Alert) -> None:
        """Resolve again the audience of a send that stopped part-way (the channels drop the
        recipients they already have); nothing if its dispatch is running."""
        if alert.spec.expires <= now_utc():
            raise FailedPrecondition("the alert expired before it was sent")
        async with self._pool.acquire() as conn, conn.transaction():
            if not await lifecycle.resume_send(conn, alert_id=alert.id, now=now_utc()):
                return  # being dispatched (or it just moved on)
            cap_xml = await conn.fetchval(
                "SELECT xml FROM cap_messages WHERE alert_id = $1::uuid AND seq = 1", alert.id
            )
        await self.dispatcher.shielded(self.dispatcher.finish_send(alert, cap_xml))

    async def update(
        self, *, principal: Principal, alert_id: str, infos: tuple[Info, ...], base_version: int
    ) -> Alert:
        """New texts for the same audience: version + 1, CAP msgType Update, re-resolved."""
        alert = await self._own(principal=principal, alert_id=alert_id)
        check_infos(infos, field="infos")
        self._check_segments(alert.spec.kind, infos, alert.spec.channels, field="infos")
        check_pages(replace(alert.spec, infos=infos), field="infos")
        if base_version and base_version != alert.version:
            raise FailedPrecondition(
                f"the alert is at version {alert.version}, not {base_version}: get it and retry"
            )
        if alert.state is State.DRAFT:
            await lifecycle.edit_draft(
                self._pool, alert_id=alert.id, infos_json=store.infos_json(infos)
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
            version = await lifecycle.reopen_for_update(
                conn,
                alert_id=alert.id,
                infos_json=store.infos_json(infos),
                base_version=alert.version,
            )
            if version is None:
                raise FailedPrecondition("the alert changed meanwhile: get it and retry")
            updated = replace(
                alert,
                version=version,
                msg_type=MsgType.UPDATE,
                spec=replace(alert.spec, infos=infos),
            )
            cap_xml = await self.dispatcher.record_cap(
                conn, alert=updated, entity=entity, msg_type=MsgType.UPDATE
            )
        await self.dispatcher.shielded(self.dispatcher.finish_update(updated, cap_xml))
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
            if state is State.EXPIRED:
                return await self.visible(principal=principal, alert_id=alert.id)
            # Set whatever the state: consumers check this key before handing each message to an
            # operator, and targeting before each batch it queues, so it stops what a send that
            # failed part-way, or one still resolving, queued. Set again for a cancelled alert
            # (a Redis that lost its data must not let its work resume).
            await self._redis.set(keys.alert_cancelled(alert.id), "1", ex=keys.ALERT_CONTROL_TTL_S)
            if state is State.CANCELLED:
                return await self.visible(principal=principal, alert_id=alert.id)
            dispatched = state is not State.DRAFT
            await lifecycle.cancel(conn, alert_id=alert.id, now=now_utc(), dispatched=dispatched)
            if dispatched:
                await self.dispatcher.record_cap(
                    conn,
                    alert=replace(alert, msg_type=MsgType.CANCEL),
                    entity=entity,
                    msg_type=MsgType.CANCEL,
                )
        if dispatched:
            await self.dispatcher.withdraw(alert)
        ALERTS.labels(alert.spec.kind.value, "cancel").inc()
        return await self.visible(principal=principal, alert_id=alert.id)


def audience_key(alert: Alert) -> str:
    """What a preview asks targeting, hashed: the entity, zone, groups, channels and texts."""
    spec = alert.spec
    doc = json.dumps(
        [
            alert.entity_id,
            spec.kind.value,
            spec.zone_geojson,
            list(spec.group_ids),
            [c.value for c in spec.channels],
            channel_texts(kind=spec.kind, infos=spec.infos),
        ],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(doc.encode()).hexdigest()
