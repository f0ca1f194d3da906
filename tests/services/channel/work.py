"""Work onto a channel's stream through the codec, and waiting for its recipients' states."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import asyncpg
import redis.asyncio as aioredis

from services.channel import codec, keys


async def add_work(
    redis: aioredis.Redis,
    *,
    channel: str,
    alert: str,
    to: Sequence[str],
    texts: Mapping[str, str],
    version: int = 1,
    ttl_s: float = 600,
    per_entry: int = codec.ENTRY_SIZE,
    kind: str = "test",
    entity: str = "",
) -> None:
    """Recipients (language `en`) onto the stream of `channel`'s lane for `kind`, as targeting
    writes them."""
    header = codec.Header(
        alert=alert,
        version=version,
        kind=kind,
        expires=time.time() + ttl_s,
        sender="BE-Alert",
        texts=texts,
        entity=entity,
    )
    stream = keys.stream(channel, codec.priority_of(kind))
    async with redis.pipeline(transaction=False) as pipe:
        for fields in codec.entries(header, [(a, "en") for a in to], size=per_entry):
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
        await pipe.execute()


async def wait_states(
    pool: asyncpg.Pool,
    *,
    channel: str,
    alert: str,
    total: int,
    states: Sequence[str],
    timeout: float = 60,
) -> dict[str, int]:
    """Wait until `total` rows of the alert are in `states`; return counts per state."""
    sql = f"SELECT state, count(*) FROM {channel}_messages WHERE alert = $1 GROUP BY state"
    counts: dict[str, int] = {}
    async with asyncio.timeout(timeout):
        while True:
            counts = {r[0]: r[1] for r in await pool.fetch(sql, alert)}
            if sum(counts.get(s, 0) for s in states) >= total:
                return counts
            await asyncio.sleep(0.1)  # polling PostgreSQL: there is nothing to await on


async def counters(pool: asyncpg.Pool, *, channel: str, alert: str) -> dict[str, tuple[int, int]]:
    """The progress counters of an alert: state -> (recipients, units), zeros left out."""
    rows = await pool.fetch(
        "SELECT state, sum(recipients) AS n, sum(units) AS u FROM channel_progress"
        " WHERE alert = $1 AND channel = $2 GROUP BY state",
        alert,
        channel,
    )
    return {r["state"]: (int(r["n"]), int(r["u"])) for r in rows if r["n"] or r["u"]}


async def counted(pool: asyncpg.Pool, *, channel: str, alert: str) -> dict[str, tuple[int, int]]:
    """What the counters should say, counted from the recipients' rows."""
    rows = await pool.fetch(
        f"SELECT state, count(*) AS n, sum(segments) FILTER (WHERE state IN"
        f" ('submitted', 'delivered') OR submitted_at IS NOT NULL) AS u"
        f" FROM {channel}_messages WHERE alert = $1 AND state <> 'queued' GROUP BY state",
        alert,
    )
    return {r["state"]: (int(r["n"]), int(r["u"] or 0)) for r in rows}
