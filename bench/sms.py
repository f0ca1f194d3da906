"""End-to-end SMS benchmark: stream -> limiter (wide open) -> SMSC -> receipts -> PostgreSQL.

`python -m bench.sms --n 200000` (or `make bench-sms N=...`). Starts embedded PostgreSQL
and Redis unless DATABASE_URL / REDIS_URL are set, an SMSC simulator per operator in its own process
unless SMSC=host:port names one, and `--workers` SMS service processes; writes N recipients onto
the stream, waits until every receipt is recorded, and prints SMS per second end to end, CPU
microseconds per SMS over all our processes, submit-to-receipt latency, peak memory. The figures go
to bench/results/sms.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import redis.asyncio as aioredis

from services.channel import codec
from services.kernel import keys
from services.kernel.redis_client import connect as connect_redis
from stack import pki
from stack.embedded import free_port
from stack.migrate import apply_migrations
from stack.services import operators as stack_operators
from stack.supervisor import ROOT, Supervisor

WORK = ROOT / "var" / "bench-sms"
RESULTS = ROOT / "bench" / "results" / "sms.json"
RULES = """
lease = 1000
max_wait = 1.0
[bucket."sms:global"]
rate = 100_000_000
capacity = 1_000_000
[bucket."sms:op:*"]
parent = "sms:global"
share = 1.0
capacity = 1_000_000
"""
#: Service settings the caller may give the bench's services (an external SMSC's account, the
#: recorder's batching to compare).
PASSED_THROUGH = frozenset(
    {
        "TOCSIN_SMPP_SYSTEM_ID",
        "TOCSIN_SMPP_PASSWORD",
        "TOCSIN_TLS_DIR",
        "TOCSIN_INSECURE_DEV",
        "TOCSIN_WRITE_INTERVAL_S",
        "TOCSIN_WRITE_BATCH",
    }
)
TEXT = "BE-Alert TEST: this is a test of the warning system. No action is needed."


def _start_smsc(name: str, supervisor: Supervisor) -> str:
    args = ["-m", "simulators.smsc", "--port", str(free_port()), "--name", name]
    proc = supervisor.spawn(f"smsc-{name}", args, output="pipe", errors="null")
    assert proc.stdout is not None
    line = json.loads(proc.stdout.readline())
    return f"{name}=127.0.0.1:{line['port']}"


def _tls_dir() -> Path:
    """The SMS service's certificate from `make run`'s development CA (var/pki), made if new."""
    return pki.ensure_identities(ROOT / "var" / "pki", ("sms",))["sms"]


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            return b'tocsin_serving{service="sms"} 1.0' in r.read()
    except OSError:
        return False


def _stop_smsc(proc: subprocess.Popen[str]) -> dict[str, Any]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    for line in out.splitlines():
        data = json.loads(line)
        if data.get("event") == "stopped":
            return dict(data)
    return {}


async def _produce(redis: aioredis.Redis, n: int) -> None:
    header = codec.Header(
        alert="bench",
        version=1,
        kind="test",
        expires=time.time() + 3600,
        sender="BE-Alert",
        texts={"en": TEXT},
    )
    heads = ("+32470", "+32490", "+32480", "+32475")
    size = codec.ENTRY_SIZE
    for start in range(0, n, 50 * size):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 50 * size), size):
                to = [(f"{heads[j % 4]}{j:07d}", "en") for j in range(i, min(n, i + size))]
                fields = codec.encode(codec.WorkEntry(header, to, str(i // size)))
                pipe.xadd(keys.SMS_STREAM, fields)  # type: ignore[arg-type]
            await pipe.execute()


#: Only the two counters the bench reads: the whole exposition (histograms, process and stream
#: gauges), five times a second per worker, cost the measured services about 3% of their CPU.
_DONE_QUERY = "name[]=tocsin_sms_delivered_total&name[]=tocsin_sms_failed_total"


def _delivered(metrics_ports: list[int]) -> float:
    total = 0.0
    for port in metrics_ports:
        url = f"http://127.0.0.1:{port}/metrics?{_DONE_QUERY}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body = resp.read().decode()
        except OSError:
            continue
        for line in body.splitlines():
            if line.startswith(("tocsin_sms_delivered_total{", "tocsin_sms_failed_total{")):
                total += float(line.rsplit(" ", 1)[1])
    return total


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run one benchmark and return its figures."""
    pg_dir = WORK / f"pg-{os.getpid()}"  # one per run: two runs never share a data folder
    try:
        with Supervisor() as supervisor:
            database_url = supervisor.postgres(
                data_dir=pg_dir, external=os.environ.get("DATABASE_URL"), fast_unsafe=True
            )
            redis_url = supervisor.redis(data_dir=None, external=os.environ.get("REDIS_URL"))
            await asyncio.to_thread(apply_migrations, database_url)
            return await _bench(args, supervisor, database_url, redis_url)
    finally:
        shutil.rmtree(pg_dir, ignore_errors=True)


def _role(part: str) -> str:
    """The part of the run a supervisor's part belongs to: sms, smsc, postgres or redis."""
    return part.split("-", 1)[0]


def _cpu(supervisor: Supervisor) -> dict[str, float]:
    """CPU seconds per role, this program's own included (`bench`)."""
    by_role: dict[str, float] = {}
    for part, seconds in supervisor.cpu_seconds().items():
        by_role[_role(part)] = by_role.get(_role(part), 0.0) + seconds
    own = psutil.Process().cpu_times()
    by_role["bench"] = own.user + own.system
    return by_role


def _rss_mb(supervisor: Supervisor) -> tuple[float, float]:
    """RSS in MB of the SMS service processes, and of all our processes (this one included)."""
    by_part = supervisor.rss_bytes()
    mine = sum(rss for part, rss in by_part.items() if _role(part) == "sms")
    total = sum(by_part.values()) + psutil.Process().memory_info().rss
    return mine / 1e6, total / 1e6


async def _bench(
    args: argparse.Namespace, supervisor: Supervisor, database_url: str, redis_url: str
) -> dict[str, Any]:
    n: int = args.n
    redis = connect_redis(redis_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    await pool.execute("TRUNCATE sms_messages, sms_message_ids")
    await redis.delete(keys.SMS_STREAM)
    smsc = args.smsc or os.environ.get("SMSC")
    names = [op.name for op in stack_operators()]
    if smsc:
        spec, simulated = f"{names[0]}={smsc}", False
    else:
        if not 1 <= args.smscs <= len(names):
            raise SystemExit(f"--smscs {args.smscs}: from 1 to {len(names)} ({', '.join(names)})")
        spec = ",".join(_start_smsc(name, supervisor) for name in names[: args.smscs])
        simulated = True
    WORK.mkdir(parents=True, exist_ok=True)
    rules = WORK / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    operators = [part.split("=", 1)[0] for part in spec.split(",")]
    metrics_ports = []
    for w in range(args.workers):
        grpc_port, metrics_port = free_port(), free_port()
        metrics_ports.append(metrics_port)
        env = {
            k: v
            for k, v in os.environ.items()
            if k in PASSED_THROUGH
            or (not k.startswith("TOCSIN_") and k not in {"DATABASE_URL", "REDIS_URL"})
        }
        env.update(
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            TOCSIN_GRPC_PORT=str(grpc_port),
            TOCSIN_METRICS_PORT=str(metrics_port),
            TOCSIN_SMSC=spec,
            TOCSIN_RATELIMIT_RULES=str(rules),
            TOCSIN_BINDS_PER_OPERATOR=str(args.binds),
            TOCSIN_WINDOW=str(args.window),
            TOCSIN_CONSUMER=f"bench-{w}",
            TOCSIN_LOG_LEVEL="WARNING",
        )
        if args.tls == "off":
            env.pop("TOCSIN_TLS_DIR", None)
            env["TOCSIN_INSECURE_DEV"] = "true"
        elif "TOCSIN_TLS_DIR" not in env:
            env.pop("TOCSIN_INSECURE_DEV", None)
            env["TOCSIN_TLS_DIR"] = str(_tls_dir())
        if len(operators) > 1:
            # Spread the bench numbers (+32470.., +32490.., +32480.., +32475..) over operators.
            prefixes = ["32470", "32490", "32480", "32475"]
            routes: dict[str, list[str]] = {}
            for i, prefix in enumerate(prefixes):
                routes.setdefault(operators[i % len(operators)], []).append(prefix)
            env["TOCSIN_ROUTES"] = ";".join(f"{op}={','.join(p)}" for op, p in routes.items())
        else:
            env["TOCSIN_ROUTES"] = f"{operators[0]}=32"
        supervisor.spawn(f"sms-{w}", ["-m", "services.sms"], env=env, output="inherit")
    await _wait_serving(metrics_ports)

    cpu0 = _cpu(supervisor)
    t0 = time.perf_counter()
    await _produce(redis, n)
    produced = time.perf_counter() - t0
    peak_mine = peak_all = 0.0
    done = 0.0
    last_change, last_done = time.perf_counter(), -1.0
    sampled = 0.0
    while True:
        if time.perf_counter() - sampled >= 1.0:  # walking the process tree costs CPU too
            sampled = time.perf_counter()
            mine, total = _rss_mb(supervisor)
            peak_mine, peak_all = max(peak_mine, mine), max(peak_all, total)
        done = await asyncio.to_thread(_delivered, metrics_ports)
        if done >= n:
            break
        if done != last_done:
            last_change, last_done = time.perf_counter(), done
        elif time.perf_counter() - last_change > args.stall_s:
            print(f"no progress for {args.stall_s:.0f} s at {done:.0f}/{n}; giving up", flush=True)
            break
        await asyncio.sleep(0.2)  # the end is seen at most this late
    elapsed = time.perf_counter() - t0
    cpu1 = _cpu(supervisor)
    by_role = {role: v - cpu0.get(role, 0.0) for role, v in cpu1.items()}
    cpu = sum(by_role.values())

    row = await pool.fetchrow(
        """
        SELECT count(*) FILTER (WHERE state = 'delivered') AS recorded,
               count(*) FILTER (WHERE submitted_at IS NOT NULL) AS sent,
               percentile_cont(0.5) WITHIN GROUP
                   (ORDER BY extract(epoch FROM done_at - submitted_at))
                   FILTER (WHERE state = 'delivered') AS p50,
               percentile_cont(0.99) WITHIN GROUP
                   (ORDER BY extract(epoch FROM done_at - submitted_at))
                   FILTER (WHERE state = 'delivered') AS p99
        FROM sms_messages WHERE alert = 'bench'
        """
    )
    assert row is not None
    services = [c.popen for c in supervisor.children if _role(c.name) == "sms"]
    for proc in services:
        proc.send_signal(signal.SIGTERM)
    for proc in services:
        proc.wait(60)
    # The physical limit beside our figure: each simulator driven by a bare client, after the run.
    capacity = 0.0
    capacity_sent = 0
    if args.capacity_s > 0:
        for part in spec.split(","):
            rate, sent_bare = await _smsc_capacity(
                part.split("=", 1)[1],
                binds=args.binds * args.workers,
                window=args.window,
                seconds=args.capacity_s,
            )
            capacity += rate
            capacity_sent += sent_bare
    duplicates: int | None = None
    if simulated:
        smscs = [c.popen for c in supervisor.children if _role(c.name) == "smsc"]
        stopped = [_stop_smsc(p) for p in smscs]
        received = sum(int(s.get("messages", 0)) for s in stopped)
        duplicates = max(0, received - capacity_sent - int(row["sent"]))
    await pool.close()
    await redis.aclose()
    recorded = int(row["recorded"])
    return {
        "n": n,
        "workers": args.workers,
        "operators": len(operators),
        "binds_per_operator": args.binds,
        "window": args.window,
        "smsc": "simulator" if simulated else smsc,
        "elapsed_s": round(elapsed, 3),
        "produce_s": round(produced, 3),
        "sms_per_s": round(recorded / elapsed, 1),
        "smsc_capacity_sms_per_s": round(capacity, 1),
        "share_of_smsc_capacity": round(recorded / elapsed / capacity, 3) if capacity else None,
        "cpu_s": round(cpu, 2),
        "cpu_us_per_sms": round(cpu / max(recorded, 1) * 1e6, 1),
        "cpu_us_per_sms_by_process": {
            role: round(v / max(recorded, 1) * 1e6, 1) for role, v in sorted(by_role.items())
        },
        "p50_ms": round(float(row["p50"] or 0) * 1000, 1),
        "p99_ms": round(float(row["p99"] or 0) * 1000, 1),
        "peak_rss_mb": round(peak_mine, 1),
        "peak_rss_all_mb": round(peak_all, 1),
        "sent": int(row["sent"]),
        "recorded": recorded,
        "lost": n - recorded,
        "duplicates": duplicates,
    }


#: submit_sm_resp's command id.
SUBMIT_SM_RESP = 0x80000004
#: Distinct pre-encoded submit_sm cycled by the capacity client (distinct destinations).
CAPACITY_PDUS = 20_000


async def _smsc_capacity(
    address: str, *, binds: int, window: int, seconds: float
) -> tuple[float, int]:
    """What one SMSC accepts per second from a bare client: `binds` connections each keeping
    `window` pre-encoded submit_sm in flight (no database, no limiter, no receipts asked), for
    `seconds`. (submit_sm accepted per second, how many in all.)"""
    from gateways.smpp import pdu as P

    host, _, port = address.rpartition(":")
    pdus = [
        P.encode_submit_sm(
            P.SubmitSm(
                sequence=i + 1,
                source_addr="BE-Alert",
                destination_addr=f"3249{i:07d}",
                short_message=TEXT.encode("ascii"),
                source_addr_ton=5,
            )
        )
        for i in range(CAPACITY_PDUS)
    ]

    async def one_bind(offset: int, stop_at: float) -> int:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            P.encode_other("bind_transmitter", sequence=1, system_id="tocsin", password="secret")
        )
        head = await reader.readexactly(16)
        await reader.readexactly(int.from_bytes(head[:4], "big") - 16)
        if int.from_bytes(head[8:12], "big") != 0:
            raise RuntimeError(f"capacity bind to {address} refused")
        nxt = offset
        accepted = outstanding = 0
        buffer = b""

        def send(k: int) -> None:
            nonlocal nxt, outstanding
            chunk = [pdus[(nxt + j) % CAPACITY_PDUS] for j in range(k)]
            nxt += k
            outstanding += k
            writer.write(b"".join(chunk))

        send(window)
        while outstanding:
            data = await reader.read(65536)
            if not data:
                break
            buffer += data
            done = pos = 0
            while len(buffer) - pos >= 16:
                length = int.from_bytes(buffer[pos : pos + 4], "big")
                if len(buffer) - pos < length:
                    break
                if int.from_bytes(buffer[pos + 4 : pos + 8], "big") == SUBMIT_SM_RESP:
                    done += 1
                    if int.from_bytes(buffer[pos + 8 : pos + 12], "big") == 0:
                        accepted += 1
                pos += length
            buffer = buffer[pos:]
            outstanding -= done
            if time.perf_counter() < stop_at and done:
                send(done)
        writer.close()
        return accepted

    t0 = time.perf_counter()
    counts = await asyncio.gather(
        *(one_bind(b * CAPACITY_PDUS // binds, t0 + seconds) for b in range(binds))
    )
    elapsed = time.perf_counter() - t0
    return sum(counts) / elapsed, sum(counts)


async def _wait_serving(metrics_ports: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for port in metrics_ports:
        while not await asyncio.to_thread(_serving, port):
            if time.monotonic() > deadline:
                raise TimeoutError(f"SMS service on metrics port {port} not serving")
            await asyncio.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print and write the figures."""
    p = argparse.ArgumentParser(prog="python -m bench.sms", description=__doc__)
    p.add_argument("--n", type=int, default=int(os.environ.get("N", "200000")))
    p.add_argument("--smsc", default=None, help="host:port of an SMSC (default: simulators)")
    p.add_argument("--smscs", type=int, default=2, help="simulated operators, one process each")
    p.add_argument(
        "--capacity-s",
        type=float,
        default=5.0,
        help="seconds the SMSCs are driven by a bare client after the run (0: not measured)",
    )
    p.add_argument("--workers", type=int, default=2, help="SMS service processes")
    p.add_argument("--binds", type=int, default=2, help="binds per operator per worker")
    p.add_argument("--window", type=int, default=200, help="window of each bind")
    p.add_argument("--stall-s", type=float, default=30.0, help="give up after no progress")
    p.add_argument("--out", type=Path, default=None, help=f"default {RESULTS.name}")
    p.add_argument(
        "--tls", choices=("on", "off"), default="on", help="off: plaintext, to measure TLS's cost"
    )
    args = p.parse_args(argv)
    if args.out is None:  # a plaintext run writes beside the figures, never over them
        args.out = RESULTS if args.tls == "on" else RESULTS.with_name("sms_plaintext.json")
    # SIGTERM unwinds like Ctrl-C, so that the finally blocks stop every process we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = asyncio.run(run(args))
    print(
        f"sms bench: {result['recorded']}/{result['n']} SMS in {result['elapsed_s']} s = "
        f"{result['sms_per_s']} SMS/s end to end; {result['cpu_us_per_sms']} CPU us/SMS; "
        f"receipt latency p50 {result['p50_ms']} ms p99 {result['p99_ms']} ms; "
        f"peak RSS {result['peak_rss_mb']} MB (services), {result['peak_rss_all_mb']} MB (all); "
        f"lost {result['lost']}, duplicates {result['duplicates']}; SMSC capacity "
        f"{result['smsc_capacity_sms_per_s']} SMS/s (share {result['share_of_smsc_capacity']})"
    )
    result["tls"] = args.tls == "on"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
