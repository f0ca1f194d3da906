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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import redis.asyncio as aioredis

from services.channel import codec
from services.kernel import keys
from services.kernel.process import dies_with_parent

ROOT = Path(__file__).resolve().parents[2]
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
#: Service settings the caller may give the bench's services (an external SMSC's account).
PASSED_THROUGH = frozenset(
    {"TOCSIN_SMPP_SYSTEM_ID", "TOCSIN_SMPP_PASSWORD", "TOCSIN_TLS_DIR", "TOCSIN_INSECURE_DEV"}
)
TEXT = "BE-Alert TEST: this is a test of the warning system. No action is needed."


@dataclass
class Procs:
    """Every process whose CPU and memory count as ours."""

    services: list[subprocess.Popen[bytes]] = field(default_factory=list)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)
    store_pids: list[int] = field(default_factory=list)

    def tree(self) -> list[psutil.Process]:
        """Our processes now, with their children (PostgreSQL backends)."""
        roots = [p.pid for p in [*self.services, *self.others]] + self.store_pids
        found: dict[int, psutil.Process] = {os.getpid(): psutil.Process()}
        for pid in roots:
            try:
                proc = psutil.Process(pid)
                found[pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
            except psutil.NoSuchProcess:
                continue
        return list(found.values())

    def role(self, pid: int) -> str:
        """Which part of the run a process is."""
        if pid in {p.pid for p in self.services}:
            return "sms"
        if pid in {p.pid for p in self.others}:
            return "smsc"
        if pid == os.getpid():
            return "bench"
        try:
            name = psutil.Process(pid).name()
        except psutil.NoSuchProcess:
            return "gone"
        return "redis" if "redis" in name else "postgres"

    def cpu(self) -> dict[int, float]:
        """CPU seconds (user + system) per process."""
        out: dict[int, float] = {}
        for proc in self.tree():
            try:
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                continue
        return out

    def rss(self) -> tuple[float, float]:
        """RSS in MB of the SMS service processes, and of all our processes."""
        service_pids = {p.pid for p in self.services}
        mine = total = 0.0
        for proc in self.tree():
            try:
                rss = proc.memory_info().rss / 1e6
            except psutil.NoSuchProcess:
                continue
            total += rss
            if proc.pid in service_pids:
                mine += rss
        return mine, total


def _free_port() -> int:
    from stack.embedded import free_port

    return free_port()


def _start_smsc(name: str, procs: Procs) -> str:
    port = _free_port()
    proc = _popen([sys.executable, "-m", "simulators.smsc", "--port", str(port), "--name", name])
    procs.others.append(proc)
    assert proc.stdout is not None
    line = json.loads(proc.stdout.readline())
    return f"{name}=127.0.0.1:{line['port']}"


def _tls_dir() -> Path:
    """The SMS service's certificate from `make run`'s development CA (var/pki), made if new."""
    from stack import pki  # a development tool, like this benchmark

    return pki.ensure_identities(ROOT / "var" / "pki", ("sms",))["sms"]


def _popen(cmd: list[str], *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        dies_with_parent(cmd),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE if env is None else None,
        stderr=subprocess.DEVNULL if env is None else None,
    )


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            return b'tocsin_serving{service="sms"} 1.0' in r.read()
    except OSError:
        return False


def _stop_smsc(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    for line in out.decode().splitlines():
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
    from stack.embedded import start_postgres, start_redis
    from stack.migrate import apply_migrations

    procs = Procs()
    managed = []
    database_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    pg_dir = WORK / f"pg-{os.getpid()}"  # one per run: two runs never share a data folder
    if not database_url:
        pg = start_postgres(data_dir=pg_dir, fast_unsafe=True)
        managed.append(pg)
        procs.store_pids.append(pg.popen.pid)
        database_url = pg.url
    if not redis_url:
        rd = start_redis(data_dir=None)
        managed.append(rd)
        procs.store_pids.append(rd.popen.pid)
        redis_url = rd.url
    try:
        await asyncio.to_thread(apply_migrations, database_url)
        return await _bench(args, procs, database_url, redis_url)
    finally:
        for proc in procs.services:
            if proc.poll() is None:
                proc.kill()
        for proc in procs.others:
            if proc.poll() is None:
                proc.kill()
        for m in managed:
            m.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)


async def _bench(
    args: argparse.Namespace, procs: Procs, database_url: str, redis_url: str
) -> dict[str, Any]:
    n: int = args.n
    redis = aioredis.Redis.from_url(redis_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    await pool.execute("TRUNCATE sms_messages, sms_message_ids")
    await redis.delete(keys.SMS_STREAM)
    smsc = args.smsc or os.environ.get("SMSC")
    if smsc:
        spec, simulated = f"opA={smsc}", False
    else:
        spec = ",".join(_start_smsc(f"op{chr(65 + i)}", procs) for i in range(args.smscs))
        simulated = True
    WORK.mkdir(parents=True, exist_ok=True)
    rules = WORK / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    operators = [part.split("=", 1)[0] for part in spec.split(",")]
    metrics_ports = []
    for w in range(args.workers):
        grpc_port, metrics_port = _free_port(), _free_port()
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
        if "TOCSIN_TLS_DIR" not in env and "TOCSIN_INSECURE_DEV" not in env:
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
        procs.services.append(_popen([sys.executable, "-m", "services.sms"], env=env))
    await _wait_serving(metrics_ports)

    cpu0 = procs.cpu()
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
            mine, total = procs.rss()
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
    cpu1 = procs.cpu()
    cpu = sum(v - cpu0.get(pid, 0.0) for pid, v in cpu1.items())
    by_role: dict[str, float] = {}
    for pid, v in cpu1.items():
        role = procs.role(pid)
        by_role[role] = by_role.get(role, 0.0) + v - cpu0.get(pid, 0.0)

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
    for proc in procs.services:
        proc.send_signal(signal.SIGTERM)
    for proc in procs.services:
        proc.wait(60)
    duplicates: int | None = None
    if simulated:
        stopped = [_stop_smsc(p) for p in procs.others]
        received = sum(int(s.get("messages", 0)) for s in stopped)
        duplicates = max(0, received - int(row["sent"]))
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
    p.add_argument("--workers", type=int, default=2, help="SMS service processes")
    p.add_argument("--binds", type=int, default=2, help="binds per operator per worker")
    p.add_argument("--window", type=int, default=200, help="window of each bind")
    p.add_argument("--stall-s", type=float, default=30.0, help="give up after no progress")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that the finally blocks stop every process we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = asyncio.run(run(args))
    print(
        f"sms bench: {result['recorded']}/{result['n']} SMS in {result['elapsed_s']} s = "
        f"{result['sms_per_s']} SMS/s end to end; {result['cpu_us_per_sms']} CPU us/SMS; "
        f"receipt latency p50 {result['p50_ms']} ms p99 {result['p99_ms']} ms; "
        f"peak RSS {result['peak_rss_mb']} MB (services), {result['peak_rss_all_mb']} MB (all); "
        f"lost {result['lost']}, duplicates {result['duplicates']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
