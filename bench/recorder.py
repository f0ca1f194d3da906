"""PostgreSQL's CPU per recipient for the channel recorder's statements, replayed alone.

`python -m bench.recorder [--n 100000] [--batch 200] [--fillfactor N]` (`make bench-recorder`).
Starts an embedded PostgreSQL (durable settings, as a deployment's), applies the migrations, and
replays through `services.channel.store` what the SMS service writes per recipient: the queue
insert, the submission with its message id, then the receipt, each in batches of `--batch`. It
measures the CPU of every PostgreSQL process over each phase and writes
bench/results/recorder.json: `cpu_us_per_recipient` and one `<phase>_cpu_us_per_recipient` per
phase, `hot_update_share` (the updates PostgreSQL made HOT: no index written) and
`table_pages`. `--fillfactor` overrides the table's (docs/sms.md: 40 since migrations/0070).
No service, limiter or SMSC: what `make bench-sms` cannot tell apart in PostgreSQL's share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from services.channel import store
from stack.embedded import start_postgres
from stack.migrate import apply_migrations
from stack.supervisor import ROOT

RESULTS = ROOT / "bench" / "results" / "recorder.json"
WORK = ROOT / "var" / "bench-recorder"


def _cpu(postmaster: int) -> float:
    """CPU seconds so far of the postmaster and every process it started."""
    root = psutil.Process(postmaster)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue  # a backend that ended meanwhile
        total += times.user + times.system
    return total


async def _phase(
    postmaster: int, n: int, batch: int, step: Callable[[int, int], Awaitable[None]]
) -> float:
    """CPU us per recipient of PostgreSQL while `step(start, count)` runs over n recipients."""
    before = _cpu(postmaster)
    for start in range(0, n, batch):
        await step(start, min(batch, n - start))
    return (_cpu(postmaster) - before) / n * 1e6


async def replay(database_url: str, postmaster: int, args: argparse.Namespace) -> dict[str, Any]:
    """Replay the recorder's statements and return the figures."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        tables = store.Tables.of("sms")
        if args.fillfactor:
            await pool.execute(f"ALTER TABLE sms_messages SET (fillfactor = {args.fillfactor})")
        alert = str(uuid.uuid4())
        addresses = [f"+3247{i:07d}" for i in range(args.n)]

        async def queue(start: int, count: int) -> None:
            await store.queue(
                pool,
                tables,
                alerts=[alert] * count,
                versions=[1] * count,
                addresses=addresses[start : start + count],
                operators=["proximus"] * count,
                segments=[1] * count,
                # As a consumer writes them: itself as the holder, two processes alive.
                holder="sms-bench-1",
                live=["sms-bench-1", "sms-bench-2"],
            )

        async def submit(start: int, count: int) -> None:
            w = store.Writes.empty()
            w.sub_alert += [alert] * count
            w.sub_version += [1] * count
            w.sub_address += addresses[start : start + count]
            w.sub_operator += ["proximus"] * count
            w.sub_ids += [f"{start + i:x}" for i in range(count)]
            w.sub_bind += ["proximus-0"] * count
            w.sub_attempts += [1] * count
            w.sub_at += [time.time()] * count
            w.sub_state += ["submitted"] * count
            w.sub_error += [""] * count
            w.sub_done += [0.0] * count
            async with pool.acquire() as conn:
                await store.write(conn, tables, w)

        async def receipt(start: int, count: int) -> None:
            w = store.Writes.empty()
            w.rc_operator += ["proximus"] * count
            w.rc_mid += [f"{start + i:x}" for i in range(count)]
            w.rc_state += ["delivered"] * count
            w.rc_error += [""] * count
            w.rc_at += [time.time()] * count
            async with pool.acquire() as conn:
                result = await store.write(conn, tables, w)
            if result.unmatched:
                raise RuntimeError(f"{len(result.unmatched)} receipts found no row")

        phases = {"queue": queue, "submit": submit, "receipt": receipt}
        per = {
            name: await _phase(postmaster, args.n, args.batch, step)
            for name, step in phases.items()
        }
        delivered = await pool.fetchval(
            "SELECT count(*) FROM sms_messages WHERE alert = $1 AND state = 'delivered'", alert
        )
        await pool.execute("SELECT pg_stat_force_next_flush()")
        stats = await pool.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd, pg_relation_size(relid) / 8192 AS pages"
            " FROM pg_stat_user_tables WHERE relname = 'sms_messages'"
        )
        fillfactor = await pool.fetchval(
            "SELECT coalesce((SELECT option_value FROM pg_options_to_table(reloptions)"
            " WHERE option_name = 'fillfactor'), '100')"
            " FROM pg_class WHERE relname = 'sms_messages'"
        )
    finally:
        await pool.close()
    assert stats is not None
    return {
        "n": args.n,
        "batch": args.batch,
        "fillfactor": int(fillfactor),
        "delivered": int(delivered),
        "cpu_us_per_recipient": round(sum(per.values()), 1),
        **{f"{name}_cpu_us_per_recipient": round(value, 1) for name, value in per.items()},
        "hot_update_share": round(stats["n_tup_hot_upd"] / max(1, stats["n_tup_upd"]), 3),
        "table_pages": int(stats["pages"]),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start PostgreSQL, replay, stop; the figures."""
    data = WORK / f"pg-{os.getpid()}"
    shutil.rmtree(data, ignore_errors=True)
    server = await asyncio.to_thread(start_postgres, data_dir=data)
    try:
        await asyncio.to_thread(apply_migrations, server.url)
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        return await replay(server.url, postmaster, args)
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(data, ignore_errors=True)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m bench.recorder", description=__doc__)
    p.add_argument("--n", type=int, default=100_000, help="recipients")
    p.add_argument("--batch", type=int, default=200, help="recipients per statement")
    p.add_argument("--fillfactor", type=int, default=0, help="override the table's (10-100)")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run, print and write the figures."""
    args = parser().parse_args(argv)
    if args.fillfactor and not 10 <= args.fillfactor <= 100:
        parser().error("--fillfactor: between 10 and 100")
    figures = asyncio.run(run(args))
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if figures["delivered"] == args.n else 1


if __name__ == "__main__":
    raise SystemExit(main())
