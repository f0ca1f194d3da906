"""What the voice gRPC API does: validated, idempotent calls onto the stream, and call states."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from services.channel import apibatches, store
from services.channel.control import API_PREFIX
from services.channel.model import State
from services.kernel.errors import InvalidArgument, NotFound
from services.voice import batches
from services.voice.channel import NAME, is_e164

#: Scope of the voice API's rows in `idempotency_keys`.
IDEMPOTENCY_SCOPE = "voice.place"
#: Most numbers in one PlaceCalls.
MAX_NUMBERS = 10_000
#: Longest text spoken (characters): about a minute of speech, played twice.
MAX_TEXT = 1000
#: Languages a message can be spoken in.
LANGUAGES = ("nl", "fr", "de", "en")
#: Default and longest time to live of API calls (seconds).
DEFAULT_TTL_S = 3600.0
MAX_TTL_S = 24 * 3600.0
TABLES = store.Tables.of(NAME)
_KEY = re.compile(r"^[\x21-\x7e]{1,100}$")


@dataclass(frozen=True, slots=True)
class Placed:
    """Answer of PlaceCalls."""

    batch_id: str
    accepted: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class CallStatus:
    """One number's call, as its row says."""

    batch_id: str
    number: str
    state: State
    trunk: str
    attempts: int
    error: str


class VoiceApi:
    """The API's domain calls."""

    def __init__(self, *, pool: asyncpg.Pool, redis: aioredis.Redis, trunk: str, sender: str):
        self._pool = pool
        self._redis = redis
        self._trunk = trunk
        self._sender = sender

    @staticmethod
    def _validate(
        *, key: str, numbers: Sequence[str], language: str, text: str, ttl_s: float
    ) -> None:
        if not _KEY.match(key):
            raise InvalidArgument("idempotency_key", "must be 1 to 100 printable characters")
        if not numbers:
            raise InvalidArgument("numbers", "at least one number is needed")
        if len(numbers) > MAX_NUMBERS:
            raise InvalidArgument("numbers", f"at most {MAX_NUMBERS} numbers per request")
        for i, number in enumerate(numbers):
            if not is_e164(number):
                raise InvalidArgument(
                    f"numbers[{i}]", f"{number!r} is not an E.164 number (+3210123456)"
                )
        if language not in LANGUAGES:
            raise InvalidArgument("language", f"must be one of {', '.join(LANGUAGES)}")
        if not text.strip():
            raise InvalidArgument("text", "must not be empty")
        if len(text) > MAX_TEXT:
            raise InvalidArgument("text", f"at most {MAX_TEXT} characters")
        if ttl_s < 0 or ttl_s > MAX_TTL_S:
            raise InvalidArgument("ttl_seconds", f"must be between 0 and {MAX_TTL_S:.0f}")

    async def place(
        self,
        *,
        caller: str,
        key: str,
        numbers: Sequence[str],
        language: str,
        text: str,
        ttl_s: float,
    ) -> Placed:
        """Queue calls to `numbers`; a key seen before returns the first answer, calling nobody.
        Keys and batches are the caller's own: another team's key is another batch."""
        self._validate(key=key, numbers=numbers, language=language, text=text, ttl_s=ttl_s)
        batch_id = _batch_id(caller, key)
        key = batch_id.removeprefix(API_PREFIX)
        unique = list(dict.fromkeys(numbers))
        answer = json.dumps({"batch_id": batch_id, "accepted": len(unique)}).encode()
        async with self._pool.acquire() as conn, conn.transaction():
            # The key row is locked until commit: a concurrent repeat waits, then sees it.
            stored = await conn.fetchval(
                """
                INSERT INTO idempotency_keys (scope, key, response) VALUES ($1, $2, $3)
                ON CONFLICT (scope, key) DO NOTHING RETURNING response
                """,
                IDEMPOTENCY_SCOPE,
                key,
                answer,
            )
            if stored is None:
                first = await conn.fetchval(
                    "SELECT response FROM idempotency_keys WHERE scope = $1 AND key = $2",
                    IDEMPOTENCY_SCOPE,
                    key,
                )
                data = json.loads(bytes(first))
                return Placed(str(data["batch_id"]), int(data["accepted"]), duplicate=True)
            await store.queue(
                conn,
                TABLES,
                alerts=[batch_id] * len(unique),
                versions=[1] * len(unique),
                addresses=unique,
                operators=[self._trunk] * len(unique),
                segments=[1] * len(unique),
            )
            head = apibatches.header(
                batch_id=batch_id,
                sender=self._sender,
                text=text,
                language=language,
                expires=time.time() + (ttl_s or DEFAULT_TTL_S),
            )
            # What the entries carry besides the numbers, kept with them: a Redis that loses its
            # data before the workers read the entries loses no call (services/voice/batches.py).
            await batches.BATCHES.record(conn, head)
            # Written before commit: if this fails nothing is kept and the caller may retry.
            await batches.BATCHES.enqueue(self._redis, head, unique)
        return Placed(batch_id, len(unique), duplicate=False)

    async def call(self, *, caller: str, call_id: str) -> CallStatus:
        """State of one of the caller's calls, named `<batch_id>/<number>`."""
        batch_id, slash, number = call_id.rpartition("/")
        if not slash or not batch_id.startswith(API_PREFIX) or not is_e164(number):
            raise InvalidArgument("call_id", "must be `<batch_id>/<E.164 number>`")
        mine = batch_id.startswith(_batch_id(caller, ""))
        row = await store.message(self._pool, TABLES, alert=batch_id, address=number)
        if row is None or not mine:
            raise NotFound(f"no call to {number} in {batch_id}", field="call_id")
        return CallStatus(
            batch_id=batch_id,
            number=number,
            state=State(row["state"]),
            trunk=row["operator"],
            attempts=row["attempts"],
            error=row["error"] or "",
        )


def _batch_id(caller: str, key: str) -> str:
    """The batch of a caller's idempotency key (no caller: the development stack's plaintext)."""
    return f"{API_PREFIX}{caller}:{key}" if caller else f"{API_PREFIX}{key}"
