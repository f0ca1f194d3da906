"""Resolve: stream an alert's audience into the channels' work streams, batch by batch.

The addresses of the zone's cover are read through a server-side cursor in H3 order, so the
first batch is enqueued after the first few thousand rows, not after the whole zone. Every
recipient is deduplicated per channel by destination (phone number or e-mail address): one
person with two addresses, a phone shared by two subscribers, and a group member who also lives
in the zone each get one message per channel.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np
import redis.asyncio as aioredis

from services.kernel.errors import InvalidArgument
from services.targeting.metrics import RECIPIENTS_ENQUEUED, RESOLVE_SECONDS
from services.targeting.model import LANGUAGES, Channel, Counts, channel_bits
from services.targeting.preview import plan_zone
from services.targeting.zones import Zone

#: Rows in the first cursor fetch (small: the first batch leaves at once) and in later ones.
FIRST_FETCH = 1_000
FETCH = 20_000
#: Alert kinds, as the streams carry them.
KINDS = ("emergency", "general", "exercise", "test")

_ZONE_SQL = """
    SELECT r.test, a.lon, a.lat, a.language,
           CASE WHEN a.channels & $4 & 1 <> 0 THEN a.phone END,
           CASE WHEN a.channels & $4 & 2 <> 0 THEN a.phone END,
           CASE WHEN a.channels & $4 & 4 <> 0 THEN a.email END
    FROM unnest($1::bigint[], $2::bigint[], $3::bool[]) r(lo, hi, test)
    JOIN addresses a ON a.h3 BETWEEN r.lo AND r.hi
    WHERE a.channels & $4 <> 0
"""
_GROUPS_SQL = """
    SELECT false, 0.0, 0.0, language,
           CASE WHEN channels & $2 & 1 <> 0 THEN phone END,
           CASE WHEN channels & $2 & 2 <> 0 THEN phone END,
           CASE WHEN channels & $2 & 4 <> 0 THEN email END
    FROM group_members WHERE group_id = ANY($1::bigint[]) AND channels & $2 <> 0
    ORDER BY group_id, id
"""
#: Nested loops stream rows from the first range on; the planner, misled by the range join's
#: estimate, would otherwise hash the whole subscribers table before the first row.
_STREAMING_PLAN = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"


@dataclass(frozen=True)
class AlertMessage:
    """What every stream entry of the alert carries besides its recipients."""

    alert: str
    version: int
    kind: str
    expires: float
    sender: str
    texts: dict[str, str]


@dataclass
class Progress:
    """Recipients and stream entries enqueued so far."""

    counts: Counts = field(default_factory=Counts)
    batches: int = 0
    done: bool = False


def validate_message(message: AlertMessage, channels: frozenset[Channel]) -> None:
    """Refuse a message the channel services could not send."""
    if not message.alert:
        raise InvalidArgument("alert_id", "required")
    if message.version < 1:
        raise InvalidArgument("version", "must be 1 or more")
    if message.kind not in KINDS:
        raise InvalidArgument("kind", f"must be one of {', '.join(KINDS)}")
    if not message.texts:
        raise InvalidArgument("texts", "at least one language's text is required")
    for lang, text in message.texts.items():
        if lang not in LANGUAGES:
            raise InvalidArgument(f"texts[{lang}]", "unknown language (nl, fr, de, en)")
        if not text.strip():
            raise InvalidArgument(f"texts[{lang}]", "empty text")
    if not (0 < len(message.sender) <= 11 and message.sender.isascii()):
        raise InvalidArgument("sender", "1 to 11 ASCII characters")
    if not channels:
        raise InvalidArgument("channels", "at least one channel")


class _Batcher:
    """Deduplicates recipients per channel and cuts them into stream entries."""

    def __init__(
        self, *, message: AlertMessage, channels: frozenset[Channel], batch_size: int
    ) -> None:
        self._channels = [c for c in (Channel.SMS, Channel.VOICE, Channel.EMAIL) if c in channels]
        self._size = batch_size
        self._seen: dict[Channel, set[str]] = {c: set() for c in self._channels}
        self._pending: dict[Channel, list[list[str]]] = {c: [] for c in self._channels}
        self._seq: dict[Channel, int] = dict.fromkeys(self._channels, 0)
        texts = message.texts
        fallback = "en" if "en" in texts else next(iter(texts))
        self._lang = {lang: (lang if lang in texts else fallback) for lang in LANGUAGES}
        self._fields: dict[str, str] = {
            "alert": message.alert,
            "version": str(message.version),
            "kind": message.kind,
            "expires": repr(float(message.expires)),
            "sender": message.sender,
            "texts": json.dumps(texts, ensure_ascii=False, sort_keys=True),
        }
        self.progress = Progress()

    def add(self, languages: list[str], destinations: dict[Channel, list[str | None]]) -> None:
        """Take recipients in: a language and, per channel, a destination or None, per row."""
        lang_of = self._lang
        for channel in self._channels:
            seen = self._seen[channel]
            # Within the chunk, a dict dedups at C speed and keeps the first-seen order.
            chunk = dict(zip(destinations[channel], languages, strict=True))
            fresh = [dest for dest in chunk if dest is not None and dest not in seen]
            seen.update(fresh)
            self._pending[channel].extend([[dest, lang_of[chunk[dest]]] for dest in fresh])

    def entries(self, *, final: bool) -> list[tuple[Channel, dict[str, str], dict[str, int]]]:
        """Cut full batches (and, when final, the rest) into stream entries."""
        out = []
        for channel in self._channels:
            pending = self._pending[channel]
            cut = len(pending) if final else len(pending) - len(pending) % self._size
            for start in range(0, cut, self._size):
                chunk = pending[start : min(start + self._size, cut)]
                self._seq[channel] += 1
                fields = dict(self._fields)
                fields["to"] = json.dumps(chunk, ensure_ascii=False)
                fields["batch"] = f"{channel.value}-{self._seq[channel]}"
                per_lang: dict[str, int] = {}
                for _, lang in chunk:
                    per_lang[lang] = per_lang.get(lang, 0) + 1
                out.append((channel, fields, per_lang))
            del pending[:cut]
        return out


async def resolve(
    *,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    message: AlertMessage,
    channels: frozenset[Channel],
    zone: Zone | None,
    group_ids: list[int],
    batch_size: int,
) -> AsyncIterator[Progress]:
    """Enqueue the audience; yield progress after every write, the last one with done=True."""
    validate_message(message, channels)
    started = time.perf_counter()
    batcher = _Batcher(message=message, channels=channels, batch_size=batch_size)
    mask = channel_bits(channels)
    writing: asyncio.Task[None] | None = None

    async def flush(final: bool) -> bool:
        nonlocal writing
        entries = batcher.entries(final=final)
        if not entries:
            return False
        if writing is not None:
            await writing
        writing = asyncio.create_task(_write(redis, entries, batcher.progress))
        if batcher.progress.batches == 0:
            # The first write is awaited: the first progress message means "messages are out".
            await writing
        return True

    if group_ids:
        batcher.add(*_columns(None, await pool.fetch(_GROUPS_SQL, group_ids, mask)))
        if await flush(final=False):
            yield batcher.progress
    if zone is not None:
        plan = plan_zone(zone=zone, use_counts=False)
        lo, hi, test = (
            (list(c) for c in zip(*plan.address_ranges, strict=True))
            if (plan.address_ranges)
            else ([], [], [])
        )
        async with pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(_STREAMING_PLAN)
            cursor = await conn.cursor(_ZONE_SQL, lo, hi, test, mask)
            size = FIRST_FETCH
            fetching: asyncio.Future[list[Any]] = asyncio.ensure_future(cursor.fetch(size))
            try:
                while rows := await fetching:
                    # The next rows come from PostgreSQL while these are sorted and written.
                    fetching = asyncio.ensure_future(cursor.fetch(FETCH))
                    batcher.add(*_columns(zone, rows))
                    if await flush(final=False):
                        yield batcher.progress
            finally:
                fetching.cancel()
    await flush(final=True)
    if writing is not None:
        await writing
    batcher.progress.done = True
    RESOLVE_SECONDS.observe(time.perf_counter() - started)
    yield batcher.progress


def _columns(
    zone: Zone | None, rows: list[Any]
) -> tuple[list[str], dict[Channel, list[str | None]]]:
    """Languages and per-channel destinations of the rows whose point is in the zone."""
    test, lon, lat, language, sms, voice, email = zip(*rows, strict=True)
    columns: list[tuple[Any, ...]] = [language, sms, voice, email]
    if zone is not None and any(test):
        tested = np.fromiter(test, bool, len(rows))
        keep = ~tested
        keep[tested] = zone.contains(
            lon=np.fromiter(lon, float, len(rows))[tested],
            lat=np.fromiter(lat, float, len(rows))[tested],
        )
        mask = keep.tolist()
        columns = [tuple(itertools.compress(col, mask)) for col in columns]
    return list(columns[0]), {
        Channel.SMS: list(columns[1]),
        Channel.VOICE: list(columns[2]),
        Channel.EMAIL: list(columns[3]),
    }


async def _write(
    redis: aioredis.Redis,
    entries: list[tuple[Channel, dict[str, str], dict[str, int]]],
    progress: Progress,
) -> None:
    pipe = redis.pipeline(transaction=False)
    for channel, fields, _ in entries:
        pipe.xadd(channel.stream, fields)  # type: ignore[arg-type]
    await pipe.execute()
    for channel, _, per_lang in entries:
        for lang, n in per_lang.items():
            progress.counts.add(channel, lang, n)
        RECIPIENTS_ENQUEUED.labels(channel.value).inc(sum(per_lang.values()))
    progress.batches += len(entries)
