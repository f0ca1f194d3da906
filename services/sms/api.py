"""What the SMS gRPC API does: validated, idempotent sends onto the stream, and state queries."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from services.channel import apibatches, store
from services.channel.control import API_PREFIX
from services.channel.model import State
from services.kernel import context
from services.kernel.cache import TtlCache
from services.kernel.errors import AlreadyExists, InvalidArgument, NotFound
from services.sms import batches
from services.sms.channel import NAME
from services.sms.clients import ApiClients
from services.sms.routing import Router, is_e164

#: Scope of the SMS API's rows in `idempotency_keys` (followed by the caller: keys are per team).
IDEMPOTENCY_SCOPE = "sms.send"
#: Seconds an idempotency key is remembered; after that it may be used again.
IDEMPOTENCY_TTL_S = 24 * 3600
#: Most numbers in one SendBatch.
MAX_RECIPIENTS = 10_000
#: Most segments a text may take (communication units per recipient).
MAX_SEGMENTS = 10
#: The SMS channel's tables.
TABLES = store.Tables.of(NAME)
#: Default and longest time to live of an API send (seconds).
DEFAULT_TTL_S = 3600.0
MAX_TTL_S = 7 * 24 * 3600.0
_SENDER = re.compile(r"^(?:[A-Za-z0-9 .\-]{1,11}|\+?[0-9]{1,15})$")
_KEY = re.compile(r"^[\x21-\x7e]{1,100}$")


@dataclass(frozen=True, slots=True)
class Sent:
    """Answer of a send."""

    batch_id: str
    accepted: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class MessageStatus:
    """One recipient's row."""

    batch_id: str
    address: str
    state: State
    operator: str
    segments: int
    attempts: int
    error: str


@dataclass(frozen=True, slots=True)
class Progress:
    """Counts of one version."""

    version: int
    counts: dict[State, int]
    segments_submitted: int

    @property
    def total(self) -> int:
        """Recipients of this version."""
        return sum(self.counts.values())


def _check_own(batch_id: str) -> None:
    """Refuse a batch that is not the caller's own API batch (an alert's, another team's)."""
    caller = context.caller.get()
    own = f"{API_PREFIX}{caller}:" if caller else API_PREFIX
    if not batch_id.startswith(own):
        raise InvalidArgument("batch_id", f"your API batch ids start with {own!r}")


class SmsApi:
    """The API's domain calls."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        router: Router,
        segment_count: Callable[[str], int],
        default_sender: str,
        progress_cache_s: float = 1.0,
        clients: ApiClients | None = None,
    ) -> None:
        self._clients = clients or ApiClients(redis=redis, clients={})
        self._pool = pool
        self._redis = redis
        self._router = router
        self._segments = segment_count
        self._default_sender = default_sender
        #: (alert, version) -> its counts, shared by callers polling it for progress_cache_s
        self._progress: TtlCache[tuple[str, int], list[Progress]] = TtlCache(ttl_s=progress_cache_s)

    def _validate(
        self, *, key: str, to: Sequence[str], text: str, sender: str, ttl_s: float, field: str
    ) -> int:
        if not _KEY.match(key):
            raise InvalidArgument("idempotency_key", "must be 1 to 100 printable characters")
        if not to:
            raise InvalidArgument(field, "at least one number is needed")
        if len(to) > MAX_RECIPIENTS:
            raise InvalidArgument(field, f"at most {MAX_RECIPIENTS} numbers per batch")
        for i, number in enumerate(to):
            if not is_e164(number):
                where = field if field == "to" and len(to) == 1 else f"{field}[{i}]"
                raise InvalidArgument(where, "not an E.164 number (+32470123456)")
        if not text.strip():
            raise InvalidArgument("text", "must not be empty")
        try:
            segments = self._segments(text)
        except ValueError as exc:
            raise InvalidArgument("text", str(exc)) from None
        if segments > MAX_SEGMENTS:
            raise InvalidArgument("text", f"takes {segments} segments, at most {MAX_SEGMENTS}")
        if sender and not _SENDER.match(sender):
            raise InvalidArgument("sender", "at most 11 letters/digits, or a number")
        if ttl_s < 0 or ttl_s > MAX_TTL_S:
            raise InvalidArgument("ttl_seconds", f"must be between 0 and {MAX_TTL_S:.0f}")
        return segments

    async def send(
        self, *, key: str, to: Sequence[str], text: str, sender: str, ttl_s: float, field: str
    ) -> Sent:
        """Queue one text to `to`; a key seen before returns the first answer, sending nothing.

        Keys belong to the caller (`context.caller`), are bound to the request's body (the same
        key with another body is refused) and expire after IDEMPOTENCY_TTL_S.
        """
        segments = self._validate(
            key=key, to=to, text=text, sender=sender, ttl_s=ttl_s, field=field
        )
        caller = context.caller.get()
        sender = self._clients.sender(caller=caller, asked=sender, default=self._default_sender)
        batch_id = f"{API_PREFIX}{caller}:{key}" if caller else f"{API_PREFIX}{key}"
        numbers = list(dict.fromkeys(to))
        expires = time.time() + (ttl_s or DEFAULT_TTL_S)
        body = hashlib.sha256(
            json.dumps([list(to), text, sender, ttl_s], ensure_ascii=False).encode()
        ).hexdigest()
        answer = json.dumps({"batch_id": batch_id, "accepted": len(numbers), "body": body}).encode()
        scope = f"{IDEMPOTENCY_SCOPE}:{caller}" if caller else IDEMPOTENCY_SCOPE
        async with self._pool.acquire() as conn, conn.transaction():
            # The key row is locked until commit: a concurrent repeat waits, then sees it. An
            # expired key is taken over as if new.
            stored = await conn.fetchval(
                """
                INSERT INTO idempotency_keys (scope, key, response) VALUES ($1, $2, $3)
                ON CONFLICT (scope, key) DO UPDATE
                    SET response = EXCLUDED.response, created_at = now()
                    WHERE idempotency_keys.created_at < now() - make_interval(secs => $4)
                RETURNING response
                """,
                scope,
                key,
                answer,
                float(IDEMPOTENCY_TTL_S),
            )
            if stored is None:
                first = await conn.fetchval(
                    "SELECT response FROM idempotency_keys WHERE scope = $1 AND key = $2",
                    scope,
                    key,
                )
                data = json.loads(bytes(first))
                if data.get("body", body) != body:
                    raise AlreadyExists(
                        "this key was used for another request (recipients, text or sender)",
                        field="idempotency_key",
                    )
                return Sent(str(data["batch_id"]), int(data["accepted"]), duplicate=True)
            await self._clients.take(caller=caller, recipients=len(numbers))
            await store.queue(
                conn,
                TABLES,
                alerts=[batch_id] * len(numbers),
                versions=[1] * len(numbers),
                addresses=numbers,
                operators=[self._router.route(n) for n in numbers],
                segments=[segments] * len(numbers),
            )
            head = apibatches.header(
                batch_id=batch_id,
                sender=sender,
                text=text,
                language=batches.LANGUAGE,
                expires=expires,
                entity=batches.entity_of(caller),
            )
            # What the entries carry besides the numbers, kept with them: a Redis that loses
            # its data before the workers read the entries loses nothing (services/sms/repair.py).
            await batches.BATCHES.record(conn, head)
            # Written before commit: if this fails nothing is kept and the caller may retry.
            await batches.BATCHES.enqueue(self._redis, head, numbers)
        self._clients.audit(
            caller=caller, batch_id=batch_id, recipients=len(numbers), sender=sender
        )
        return Sent(batch_id, len(numbers), duplicate=False)

    async def batch(self, *, batch_id: str) -> Progress:
        """Counts per state of an API batch."""
        _check_own(batch_id)
        found = await store.counts(self._pool, TABLES, alert=batch_id, version=1)
        if 1 not in found:
            raise NotFound(f"no batch {batch_id}", field="batch_id")
        per_state, units = found[1]
        return Progress(1, per_state, units)

    async def message(self, *, batch_id: str, address: str) -> MessageStatus:
        """State of one recipient."""
        if not batch_id:
            raise InvalidArgument("batch_id", "must not be empty")
        _check_own(batch_id)
        if not is_e164(address):
            raise InvalidArgument("to", "not an E.164 number (+32470123456)")
        row = await store.message(self._pool, TABLES, alert=batch_id, address=address)
        if row is None:
            raise NotFound(f"no such message in {batch_id}", field="to")
        return MessageStatus(
            batch_id=batch_id,
            address=address,
            state=State(row["state"]),
            operator=row["operator"],
            segments=row["segments"],
            attempts=row["attempts"],
            error=row["error"] or "",
        )

    async def alert_progress(self, *, alert: str, version: int) -> list[Progress]:
        """Counts per state and segments submitted, per version of an alert."""
        if not alert:
            raise InvalidArgument("alert_id", "must not be empty")
        if version < 0:
            raise InvalidArgument("version", "must be 0 (every version) or more")
        # Counting a large alert scans its rows: callers polling the same alert share one count
        # per `progress_cache_s`, and a count in progress (which a caller going away does not
        # cancel for the others). A failed count is not kept.
        return await self._progress.get_or_load(
            (alert, version), lambda: self._count(alert=alert, version=version)
        )

    async def _count(self, *, alert: str, version: int) -> list[Progress]:
        found = await store.counts(self._pool, TABLES, alert=alert, version=version or None)
        return [Progress(v, per_state, units) for v, (per_state, units) in sorted(found.items())]
