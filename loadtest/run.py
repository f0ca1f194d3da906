"""`make loadtest`: a stack of its own, seeded, driven by Locust headless, figures in bench/results.

    python -m loadtest.run [--time 60s] [--users 50] [--spawn-rate 50] [--user-rate 20]

Starts `python -m stack run --no-demo` on shifted ports with a temporary data folder, seeds it
through its APIs (an admin, an entity with a territory, issuers with tokens, subscribers in a
zone, drafts, one alert sent and delivered), runs Locust as its own process (gevent must not meet
the asyncio seeding code), writes Locust's CSV and HTML reports and `loadtest.json`, and stops
everything it started. The target (1,000 calls/s of the preview/get/create mix, p99 < 20 ms) is
reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from loadtest import seed
from loadtest.stackproc import ROOT, RunningStack, running_stack

RESULTS = ROOT / "bench" / "results"
#: Issuers the Locust users share (each logs in once, during seeding: Login is scrypt-slow).
ISSUERS = 8
#: Drafts created before the test, for GetAlert and PreviewAlert.
DRAFTS = 20
#: Subscribers registered in the zone.
SUBSCRIBERS = 300
#: Numbers the SMS API users send to.
NUMBERS = 2000


async def seed_stack(stack: RunningStack) -> dict[str, Any]:
    """Seed the stack and return what the Locust users need."""
    admin_name, admin_password = "loadtest-admin", seed.new_password()
    await seed.bootstrap_admin(
        database_url=stack.database_url(), username=admin_name, password=admin_password
    )
    place = seed.GENT
    async with (
        grpc.aio.insecure_channel(stack.grpc("alerting")) as alerting,
        grpc.aio.insecure_channel(stack.grpc("targeting")) as targeting,
    ):
        admin = seed.bearer(
            await seed.login(alerting, username=admin_name, password=admin_password)
        )
        entity_id = await seed.ensure_entity(alerting, admin, place=place)
        tokens = []
        for i in range(ISSUERS):
            name, password = f"loadtest-issuer-{i}", seed.new_password()
            await seed.ensure_issuer(
                alerting, admin, entity_id=entity_id, username=name, password=password
            )
            tokens.append(await seed.login(alerting, username=name, password=password))
        await seed.register_subscribers(targeting, place=place, count=SUBSCRIBERS)
        issuer = seed.bearer(tokens[0])
        spec = seed.alert_spec(place=place)
        drafts = [
            (await seed.create_alert(alerting, issuer, spec=spec, key=f"seed-draft-{i}")).id
            for i in range(DRAFTS)
        ]
        sent = await seed.create_alert(alerting, issuer, spec=spec, key="seed-sent")
        outcome = await seed.deliver(alerting, issuer, alert_id=sent.id, timeout=60)
        print(
            f"loadtest: seeded entity {entity_id}, {ISSUERS} issuers, {SUBSCRIBERS} subscribers,"
            f" {DRAFTS} drafts; one alert sent: {outcome.delivered}/{outcome.targeted} delivered"
        )
    return {
        "alerting": stack.grpc("alerting"),
        "sms": stack.grpc("sms"),
        "tokens": tokens,
        "draft_ids": drafts,
        "sent_ids": [sent.id],
        "spec_hex": spec.SerializeToString().hex(),
        "numbers": [seed.phone(i, block=9) for i in range(NUMBERS)],
    }


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    if duration[-1:] in units:
        return float(duration[:-1]) * units[duration[-1]]
    return float(duration)


def run_locust(args: argparse.Namespace, *, seed_file: Path, summary: Path) -> int:
    """Run Locust headless as a child process; return its exit status."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    locust = Path(sys.executable).parent / "locust"
    cmd = [
        str(locust),
        "-f",
        str(ROOT / "loadtest" / "locustfile.py"),
        "--headless",
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        args.time,
        "--stop-timeout",
        "5",
        "--csv",
        str(RESULTS / "loadtest"),
        "--html",
        str(RESULTS / "loadtest.html"),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    if args.processes != 1:
        cmd += ["--processes", str(args.processes)]
    env = {
        **os.environ,
        "LOADTEST_SEED": str(seed_file),
        "LOADTEST_SUMMARY": str(summary),
        "LOADTEST_USER_RATE": str(args.user_rate),
    }
    done = subprocess.run(cmd, cwd=ROOT, env=env, timeout=_seconds(args.time) + 120, check=False)
    return done.returncode


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (Locust, once it has exited)."""
    t = os.times()
    return t.children_user + t.children_system


def main(argv: list[str] | None = None) -> int:
    """Start, seed, load, report, stop."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__)
    parser.add_argument("--time", default=os.environ.get("LOADTEST_TIME", "60s"))
    parser.add_argument("--users", type=int, default=int(os.environ.get("LOADTEST_USERS", "70")))
    parser.add_argument(
        "--spawn-rate", type=float, default=float(os.environ.get("LOADTEST_SPAWN_RATE", "20"))
    )
    parser.add_argument(
        "--user-rate",
        type=float,
        default=float(os.environ.get("LOADTEST_USER_RATE", "20")),
        help="calls per second each user aims at (0: no wait)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=int(os.environ.get("LOADTEST_PROCESSES", "1")),
        help="Locust worker processes (-1: one per CPU)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tocsin-loadtest-") as tmp:
        var = Path(tmp) / "var"
        started = time.monotonic()
        with running_stack(var=var) as stack:
            ready_s = time.monotonic() - started
            print(f"loadtest: stack ready in {ready_s:.0f} s (port offset {stack.offset})")
            seeded = asyncio.run(seed_stack(stack))
            seed_file = Path(tmp) / "seed.json"
            seed_file.write_text(json.dumps(seeded), encoding="utf-8")
            summary_file = Path(tmp) / "summary.json"
            print(f"loadtest: locust {args.users} users, {args.user_rate}/s each, for {args.time}")
            cpu_before, locust_before = stack.cpu_seconds(), _children_cpu()
            status = run_locust(args, seed_file=seed_file, summary=summary_file)
            cpu_after, locust_cpu = stack.cpu_seconds(), _children_cpu() - locust_before
            if not summary_file.exists():
                print(f"loadtest: locust wrote no summary (exit status {status})", file=sys.stderr)
                return 1
            figures: dict[str, Any] = json.loads(summary_file.read_text(encoding="utf-8"))
    figures["cpu_s_by_process"] = {
        name: round(cpu_after[name] - cpu_before.get(name, 0.0), 2) for name in sorted(cpu_after)
    }
    figures["cpu_s_by_process"]["locust"] = round(locust_cpu, 2)
    figures["config"] = {
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "user_rate": args.user_rate,
        "time": args.time,
        "processes": args.processes,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    out = RESULTS / "loadtest.json"
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    mix = figures["mix"]
    print(
        f"loadtest: all calls {figures['rps']:.0f}/s p50 {figures['p50_ms']} ms"
        f" p99 {figures['p99_ms']} ms failures {figures['failures']}"
    )
    print(
        f"loadtest: preview/get/create mix {mix['rps']:.0f}/s p50 {mix['p50_ms']} ms"
        f" p99 {mix['p99_ms']} ms (target 1000/s, p99 < 20 ms:"
        f" {'met' if figures['target']['met'] else 'not met'})"
    )
    busiest = sorted(figures["cpu_s_by_process"].items(), key=lambda kv: -kv[1])[:4]
    print("loadtest: CPU seconds " + ", ".join(f"{name} {s:.1f}" for name, s in busiest))
    print(f"loadtest: figures in {out.relative_to(ROOT)}, reports bench/results/loadtest*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
