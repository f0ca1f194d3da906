"""Resolve: stream an alert's audience into the channels' work streams, batch by batch.

The addresses of the zone's cover stream out of PostgreSQL with COPY in H3 order, so the first
batch is enqueued after the first thousand or so rows, not after the whole zone. Every
recipient is deduplicated per channel by destination (phone number or e-mail address): one
person with two addresses, a phone shared by two subscribers, and a group member who also lives
in the zone each get one message per channel.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np
import redis.asyncio as aioredis

from services.channel import codec
from services.channel import keys as channel_keys
from services.kernel import keys
from services.kernel.errors import InvalidArgument
from services.targeting.metrics import RECIPIENTS_ENQUEUED, RESOLVE_SECONDS
from services.targeting.model import ALL_CHANNELS, LANGUAGES, Channel, Conn, Counts, channel_bits
from services.targeting.preview import plan_zone
from services.targeting.zones import Zone

#: Bytes of COPY output in the first chunk (small: the first batch leaves at once) and later ones.
FIRST_CHUNK_BYTES = 64 * 1024
CHUNK_BYTES = 1024 * 1024
#: Alert kinds, as the streams carry them.
KINDS = codec.KINDS

_ZONE_SQL = """
    SELECT CASE WHEN r.test THEN a.lon || ' ' || a.lat ELSE '' END,
           ($5::text[])[array_position('{nl,fr,de,en}'::text[], a.language)],
           coalesce(CASE WHEN a.channels & $4 & 1 <> 0 THEN a.phone END, ''),
           coalesce(CASE WHEN a.channels & $4 & 2 <> 0 THEN a.phone END, ''),
           coalesce(CASE WHEN a.channels & $4 & 4 <> 0 THEN a.email END, '')
    FROM unnest($1::bigint[], $2::bigint[], $3::bool[]) r(lo, hi, test)
    JOIN addresses a ON a.h3 BETWEEN r.lo AND r.hi
    WHERE a.channels & $4 <> 0
"""
#: No destination on that channel: "" in the COPY text, which a split turns into Python's one
#: empty bytes object, so the many rows without one cost an identity check each, not a hash.
NO_DESTINATION = b""
#: Columns of _ZONE_SQL.
ZONE_COLUMNS = 5
_GROUPS_SQL = """
    SELECT ($3::text[])[array_position('{nl,fr,de,en}'::text[], language)],
           CASE WHEN channels & $2 & 1 <> 0 THEN phone END,
           CASE WHEN channels & $2 & 2 <> 0 THEN phone END,
           CASE WHEN channels & $2 & 4 <> 0 THEN email END
    FROM group_members WHERE group_id = ANY($1::bigint[]) AND channels & $2 <> 0
    ORDER BY group_id, id
"""
#: Nested loops stream rows from the first range on; the planner, misled by the range join's
#: estimate, might otherwise sort or hash the whole zone before the first row.
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
    #: Issuing entity: the channels share a lane fairly between entities (codec.Header.entity).
    entity: str = ""


@dataclass
class Progress:
    """Recipients and stream entries enqueued so far."""

    counts: Counts = field(default_factory=Counts)
    batches: int = 0
    done: bool = False
    #: The alert was cancelled or its text superseded meanwhile: the rest was not enqueued.
    stopped: bool = False


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


#: A stream entry to write: its channel, its fields, and its recipients per language.
Entry = tuple[Channel, dict[str, str | bytes], Counter[str]]


def work_stream(channel: Channel, kind: str) -> str:
    """The channel's stream of the lane an alert of `kind` goes in (emergencies first)."""
    return channel_keys.stream(channel.value, codec.priority_of(kind))


class _Batcher:
    """Deduplicates recipients per channel and cuts them into stream entries.

    Destinations travel as bytes, straight from PostgreSQL's COPY text output to the stream
    entry's JSON, and with each its *tail* (`codec.recipient_tail`: the rest of its JSON item
    after the destination), which PostgreSQL writes in place of the citizen's language. A batch's
    `to` is then `codec.join_recipients`, one join of prefix, destination and tail per recipient:
    at a million recipients, str objects, formatting or json.dumps per recipient would be most of
    the time.
    """

    def __init__(
        self, *, message: AlertMessage, channels: frozenset[Channel], batch_size: int
    ) -> None:
        self._channels = [c for c in (Channel.SMS, Channel.VOICE, Channel.EMAIL) if c in channels]
        self._size = batch_size
        # Per channel: every destination seen, in first-seen order, with a tail. NO_DESTINATION (no
        # destination on that channel) is in from the start, so it is never new.
        self._seen: dict[Channel, dict[bytes, bytes]] = {
            c: {NO_DESTINATION: b""} for c in self._channels
        }
        # Per channel: fresh destinations (JSON-escaped) and their tails, in first-seen order.
        self._dests: dict[Channel, list[bytes]] = {c: [] for c in self._channels}
        self._tails: dict[Channel, list[bytes]] = {c: [] for c in self._channels}
        self._seq: dict[Channel, int] = dict.fromkeys(self._channels, 0)
        texts = message.texts
        fallback = "en" if "en" in texts else next(iter(texts))
        target = [lang if lang in texts else fallback for lang in LANGUAGES]
        #: Per citizen's language (in LANGUAGES order): the tail of its recipients' JSON items.
        self.tails = [codec.recipient_tail(t).decode() for t in target]
        self._tail_language = {codec.recipient_tail(t): t for t in target}
        self._fields: dict[str, str | bytes] = dict(
            codec.header_fields(
                codec.Header(
                    alert=message.alert,
                    version=message.version,
                    kind=message.kind,
                    expires=message.expires,
                    sender=message.sender,
                    texts=texts,
                    entity=message.entity,
                )
            )
        )
        self.progress = Progress()

    def add(self, tails: Sequence[bytes], destinations: dict[Channel, Sequence[bytes]]) -> None:
        """Take recipients in: per row a tail and, per channel, a destination or NO_DESTINATION."""
        for channel in self._channels:
            seen = self._seen[channel]
            # One pass in C: a destination seen before keeps its place (its tail is replaced,
            # which nothing reads again), a new one is appended; so the new ones are the last
            # `fresh` keys, read backwards without walking the older ones.
            before = len(seen)
            seen.update(zip(destinations[channel], tails, strict=True))
            fresh = len(seen) - before
            if not fresh:
                continue
            dests = list(itertools.islice(reversed(seen), fresh))
            dests.reverse()
            new_tails = list(itertools.islice(reversed(seen.values()), fresh))
            new_tails.reverse()
            self._tails[channel].extend(new_tails)
            joined = b"".join(dests)
            if b'"' in joined or b"\\" in joined:
                dests = [codec.escape_address(d) for d in dests]
            self._dests[channel].extend(dests)

    def entries(self, *, final: bool) -> list[Entry]:
        """Cut full batches (and, when final, the rest) into stream entries."""
        out: list[Entry] = []
        for channel in self._channels:
            dests, tails = self._dests[channel], self._tails[channel]
            cut = len(dests) if final else len(dests) - len(dests) % self._size
            for start in range(0, cut, self._size):
                end = min(start + self._size, cut)
                self._seq[channel] += 1
                fields = dict(self._fields)
                batch_tails = tails[start:end]
                fields["to"] = codec.join_recipients(dests[start:end], batch_tails)
                fields["batch"] = f"{channel.value}-{self._seq[channel]}"
                per_lang = Counter(
                    {self._tail_language[t]: n for t, n in Counter(batch_tails).items()}
                )
                out.append((channel, fields, per_lang))
            del dests[:cut]
            del tails[:cut]
        return out


def _group_columns(rows: list[Any]) -> tuple[Sequence[bytes], dict[Channel, Sequence[bytes]]]:
    """Group members' rows (tail, sms, voice, email) as the batcher takes them."""

    def enc(values: Sequence[str | None]) -> list[bytes]:
        return [v.encode() if v else NO_DESTINATION for v in values]

    if not rows:
        return [], dict.fromkeys(ALL_CHANNELS, ())
    language, sms, voice, email = zip(*rows, strict=True)
    return enc(language), {
        Channel.SMS: enc(sms),
        Channel.VOICE: enc(voice),
        Channel.EMAIL: enc(email),
    }


def _zone_columns(
    zone: Zone, rows: bytes
) -> tuple[Sequence[bytes], dict[Channel, Sequence[bytes]]]:
    """COPY text rows (point to test, tail, sms, voice, email) inside the zone, as columns.

    One split of the whole chunk and five slices make the columns without a Python call per
    row; only points in boundary cells come as "lon lat" text to test, the others as "". A
    point outside the zone has its destinations set to NO_DESTINATION (no destination), a Python
    step per point outside rather than a filter of every column. Values never hold tabs,
    newlines or COPY escapes: phone numbers are E.164, e-mail addresses are validated without
    white space or backslashes.
    """
    flat = rows.replace(b"\n", b"\t").split(b"\t")
    points = flat[0::ZONE_COLUMNS]
    columns = [flat[i::ZONE_COLUMNS] for i in range(1, ZONE_COLUMNS)]
    tested = np.fromiter(map(len, points), dtype=np.intp, count=len(points)).astype(bool)
    if tested.any():
        lonlat = np.array(b" ".join(itertools.compress(points, tested)).split(), dtype=float)
        inside = zone.contains(lon=lonlat[0::2], lat=lonlat[1::2])
        outside = np.flatnonzero(tested)[~inside].tolist()
        for column in columns[1:]:
            for i in outside:
                column[i] = NO_DESTINATION
    return columns[0], {
        Channel.SMS: columns[1],
        Channel.VOICE: columns[2],
        Channel.EMAIL: columns[3],
    }


async def _copy_rows(conn: Conn, query: str, args: Sequence[Any]) -> AsyncGenerator[bytes, None]:
    """Stream a query's rows as COPY text, whole lines only, a small first chunk then larger."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)
    buffer: list[bytes] = []
    size = 0
    limit = FIRST_CHUNK_BYTES

    async def output(data: bytes) -> None:
        nonlocal size, limit
        buffer.append(data)
        size += len(data)
        if size >= limit:
            await queue.put(b"".join(buffer))
            buffer.clear()
            size, limit = 0, CHUNK_BYTES

    async def copy() -> None:
        try:
            await conn.copy_from_query(query, *args, output=output, format="text")
            if buffer:
                await queue.put(b"".join(buffer))
        finally:
            await queue.put(None)

    task = asyncio.create_task(copy())
    rest = b""
    try:
        while (data := await queue.get()) is not None:
            data = rest + data
            end = data.rfind(b"\n")
            rest = data[end + 1 :]
            if end > 0:
                yield data[:end]
        await task
    finally:
        task.cancel()


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
        writing = asyncio.create_task(_write(redis, entries, batcher.progress, message.kind))
        if batcher.progress.batches == 0:
            # The first write is awaited: the first progress message means "messages are out".
            await writing
        return True

    if group_ids:
        members = await pool.fetch(_GROUPS_SQL, group_ids, mask, batcher.tails)
        batcher.add(*_group_columns(members))
        if await flush(final=False):
            yield batcher.progress
    if zone is not None:
        plan = plan_zone(zone=zone, use_counts=False)
        ranges = plan.address_ranges
        args = (
            [r[0] for r in ranges],
            [r[1] for r in ranges],
            [r[2] for r in ranges],
            mask,
            batcher.tails,
        )
        async with pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(_STREAMING_PLAN)
            # While these lines are sorted and written, PostgreSQL sends the next ones.
            chunks = _copy_rows(conn, _ZONE_SQL, args)
            try:
                async for rows in chunks:
                    if await _superseded(redis, message):
                        batcher.progress.stopped = True
                        break
                    batcher.add(*_zone_columns(zone, rows))
                    if await flush(final=False):
                        yield batcher.progress
            finally:
                await chunks.aclose()
    if not batcher.progress.stopped:
        await flush(final=True)
    if writing is not None:
        await writing
    batcher.progress.done = True
    RESOLVE_SECONDS.observe(time.perf_counter() - started)
    yield batcher.progress


async def _superseded(redis: aioredis.Redis, message: AlertMessage) -> bool:
    """Whether the alert was cancelled, or a newer text version exists (docs/streams.md)."""
    cancelled, version = await redis.mget(
        keys.alert_cancelled(message.alert), keys.alert_version(message.alert)
    )
    return cancelled is not None or (version is not None and int(version) > message.version)


async def _write(
    redis: aioredis.Redis,
    entries: list[Entry],
    progress: Progress,
    kind: str,
) -> None:
    pipe = redis.pipeline(transaction=False)
    for channel, fields, _ in entries:
        pipe.xadd(work_stream(channel, kind), fields)  # type: ignore[arg-type]
    await pipe.execute()
    for channel, _, per_lang in entries:
        for lang, n in per_lang.items():
            progress.counts.add(channel, lang, n)
        RECIPIENTS_ENQUEUED.labels(channel.value).inc(sum(per_lang.values()))
    progress.batches += len(entries)
