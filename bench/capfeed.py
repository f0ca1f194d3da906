"""Benchmark of the public CAP feed: many screens polling, half of them conditionally.

`python -m bench.capfeed [--clients 200 --duration 20 --processes 2 --loaders 2]` starts an
embedded PostgreSQL with `--alerts` alerts in force, `--processes` feed processes sharing one port
(SO_REUSEPORT), and `--loaders` load-generating processes holding `--clients` keep-alive
connections in all, each polling the feed and documents in a loop: every other request carries the
ETag it saw last (If-None-Match), as a screen's HTTP cache would. Writes bench/results/capfeed.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg

from services.alerting import cap
from services.kernel.process import dies_with_parent
from stack.embedded import free_port, start_postgres
from stack.migrate import apply_migrations

RESULTS = Path(__file__).resolve().parent / "results" / "capfeed.json"


def _info(n: int, language: str, expires: datetime) -> cap.CapInfo:
    return cap.CapInfo(
        language=language,
        category="Met",
        event="Flood",
        urgency="Expected",
        severity="Severe",
        certainty="Likely",
        expires=expires,
        sender_name=f"Gemeente {n}",
        headline=f"Overstroming sector {n} ({language})",
        description="Ga naar de bovenverdieping. " * 10,
        instruction="Luister naar de radio.",
        area_desc=f"Sector {n}",
    )


async def seed(dsn: str, *, alerts: int) -> list[str]:
    """Alerts in force with one CAP message each (a third updated once); their document paths."""
    conn = await asyncpg.connect(dsn)
    now = datetime.now(UTC)
    paths = []
    try:
        entity = await conn.fetchval(
            "INSERT INTO entities (name, type, territory_kind, territory)"
            " VALUES ('Bench', 1, 'country', '{}') RETURNING id"
        )
        user = await conn.fetchval(
            "INSERT INTO users (username, entity_id, role, password_hash)"
            " VALUES ('bench', $1, 'issuer', 'x') RETURNING id",
            entity,
        )
        for n in range(alerts):
            alert_id = str(uuid.uuid4())
            expires = now + timedelta(hours=2 + n % 5)
            await conn.execute(
                "INSERT INTO alerts (id, entity_id, created_by, idempotency_key, request_hash,"
                " kind, spec, infos, state, version, expires_at) VALUES ($1::uuid, $2, $3, $4,"
                " '', 'emergency', '{}', '[]', 'sent', 1, $5)",
                alert_id,
                entity,
                user,
                f"bench-{n}",
                expires,
            )
            messages: list[cap.CapMessage] = []
            for seq in range(1, 2 + (n % 3 == 0)):
                infos = tuple(_info(n, language, expires) for language in ("nl", "fr"))
                msg = cap.CapMessage(
                    identifier=cap.identifier(alert_id=alert_id, seq=seq),
                    sender=cap.SENDER,
                    sent=now - timedelta(minutes=n, seconds=-seq),
                    status="Actual",
                    msg_type="Alert" if seq == 1 else "Update",
                    references=tuple(cap.reference(m) for m in messages),
                    infos=infos,
                )
                messages.append(msg)
                await conn.execute(
                    "INSERT INTO cap_messages (alert_id, seq, msg_type, version, identifier,"
                    " sent_at, xml) VALUES ($1::uuid, $2, $3, $2, $4, $5, $6)",
                    alert_id,
                    seq,
                    msg.msg_type,
                    msg.identifier,
                    msg.sent,
                    cap.render(msg),
                )
                paths.append(f"/cap/{msg.identifier}.xml")
    finally:
        await conn.close()
    return paths


#: What one loader measured: latencies (s), 304 answers, errors.
Polled = tuple[list[float], int, int]


async def _poll(url: str, paths: list[str], *, clients: int, duration_s: float) -> Polled:
    """Poll until the time is up; latencies (s), 304 answers, errors."""
    latencies: list[float] = []
    not_modified = errors = 0
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    deadline = time.perf_counter() + duration_s

    async def client(n: int) -> None:
        nonlocal not_modified, errors
        etags: dict[str, str] = {}
        i = n
        while time.perf_counter() < deadline:
            # Nine polls of the feed for one document, as screens mostly poll the index.
            path = "/cap/feed.atom" if i % 10 else paths[i % len(paths)]
            headers = {"If-None-Match": etags[path]} if i % 2 and path in etags else {}
            i += 1
            start = time.perf_counter()
            try:
                async with session.get(url + path, headers=headers) as response:
                    await response.read()
                    status = response.status
                    if status == 200:
                        etags[path] = response.headers["ETag"]
            except (aiohttp.ClientError, OSError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)
            if status == 304:
                not_modified += 1
            elif status != 200:
                errors += 1

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(n) for n in range(clients)))
    return latencies, not_modified, errors


def _loader(args: tuple[str, list[str], int, float], out: multiprocessing.Queue[Polled]) -> None:
    url, paths, clients, duration_s = args
    out.put(asyncio.run(_poll(url, paths, clients=clients, duration_s=duration_s)))


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print and write the figures."""
    p = argparse.ArgumentParser(prog="python -m bench.capfeed", description=__doc__)
    p.add_argument("--alerts", type=int, default=30)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--loaders", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-capfeed-") as tmp:
        pg = start_postgres(data_dir=Path(tmp) / "pg", fast_unsafe=True)
        servers: list[subprocess.Popen[bytes]] = []
        try:
            apply_migrations(pg.url)
            paths = asyncio.run(seed(pg.url, alerts=args.alerts))
            port = free_port()
            env = {
                **os.environ,
                "DATABASE_URL": pg.url,
                "TOCSIN_CAPFEED_PORT": str(port),
                "TOCSIN_REUSE_PORT": "true",
                "TOCSIN_LOG_LEVEL": "WARNING",
            }
            for _ in range(args.processes):
                proc = subprocess.Popen(
                    dies_with_parent([sys.executable, "-m", "services.capfeed"]),
                    env=env,
                    stdout=subprocess.PIPE,
                )
                assert proc.stdout is not None
                json.loads(proc.stdout.readline())  # {"event": "listening", ...}
                servers.append(proc)
            url = f"http://127.0.0.1:{port}"
            asyncio.run(_ready(url))
            cpu_before = sum(_cpu_s(s.pid) for s in servers)
            ctx = multiprocessing.get_context("spawn")
            queue: multiprocessing.Queue[Polled] = ctx.Queue()
            per_loader = max(1, args.clients // args.loaders)
            loaders = [
                ctx.Process(target=_loader, args=((url, paths, per_loader, args.duration), queue))
                for _ in range(args.loaders)
            ]
            started = time.perf_counter()
            for proc_ in loaders:
                proc_.start()
            parts = [queue.get(timeout=args.duration + 120) for _ in loaders]
            elapsed = time.perf_counter() - started
            for proc_ in loaders:
                proc_.join()
            cpu = sum(_cpu_s(s.pid) for s in servers) - cpu_before
            feed_bytes = len(asyncio.run(_fetch(url + "/cap/feed.atom")))
        finally:
            for s in servers:
                s.terminate()
            for s in servers:
                s.wait(timeout=30)
            pg.stop()
    latencies = sorted(x for part in parts for x in part[0])
    not_modified = sum(part[1] for part in parts)
    errors = sum(part[2] for part in parts)
    n = len(latencies)
    results = {
        "requests": n,
        "requests_per_s": round(n / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if n else 0.0,
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1000, 2) if n else 0.0,
        "not_modified_share": round(not_modified / n, 3) if n else 0.0,
        "cpu_us_per_request": round(cpu / n * 1e6, 1) if n else 0.0,
        "errors": errors,
        "clients": args.clients,
        "server_processes": args.processes,
        "loader_processes": args.loaders,
        "duration_s": round(elapsed, 1),
        "feed_bytes": feed_bytes,
        "alerts": args.alerts,
    }
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


async def _ready(url: str, timeout_s: float = 60) -> None:
    """Wait until the feed has loaded its snapshot (it listens before it has)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the CAP feed did not load its snapshot")
            await asyncio.sleep(0.1)


async def _fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.read()


if __name__ == "__main__":
    sys.exit(main())
