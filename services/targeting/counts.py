"""The per-cell counts behind fast previews (table cell_counts): rebuilt, or kept by deltas."""

from __future__ import annotations

from services.targeting.cover import COUNT_RESOLUTIONS, ancestor
from services.targeting.model import Conn

_COUNT_SELECT = """
    SELECT cell, language, count(*), count(*) FILTER (WHERE channels & 1 <> 0),
           count(*) FILTER (WHERE channels & 2 <> 0), count(*) FILTER (WHERE channels & 4 <> 0)
    FROM (SELECT DISTINCT h3_ancestor(h3, {res}) AS cell, subscriber_id, language, channels
          FROM addresses) per_subscriber
    GROUP BY cell, language
"""


async def rebuild_counts(*, conn: Conn) -> None:
    """Recompute every cell's counts from the addresses (after a bulk load)."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE cell_counts IN EXCLUSIVE MODE")
        await conn.execute("TRUNCATE cell_counts")
        for res in COUNT_RESOLUTIONS:
            await conn.execute(
                "INSERT INTO cell_counts (cell, language, subscribers, sms, voice, email) "
                + _COUNT_SELECT.format(res=res)
            )


async def counts_complete(*, conn: Conn) -> bool:
    """Whether cell_counts holds every resolution of COUNT_RESOLUTIONS (or nothing to count).

    Cell ids order by resolution first, so the largest id tells the finest resolution held.
    """
    top = await conn.fetchval("SELECT max(cell) FROM cell_counts")
    if top is None:
        return not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM addresses)")
    return bool((int(top) >> 52) & 15 == max(COUNT_RESOLUTIONS))


async def add_subscriber_counts(
    *, conn: Conn, fine_cells: list[int], language: str, channels: int, sign: int
) -> None:
    """Count one subscriber in (sign 1) or out (sign -1) of the cells holding their addresses.

    Call inside the transaction that writes the addresses. Each upsert is atomic, so concurrent
    registrations in the same cell never lose a count, and the cost does not grow with the cell.
    """
    cells = sorted({ancestor(c, res=res) for c in fine_cells for res in COUNT_RESOLUTIONS})
    if not cells:
        return
    bits = [1 if channels & bit else 0 for bit in (1, 2, 4)]
    await conn.execute(
        """
        INSERT INTO cell_counts AS c (cell, language, subscribers, sms, voice, email)
        SELECT cell, $2, $3, $4, $5, $6 FROM unnest($1::bigint[]) cell
        ON CONFLICT (cell, language) DO UPDATE SET
            subscribers = c.subscribers + EXCLUDED.subscribers, sms = c.sms + EXCLUDED.sms,
            voice = c.voice + EXCLUDED.voice, email = c.email + EXCLUDED.email
        """,
        cells,
        language,
        sign,
        *(sign * b for b in bits),
    )
    if sign < 0:
        await conn.execute(
            "DELETE FROM cell_counts WHERE cell = ANY($1::bigint[]) AND language = $2 "
            "AND subscribers <= 0",
            cells,
            language,
        )
