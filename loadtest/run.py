"""`make loadtest`: a stack of its own, seeded, driven by Locust headless, figures in bench/results.

    python -m loadtest.run [--time 60s] [--phases mix,full] [--mix-users 8] [--users 70]
                           [--spawn-rate 20] [--user-rate 20] [--alerting-processes 1]

Starts `python -m stack run --no-demo` on shifted ports with a temporary data folder, seeds it
through its APIs (an admin, an entity with a territory, issuers with tokens, subscribers in a
zone, drafts, one alert sent and delivered), then runs Locust as its own process (gevent must
not meet the asyncio seeding code), once per phase:

- `mix`: the target's measure. Issuers only (preview, get, create), each calling as soon as its
  last call answered: the rate the alerting API holds and its latency at that rate.
- `steady`: every kind of user, paced so that together they offer `--steady-rate` calls per
  second (500: about what the full phase served when the reads' p99 was first measured, 474/s),
  under what the stack serves: the reads' latency without a queue of callers in front of them.
- `full`: every kind of user at its own pace: issuers, crisis cells watching an alert, platform
  teams on the SMS API (70 users at 20 calls/s: more than two cores serve, a closed loop whose
  latency is mostly its queue).

Writes Locust's CSV and HTML reports per phase and `loadtest.json`, and stops everything it
started. The target (1,000 calls/s of the preview/get/create mix, p99 < 20 ms) is reported,
never asserted.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.kernel.tls import ClientSettings, connect
from stack import pki, seed
from stack.running import RunningStack, running_stack
from stack.supervisor import ROOT

RESULTS = ROOT / "bench" / "results"
#: Issuers the Locust users share (each logs in once, during seeding: Login is scrypt-slow).
ISSUERS = 8
#: Drafts created before the test, for GetAlert and PreviewAlert.
DRAFTS = 20
#: Subscribers registered in the zone.
SUBSCRIBERS = 300
#: Numbers the SMS API users send to.
NUMBERS = 2000


async def seed_stack(stack: RunningStack, *, plaintext: bool = False) -> dict[str, Any]:
    """Seed the stack and return what the Locust users need (no `pki`: plaintext)."""
    client = ClientSettings(insecure_dev=True) if plaintext else pki.client_settings(stack.var)
    admin_name, admin_password = "loadtest-admin", seed.new_password()
    await seed.bootstrap_admin(
        database_url=stack.database_url(), username=admin_name, password=admin_password
    )
    place = seed.GENT
    async with (
        connect(stack.grpc("alerting"), settings=client) as alerting,
        connect(stack.grpc("targeting"), service="targeting", settings=client) as targeting,
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
    found: dict[str, Any] = {
        "alerting": stack.grpc("alerting"),
        "sms": stack.grpc("sms"),
        # TLS folders of the development CA: `registration` (alerting: CA only is used) and
        # `api-loadtest` (the SMS API's platform-team certificate).
        "pki": str(stack.var / "pki"),
        "tokens": tokens,
        "draft_ids": drafts,
        "sent_ids": [sent.id],
        "spec_hex": spec.SerializeToString().hex(),
        "numbers": [seed.phone(i, block=9) for i in range(NUMBERS)],
    }
    if plaintext:  # the Locust users then dial without TLS
        del found["pki"]
    return found


@dataclass(frozen=True)
class Phase:
    """One Locust run against the seeded stack."""

    #: `mix` (the target's measure) or `full` (every kind of user).
    name: str
    users: int
    spawn_rate: float
    #: Calls per second each user aims at; 0: back to back (a closed loop).
    user_rate: float
    #: Locust user classes; empty: all of them, mixed by weight.
    classes: tuple[str, ...]

    @property
    def report(self) -> str:
        """Prefix of the phase's CSV and HTML reports in bench/results."""
        return "loadtest" if self.name == "full" else f"loadtest_{self.name}"


def run_locust(args: argparse.Namespace, phase: Phase, *, seed_file: Path, summary: Path) -> int:
    """Run Locust headless as a child process for one phase; return its exit status."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    locust = Path(sys.executable).parent / "locust"
    cmd = [
        str(locust),
        "-f",
        str(ROOT / "loadtest" / "locustfile.py"),
        "--headless",
        "--users",
        str(phase.users),
        "--spawn-rate",
        str(phase.spawn_rate),
        "--run-time",
        args.time,
        "--stop-timeout",
        "5",
        "--csv",
        str(RESULTS / phase.report),
        "--html",
        str(RESULTS / f"{phase.report}.html"),
        "--only-summary",
        "--loglevel",
        "WARNING",
        *phase.classes,
    ]
    if args.processes != 1:
        cmd += ["--processes", str(args.processes)]
    env = {
        **os.environ,
        "LOADTEST_SEED": str(seed_file),
        "LOADTEST_SUMMARY": str(summary),
        "LOADTEST_USER_RATE": str(phase.user_rate),
    }
    done = subprocess.run(cmd, cwd=ROOT, env=env, timeout=_seconds(args.time) + 120, check=False)
    return done.returncode


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    if duration[-1:] in units:
        return float(duration[:-1]) * units[duration[-1]]
    return float(duration)


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (Locust, once it has exited)."""
    t = os.times()
    return t.children_user + t.children_system


def _phases(args: argparse.Namespace) -> list[Phase]:
    phases = {
        # The target's measure: issuers previewing, reading and drafting, each call as soon as
        # the last one answered. Throughput and latency of the alerting API alone.
        "mix": Phase("mix", args.mix_users, args.mix_users, 0.0, ("AlertingUser",)),
        # Everything at once, under capacity: the reads' latency without a queue of callers.
        "steady": Phase(
            "steady", args.users, args.spawn_rate, args.steady_rate / max(args.users, 1), ()
        ),
        # Everything at once, each user at its own pace: the mix, watchers, the SMS API.
        "full": Phase("full", args.users, args.spawn_rate, args.user_rate, ()),
    }
    wanted = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in phases]
    if unknown or not wanted:
        raise SystemExit(f"--phases {args.phases!r}: expected a list of {', '.join(phases)}")
    return [phases[p] for p in wanted]


def _run_phase(
    args: argparse.Namespace, phase: Phase, stack: RunningStack, *, seed_file: Path, tmp: Path
) -> dict[str, Any] | None:
    summary_file = tmp / f"summary-{phase.name}.json"
    rate = "back to back" if phase.user_rate <= 0 else f"{phase.user_rate}/s each"
    print(f"loadtest: {phase.name}: locust {phase.users} users, {rate}, for {args.time}")
    cpu_before, locust_before = stack.cpu_seconds(), _children_cpu()
    status = run_locust(args, phase, seed_file=seed_file, summary=summary_file)
    cpu_after, locust_cpu = stack.cpu_seconds(), _children_cpu() - locust_before
    if not summary_file.exists():
        print(f"loadtest: locust wrote no summary (exit status {status})", file=sys.stderr)
        return None
    figures: dict[str, Any] = json.loads(summary_file.read_text(encoding="utf-8"))
    cpu = {
        name: round(cpu_after[name] - cpu_before.get(name, 0.0), 2) for name in sorted(cpu_after)
    }
    cpu["locust"] = round(locust_cpu, 2)
    figures["cpu_s_by_process"] = cpu
    figures["users"], figures["user_rate"] = phase.users, phase.user_rate
    mix = figures["mix"]
    print(
        f"loadtest: {phase.name}: all calls {figures['rps']:.0f}/s p50 {figures['p50_ms']} ms"
        f" p99 {figures['p99_ms']} ms failures {figures['failures']}; preview/get/create"
        f" {mix['rps']:.0f}/s p50 {mix['p50_ms']} ms p99 {mix['p99_ms']} ms"
    )
    busiest = sorted(cpu.items(), key=lambda kv: -kv[1])[:4]
    print(
        f"loadtest: {phase.name}: CPU seconds "
        + ", ".join(f"{name} {s:.1f}" for name, s in busiest)
    )
    return figures


#: The read calls whose latency under load the reads' target is about (p99 under 100 ms).
READS = ("GetAlert", "WatchAlert", "PreviewAlert", "GetBatch")


def _reads(phase: dict[str, Any], offered: float) -> dict[str, Any]:
    """A phase's rate and its reads' p99 (the issue's reads target: under 100 ms)."""
    by_method = phase["by_method"]
    reads = {name: by_method[name] for name in READS if name in by_method}
    return {
        "offered_rps": offered,
        "rps": phase["rps"],
        "p99_ms": phase["p99_ms"],
        "reads_p99_ms": max((r["p99_ms"] for r in reads.values()), default=0),
        "reads": {name: {"rps": r["rps"], "p99_ms": r["p99_ms"]} for name, r in reads.items()},
    }


def _report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """loadtest.json: the full phase's figures at the top, the mix phase's as the target's."""
    top = results.get("full") or next(iter(results.values()))
    keys = ("requests", "failures", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms")
    report: dict[str, Any] = {k: top[k] for k in keys}
    mix_phase = results.get("mix")
    # The target is measured by the mix phase; without it, by the mix inside the full phase.
    report["mix"] = (mix_phase or top)["mix"]
    report["target"] = {
        **(mix_phase or top)["target"],
        "measured_in": "mix" if mix_phase else "full",
    }
    report["phases"] = {
        name: {k: v for k, v in figures.items() if k != "target"}
        for name, figures in results.items()
    }
    for name, offered in (("steady", args.steady_rate), ("full", args.users * args.user_rate)):
        if name in results:
            report[name] = _reads(results[name], offered)
    report["config"] = {
        "time": args.time,
        "steady_rate": args.steady_rate,
        "mix_users": args.mix_users,
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "user_rate": args.user_rate,
        "processes": args.processes,
        "alerting_processes": args.alerting_processes,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    return report


def parser() -> argparse.ArgumentParser:
    """The command line (defaults from the LOADTEST_* environment)."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__)
    parser.add_argument("--time", default=os.environ.get("LOADTEST_TIME", "60s"))
    parser.add_argument(
        "--phases",
        default=os.environ.get("LOADTEST_PHASES", "mix,steady,full"),
        help="which runs, in order: mix (the target's measure), steady (every user, under"
        " capacity), full (every user, past it)",
    )
    parser.add_argument(
        "--mix-users",
        type=int,
        default=int(os.environ.get("LOADTEST_MIX_USERS", "8")),
        help="issuers of the mix phase, each calling back to back",
    )
    parser.add_argument("--users", type=int, default=int(os.environ.get("LOADTEST_USERS", "70")))
    parser.add_argument(
        "--spawn-rate", type=float, default=float(os.environ.get("LOADTEST_SPAWN_RATE", "20"))
    )
    parser.add_argument(
        "--user-rate",
        type=float,
        default=float(os.environ.get("LOADTEST_USER_RATE", "20")),
        help="calls per second each user of the full phase aims at (0: no wait)",
    )
    parser.add_argument(
        "--steady-rate",
        type=float,
        default=float(os.environ.get("LOADTEST_STEADY_RATE", "500")),
        help="calls per second all users of the steady phase offer together",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=int(os.environ.get("LOADTEST_PROCESSES", "1")),
        help="Locust worker processes (-1: one per CPU)",
    )
    parser.add_argument(
        "--alerting-processes",
        type=int,
        default=int(os.environ.get("LOADTEST_ALERTING_PROCESSES", "1")),
        help="processes of the alerting service, sharing its port",
    )
    parser.add_argument(
        "--tls",
        choices=("on", "off"),
        default=os.environ.get("LOADTEST_TLS", "on"),
        help="off: the stack and the users without TLS, to measure TLS's cost",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Start, seed, load (phase by phase), report, stop."""
    args = parser().parse_args(argv)
    phases = _phases(args)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tocsin-loadtest-") as tmp:
        var = Path(tmp) / "var"
        started = time.monotonic()
        with running_stack(
            var=var, processes={"alerting": args.alerting_processes}, plaintext=args.tls == "off"
        ) as stack:
            ready_s = time.monotonic() - started
            print(f"loadtest: stack ready in {ready_s:.0f} s (port offset {stack.offset})")
            seeded = asyncio.run(seed_stack(stack, plaintext=args.tls == "off"))
            seed_file = Path(tmp) / "seed.json"
            seed_file.write_text(json.dumps(seeded), encoding="utf-8")
            for phase in phases:
                figures = _run_phase(args, phase, stack, seed_file=seed_file, tmp=Path(tmp))
                if figures is None:
                    return 1
                results[phase.name] = figures
    report = _report(results, args)
    report["tls"] = args.tls == "on"
    # A plaintext run (TLS's cost) writes beside the figures, never over them.
    out = RESULTS / ("loadtest.json" if args.tls == "on" else "loadtest_plaintext.json")
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    mix, target = report["mix"], report["target"]
    print(
        f"loadtest: target (1000/s of preview/get/create, p99 < 20 ms), measured in the"
        f" {target['measured_in']} phase: {mix['rps']:.0f}/s p99 {mix['p99_ms']} ms:"
        f" {'met' if target['met'] else 'not met'}"
    )
    for name in ("steady", "full"):
        if name in report:
            phase = report[name]
            print(
                f"loadtest: {name} phase, {phase['offered_rps']:.0f} calls/s offered,"
                f" {phase['rps']:.0f}/s served: reads' p99 {phase['reads_p99_ms']} ms ("
                + ", ".join(f"{n} {r['p99_ms']} ms" for n, r in phase["reads"].items())
                + ")"
            )
    print(f"loadtest: figures in {out.relative_to(ROOT)}, reports bench/results/loadtest*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
