"""End-to-end e-mail benchmark: stream -> e-mail service -> relay simulator -> PostgreSQL.

`python -m bench.email --n 200000` (or `make bench-email N=...`; the national dispatch of 20 May
2022 is `--n 980000`). Starts embedded PostgreSQL and Redis unless DATABASE_URL / REDIS_URL are
set, `--relays` SMTP relay simulators in their own processes, and `--workers` e-mail service
processes (each to one relay, `--connections` connections each); writes N recipients in four
languages onto the e-mail stream, waits until every one is recorded accepted, and prints e-mails
per second end to end, CPU microseconds per e-mail over all our processes, transactions, peak
memory, lost and duplicates. The figures go to bench/results/email.json.
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
from stack.supervisor import ROOT, Supervisor

WORK = ROOT / "var" / "bench-email"
RESULTS = ROOT / "bench" / "results" / "email.json"
ALERT = "bench-email"
LANGUAGES = ("nl", "fr", "de", "en")
TEXTS = {
    "nl": "TEST - Dit is een test van het alarmsysteem. U hoeft niets te doen.",
    "fr": "TEST - Ceci est un test du système d'alerte. Aucune action n'est requise.",
    "de": "TEST - Dies ist ein Test des Warnsystems. Sie müssen nichts tun.",
    "en": "TEST - This is a test of the warning system. No action is needed.",
}
_DONE_QUERY = "name[]=tocsin_email_recipients_total"


def _start_relay(supervisor: Supervisor, name: str) -> int:
    args = ["-m", "simulators.smtp", "--port", str(free_port()), "--name", name]
    proc = supervisor.spawn(name, args, output="pipe", errors="null")
    assert proc.stdout is not None
    return int(json.loads(proc.stdout.readline())["port"])


def _stop_relay(proc: subprocess.Popen[str]) -> dict[str, Any]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    for line in out.splitlines():
        data = json.loads(line)
        if data.get("event") == "stopped":
            return dict(data)
    return {}


def _role(part: str) -> str:
    """The part of the run a supervisor's part belongs to: email, relay, postgres or redis."""
    return part.split("-", 1)[0]


def _cpu(supervisor: Supervisor) -> dict[str, float]:
    """CPU seconds per role, this program's own included (`bench`)."""
    by_role: dict[str, float] = {}
    for part, seconds in supervisor.cpu_seconds().items():
        by_role[_role(part)] = by_role.get(_role(part), 0.0) + seconds
    own = psutil.Process().cpu_times()
    by_role["bench"] = own.user + own.system
    return by_role


def _rss_mb(supervisor: Supervisor) -> float:
    """RSS in MB of the e-mail service processes."""
    return sum(rss for part, rss in supervisor.rss_bytes().items() if _role(part) == "email") / 1e6


async def _produce(redis: aioredis.Redis, n: int) -> None:
    header = codec.Header(
        alert=ALERT,
        version=1,
        kind="test",
        expires=time.time() + 3600,
        sender="BE-Alert",
        texts=TEXTS,
    )
    size = codec.ENTRY_SIZE
    for start in range(0, n, 50 * size):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 50 * size), size):
                # Targeting writes one language per entry's run of citizens, mostly.
                language = LANGUAGES[(i // size) % len(LANGUAGES)]
                to = [(f"citizen{j}@example.org", language) for j in range(i, min(n, i + size))]
                fields = codec.encode(codec.WorkEntry(header, to, str(i // size)))
                pipe.xadd(keys.EMAIL_STREAM, fields)  # type: ignore[arg-type]
            await pipe.execute()


def _answered(metrics_ports: list[int]) -> float:
    total = 0.0
    for port in metrics_ports:
        url = f"http://127.0.0.1:{port}/metrics?{_DONE_QUERY}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body = resp.read().decode()
        except OSError:
            continue
        for line in body.splitlines():
            if line.startswith("tocsin_email_recipients_total{") and (
                'disposition="accepted"' in line or 'disposition="permanent"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
    return total


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            return b'tocsin_serving{service="email"} 1.0' in r.read()
    except OSError:
        return False


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


async def _bench(
    args: argparse.Namespace, supervisor: Supervisor, database_url: str, redis_url: str
) -> dict[str, Any]:
    n: int = args.n
    redis = connect_redis(redis_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    await pool.execute("TRUNCATE email_messages, email_message_ids")
    await redis.delete(keys.EMAIL_STREAM)
    relays = [_start_relay(supervisor, f"relay-{i}") for i in range(args.relays)]
    tls_dir = pki.ensure_identities(ROOT / "var" / "pki", ("email",))["email"]
    metrics_ports = []
    for w in range(args.workers):
        metrics_port = free_port()
        metrics_ports.append(metrics_port)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TOCSIN_") and k not in {"DATABASE_URL", "REDIS_URL"}
        }
        env.update(
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            TOCSIN_GRPC_PORT=str(free_port()),
            TOCSIN_METRICS_PORT=str(metrics_port),
            TOCSIN_SMTP_PORT=str(relays[w % len(relays)]),
            TOCSIN_SMTP_TLS="none",
            TOCSIN_SMTP_CONNECTIONS=str(args.connections),
            TOCSIN_BOUNCE_PORT="-1",
            TOCSIN_CONSUMER=f"bench-{w}",
            TOCSIN_LOG_LEVEL="WARNING",
            TOCSIN_TLS_DIR=str(tls_dir),
        )
        supervisor.spawn(f"email-{w}", ["-m", "services.email"], env=env, output="inherit")
    deadline = time.monotonic() + 60
    for port in metrics_ports:
        while not await asyncio.to_thread(_serving, port):
            if time.monotonic() > deadline:
                raise TimeoutError(f"e-mail service on metrics port {port} not serving")
            await asyncio.sleep(0.2)

    cpu0 = _cpu(supervisor)
    t0 = time.perf_counter()
    await _produce(redis, n)
    peak = 0.0
    sampled = last_change = time.perf_counter()
    last_done = -1.0
    while True:
        if time.perf_counter() - sampled >= 1.0:
            sampled = time.perf_counter()
            peak = max(peak, _rss_mb(supervisor))
        done = await asyncio.to_thread(_answered, metrics_ports)
        recorded = 0
        if done >= n:
            recorded = int(
                await pool.fetchval(
                    "SELECT count(*) FROM email_messages"
                    " WHERE alert = $1 AND state NOT IN ('queued', 'submitted')",
                    ALERT,
                )
            )
            if recorded >= n:
                break
        if done != last_done:
            last_change, last_done = time.perf_counter(), done
        elif time.perf_counter() - last_change > args.stall_s:
            print(f"no progress for {args.stall_s:.0f} s at {done:.0f}/{n}; giving up", flush=True)
            break
        await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - t0
    cpu1 = _cpu(supervisor)
    by_role = {role: v - cpu0.get(role, 0.0) for role, v in cpu1.items()}
    cpu = sum(by_role.values())
    accepted = int(
        await pool.fetchval(
            "SELECT count(*) FROM email_messages WHERE alert = $1 AND state = 'delivered'", ALERT
        )
    )
    services = [c.popen for c in supervisor.children if _role(c.name) == "email"]
    for proc in services:
        proc.send_signal(signal.SIGTERM)
    for proc in services:
        proc.wait(60)
    relay_procs = [c.popen for c in supervisor.children if _role(c.name) == "relay"]
    stopped = [_stop_relay(p) for p in relay_procs]
    received = sum(int(s.get("received", 0)) for s in stopped)
    transactions = sum(int(s.get("transactions", 0)) for s in stopped)
    await pool.close()
    await redis.aclose()
    return {
        "n": n,
        "workers": args.workers,
        "relays": args.relays,
        "connections_per_worker": args.connections,
        "elapsed_s": round(elapsed, 3),
        "emails_per_s": round(accepted / elapsed, 1),
        "cpu_s": round(cpu, 2),
        "cpu_us_per_email": round(cpu / max(accepted, 1) * 1e6, 1),
        "cpu_us_per_email_by_process": {
            role: round(v / max(accepted, 1) * 1e6, 1) for role, v in sorted(by_role.items())
        },
        "transactions": transactions,
        "recipients_per_transaction": round(received / max(transactions, 1), 1),
        "peak_rss_mb": round(peak, 1),
        "accepted": accepted,
        "lost": n - accepted,
        "duplicates": max(0, received - accepted),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print and write the figures."""
    p = argparse.ArgumentParser(prog="python -m bench.email", description=__doc__)
    p.add_argument("--n", type=int, default=int(os.environ.get("N", "200000")))
    p.add_argument("--workers", type=int, default=2, help="e-mail service processes")
    p.add_argument("--relays", type=int, default=2, help="relay simulator processes")
    p.add_argument("--connections", type=int, default=8, help="relay connections per worker")
    p.add_argument("--stall-s", type=float, default=30.0, help="give up after no progress")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = asyncio.run(run(args))
    print(
        f"email bench: {result['accepted']}/{result['n']} e-mails in {result['elapsed_s']} s = "
        f"{result['emails_per_s']} e-mails/s end to end; {result['cpu_us_per_email']} CPU us/email;"
        f" {result['transactions']} transactions; peak RSS {result['peak_rss_mb']} MB; "
        f"lost {result['lost']}, duplicates {result['duplicates']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
