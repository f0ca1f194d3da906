"""Bulk-load a synthetic population with COPY; skipped when the same one is already loaded."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg

from bench import population as popmod
from bench.population import LANGUAGES, Population
from services.targeting.counts import counts_complete, rebuild_counts
from services.targeting.model import Conn
from stack.migrate import apply_migrations

logger = logging.getLogger(__name__)

#: Rows per COPY call (progress is reported between calls).
CHUNK = 500_000
#: Cell sites per operator in a full-size population.
SITES_PER_OPERATOR = 6_000
_KINDS = ("home", "work", "family")
_TABLES = "group_members, groups, entities, cell_counts, addresses, subscribers, cell_sites"


#: Tables that only benchmarks and tests use (which synthetic population is loaded).
BENCH_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def migrate(dsn: str) -> None:
    """Apply the production migrations, then the benchmarks' own (blocking: run it in a thread)."""
    apply_migrations(dsn)
    apply_migrations(dsn, directory=BENCH_MIGRATIONS)


class PopulationConflict(Exception):
    """The database holds subscribers that no synthetic load put there."""


async def loaded(*, conn: Conn, seed: int, subscribers: int) -> bool:
    """Whether exactly this synthetic population is completely loaded."""
    row = await conn.fetchval(
        "SELECT complete FROM synthetic_populations WHERE seed = $1 AND subscribers = $2",
        seed,
        subscribers,
    )
    return bool(row)


async def load_population(
    *,
    conn: Conn,
    seed: int,
    subscribers: int,
    progress: Callable[[str], None] = lambda _: None,
) -> bool:
    """Load the population unless loaded already; return whether anything was loaded."""
    if await loaded(conn=conn, seed=seed, subscribers=subscribers):
        progress(f"population seed={seed} subscribers={subscribers:,} already loaded")
        if not await counts_complete(conn=conn):
            # Loaded before cell_counts held every resolution: only the counts are rebuilt.
            progress("counting subscribers per H3 cell (resolutions added since the load)")
            await rebuild_counts(conn=conn)
            await conn.execute("VACUUM (FREEZE, ANALYZE) cell_counts")
        return False
    synthetic = await conn.fetchval("SELECT count(*) FROM synthetic_populations")
    if not synthetic and await conn.fetchval("SELECT EXISTS (SELECT 1 FROM subscribers)"):
        raise PopulationConflict("subscribers exist that no synthetic load made; refusing to wipe")
    started = time.perf_counter()
    progress(f"generating {subscribers:,} subscribers (seed {seed})")
    pop = popmod.generate(seed=seed, subscribers=subscribers)
    sites = popmod.generate_cell_sites(
        seed=seed, per_operator=max(50, min(SITES_PER_OPERATOR, subscribers // 2000))
    )
    progress(f"generated in {time.perf_counter() - started:.1f} s; loading")
    await conn.execute(f"TRUNCATE {_TABLES}, synthetic_populations RESTART IDENTITY CASCADE")
    await conn.execute(
        "INSERT INTO synthetic_populations (seed, subscribers) VALUES ($1, $2)", seed, subscribers
    )
    await conn.execute("DROP INDEX IF EXISTS addresses_h3")
    await _copy(
        conn,
        "subscribers",
        _subscriber_rows(pop),
        len(pop.phone),
        progress,
        ["id", "phone", "email", "language", "channels"],
    )
    await _skip_foreign_key_checks(conn)
    await _copy(
        conn,
        "addresses",
        _address_rows(pop),
        pop.addr_subscriber.size,
        progress,
        [
            "subscriber_id",
            "position",
            "kind",
            "lon",
            "lat",
            "h3",
            "language",
            "channels",
            "phone",
            "email",
        ],
    )
    await conn.execute("RESET session_replication_role")
    progress("indexing addresses by H3 cell")
    await conn.execute(
        "CREATE INDEX addresses_h3 ON addresses (h3) "
        "INCLUDE (subscriber_id, lon, lat, language, channels, phone, email)"
    )
    await conn.execute(
        "SELECT setval(pg_get_serial_sequence('subscribers', 'id'), $1)", max(1, subscribers)
    )
    await conn.copy_records_to_table(
        "cell_sites",
        records=zip(
            sites.operator,
            sites.cell_id,
            sites.lon.tolist(),
            sites.lat.tolist(),
            sites.radius_m.tolist(),
            strict=True,
        ),
        columns=["operator", "cell_id", "lon", "lat", "radius_m"],
    )
    progress("counting subscribers per H3 cell")
    await rebuild_counts(conn=conn)
    progress("vacuum analyze")
    for table in ("subscribers", "addresses", "cell_counts", "cell_sites"):
        await conn.execute(f"VACUUM (FREEZE, ANALYZE) {table}")
    await conn.execute(
        "UPDATE synthetic_populations SET complete = true, loaded_at = now() "
        "WHERE seed = $1 AND subscribers = $2",
        seed,
        subscribers,
    )
    progress(f"population loaded in {time.perf_counter() - started:.1f} s")
    return True


async def _skip_foreign_key_checks(conn: Conn) -> None:
    """Generated addresses reference generated subscribers: skip the per-row FK trigger."""
    try:
        await conn.execute("SET session_replication_role = replica")
    except asyncpg.InsufficientPrivilegeError:
        logger.info("not a superuser: COPY checks every address's foreign key")


async def _copy(
    conn: Conn,
    table: str,
    rows: Iterator[tuple[Any, ...]],
    total: int,
    progress: Callable[[str], None],
    columns: list[str],
) -> None:
    done = 0
    while done < total:
        chunk = [row for _, row in zip(range(CHUNK), rows, strict=False)]
        if not chunk:
            break
        await conn.copy_records_to_table(table, records=chunk, columns=columns)
        done += len(chunk)
        progress(f"{table}: {done:,}/{total:,}")


def _subscriber_rows(pop: Population) -> Iterator[tuple[Any, ...]]:
    lang = [LANGUAGES[i] for i in pop.language.tolist()]
    for i, (phone, email, language, channels) in enumerate(
        zip(pop.phone, pop.email, lang, pop.channels.tolist(), strict=True)
    ):
        yield i + 1, phone, email, language, channels


def _address_rows(pop: Population) -> Iterator[tuple[Any, ...]]:
    language = pop.language
    channels = pop.channels
    sub = pop.addr_subscriber
    yield from zip(
        sub.tolist(),
        pop.addr_position.tolist(),
        [_KINDS[k] for k in pop.addr_kind.tolist()],
        pop.addr_lon.tolist(),
        pop.addr_lat.tolist(),
        pop.addr_h3.tolist(),
        [LANGUAGES[i] for i in language[sub - 1].tolist()],
        channels[sub - 1].tolist(),
        [pop.phone[i] for i in (sub - 1).tolist()],
        [pop.email[i] for i in (sub - 1).tolist()],
        strict=True,
    )
