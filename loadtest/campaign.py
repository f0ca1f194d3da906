"""`make bench-campaign`: one alert to a large synthetic zone over SMS, through the whole path.

    python -m loadtest.campaign [--recipients 20000] [--limit default|open] [--rate 740.74]

The program runs a stack of its own (embedded PostgreSQL and Redis, the targeting, SMS and
alerting services as processes, data and logs in var/bench/campaign), loads a synthetic
population with targeting's bulk loader, and plays the operators itself: one in-process SMSC
simulator takes both operators' binds, so that it sees every submit_sm. It then picks a circle
around Brussels holding the wanted number of SMS recipients, sends one emergency alert over SMS
to it, and measures:

- submit_sm per second (first to last accepted submit_sm), and the simulators' arrivals per
  aligned one-second window and in the busiest sliding one (any 1-s interval) against the
  limiter's rate: no window may hold more than floor(rate) submit_sm. The alert's texts are of
  one, two and three segments in the citizens' languages (`seed.MIXED_TEXTS`), and an operator's
  limit counts segments, so every figure here counts submit_sm PDUs, not messages;
- time to first SMS: from SendAlert to the first submit_sm at the simulator;
- completion: from SendAlert until WatchAlert reports every SMS delivered or failed;
- CPU per SMS over every stack process (services, PostgreSQL with its backends, Redis; not the
  simulator nor this program), and peak memory (the largest sum of their RSS).

`--cpu-hog N` runs N busy loops (`bench/cpuhog.py`, at normal priority on the same cores) from
SendAlert until the campaign completes, and reports `rate_share_under_cpu_load`: the submit_sm
rate kept as a share of the configured rate, next to the busiest sliding second (a starved sender
catches up through the limiter's send window, docs/ratelimit.md). The simulators run in this
program and stamp a submit_sm when they read it, so a stall of theirs moves a bunch of arrivals
into one second (`simulator_max_stall_ms`: 300 ms on the shared 2-core machine even without a
hog, some 220 submit_sm at 733/s). An operator's SMSC runs on cores of its own, so with a hog the
threads of this program run at `--simulator-priority` (`fifo` by default: real-time FIFO
priority 1, which the kernel's real-time throttling caps at 95 % of a core; `nice`: nice -10;
`normal`), where allowed, while the hogs and the services stay as they were started. That keeps
the instrument out of what it measures; `simulator_priority` says what was in force.

With `--limit default` the global bucket is the built-in one (2,000,000 SMS in 45 minutes, about
741/s; `--rate` scales it, shrink the zone with it); operator buckets get the whole global rate,
so that the global bucket alone sets the pace. `--limit open` opens every bucket wide.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import secrets
import shutil
import sys
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil
import shapely.geometry
from prometheus_client.parser import text_string_to_metric_families
from tocsin.alerting.v1 import alerting_pb2, alerting_pb2_grpc

from bench.cpuhog import CpuHog
from bench.load import load_population, migrate
from bench.population import OUTLINE
from bench.realtime import prioritise as _prioritise
from bench.windows import busiest_window, per_window, rate_share
from gateways.smpp import pdu as P
from ratelimit.config import Rules
from services.kernel.operators import Bind, Operator, dump_operators
from services.kernel.tls import ClientSettings, connect
from simulators.smsc.config import SmscConfig
from simulators.smsc.server import SmscSimulator
from stack import pki, seed
from stack.embedded import free_port
from stack.services import operators
from stack.supervisor import Supervisor

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
VAR = ROOT / "var" / "bench" / "campaign"
#: Recipients by default, per mode: about 27 s at 741/s; the open limiter gets a bigger zone.
DEFAULT_RECIPIENTS = {"default": 20_000, "open": 100_000}
#: Rate of every bucket with `--limit open`.
OPEN_RATE = 1_000_000.0
#: Subscribers loaded per recipient wanted: Brussels holds a fifth of the synthetic population.
POPULATION_FACTOR = 5
#: Centre of the zone: Brussels, the densest place of the synthetic population.
BRUSSELS = seed.Place("Brussel", 4.3517, 50.8503, 5000.0)
#: The services the path needs, in start order.
SERVICES = ("targeting", "sms", "alerting")
#: Seconds the whole campaign may take before the program gives up.
CAMPAIGN_TIMEOUT_S = 900.0
#: Operators played by the simulators: those of `make run` (stack/operators.toml).
OPERATORS = tuple(op.name for op in operators())
#: Seconds without any progress after which the campaign is declared stalled.
STALL_S = 60.0


@dataclass
class Marks:
    """Moments of the campaign, on the event loop's clock (the simulators stamp submits with it)."""

    sent: float = 0.0
    first_submit: float = 0.0
    last_submit: float = 0.0
    complete: float = 0.0
    accepted: int = 0


@dataclass
class Stalls:
    """How late this program's event loop, which runs the simulators, woke up: the simulators
    stamp a submit_sm when they read it, so a stall of theirs moves arrivals later in a bunch."""

    longest: float = 0.0
    over_10ms: int = 0

    async def watch(self, tick: float = 0.002) -> None:
        """Sleep `tick` over and over until cancelled, keeping the longest oversleep."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(tick)
            late = loop.time() - before - tick
            self.longest = max(self.longest, late)
            if late > 0.010:
                self.over_10ms += 1


@dataclass
class Memory:
    """Peak memory of the stack's processes, sampled while the campaign runs."""

    peak_total: int = 0
    peak_by_process: dict[str, int] = field(default_factory=dict)


def rules_text(*, limit: str, rate: float | None) -> tuple[str, float]:
    """The rules file for the SMS service, and the global rate it sets."""
    default = Rules.default()
    if limit == "open":
        rate, capacity = OPEN_RATE, int(OPEN_RATE)
    else:
        national = default.resolve("sms:global")
        rate, capacity = rate or national.rate, national.capacity
    # The built-in lease, capacity and headroom: a capacity equal to the lease makes leases tile.
    text = f"""# Written by loadtest/campaign.py ({limit} limiter).
lease = {default.lease}
headroom = {default.headroom}

[bucket."sms:global"]
rate = {rate}
capacity = {capacity}

# Every operator may take the whole global rate: the global bucket alone sets the pace.
[bucket."sms:op:*"]
parent = "sms:global"
share = 1.0
capacity = {capacity}
"""
    return text, rate


class TimedSmsc(SmscSimulator):
    """The SMSC simulator, also keeping when it accepted each submit_sm (its event loop's clock),
    for windows on one grid across operators and for the busiest sliding window."""

    def __init__(self, config: SmscConfig) -> None:
        super().__init__(config)
        #: Loop time of every accepted submit_sm, in order.
        self.accepted_at: list[float] = []

    def _count(self, pdu: P.SubmitSm) -> None:
        # The simulator counts an accepted submit_sm here (per_second uses the same clock).
        self.accepted_at.append(asyncio.get_running_loop().time())
        super()._count(pdu)


class CampaignStack:
    """The stores, services and simulator of one campaign, and their processes."""

    def __init__(self, var: Path, *, plaintext: bool = False) -> None:
        self.var = var
        #: Services without TLS (TOCSIN_INSECURE_DEV): only to measure what TLS costs.
        self.plaintext = plaintext
        self.supervisor = Supervisor(log_dir=var / "log")
        self.ports: dict[str, tuple[int, int]] = {}
        # One simulator per operator: receipts are matched by (operator, message id).
        self.sims = {op: TimedSmsc(SmscConfig(name=op, window=10_000)) for op in OPERATORS}
        self.database_url = ""
        self.redis_url = ""
        #: Loop time just before the simulators started: the origin of the one-second windows.
        self.origin = 0.0

    def grpc(self, service: str) -> str:
        """Address of a service."""
        return f"127.0.0.1:{self.ports[service][0]}"

    async def start_stores(self) -> None:
        """PostgreSQL with every migration (the benchmarks' own too), and Redis."""
        self.database_url = await asyncio.to_thread(
            self.supervisor.postgres, data_dir=self.var / "pg"
        )
        self.redis_url = await asyncio.to_thread(self.supervisor.redis, data_dir=self.var / "redis")
        await asyncio.to_thread(migrate, self.database_url)

    async def start_services(self, *, rules: Path) -> None:
        """The simulator, then the services, each SERVING."""
        self.origin = asyncio.get_running_loop().time()
        ports = {op: await sim.start() for op, sim in self.sims.items()}
        operators_file = self.var / "operators.toml"
        operators_file.write_text(dump_operators(synthetic_operators(ports)), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            TOCSIN_OPERATORS_FILE=str(operators_file),
            TOCSIN_RATELIMIT_RULES=str(rules),
            TOCSIN_JWT_KEY=secrets.token_urlsafe(48),
        )
        self.tls_dirs = pki.stack_identities(self.var / "pki", SERVICES)
        for name in SERVICES:
            self.ports[name] = (free_port(), free_port())
        env.update(TOCSIN_TARGETING_ADDR=self.grpc("targeting"), TOCSIN_SMS_ADDR=self.grpc("sms"))
        for name in SERVICES:
            service_env = dict(env)
            grpc_port, metrics_port = self.ports[name]
            service_env.update(
                TOCSIN_GRPC_PORT=str(grpc_port),
                TOCSIN_METRICS_PORT=str(metrics_port),
                **(
                    {"TOCSIN_INSECURE_DEV": "true"}
                    if self.plaintext
                    else {"TOCSIN_TLS_DIR": str(self.tls_dirs[name])}
                ),
            )
            self.supervisor.spawn(name, ["-m", f"services.{name}"], env=service_env)
        for name in SERVICES:
            await asyncio.to_thread(
                self.supervisor.wait_serving,
                name,
                self.grpc(name),
                tls_dir=None if self.plaintext else self.tls_dirs["stack"],
            )

    def client(self, identity: str) -> ClientSettings:
        """Settings of a client of the stack with the development CA's `identity`."""
        if self.plaintext:
            return ClientSettings(insecure_dev=True)
        return pki.client_settings(self.var, identity)

    def limiter_tokens(self) -> dict[str, float]:
        """Tokens the SMS service's limiter granted on the global bucket, and those it forfeited
        (slots that passed before a sender took them: under-sending, never a late burst)."""
        url = f"http://127.0.0.1:{self.ports['sms'][1]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        found = {"tokens_granted": 0.0, "tokens_forfeited": 0.0}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("bucket") != "sms:global":
                    continue
                if sample.name == "tocsin_ratelimit_tokens_granted_total":
                    found["tokens_granted"] = sample.value
                elif sample.name == "tocsin_ratelimit_tokens_forfeited_total":
                    found["tokens_forfeited"] = sample.value
        return found

    async def sample_memory(
        self, memory: Memory, *, interval: float = 0.25, relist: float = 5.0
    ) -> None:
        """Track the peak of the summed RSS until cancelled.

        Listing the processes scans /proc (milliseconds on a busy machine) and this loop also runs
        the simulators, whose clock the windows are measured on: the list is renewed every
        `relist` seconds, and each sample only reads the RSS of the processes listed.
        """
        listed: list[tuple[str, psutil.Process]] = []
        listed_at = -math.inf
        while True:
            now = asyncio.get_running_loop().time()
            if now - listed_at >= relist:
                # In a thread: the scan of /proc took up to 100 ms of this loop on a loaded machine.
                listed = await asyncio.to_thread(lambda: list(self.supervisor.processes()))
                listed_at = now
            by_name = self.supervisor.rss_bytes(listed)
            total = sum(by_name.values())
            memory.peak_total = max(memory.peak_total, total)
            for name, rss in by_name.items():
                memory.peak_by_process[name] = max(memory.peak_by_process.get(name, 0), rss)
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Services (SIGTERM, graceful), simulator, stores."""
        await asyncio.to_thread(self.supervisor.stop)
        for sim in self.sims.values():
            await sim.stop()

    def accepted_at(self) -> list[float]:
        """Loop time of every accepted submit_sm, over both simulators, in order."""
        return sorted(t for sim in self.sims.values() for t in sim.accepted_at)

    def per_second(self) -> list[int]:
        """Accepted submit_sm per one-second window, both simulators on one grid from `origin`
        (the simulators' own per_second counters start a few microseconds apart)."""
        return per_window(self.accepted_at(), origin=self.origin)


def synthetic_operators(ports: dict[str, int]) -> tuple[Operator, ...]:
    """The operators with their simulator's port and the synthetic numbers shared evenly: those
    are +324 and eight digits, not the real ranges, so the digit after 324 picks the operator."""
    names = list(ports)
    return tuple(
        Operator(
            name=name,
            prefixes=tuple(f"324{d}" for d in range(10) if d % len(names) == i),
            binds=(Bind("127.0.0.1", ports[name]), Bind("127.0.0.1", ports[name])),
        )
        for i, name in enumerate(names)
    )


async def find_zone(
    targeting: grpc.aio.Channel, *, entity_id: int, recipients: int
) -> tuple[seed.Place, int]:
    """The circle around Brussels whose SMS audience is closest to `recipients` (bisection)."""
    low, high = 100.0, 60_000.0
    best = (BRUSSELS, 0)
    for _ in range(24):
        radius = (low + high) / 2
        place = replace(BRUSSELS, radius_m=radius)
        count = await seed.audience(targeting, entity_id=entity_id, place=place)
        if abs(count - recipients) < abs(best[1] - recipients):
            best = (place, count)
        if abs(count - recipients) <= recipients * 0.005:
            break
        low, high = (radius, high) if count < recipients else (low, radius)
    return best


def windows(counts: list[int]) -> dict[str, Any]:
    """Per-second arrivals; the busiest of them all; and the steady seconds: the full ones, less
    the first and the last.

    The rate is judged on the steady seconds: the first and last windows are partial (the
    campaign starts and ends inside them), and the first and last full ones hold the start-up and
    the tail. Whether the rate was ever exceeded is judged on every window, the first full one
    included (`max_aligned_window_per_s`).
    """
    full = counts[1:-1]
    steady = full[1:-1] if len(full) > 2 else full
    # One message landing a millisecond either side of a window's edge moves one count from a
    # second to its neighbour; five-second windows show the rate itself.
    five = [sum(steady[i : i + 5]) / 5 for i in range(len(steady) - 4)]
    return {
        "per_second": counts,
        "first_full_window": full[0] if full else 0,
        "max_aligned_window_per_s": max(counts, default=0),
        "max_window_per_s": max(steady, default=0),
        "mean_window_per_s": round(sum(steady) / len(steady), 1) if steady else 0.0,
        "max_5s_window_per_s": round(max(five), 1) if five else None,
    }


async def campaign(args: argparse.Namespace) -> dict[str, Any]:
    """Run one campaign and return its figures."""
    recipients = args.recipients or DEFAULT_RECIPIENTS[args.limit]
    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True)
    rules = VAR / "ratelimit.toml"
    text, rate = rules_text(limit=args.limit, rate=args.rate)
    rules.write_text(text, encoding="utf-8")
    parts = CampaignStack(VAR, plaintext=args.tls == "off")
    try:
        started = time.monotonic()
        await parts.start_stores()
        population = recipients * POPULATION_FACTOR
        conn = await asyncpg.connect(parts.database_url)
        try:
            await load_population(
                conn=conn,
                seed=args.seed,
                subscribers=population,
                progress=lambda line: print(f"campaign: {line}", flush=True),
            )
        finally:
            await conn.close()
        await parts.start_services(rules=rules)
        print(f"campaign: stack ready in {time.monotonic() - started:.0f} s", flush=True)
        return await _send(parts, args=args, recipients=recipients, rate=rate)
    finally:
        await parts.stop()


async def _send(
    parts: CampaignStack, *, args: argparse.Namespace, recipients: int, rate: float
) -> dict[str, Any]:
    password = seed.new_password()
    await seed.bootstrap_admin(
        database_url=parts.database_url, username="bench-admin", password=password
    )
    async with (
        connect(parts.grpc("alerting"), settings=parts.client("registration")) as alerting,
        # Finding the zone counts audiences, which only alerting may ask targeting for.
        connect(
            parts.grpc("targeting"), service="targeting", settings=parts.client("alerting")
        ) as targeting,
    ):
        admin = seed.bearer(await seed.login(alerting, username="bench-admin", password=password))
        entity_id = await seed.ensure_entity(
            alerting,
            admin,
            place=BRUSSELS,
            name="Federal crisis centre (benchmark)",
            territory_kind="country",
            territory=json.dumps(shapely.geometry.mapping(OUTLINE)),
        )
        await seed.ensure_issuer(
            alerting, admin, entity_id=entity_id, username="bench-issuer", password=password
        )
        issuer = seed.bearer(await seed.login(alerting, username="bench-issuer", password=password))
        place, audience = await find_zone(targeting, entity_id=entity_id, recipients=recipients)
        print(
            f"campaign: zone of {place.radius_m / 1000:.2f} km around Brussels,"
            f" {audience:,} SMS recipients; limiter {args.limit} at {rate:,.1f}/s",
            flush=True,
        )
        spec = seed.alert_spec(
            place=place, kind=alerting_pb2.ALERT_KIND_EMERGENCY, texts=seed.MIXED_TEXTS
        )
        alert = await seed.create_alert(alerting, issuer, spec=spec, key="campaign-benchmark")
        stub = alerting_pb2_grpc.AlertingServiceStub(alerting)
        marks, memory = Marks(), Memory()
        sampler = asyncio.create_task(parts.sample_memory(memory))
        stalls = Stalls()
        watcher = asyncio.create_task(stalls.watch())
        cpu_before = parts.supervisor.cpu_seconds()
        # This loop stamps every submit_sm: keep the collector's full passes over the start-up
        # objects (the population, the stubs) out of the measured seconds.
        gc.freeze()
        hog = CpuHog(args.cpu_hog)
        hog.start()
        priority = _prioritise(_simulator_priority(args))
        marks.sent = asyncio.get_running_loop().time()
        try:
            await stub.SendAlert(
                alerting_pb2.SendAlertRequest(alert_id=alert.id),
                metadata=issuer,
                timeout=seed.CALL_TIMEOUT_S,
            )
            last = await _follow(alerting, issuer, alert_id=alert.id, marks=marks)
            hog.stop()
            _prioritise("normal")
            cpu_after = parts.supervisor.cpu_seconds()
            tokens = await asyncio.to_thread(parts.limiter_tokens)
        finally:
            hog.stop()
            _prioritise("normal")
            sampler.cancel()
            watcher.cancel()
            await asyncio.gather(sampler, watcher, return_exceptions=True)
            gc.unfreeze()
    accepted_at = parts.accepted_at()
    if accepted_at:
        marks.first_submit, marks.last_submit = accepted_at[0], accepted_at[-1]
    marks.accepted = len(accepted_at)
    return _figures(
        args=args,
        rate=rate,
        last=last,
        marks=marks,
        memory=memory,
        cpu={k: cpu_after.get(k, 0.0) - cpu_before.get(k, 0.0) for k in cpu_after},
        per_second=parts.per_second(),
        sliding=busiest_window(accepted_at),
        share=rate_share(accepted_at, rate),
        stalls=stalls,
        priority=priority,
        tokens=tokens,
        radius_m=place.radius_m,
    )


async def _follow(
    alerting: grpc.aio.Channel, issuer: seed.Metadata, *, alert_id: str, marks: Marks
) -> alerting_pb2.ChannelProgress:
    """Print the alert's SMS progress until every SMS has an outcome, or it stalls."""
    last = alerting_pb2.ChannelProgress()
    stream = seed.watch(alerting, issuer, alert_id=alert_id, timeout=CAMPAIGN_TIMEOUT_S)
    while True:
        try:
            progress = await asyncio.wait_for(anext(stream), STALL_S)
        except StopAsyncIteration:
            return last
        except TimeoutError:
            print(f"campaign: no progress for {STALL_S:.0f} s; giving up", flush=True)
            await stream.aclose()
            return last
        last = seed.sms_progress(progress)
        print(
            f"campaign: {asyncio.get_running_loop().time() - marks.sent:6.1f} s  targeted"
            f" {last.targeted:,} submitted {last.submitted:,} delivered"
            f" {last.delivered:,} failed {last.failed:,}",
            flush=True,
        )
        if last.targeted and last.delivered + last.failed >= last.targeted:
            marks.complete = asyncio.get_running_loop().time()
            await stream.aclose()
            return last


def _figures(
    *,
    args: argparse.Namespace,
    rate: float,
    last: alerting_pb2.ChannelProgress,
    marks: Marks,
    memory: Memory,
    cpu: dict[str, float],
    per_second: list[int],
    sliding: int,
    share: float,
    tokens: dict[str, float],
    stalls: Stalls | None = None,
    priority: str = "normal",
    radius_m: float,
) -> dict[str, Any]:
    spread = marks.last_submit - marks.first_submit
    cpu_total = sum(cpu.values())
    arrivals = windows(per_second)
    figures: dict[str, Any] = {
        "limit": args.limit,
        "recipients": last.targeted,
        "rate_limit_per_s": round(rate, 1),
        "sms_per_s": round((marks.accepted - 1) / spread, 1) if spread > 0 else 0.0,
        "first_sms_ms": round((marks.first_submit - marks.sent) * 1000, 1),
        "completion_s": round(marks.complete - marks.sent, 2) if marks.complete else None,
        "cpu_us_per_sms": round(cpu_total / max(1, marks.accepted) * 1e6, 1),
        "peak_rss_mb": round(memory.peak_total / 2**20, 1),
        "delivered": last.delivered,
        "failed": last.failed,
        "submitted_at_simulator": marks.accepted,
        # Every figure per second counts submit_sm; the texts take 1 to 3 segments each.
        "submit_sm_per_s": round((marks.accepted - 1) / spread, 1) if spread > 0 else 0.0,
        "segments_per_message": round(marks.accepted / max(1, last.targeted), 2),
        **{k: v for k, v in arrivals.items() if k != "per_second"},
        "max_sliding_window_per_s": sliding,
        # submit_sm per second kept, first to last, as a share of the configured rate.
        "rate_share": round(share, 4),
        "cpu_hog_processes": args.cpu_hog,
        # The simulators' own lateness: a stall of theirs adds its length to a sliding second.
        "simulator_max_stall_ms": round((stalls or Stalls()).longest * 1000, 1),
        "simulator_stalls_over_10ms": (stalls or Stalls()).over_10ms,
        "simulator_priority": priority,
        **{k: round(v) for k, v in tokens.items()},
        "cpu_s_by_process": {k: round(v, 2) for k, v in sorted(cpu.items())},
        "peak_rss_mb_by_process": {
            k: round(v / 2**20, 1) for k, v in sorted(memory.peak_by_process.items())
        },
        "zone_radius_m": round(radius_m),
        "population": (args.recipients or DEFAULT_RECIPIENTS[args.limit]) * POPULATION_FACTOR,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "per_second": arrivals["per_second"],
    }
    if args.limit == "default":
        mean = arrivals["mean_window_per_s"]
        # A window holds whole messages: more than floor(rate) in one second is above the rate.
        most = math.floor(rate)
        busiest = arrivals["max_aligned_window_per_s"]
        figures["rate_within_3pct"] = bool(mean) and abs(mean - rate) <= 0.03 * rate
        figures["never_above"] = busiest <= most
        figures["never_above_sliding"] = sliding <= most
        figures["max_window_excess_pct"] = round(max(0.0, busiest / rate - 1) * 100, 2)
        if args.cpu_hog:
            figures["rate_share_under_cpu_load"] = round(share, 4)
    else:
        figures["times_national_rate"] = round(figures["sms_per_s"] / 740.74, 2)
    return figures


def _simulator_priority(args: argparse.Namespace) -> str:
    """How the simulators run: `--simulator-priority`, else `fifo` under a hog."""
    if args.simulator_priority is not None:
        return str(args.simulator_priority)
    return "fifo" if args.cpu_hog else "normal"


def main(argv: list[str] | None = None) -> int:
    """Run the campaign, print and write its figures."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.campaign", description=__doc__)
    parser.add_argument("--recipients", type=int, default=None, help="SMS recipients wanted")
    parser.add_argument("--limit", choices=("default", "open"), default="default")
    parser.add_argument("--rate", type=float, default=None, help="global SMS/s (default limiter)")
    parser.add_argument("--seed", type=int, default=2022, help="synthetic population seed")
    parser.add_argument(
        "--cpu-hog",
        type=int,
        default=0,
        metavar="N",
        help="busy-loop processes on the same cores while the campaign runs (0: none)",
    )
    parser.add_argument(
        "--simulator-priority",
        choices=("fifo", "nice", "normal"),
        default=None,
        help="how the simulators run meanwhile (default: fifo with a hog, else normal)",
    )
    parser.add_argument(
        "--tls", choices=("on", "off"), default="on", help="off: plaintext, to measure TLS's cost"
    )
    args = parser.parse_args(argv)
    figures = asyncio.run(asyncio.wait_for(campaign(args), CAMPAIGN_TIMEOUT_S))
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures["tls"] = args.tls == "on"
    text = json.dumps(figures, indent=2) + "\n"
    # campaign.json holds the latest run, whichever limit; each limit also keeps its own file.
    # A plaintext run (TLS's cost) and a run beside CPU hogs write beside them, never over them.
    variant = ("" if args.tls == "on" else "_plaintext") + (
        f"_cpu_hog{args.cpu_hog}" if args.cpu_hog else ""
    )
    (RESULTS / f"campaign_{args.limit}{variant}.json").write_text(text, encoding="utf-8")
    out = RESULTS / f"campaign{variant}.json"
    out.write_text(text, encoding="utf-8")
    print(
        f"campaign: {figures['recipients']:,} recipients, {figures['sms_per_s']:,.1f} SMS/s"
        f" (limiter {figures['rate_limit_per_s']:,.1f}/s, busiest second"
        f" {figures['max_aligned_window_per_s']}, busiest sliding second"
        f" {figures['max_sliding_window_per_s']}),"
        f" first SMS after {figures['first_sms_ms']:.0f} ms,"
        f" complete after {figures['completion_s']} s, {figures['cpu_us_per_sms']:.0f} us CPU"
        f" per SMS, peak {figures['peak_rss_mb']:.0f} MB"
    )
    print(f"campaign: figures in {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
