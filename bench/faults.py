"""Fault-injection benchmark: an SMS campaign through the stack while faults come one by one.

`python -m bench.faults --n 200000` (or `make bench-faults N=...`). Starts embedded PostgreSQL
and Redis (persistent, so that it can restart with its data), one SMSC simulator process per
operator of stack/operators.toml and one SMS service process, under a rate limit per operator.
It writes N recipients (spread evenly over the operators) onto the SMS stream, measures each
operator's normal rate, then injects, one after another, with a normal interval between them:

- `smsc_down`: the last operator's SMSC stopped (connections refused) for `--fault-s`;
- `smsc_throttled`: the second operator's SMSC answering throttled above a quarter of its rate;
- `sms_kill9`: the SMS process killed with SIGKILL and started again;
- `redis_restart`: Redis stopped and started again on the same port with its data (AOF).

Per fault it records `recovery_s` (end of the fault to the hit operators' normal rate again) and
`other_operators_rate_share` (the rate the operators not hit kept during it, as a share of their
normal rate; for a fault that hits every operator, their rate during it). `lost`, `duplicates`
and `stale_sent` are counted over the whole campaign at its end (PostgreSQL's delivered rows
against N; the simulators' messages received against N; their `stale_submits`) and reported
both per fault (the campaign's, since the faults share it) and as flat totals, in
bench/results/faults.json.
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
import redis.asyncio as aioredis

from services.channel import codec
from services.kernel import keys
from stack.embedded import free_port, start_redis
from stack.migrate import apply_migrations
from stack.services import operators as stack_operators
from stack.supervisor import ROOT, Supervisor

WORK = ROOT / "var" / "bench-faults"
RESULTS = ROOT / "bench" / "results" / "faults.json"
ALERT = "faults"
TEXT = "BE-Alert TEST: this is a test of the warning system. No action is needed."
#: National number prefixes of the bench's numbers, one per operator (in operators' order).
PREFIXES = ("32470", "32490", "32480")
#: A hit operator has recovered once a second of its deliveries reaches this share of normal.
RECOVERED_SHARE = 0.9


def rules(rate: int) -> str:
    """Rate-limit rules: `rate` submit_sm per second per operator, no burst above it."""
    return f"""
lease = 10
headroom = 0.0
[bucket."sms:global"]
rate = 1_000_000
capacity = 100_000
[bucket."sms:op:*"]
rate = {rate}
capacity = 10
"""


class Stack:
    """The processes of the run and how to break them."""

    def __init__(self, supervisor: Supervisor, names: list[str], args: argparse.Namespace) -> None:
        self.supervisor = supervisor
        self.names = names
        self.args = args
        self.ports = {name: free_port() for name in names}
        self.smscs: dict[str, subprocess.Popen[str]] = {}
        self.stopped: list[dict[str, Any]] = []
        self.sms: subprocess.Popen[bytes] | None = None
        self.sms_env: dict[str, str] = {}
        self.redis_port = 0
        self.redis_dir = WORK / f"redis-{os.getpid()}"

    def start_smsc(self, name: str, *extra: str) -> None:
        args = ["-m", "simulators.smsc", "--port", str(self.ports[name]), "--name", name, *extra]
        proc = self.supervisor.spawn(f"smsc-{name}", args, output="pipe", errors="null")
        assert proc.stdout is not None
        json.loads(proc.stdout.readline())  # listening
        self.smscs[name] = proc

    def stop_smsc(self, name: str) -> None:
        proc = self.smscs.pop(name)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        for line in out.splitlines():
            data = json.loads(line)
            if data.get("event") == "stopped":
                self.stopped.append(data)

    def start_sms(self) -> None:
        self.sms = self.supervisor.spawn(
            "sms", ["-m", "services.sms"], env=self.sms_env, output="null"
        )


async def _produce(redis: aioredis.Redis, n: int, operators: int) -> None:
    header = codec.Header(
        alert=ALERT,
        version=1,
        kind="test",
        expires=time.time() + 7200,
        sender="BE-Alert",
        texts={"en": TEXT},
    )
    size = codec.ENTRY_SIZE
    for start in range(0, n, 50 * size):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 50 * size), size):
                to = [
                    (f"+{PREFIXES[j % operators]}{j:06d}", "en") for j in range(i, min(n, i + size))
                ]
                fields = codec.encode(codec.WorkEntry(header, to, str(i // size)))
                pipe.xadd(keys.SMS_STREAM, fields)  # type: ignore[arg-type]
            await pipe.execute()


class Sampler:
    """Delivered recipients per operator over time, from PostgreSQL (the truth)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.samples: list[tuple[float, dict[str, int]]] = []

    async def run(self) -> None:
        while True:
            rows = await self.pool.fetch(
                "SELECT operator, count(*) AS n FROM sms_messages"
                " WHERE alert = $1 AND state = 'delivered' GROUP BY operator",
                ALERT,
            )
            self.samples.append((time.monotonic(), {r["operator"]: int(r["n"]) for r in rows}))
            await asyncio.sleep(0.5)

    def delivered(self) -> int:
        return sum(self.samples[-1][1].values()) if self.samples else 0

    def rate(self, ops: list[str], t0: float, t1: float) -> float:
        """Deliveries per second of `ops` between t0 and t1 (nearest samples)."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return 0.0
        (a, first), (b, last) = inside[0], inside[-1]
        return sum(last.get(op, 0) - first.get(op, 0) for op in ops) / max(b - a, 1e-9)


async def _fault(
    stack: Stack, sampler: Sampler, kind: str, normal: dict[str, float]
) -> dict[str, Any]:
    args, names = stack.args, stack.names
    hit = {
        "smsc_down": [names[-1]],
        "smsc_throttled": [names[min(1, len(names) - 1)]],
    }.get(kind, list(names))
    others = [op for op in names if op not in hit] or list(names)
    start = time.monotonic()
    print(f"fault {kind}: {', '.join(hit)}", flush=True)
    if kind == "smsc_down":
        stack.stop_smsc(hit[0])
        await asyncio.sleep(args.fault_s)
        stack.start_smsc(hit[0])
    elif kind == "smsc_throttled":
        stack.stop_smsc(hit[0])
        stack.start_smsc(hit[0], "--max-rate", str(max(1, args.rate // 4)))
        await asyncio.sleep(args.fault_s)
        stack.stop_smsc(hit[0])
        stack.start_smsc(hit[0])
    elif kind == "sms_kill9":
        assert stack.sms is not None
        stack.sms.send_signal(signal.SIGKILL)
        stack.sms.wait(30)
        stack.start_sms()
    elif kind == "redis_restart":
        server = stack.supervisor.servers[-1]
        server.stop()
        stack.supervisor.servers[-1] = start_redis(data_dir=stack.redis_dir, port=stack.redis_port)
    end = time.monotonic()
    during = sampler.rate(others, start, end) if end - start >= 1.0 else None
    base = sum(normal[op] for op in others)
    recovery: float | None = None
    target = RECOVERED_SHARE * sum(normal[op] for op in hit)
    deadline = end + args.recovery_max_s
    while time.monotonic() < deadline and sampler.delivered() < args.n:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        if sampler.rate(hit, now - 1.5, now) >= target:
            recovery = round(max(0.0, now - 1.5 - end), 2)
            break
    return {
        "fault": kind,
        "operators_hit": hit,
        "fault_s": round(end - start, 2),
        "recovery_s": recovery,
        "other_operators_rate_share": round(during / base, 3)
        if during is not None and base
        else None,
    }


async def _bench(
    args: argparse.Namespace, supervisor: Supervisor, database_url: str
) -> dict[str, Any]:
    names = [op.name for op in stack_operators()][: len(PREFIXES)]
    stack = Stack(supervisor, names, args)
    stack.redis_port = free_port()
    stack.redis_dir.mkdir(parents=True, exist_ok=True)
    server = supervisor.add_server(start_redis(data_dir=stack.redis_dir, port=stack.redis_port))
    redis_url = server.url
    await asyncio.to_thread(apply_migrations, database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    await pool.execute("TRUNCATE sms_messages, sms_message_ids")
    for name in names:
        stack.start_smsc(name)
    rules_file = stack.redis_dir / "rules.toml"
    rules_file.write_text(rules(args.rate), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        TOCSIN_GRPC_PORT=str(free_port()),
        TOCSIN_METRICS_PORT="0",
        TOCSIN_INSECURE_DEV="1",
        TOCSIN_SMSC=",".join(f"{n}=127.0.0.1:{stack.ports[n]}" for n in names),
        TOCSIN_ROUTES=";".join(f"{n}={p}" for n, p in zip(names, PREFIXES, strict=False)),
        TOCSIN_RATELIMIT_RULES=str(rules_file),
        TOCSIN_CLAIM_IDLE_S="3",
        TOCSIN_LOG_LEVEL="WARNING",
    )
    stack.sms_env = env
    stack.start_sms()
    redis = aioredis.Redis.from_url(redis_url)
    sampler = Sampler(pool)
    sampling = asyncio.create_task(sampler.run())
    t0 = time.monotonic()
    await _produce(redis, args.n, len(names))
    await redis.aclose()
    # Normal rates, once the service is bound and sending.
    while True:
        if sampler.delivered():
            break
        await asyncio.sleep(0.5)  # polling PostgreSQL's counts: nothing to await on
    m0 = time.monotonic()
    await asyncio.sleep(args.normal_s)
    m1 = time.monotonic()
    normal = {op: sampler.rate([op], m0, m1) for op in names}
    faults: list[dict[str, Any]] = []
    for kind in args.faults:
        if sampler.delivered() >= args.n:
            print(f"campaign over before fault {kind}: raise --n", flush=True)
            break
        faults.append(await _fault(stack, sampler, kind, normal))
        await asyncio.sleep(args.normal_s)
    last, last_change = -1, time.monotonic()
    while sampler.delivered() < args.n and time.monotonic() - last_change < args.stall_s:
        if sampler.delivered() != last:
            last, last_change = sampler.delivered(), time.monotonic()
        await asyncio.sleep(0.5)
    elapsed = time.monotonic() - t0
    sampling.cancel()
    delivered = int(
        await pool.fetchval(
            "SELECT count(*) FROM sms_messages WHERE alert = $1 AND state = 'delivered'", ALERT
        )
    )
    await pool.close()
    assert stack.sms is not None
    stack.sms.send_signal(signal.SIGTERM)
    stack.sms.wait(60)
    for name in list(stack.smscs):
        stack.stop_smsc(name)
    received = sum(int(s.get("messages", 0)) for s in stack.stopped)
    stale = sum(int(s.get("stale_submits", 0)) for s in stack.stopped)
    lost, duplicates = args.n - delivered, max(0, received - delivered)
    for f in faults:
        f.update(lost=lost, duplicates=duplicates, stale_sent=stale)
    recoveries = [f["recovery_s"] for f in faults]
    shares = [f["other_operators_rate_share"] for f in faults if f["other_operators_rate_share"]]
    return {
        "n": args.n,
        "operators": len(names),
        "rate_per_operator_sms_per_s": args.rate,
        "normal_sms_per_s": round(sum(normal.values()), 1),
        "elapsed_s": round(elapsed, 1),
        "faults_injected": [f["fault"] for f in faults],
        "faults": faults,
        "lost": lost,
        # Duplicates beyond the dead process's in-flight window are not told apart yet: all count.
        "duplicates_over_bound": duplicates,
        "stale_sent": stale,
        "max_recovery_s": None if None in recoveries or not recoveries else max(recoveries),
        "min_other_operators_rate_share": min(shares) if shares else None,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    pg_dir = WORK / f"pg-{os.getpid()}"
    WORK.mkdir(parents=True, exist_ok=True)
    try:
        with Supervisor() as supervisor:
            database_url = supervisor.postgres(data_dir=pg_dir, fast_unsafe=True)
            return await _bench(args, supervisor, database_url)
    finally:
        shutil.rmtree(pg_dir, ignore_errors=True)
        shutil.rmtree(WORK / f"redis-{os.getpid()}", ignore_errors=True)


FAULTS = ("smsc_down", "smsc_throttled", "sms_kill9", "redis_restart")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    p.add_argument("--n", type=int, default=200_000, help="recipients of the campaign")
    p.add_argument("--rate", type=int, default=300, help="submit_sm per second per operator")
    p.add_argument("--fault-s", type=float, default=60.0, help="seconds a timed fault lasts")
    p.add_argument("--normal-s", type=float, default=10.0, help="normal seconds between faults")
    p.add_argument("--recovery-max-s", type=float, default=60.0)
    p.add_argument("--stall-s", type=float, default=60.0, help="give up after no progress")
    p.add_argument("--faults", nargs="*", default=list(FAULTS), choices=FAULTS)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run, print and write the figures."""
    args = parser().parse_args(argv)
    figures = asyncio.run(run(args))
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if figures["lost"] == 0 and figures["stale_sent"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
