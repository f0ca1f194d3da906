"""The per-cell counts behind fast previews (table cell_counts), rebuilt or refreshed exactly."""

from __future__ import annotations

from services.targeting.cover import COUNT_RES, FINE_RES, ancestor, descendant_range
from services.targeting.model import Conn

_COUNT_SELECT = """
    SELECT cell, language, count(*), count(*) FILTER (WHERE channels & 1 <> 0),
           count(*) FILTER (WHERE channels & 2 <> 0), count(*) FILTER (WHERE channels & 4 <> 0)
    FROM (SELECT DISTINCT h3_ancestor(h3, {res}) AS cell, subscriber_id, language, channels
          FROM addresses {where}) per_subscriber
    GROUP BY cell, language
"""


async def rebuild_counts(*, conn: Conn) -> None:
    """Recompute every cell's counts from the addresses (after a bulk load)."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE cell_counts IN EXCLUSIVE MODE")
        await conn.execute("TRUNCATE cell_counts")
        await conn.execute(
            "INSERT INTO cell_counts (cell, language, subscribers, sms, voice, email) "
            + _COUNT_SELECT.format(res=COUNT_RES, where="")
        )


async def refresh_counts(*, conn: Conn, fine_cells: list[int]) -> None:
    """Recompute the counts of the cells holding these points; call inside the write transaction."""
    cells = sorted({ancestor(c, res=COUNT_RES) for c in fine_cells})
    if not cells:
        return
    # Serialise writers of the same cells, so that concurrent registrations never lose a count.
    for cell in cells:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", cell)
    ranges = [descendant_range(c, res=FINE_RES) for c in cells]
    await conn.execute("DELETE FROM cell_counts WHERE cell = ANY($1::bigint[])", cells)
    await conn.execute(
        "INSERT INTO cell_counts (cell, language, subscribers, sms, voice, email) "
        + _COUNT_SELECT.format(
            res=COUNT_RES,
            where="JOIN unnest($1::bigint[], $2::bigint[]) r(lo, hi) ON h3 BETWEEN r.lo AND r.hi",
        ),
        [lo for lo, _ in ranges],
        [hi for _, hi in ranges],
    )
