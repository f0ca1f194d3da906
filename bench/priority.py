"""Priority benchmark: an emergency's first SMS while a large test campaign is queued ahead of it.

`python -m bench.priority --n 200000` (or `make bench-priority`). Starts embedded PostgreSQL and
Redis, an SMSC simulator per operator in its own process and one SMS service process, paced at
`--rate` submit_sm per second per operator; writes N test SMS onto the SMS bulk lane, waits until
the campaign is sending, then writes one emergency entry (`--emergency` recipients) onto the
emergency lane and measures, from that write:

- `emergency_first_submit_ms`: the first emergency recipient handed to its SMSC (its row's
  `submitted_at`, stamped as the sender takes it, before its rate-limit token),
- `emergency_first_sms_ms`: the first emergency recipient whose receipt came back (`done_at`):
  the SMSC had its submit_sm by then, so this bounds the submit_sm's arrival from above,
- `emergency_all_sms_ms`: the last of the emergency's receipts,

with `queued_ahead` (test SMS not yet handed over when the emergency was written) and
`cpu_us_per_sms` (the SMS process's CPU time over the SMS it handed over). The campaign is not
drained: the run stops once the emergency is delivered. Figures go to bench/results/priority.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import redis.asyncio as aioredis

from bench.faults import PREFIXES, Stack, rules
from services.channel import codec, keys
from services.kernel.redis_client import connect as connect_redis
from stack.embedded import free_port, start_redis
from stack.migrate import apply_migrations
from stack.services import operators as stack_operators
from stack.supervisor import ROOT, Supervisor

WORK = ROOT / "var" / "bench-priority"
RESULTS = ROOT / "bench" / "results" / "priority.json"
CAMPAIGN = "priority-test-campaign"
EMERGENCY = "priority-emergency"
TEXT = "BE-Alert TEST: this is a test of the warning system. No action is needed."
URGENT = "BE-Alert: chemical cloud over your area. Stay inside, close doors and windows."
#: Numbers of the emergency's recipients start here (the campaign's are below).
EMERGENCY_FROM = 900_000


def _number(j: int, operators: int) -> str:
    return f"+{PREFIXES[j % operators]}{j:06d}"


async def _write(
    redis: aioredis.Redis, *, alert: str, kind: str, text: str, numbers: list[str]
) -> None:
    """Recipients onto the SMS stream of the lane of `kind`, in entries of codec.ENTRY_SIZE."""
    header = codec.Header(
        alert=alert,
        version=1,
        kind=kind,
        expires=time.time() + 7200,
        sender="BE-Alert",
        texts={"en": text},
    )
    stream = keys.stream("sms", codec.priority_of(kind))
    to = [(n, "en") for n in numbers]
    step = 50 * codec.ENTRY_SIZE
    for start in range(0, len(to), step):
        async with redis.pipeline(transaction=False) as pipe:
            for fields in codec.entries(header, to[start : start + step], prefix=f"{start}-"):
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            await pipe.execute()


async def _until(pool: asyncpg.Pool, sql: str, *args: Any, at_least: int, every: float) -> None:
    """Poll PostgreSQL (nothing to await on) until `sql` counts `at_least`."""
    while True:
        if int(await pool.fetchval(sql, *args)) >= at_least:
            return
        await asyncio.sleep(every)


async def _stamp(pool: asyncpg.Pool, column: str, alert: str) -> float | None:
    """The earliest `column` (Unix time) of the alert's rows, None while there is none."""
    value = await pool.fetchval(
        f"SELECT extract(epoch FROM min({column})) FROM sms_messages WHERE alert = $1", alert
    )
    return None if value is None else float(value)


async def _bench(
    args: argparse.Namespace, supervisor: Supervisor, database_url: str
) -> dict[str, Any]:
    names = [op.name for op in stack_operators()][: len(PREFIXES)]
    stack = Stack(supervisor, names, args)
    stack.redis_port = free_port()
    stack.redis_dir = WORK / f"redis-{os.getpid()}"
    stack.redis_dir.mkdir(parents=True, exist_ok=True)
    server = supervisor.add_server(start_redis(data_dir=stack.redis_dir, port=stack.redis_port))
    await asyncio.to_thread(apply_migrations, database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    for name in names:
        stack.start_smsc(name)
    rules_file = stack.redis_dir / "rules.toml"
    rules_file.write_text(rules(args.rate), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=server.url,
        TOCSIN_GRPC_PORT=str(free_port()),
        TOCSIN_METRICS_PORT="0",
        TOCSIN_INSECURE_DEV="1",
        TOCSIN_SMSC=",".join(f"{n}=127.0.0.1:{stack.ports[n]}" for n in names),
        TOCSIN_ROUTES=";".join(f"{n}={p}" for n, p in zip(names, PREFIXES, strict=False)),
        TOCSIN_RATELIMIT_RULES=str(rules_file),
        TOCSIN_LOG_LEVEL="WARNING",
    )
    stack.sms_env = env
    redis = connect_redis(server.url)
    operators = len(names)
    await _write(
        redis,
        alert=CAMPAIGN,
        kind="test",
        text=TEXT,
        numbers=[_number(j, operators) for j in range(args.n)],
    )
    stack.start_sms()
    assert stack.sms is not None
    process = psutil.Process(stack.sms.pid)
    handed_sql = "SELECT count(*) FROM sms_messages WHERE submitted_at IS NOT NULL"
    async with asyncio.timeout(args.timeout_s):
        await _until(pool, handed_sql, at_least=1, every=0.2)
    await asyncio.sleep(args.warm_s)
    urgent = [_number(j, operators) for j in range(EMERGENCY_FROM, EMERGENCY_FROM + args.emergency)]
    ahead = args.n - int(await pool.fetchval(handed_sql))
    written = time.time()
    await _write(redis, alert=EMERGENCY, kind="emergency", text=URGENT, numbers=urgent)
    done_sql = (
        "SELECT count(*) FROM sms_messages WHERE alert = $1"
        " AND state IN ('delivered', 'failed', 'expired')"
    )
    async with asyncio.timeout(args.timeout_s):
        await _until(pool, done_sql, EMERGENCY, at_least=len(urgent), every=0.05)
    cpu = process.cpu_times()
    handed = int(await pool.fetchval(handed_sql))
    first_submit = await _stamp(pool, "submitted_at", EMERGENCY)
    first_done = await _stamp(pool, "done_at", EMERGENCY)
    last_done = await pool.fetchval(
        "SELECT extract(epoch FROM max(done_at)) FROM sms_messages WHERE alert = $1", EMERGENCY
    )
    await redis.aclose()
    await pool.close()
    # The campaign is not drained: the service is stopped with it in hand (killed if it has not
    # stopped within the wait: the figures are taken already).
    stopping = time.monotonic()
    stack.sms.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(stack.sms.wait, args.stop_wait_s)
    except subprocess.TimeoutExpired:
        print(f"the SMS service did not stop in {args.stop_wait_s} s: killed", flush=True)
        stack.sms.kill()
        stack.sms.wait(10)
    else:
        print(f"the SMS service stopped in {time.monotonic() - stopping:.1f} s", flush=True)
    for name in list(stack.smscs):
        stack.stop_smsc(name)

    def since(t: float | None) -> float | None:
        return None if t is None else round((t - written) * 1000, 1)

    return {
        "n": args.n,
        "operators": operators,
        "rate_per_operator_sms_per_s": args.rate,
        "queued_ahead": ahead,
        "emergency_recipients": len(urgent),
        "emergency_first_submit_ms": since(first_submit),
        "emergency_first_sms_ms": since(first_done),
        "emergency_all_sms_ms": since(float(last_done) if last_done is not None else None),
        "sms_handed_over": handed,
        "cpu_us_per_sms": round((cpu.user + cpu.system) * 1e6 / max(handed, 1), 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    pg_dir = WORK / f"pg-{os.getpid()}"
    WORK.mkdir(parents=True, exist_ok=True)
    try:
        with Supervisor(log_dir=WORK / f"log-{os.getpid()}") as supervisor:
            database_url = supervisor.postgres(data_dir=pg_dir, fast_unsafe=True)
            return await _bench(args, supervisor, database_url)
    finally:
        shutil.rmtree(pg_dir, ignore_errors=True)
        shutil.rmtree(WORK / f"redis-{os.getpid()}", ignore_errors=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.priority", description=__doc__)
    p.add_argument("--n", type=int, default=200_000, help="test SMS queued ahead")
    p.add_argument("--emergency", type=int, default=500, help="recipients of the emergency")
    p.add_argument("--rate", type=int, default=300, help="submit_sm per second per operator")
    p.add_argument("--warm-s", type=float, default=3.0, help="campaign seconds before the alert")
    p.add_argument("--timeout-s", type=float, default=300.0, help="give up after this long")
    p.add_argument("--stop-wait-s", type=float, default=30.0, help="SIGTERM, then SIGKILL")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run, print and write the figures."""
    args = parser().parse_args(argv)
    figures = asyncio.run(run(args))
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    first = figures["emergency_first_sms_ms"]
    return 0 if first is not None and first < 1000 else 1


if __name__ == "__main__":
    raise SystemExit(main())
