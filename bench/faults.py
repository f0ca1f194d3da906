"""Fault-injection benchmark: an SMS campaign through the stack while faults come one by one.

`python -m bench.faults --n 400000` (or `make bench-faults FAULTS_N=...`). Starts embedded
PostgreSQL and Redis (persistent, so that it can restart with its data), one SMSC simulator
process per operator of stack/operators.toml and one SMS service process, under a rate limit per
operator. It writes N recipients (spread evenly over the operators) onto the SMS stream (or,
with `--campaign alert`, sends a test alert to about N of a synthetic population through
alerting and targeting), measures each operator's normal rate, then injects the faults of FAULTS
(a registry: `@fault(...)`), one after another, with a normal interval between them
(docs/faults.md lists them). Alerting and targeting run when a fault sends an alert through
them (bench/alertstack.py): kill -9 of either, an emergency mid-campaign; on demand only
(CHANNEL_FAULTS), kill -9 of the e-mail, voice and cell broadcast processes mid-alert, each
started with its peer simulators for its fault.

Per fault it records `recovery_s` (end of the fault to the hit operators' normal rate again),
`other_operators_rate_share` (the rate the operators not hit kept during it, as a share of their
normal rate), `duplicates` (repeat arrivals at the simulators of destinations whose first copy
left between the fault's start and the next fault's, from their arrival times) and
`duplicates_bound` (the in-flight window of what the fault killed or cut, from that process's
settings), `stale_sent` (submit_sm the simulators saw after their validity: each fault also
queues a small alert that expires half-way through it) and `lost` (the campaign's: recipients
never delivered cannot be dated; plus those of the fault's own alert). Flat totals: `lost`,
`duplicates_over_bound`, `stale_sent`, `max_recovery_s`, `min_other_operators_rate_share`, and
the totals faults declare (`emergency_first_sms_ms`, `rate_share_under_cpu_load`), in
bench/results/faults.json (bench/results/faults_channels.json when only CHANNEL_FAULTS run).
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
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import grpc
import redis.asyncio as aioredis
from tocsin.alerting.v1 import alerting_pb2
from tocsin.targeting.v1 import targeting_pb2

from bench.alertstack import PLACES as ALERT_PLACES
from bench.alertstack import (
    AlertServices,
    Audience,
    first_after,
    outcomes,
    seed_cells,
    state_name,
)
from bench.cpuhog import CpuHog, default_hogs
from bench.load import migrate
from bench.realtime import prioritise
from bench.windows import busiest_window
from loadtest.campaign import POPULATION_FACTOR
from services.cellbroadcast import identifiers
from services.channel import codec
from services.channel.keys import stream as lane_stream
from services.email.settings import Settings as EmailSettings
from services.kernel import keys
from services.kernel.redis_client import connect as connect_redis
from services.sms.settings import Settings as SmsSettings
from services.voice.settings import Settings as VoiceSettings
from simulators.cbc.config import CbcConfig
from simulators.cbc.server import CbcSimulator
from stack.embedded import ManagedProcess, free_port, start_postgres, start_redis
from stack.services import operators as stack_operators
from stack.supervisor import ROOT, Supervisor

WORK = ROOT / "var" / "bench-faults"
RESULTS = ROOT / "bench" / "results" / "faults.json"
#: Where a run of the on-demand channel faults alone (CHANNEL_FAULTS) writes by default.
RESULTS_CHANNELS = ROOT / "bench" / "results" / "faults_channels.json"
ALERT = "faults"
TEXT = "BE-Alert TEST: this is a test of the warning system. No action is needed."
#: National number prefixes of the bench's numbers, one per operator (in operators' order).
PREFIXES = ("32470", "32490", "32480")
#: Prefixes of the numbers of the alerts sent through alerting (same operators, other blocks).
ALERT_PREFIXES = ("32471", "32491", "32481")
#: The SMS, e-mail and voice channels in alerting's progress.
SMS = alerting_pb2.CHANNEL_SMS
EMAIL = alerting_pb2.CHANNEL_EMAIL
VOICE = alerting_pb2.CHANNEL_VOICE
CELL_BROADCAST = alerting_pb2.CHANNEL_CELL_BROADCAST
#: Each channel's table of delivery records.
TABLES: dict[int, str] = {SMS: "sms_messages", EMAIL: "email_messages", VOICE: "voice_messages"}
#: A hit operator has recovered once a second of its deliveries reaches this share of normal.
RECOVERED_SHARE = 0.9
#: Recipients per operator of the small alert each fault queues, which expires half-way through.
EXPIRING_PER_OPERATOR = 50


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
        self.arrival_files: list[Path] = []
        self.arrival_operator: dict[Path, str] = {}
        self.sms: subprocess.Popen[bytes] | None = None
        self.sms_env: dict[str, str] = {}
        self.redis_port = 0
        self.redis_url = ""
        #: Alerting and targeting, when a fault needs them (bench/alertstack.py).
        self.alerts: AlertServices | None = None
        #: The peers of the channel processes faults start (`smtp-relay`, `siptrunk`), by name.
        self.peers: dict[str, subprocess.Popen[str]] = {}
        #: The operators' CBC simulators (cellbroadcast_kill9), in this process as the cell
        #: broadcast tests run them: every request they saw is read from their state.
        self.cbcs: dict[str, CbcSimulator] = {}
        #: Wall-clock start and end of the normal rate's measurement.
        self.normal_window = (0.0, 0.0)
        self.redis_dir = WORK / f"redis-{os.getpid()}"
        self.pg_dir = WORK / f"pg-{os.getpid()}"

    def start_smsc(self, name: str, *extra: str, new_port: bool = False) -> None:
        """Start operator `name`'s simulator on its port (`extra`: its fault flags); with
        `new_port`, on another free port if its own was taken meanwhile (before the SMS
        service was told the ports: a port found free is not reserved, and an outgoing
        connection may take it as its local port)."""
        for attempt in range(3 if new_port else 1):
            if attempt:
                self.ports[name] = free_port()
            arrivals = self.redis_dir / f"arrivals-{name}-{len(self.arrival_files)}.json"
            args = [
                *("-m", "simulators.smsc", "--port", str(self.ports[name]), "--name", name),
                *("--arrivals-file", str(arrivals), *extra),
            ]
            proc = self.supervisor.spawn(
                f"smsc-{name}",
                args,
                output="pipe",
                errors="log" if self.supervisor.log_dir is not None else "null",
            )
            assert proc.stdout is not None
            line = proc.stdout.readline()  # listening, or nothing if it could not start
            if line:
                json.loads(line)
                self.arrival_files.append(arrivals)
                self.arrival_operator[arrivals] = name
                self.smscs[name] = proc
                return
            proc.wait(10)
            proc.stdout.close()
        where = self.supervisor.log_dir
        raise RuntimeError(
            f"the {name} SMSC simulator did not start on port {self.ports[name]}"
            + (f": see {where}/smsc-{name}.err.log" if where is not None else "")
        )

    def stop_smsc(self, name: str) -> None:
        """Stop operator `name`'s simulator (connections refused from now on); keep its counts."""
        proc = self.smscs.pop(name)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        for line in out.splitlines():
            data = json.loads(line)
            if data.get("event") == "stopped":
                self.stopped.append(data)

    def start_sms(self) -> None:
        """Start the SMS service process."""
        self.sms = self.supervisor.spawn("sms", ["-m", "services.sms"], env=self.sms_env)

    def arrivals_by_operator(self) -> dict[str, dict[str, list[float]]]:
        """Per operator, every destination's arrival times at its simulators (wall clock), over
        every simulator instance of the run (written as each stopped)."""
        found: dict[str, dict[str, list[float]]] = {name: {} for name in self.names}
        for path in self.arrival_files:
            if path.exists():
                mine = found[self.arrival_operator[path]]
                for dest, at in json.loads(path.read_text(encoding="utf-8")).items():
                    mine.setdefault(dest, []).extend(at)
        return found

    def arrivals(self) -> dict[str, list[float]]:
        """Every destination's arrival times at the simulators."""
        found: dict[str, list[float]] = {}
        for arrivals in self.arrivals_by_operator().values():
            for dest, at in arrivals.items():
                found.setdefault(dest, []).extend(at)
        return found

    def server(self, name: str) -> tuple[int, ManagedProcess]:
        """Index and process of the embedded store `name` (postgres, redis)."""
        for i, server in enumerate(self.supervisor.servers):
            if server.name == name:
                return i, server
        raise LookupError(name)

    def sms_settings(self) -> SmsSettings:
        """The SMS process's settings, read from its environment as it reads them."""
        with _environment(self.sms_env):
            return SmsSettings()  # type: ignore[call-arg]  # URLs from the environment

    def window(self, operators: list[str]) -> int:
        """Recipients that may be at these operators without a durable trace: the sum of their
        binds' windows in the SMS process's settings (its durability slots)."""
        return sum(
            b.window
            for op in self.sms_settings().operators()
            if op.name in operators
            for b in op.binds
        )


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ replaced by `env` for the duration (settings read their environment)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def _produce(
    redis: aioredis.Redis,
    n: int,
    operators: int,
    *,
    alert: str = ALERT,
    expires_s: float = 7200,
    offset: int = 0,
) -> None:
    """XADD `n` recipients of `alert`, numbers from `offset` on (each alert its own block)."""
    header = codec.Header(
        alert=alert,
        version=1,
        kind="test",
        expires=time.time() + expires_s,
        sender="BE-Alert",
        texts={"en": TEXT},
    )
    size = codec.ENTRY_SIZE
    for start in range(0, n, 50 * size):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 50 * size), size):
                to = [
                    (f"+{PREFIXES[j % operators]}{offset + j:06d}", "en")
                    for j in range(i, min(n, i + size))
                ]
                fields = codec.encode(codec.WorkEntry(header, to, str(i // size)))
                pipe.xadd(keys.SMS_STREAM, fields)  # type: ignore[arg-type]
            await pipe.execute()


def expiring_offset(fault_index: int) -> int:
    """The first number of the expiring alert queued before fault `fault_index` (0-based): a
    block of 1,000 each, above the campaign's numbers."""
    if not 0 <= fault_index < 99:
        raise ValueError(f"fault index {fault_index}: at most 99 faults per run")
    return 900_000 + 1000 * fault_index


class Sampler:
    """Delivered recipients per operator over time, from PostgreSQL (the truth)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        #: The campaign's alert: ALERT, or its id once sent through alerting (--campaign alert).
        self.alert = ALERT
        self.samples: list[tuple[float, dict[str, int]]] = []

    async def run(self) -> None:
        """Sample every 0.5 s until cancelled (through a PostgreSQL restart too)."""
        while True:
            try:
                rows = await self.pool.fetch(
                    "SELECT operator, count(*) AS n FROM sms_messages"
                    " WHERE alert = $1 AND state = 'delivered' GROUP BY operator",
                    self.alert,
                    timeout=5,
                )
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass  # PostgreSQL restarting: no sample
            else:
                self.samples.append((time.monotonic(), {r["operator"]: int(r["n"]) for r in rows}))
            await asyncio.sleep(0.5)

    def delivered(self) -> int:
        """Recipients delivered at the last sample."""
        return sum(self.samples[-1][1].values()) if self.samples else 0

    def rate(self, ops: list[str], t0: float, t1: float) -> float:
        """Deliveries per second of `ops` between t0 and t1 (nearest samples)."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return 0.0
        (a, first), (b, last) = inside[0], inside[-1]
        return sum(last.get(op, 0) - first.get(op, 0) for op in ops) / max(b - a, 1e-9)


# -- the faults ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What a fault gets: the stack, the options, the operators it hits."""

    stack: Stack
    args: argparse.Namespace
    hit: list[str]
    sampler: Sampler


def _every(names: list[str]) -> list[str]:
    return list(names)


def _last(names: list[str]) -> list[str]:
    return [names[-1]]


def _second(names: list[str]) -> list[str]:
    return [names[min(1, len(names) - 1)]]


def _first(names: list[str]) -> list[str]:
    return [names[0]]


def _none(_run: Run) -> int:
    return 0


def _hit_window(run: Run) -> int:
    """The binds' windows of the hit operators: what a cut bind may have had in the air."""
    return run.stack.window(run.hit)


@dataclass(frozen=True)
class Fault:
    """One fault: `inject` returns once it is over, with any figures of its own."""

    name: str
    inject: Callable[[Run], Awaitable[dict[str, Any]]]
    #: The operators it hits, from all of them (the others' rate is watched meanwhile).
    hits: Callable[[list[str]], list[str]] = _every
    #: Duplicates it may cause: the in-flight window of the process it killed or cut.
    bound: Callable[[Run], int] = _none
    #: Figures of its own also given as flat totals, with how several are combined (max, min).
    totals: Mapping[str, Callable[[list[Any]], Any]] = field(default_factory=dict)
    #: How long before it started a duplicate's first copy may have left (see `_attribute`).
    lead_s: float = 0.5
    #: Recipients its alert needs, registered before the campaign (None: it sends no alert
    #: through alerting, which then need not run for it).
    audience: Callable[[argparse.Namespace], int] | None = None
    #: Whether the rate the other operators kept during it is an `other_operators_rate_share`
    #: (not for a fault whose own alert takes the operators' rate, nor for the CPU hog).
    measures_others: bool = True
    #: Figures only the simulators' arrivals give, set at the end (they are written then).
    finish: Callable[[Stack, dict[str, Any]], None] | None = None
    #: The channel its alert goes by (`email`: the e-mail process and its relay run for it;
    #: `cell_broadcast`: the cell broadcast process and a CBC simulator per operator).
    channel: str = "sms"


#: Every fault the bench can inject, in the default order (append with @fault).
FAULTS: dict[str, Fault] = {}


#: A duplicate's first copy may leave this long before its fault starts: it was in the window
#: when the link was cut. Longer for a killed process (KILLED_LEAD_S): it had handed the copy
#: over without recording it yet. Never so long that it reaches back into the previous fault,
#: whose own duplicates would then be blamed on the next (pg_restart was blamed for sms_kill9's).
IN_FLIGHT_LEAD_S = 0.5
KILLED_LEAD_S = 2.0


def fault(
    name: str,
    *,
    hits: Callable[[list[str]], list[str]] = _every,
    bound: Callable[[Run], int] = _none,
    totals: Mapping[str, Callable[[list[Any]], Any]] | None = None,
    lead_s: float = IN_FLIGHT_LEAD_S,
    audience: Callable[[argparse.Namespace], int] | None = None,
    measures_others: bool = True,
    finish: Callable[[Stack, dict[str, Any]], None] | None = None,
    channel: str = "sms",
) -> Callable[
    [Callable[[Run], Awaitable[dict[str, Any]]]], Callable[[Run], Awaitable[dict[str, Any]]]
]:
    """Register a fault function under `name` (see Fault)."""

    def register(
        inject: Callable[[Run], Awaitable[dict[str, Any]]],
    ) -> Callable[[Run], Awaitable[dict[str, Any]]]:
        FAULTS[name] = Fault(
            name,
            inject,
            hits,
            bound,
            dict(totals or {}),
            lead_s,
            audience,
            measures_others,
            finish,
            channel,
        )
        return inject

    return register


@fault("smsc_down", hits=_last, bound=_hit_window)
async def smsc_down(run: Run) -> dict[str, Any]:
    """The operator's simulator stopped (connections refused) for --fault-s, then started."""
    run.stack.stop_smsc(run.hit[0])
    await asyncio.sleep(run.args.fault_s)
    run.stack.start_smsc(run.hit[0])
    return {}


@fault("smsc_throttled", hits=_second, bound=_hit_window)
async def smsc_throttled(run: Run) -> dict[str, Any]:
    """The operator's simulator answering 0x58 above a quarter of the rate for --fault-s."""
    run.stack.stop_smsc(run.hit[0])
    run.stack.start_smsc(run.hit[0], "--max-rate", str(max(1, run.args.rate // 4)))
    await asyncio.sleep(run.args.fault_s)
    run.stack.stop_smsc(run.hit[0])
    run.stack.start_smsc(run.hit[0])
    return {}


@fault("smsc_hang", hits=_first, bound=_hit_window)
async def smsc_hang(run: Run) -> dict[str, Any]:
    """The operator's SMSC hangs without closing for --fault-s (SIGUSR1: nothing answered,
    binds included; the binds must notice, drop and bind again once it answers)."""
    proc = run.stack.smscs[run.hit[0]]
    proc.send_signal(signal.SIGUSR1)
    await asyncio.sleep(run.args.fault_s)
    proc.send_signal(signal.SIGUSR1)
    return {}


@fault("smsc_garbage", hits=_last, bound=_hit_window)
async def smsc_garbage(run: Run) -> dict[str, Any]:
    """The operator's SMSC writes a malformed PDU on every bind (SIGUSR2): they drop and bind
    again, nothing lost."""
    run.stack.smscs[run.hit[0]].send_signal(signal.SIGUSR2)
    await asyncio.sleep(0.2)
    return {}


def _sms_window(run: Run) -> int:
    return run.stack.window(run.stack.names)


@fault("sms_kill9", bound=_sms_window, lead_s=KILLED_LEAD_S)
async def sms_kill9(run: Run) -> dict[str, Any]:
    """The SMS process killed with SIGKILL and started again (its entries claimed after
    TOCSIN_CLAIM_IDLE_S)."""
    assert run.stack.sms is not None
    run.stack.sms.send_signal(signal.SIGKILL)
    await asyncio.to_thread(run.stack.sms.wait, 30)
    run.stack.start_sms()
    return {}


@fault("pg_restart")
async def pg_restart(run: Run) -> dict[str, Any]:
    """PostgreSQL stopped (fast shutdown) and started again on its data folder and port."""
    i, server = run.stack.server("postgres")
    port = urlsplit(server.url).port
    await asyncio.to_thread(server.stop)
    run.stack.supervisor.servers[i] = await asyncio.to_thread(
        start_postgres, data_dir=run.stack.pg_dir, port=port, fast_unsafe=True
    )
    return {}


@fault("redis_restart")
async def redis_restart(run: Run) -> dict[str, Any]:
    """Redis stopped and started again on its port with its data (AOF)."""
    i, server = run.stack.server("redis")
    await asyncio.to_thread(server.stop)
    run.stack.supervisor.servers[i] = await asyncio.to_thread(
        start_redis, data_dir=run.stack.redis_dir, port=run.stack.redis_port
    )
    return {}


@fault("redis_lost")
async def redis_lost(run: Run) -> dict[str, Any]:
    """Redis stopped and started again on its port EMPTY: stream, consumer group, pending
    entries, control keys and limiter state gone. What the SMS process had read goes on; the
    stream's unread entries are lost unless re-derived from PostgreSQL (not built yet: see
    docs/faults.md), which `lost` shows."""
    i, server = run.stack.server("redis")
    await asyncio.to_thread(server.stop)
    for path in run.stack.redis_dir.iterdir():
        if path.name.startswith("appendonly") or path.suffix in (".aof", ".rdb"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    run.stack.supervisor.servers[i] = await asyncio.to_thread(
        start_redis, data_dir=run.stack.redis_dir, port=run.stack.redis_port
    )
    return {}


# -- faults through alerting and targeting (bench/alertstack.py) ----------------------------


def _alert_recipients(args: argparse.Namespace) -> int:
    return int(args.alert_recipients)


def _resolve_recipients(args: argparse.Namespace) -> int:
    return int(args.resolve_recipients)


def _alerts(run: Run) -> AlertServices:
    if run.stack.alerts is None:
        raise RuntimeError("alerting and targeting were not started for this fault")
    return run.stack.alerts


def _numbers(stack: Stack, fault_name: str) -> list[str]:
    """The numbers of a fault's alert audience."""
    assert stack.alerts is not None
    audience = stack.alerts.audiences[fault_name]
    return [audience.number(i) for i in range(audience.count)]


async def _alert_outcome(
    run: Run, name: str, alert_id: str, sent: float, *, channel: int = SMS
) -> dict[str, Any]:
    """Wait for the alert to be complete in alerting; its figures: state, time from SendAlert
    to complete, recipients and those neither delivered nor handed to an SMSC or the relay
    (`alert_lost`), from the records of `channel` (SMS, EMAIL)."""
    alerts = _alerts(run)
    final = await alerts.until_final(alert_id, timeout_s=run.args.alert_timeout_s)
    completion = time.monotonic() - sent
    states = await outcomes(run.sampler.pool, alert_id, TABLES[channel])
    # What targeting queued (a subscriber of the population may live in the zone too); the
    # subscribers registered for the fault if alerting does not answer.
    recipients = alerts.audiences[name].count
    if final is not None:
        recipients = sum(c.targeted for c in final.progress if c.channel == channel) or recipients
    reached = states.get("delivered", 0) + states.get("submitted", 0)
    return {
        "alert_state": state_name(final),
        "alert_completed": final is not None and state_name(final) == "complete",
        "alert_completion_s": round(completion, 2) if final is not None else None,
        "alert_registered": alerts.audiences[name].count,
        "alert_recipients": recipients,
        "alert_lost": recipients - reached,
        "alert_states": states,
    }


@fault("alerting_kill9", audience=_alert_recipients, measures_others=False, lead_s=KILLED_LEAD_S)
async def alerting_kill9(run: Run) -> dict[str, Any]:
    """An emergency alert sent through SendAlert; alerting killed with SIGKILL as soon as
    SendAlert returns, and started again: the alert must reach everyone once and end complete
    (its settler folds the outcomes in after the restart)."""
    alerts = _alerts(run)
    alert_id = await alerts.create("alerting_kill9")
    sent = time.monotonic()
    await alerts.send(alert_id)
    restart_s = await alerts.kill9("alerting")
    outcome = await _alert_outcome(run, "alerting_kill9", alert_id, sent)
    return {"restart_s": round(restart_s, 2), **outcome}


async def _stream_head(redis: aioredis.Redis, stream: str) -> str:
    """The last id ever added to `stream` (entries acknowledged and deleted included)."""
    try:
        info = await redis.xinfo_stream(stream)
    except aioredis.ResponseError:
        return "0-0"  # no such stream yet
    return str(info["last-generated-id"])


@fault("targeting_kill9", audience=_resolve_recipients, measures_others=False, lead_s=KILLED_LEAD_S)
async def targeting_kill9(run: Run) -> dict[str, Any]:
    """An emergency alert sent through SendAlert; targeting killed with SIGKILL as soon as its
    first work entry is on the emergency lane, while it resolves the rest (a small audience may
    be resolved by then: `send_alert_running_at_kill`, `resolve_cut`), and started again.
    alerting tries the cut Resolve again by itself (`resolve_retry_s`): SendAlert answers once
    targeting is back. Should it fail all the same, the alert stays sending, stopped, and the
    bench sends it again, as an operator would (`resumed_by_operator`)."""
    alerts = _alerts(run)
    alert_id = await alerts.create("targeting_kill9")
    stream = lane_stream("sms", codec.priority_of("emergency"))
    redis = connect_redis(run.stack.redis_url)
    try:
        before = await _stream_head(redis, stream)
        sent = time.monotonic()
        sending = asyncio.create_task(alerts.send(alert_id))
        # Polling Redis: the entry's arrival is nothing this program can await.
        while not sending.done():
            if await _stream_head(redis, stream) != before:
                break
            await asyncio.sleep(0.002)
    finally:
        await redis.aclose()
    running = not sending.done()
    restart_s = await alerts.kill9("targeting")
    error = None
    try:
        await sending
    except grpc.aio.AioRpcError as exc:
        error = exc.code().name
    resumed = False
    alert = await alerts.get(alert_id)
    if alert.state == alerting_pb2.ALERT_STATE_SENDING:
        await alerts.send(alert_id)  # resume the stopped send, as an operator would
        resumed = True
    outcome = await _alert_outcome(run, "targeting_kill9", alert_id, sent)
    return {
        "send_alert_running_at_kill": running,
        # SendAlert still running at the kill: its Resolve stream was cut.
        "resolve_cut": running or error is not None or resumed,
        "send_alert_error": error,
        "resumed_by_operator": resumed,
        "restart_s": round(restart_s, 2),
        **outcome,
    }


def _email_recipients(args: argparse.Namespace) -> int:
    return int(args.email_recipients)


def _voice_recipients(args: argparse.Namespace) -> int:
    return int(args.voice_recipients)


def _email_settings(run: Run) -> EmailSettings:
    """The e-mail process's settings, read from its environment as it reads them."""
    with _environment(_channel_env(run, "email")):
        return EmailSettings()  # type: ignore[call-arg]  # URLs from the environment


def _voice_settings(run: Run) -> VoiceSettings:
    """The voice process's settings, read from its environment as it reads them."""
    with _environment(_channel_env(run, "voice")):
        return VoiceSettings()  # type: ignore[call-arg]  # URLs from the environment


def _channel_env(run: Run, name: str) -> dict[str, str]:
    env = dict(_alerts(run).env)
    env.update(_alerts(run).extra_env[name])
    return env


def _email_window(run: Run) -> int:
    """What the relay may have taken from the killed e-mail process without a durable trace:
    one transaction of up to TOCSIN_SMTP_BATCH recipients on each of its connections."""
    settings = _email_settings(run)
    return settings.smtp_connections * settings.smtp_batch


def _voice_window(run: Run) -> int:
    """Calls the killed voice process may have had answered without a durable trace: every
    channel of its trunks (TOCSIN_TRUNK_CHANNELS each)."""
    return sum(t.channels for t in _voice_settings(run).trunk_specs())


def _start_peer(stack: Stack, name: str, args: list[str]) -> int:
    """A channel process's peer simulator (`python <args>`, which prints its port on a
    `listening` line): its port."""
    proc = stack.supervisor.spawn(
        name,
        args,
        output="pipe",
        errors="log" if stack.supervisor.log_dir is not None else "null",
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the {name} simulator did not start")
    stack.peers[name] = proc
    return int(json.loads(line)["port"])


def _stop_peer(stack: Stack, name: str) -> dict[str, Any]:
    """Stop a peer simulator; the counts of its `stopped` line."""
    proc = stack.peers.pop(name)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    for line in out.splitlines():
        data: dict[str, Any] = json.loads(line)
        if data.get("event") == "stopped":
            return data
    raise RuntimeError(f"the {name} simulator stopped without its counts")


async def _kill_once_delivered(run: Run, name: str, channel: int) -> dict[str, Any]:
    """Send fault `name`'s emergency alert on `channel`, kill the channel's process with
    SIGKILL once its first recipient is `delivered` (polling PostgreSQL: nothing this program
    can await), start it again and wait for the alert's completion: their figures."""
    alerts = _alerts(run)
    alert_id = await alerts.create(name, channel)
    sent = time.monotonic()
    await alerts.send(alert_id)
    deadline = sent + run.args.alert_timeout_s
    delivered = 0
    while time.monotonic() < deadline:
        delivered = int(
            await run.sampler.pool.fetchval(
                f"SELECT count(*) FROM {TABLES[channel]} WHERE alert = $1 AND state = 'delivered'",
                alert_id,
            )
        )
        if delivered:
            break
        await asyncio.sleep(0.02)
    process = "email" if channel == EMAIL else "voice"
    restart_s = await alerts.kill9(process)
    outcome = await _alert_outcome(run, name, alert_id, sent, channel=channel)
    return {
        "delivered_at_kill": delivered,
        "killed_mid_alert": 0 < delivered < alerts.audiences[name].count,
        "restart_s": round(restart_s, 2),
        **outcome,
    }


@fault(
    "email_kill9",
    audience=_email_recipients,
    bound=_email_window,
    measures_others=False,
    lead_s=KILLED_LEAD_S,
    channel="email",
)
async def email_kill9(run: Run) -> dict[str, Any]:
    """An emergency e-mail alert sent through SendAlert; the e-mail process killed with SIGKILL
    once the relay simulator (slowed by --email-relay-delay-s) has taken its first e-mails of
    it, and started again: its entries are claimed after TOCSIN_CLAIM_IDLE_S, and the alert must
    reach every address once (repeats at the relay at most its window: `_email_window`)."""
    figures = await _kill_once_delivered(run, "email_kill9", EMAIL)
    relay = _stop_peer(run.stack, "smtp-relay")
    registered = _alerts(run).audiences["email_kill9"].count
    return {
        **figures,
        # Addresses the relay never took (of those registered for the fault: nobody else lives
        # in its zone with an e-mail address), and its repeats of one address.
        "relay_recipients": int(relay["recipients"]),
        "relay_lost": registered - int(relay["recipients"]),
        "channel_duplicates": int(relay["duplicates"]),
    }


@fault(
    "voice_kill9",
    audience=_voice_recipients,
    bound=_voice_window,
    measures_others=False,
    lead_s=KILLED_LEAD_S,
    channel="voice",
)
async def voice_kill9(run: Run) -> dict[str, Any]:
    """An emergency voice alert sent through SendAlert; the voice process killed with SIGKILL
    once the first call of it was answered and recorded (the SIP trunk simulator answers every
    call after --voice-ring-s), while the next calls ring or play, and started again: the calls
    it had in the air were answered without a record, and are made again once its entries are
    claimed (at most its trunks' channels: `_voice_window`)."""
    figures = await _kill_once_delivered(run, "voice_kill9", VOICE)
    trunk = _stop_peer(run.stack, "siptrunk")
    registered = _alerts(run).audiences["voice_kill9"].count
    return {
        **figures,
        # Numbers the trunk never got a call for; answered calls beyond one per number (the
        # trunk answers every call: a repeat is a second call of someone who picked up).
        "trunk_numbers": int(trunk["numbers"]),
        "trunk_lost": registered - int(trunk["numbers"]),
        "trunk_answered": int(trunk["answered"]),
        "trunk_numbers_answered_twice": int(trunk["numbers_answered_twice"]),
        "channel_duplicates": int(trunk["answered"]) - int(trunk["numbers"]),
    }


def _no_recipients(_args: argparse.Namespace) -> int:
    """A presence channel reaches phones in the zone, nobody registered: a zone, no audience."""
    return 0


def _cbc_messages(alert: alerting_pb2.Alert) -> set[int]:
    """The CBS message identifiers of the alert at every CBC (services/cellbroadcast's table):
    its first language's, and the additional-language one for the others."""
    spec = alert.spec
    primary = identifiers.identifier(
        kind=alerting_pb2.AlertKind.Name(spec.kind).removeprefix("ALERT_KIND_").lower(),
        severity=spec.severity,
        urgency=spec.urgency,
        certainty=spec.certainty,
    )
    extra = {primary + identifiers.ADDITIONAL_LANGUAGE_OFFSET} if len(spec.infos) > 1 else set()
    return {primary, *extra}


def cbc_accounting(
    requests: Mapping[str, list[tuple[str, int | None, int]]], expected: set[int]
) -> dict[str, int]:
    """The figures of what the CBCs saw (per operator, every request in order as (method, message
    identifier, HTTP status)) for an alert on the `expected` identifiers at each of them:

    - `cbc_operators_lost`: operators where one of them was never created (201);
    - `cbc_duplicates`: creations (201) beyond one per operator and identifier: a broadcast
      started twice. osmo-cbc holds one message per identifier and answers a second create 409,
      so a repeated create is refused, not broadcast twice; only a delete between two creates
      could make one;
    - `cbc_repeat_creates`: create requests (POST) beyond one per operator and identifier,
      whatever their answer (409 for a repeat of a broadcast the CBC holds);
    - `cbc_messages_active`: the expected messages still held at the end (created, not deleted).
    """
    lost = duplicates = repeats = active = 0
    for seen in requests.values():
        posts = [(i, status) for method, i, status in seen if method == "POST" and i in expected]
        created = [i for i, status in posts if status == 201]
        deleted = [i for method, i, status in seen if method == "DELETE" and status == 200]
        lost += any(i not in created for i in expected)
        duplicates += sum(max(0, created.count(i) - 1) for i in expected)
        repeats += sum(max(0, [p for p, _ in posts].count(i) - 1) for i in expected)
        active += sum(max(0, created.count(i) - deleted.count(i)) for i in expected)
    return {
        "cbc_operators_lost": lost,
        "cbc_duplicates": duplicates,
        "cbc_repeat_creates": repeats,
        "cbc_messages_active": active,
    }


def _cbc_requests(stack: Stack, since: Mapping[str, int]) -> dict[str, list[Any]]:
    """Per operator, the requests its CBC simulator saw since `since` (the count of its events
    then): (method, message identifier, status)."""
    return {
        op: [(e.method, e.message_id, e.status) for e in sim.state.events[since[op] :]]
        for op, sim in stack.cbcs.items()
    }


async def _until(done: Callable[[], bool], deadline: float) -> float | None:
    """Poll `done` every 10 ms (the simulators run in this loop: nothing to await on) until it
    holds, or `deadline` (monotonic) passes: the monotonic time it held, or None."""
    while True:
        if done():
            return time.monotonic()
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.01)


async def _cb_states(run: Run, alert_id: str) -> dict[str, int]:
    """The cell broadcast service's records of the alert (cb_requests): action/state counts."""
    rows = await run.sampler.pool.fetch(
        "SELECT action, state, count(*) AS n FROM cb_requests"
        " WHERE alert_id = $1 AND channel = 'cell_broadcast' GROUP BY action, state",
        alert_id,
    )
    return {f"{r['action']}/{r['state']}": int(r["n"]) for r in rows}


@fault(
    "cellbroadcast_kill9",
    audience=_no_recipients,
    measures_others=False,
    lead_s=KILLED_LEAD_S,
    channel="cell_broadcast",
)
async def cellbroadcast_kill9(run: Run) -> dict[str, Any]:
    """An emergency cell broadcast alert sent through SendAlert (the bench's issuer is the
    national crisis centre: a zone; emergencies may use the presence channels); the cell
    broadcast process killed with SIGKILL as soon as a CBC simulator created the first of its
    messages, while the CBCs hold their answers (--cbc-latency-s), and started again: the rows
    it leased are taken over once their lease ran out, the creates it never heard answered are
    sent again (409: the CBC holds them), the rest posted. Once every CBC holds the alert, it
    is cancelled through alerting, and every CBC must have deleted it by the time CancelAlert
    answered plus --cbc-settle-s."""
    alerts, stack, args = _alerts(run), run.stack, run.args
    since = {op: len(sim.state.events) for op, sim in stack.cbcs.items()}
    sims = list(stack.cbcs.values())
    alert_id = await alerts.create("cellbroadcast_kill9", CELL_BROADCAST)
    expected = _cbc_messages(await alerts.get(alert_id))
    sent = time.monotonic()
    deadline = sent + args.alert_timeout_s
    sending = asyncio.create_task(alerts.send(alert_id))

    def created() -> int:
        return sum(r[2] == 201 for reqs in _cbc_requests(stack, since).values() for r in reqs)

    await _until(lambda: created() > 0 or sending.done(), deadline)
    at_kill = created()
    running = not sending.done()
    restart_s = await alerts.kill9("cellbroadcast")
    for sim in sims:
        sim.set(latency_s=0.0)  # the kill landed; the CBCs answer at once from now on
    error = None
    try:
        await sending
    except grpc.aio.AioRpcError as exc:
        error = exc.code().name
    held = await _until(lambda: all(expected <= set(sim.state.active) for sim in sims), deadline)
    states_held = await _cb_states(run, alert_id)
    state = state_name(await alerts.get(alert_id))
    cancel = time.monotonic()
    # Watched from the cancel on: the CBCs may delete before CancelAlert answers.
    withdrawn = asyncio.create_task(
        _until(
            lambda: not any(expected & set(sim.state.active) for sim in sims),
            cancel + args.alert_timeout_s,
        )
    )
    try:
        await alerts.cancel(alert_id)
        answered = time.monotonic()
        await asyncio.sleep(args.cbc_settle_s)
        stale = sum(len(expected & set(sim.state.active)) for sim in sims)
        gone = await withdrawn
    finally:
        withdrawn.cancel()
    requests = _cbc_requests(stack, since)
    counts = cbc_accounting(requests, expected)
    return {
        "send_alert_running_at_kill": running,
        "send_alert_error": error,
        "cbc_created_at_kill": at_kill,
        "killed_mid_broadcast": 0 < at_kill < len(expected) * len(sims),
        "restart_s": round(restart_s, 2),
        "alert_state": state,
        "cbc_operators": len(sims),
        "cbc_message_ids": sorted(expected),
        "broadcast_completed": held is not None,
        # SendAlert to every CBC holding every message of the alert.
        "broadcast_complete_s": round(held - sent, 2) if held is not None else None,
        "cb_states_broadcast": states_held,
        "cancel_answer_s": round(answered - cancel, 2),
        # CancelAlert to no CBC holding any message of the alert.
        "withdrawn_s": round(gone - cancel, 2) if gone is not None else None,
        "cb_states_withdrawn": await _cb_states(run, alert_id),
        **counts,
        # Requests to one operator about one alert go one at a time, its messages one after the
        # other: the kill cut at most one create per CBC whose answer was never recorded.
        "cbc_repeat_creates_bound": len(sims),
        "cbc_requests": requests,
        # Into the fault's (and the run's) lost, duplicates and stale_sent.
        "alert_lost": counts["cbc_operators_lost"],
        "channel_duplicates": counts["cbc_duplicates"],
        "alert_stale_sent": stale,
    }


def _first_sms(stack: Stack, figures: dict[str, Any]) -> None:
    """`emergency_first_sms_ms`: from SendAlert to the first submit_sm of the emergency at a
    simulator (wall clocks of one machine)."""
    sent = figures.pop("_sent_wall")
    first = first_after(stack.arrivals(), _numbers(stack, "priority_alert"), sent)
    figures["emergency_first_sms_ms"] = (
        round((first - sent) * 1000, 1) if first is not None else None
    )


@fault(
    "priority_alert",
    audience=_alert_recipients,
    measures_others=False,
    totals={"emergency_first_sms_ms": max},
    finish=_first_sms,
)
async def priority_alert(run: Run) -> dict[str, Any]:
    """An emergency alert sent through alerting while the campaign's test SMS (bulk lane) are
    queued ahead of it: its first SMS must leave within a second."""
    alerts = _alerts(run)
    alert_id = await alerts.create("priority_alert")
    queued = run.args.n - run.sampler.delivered()
    sent, sent_wall = time.monotonic(), time.time()
    await alerts.send(alert_id)
    send_ms = (time.monotonic() - sent) * 1000
    outcome = await _alert_outcome(run, "priority_alert", alert_id, sent)
    return {
        "queued_ahead": queued,
        "send_alert_ms": round(send_ms, 1),
        "_sent_wall": sent_wall,
        **outcome,
    }


def _submits(stack: Stack, t0: float, t1: float) -> dict[str, list[float]]:
    """Per operator, the simulators' arrival times between t0 and t1 (every alert's)."""
    found: dict[str, list[float]] = {name: [] for name in stack.names}
    for name, arrivals in stack.arrivals_by_operator().items():
        found[name].extend(t for at in arrivals.values() for t in at if t0 <= t < t1)
    return found


def _cpu_load_share(stack: Stack, figures: dict[str, Any]) -> None:
    """`rate_share_under_cpu_load`: submit_sm per second at the simulators during the hog over
    those of the normal measurement; the busiest second of an operator against its rate."""
    h0, h1 = figures.pop("_window")
    n0, n1 = stack.normal_window
    during, normal = _submits(stack, h0, h1), _submits(stack, n0, n1)
    rate = sum(len(t) for t in during.values()) / max(h1 - h0, 1e-9)
    base = sum(len(t) for t in normal.values()) / max(n1 - n0, 1e-9)
    busiest = max((busiest_window(t) for t in during.values()), default=0)
    figures.update(
        submit_sm_per_s_under_cpu_load=round(rate, 1),
        normal_submit_sm_per_s=round(base, 1),
        configured_submit_sm_per_s=stack.args.rate * len(stack.names),
        rate_share_under_cpu_load=round(rate / base, 4) if base else None,
        busiest_second_submit_sm=busiest,
        rate_per_operator_submit_sm_per_s=stack.args.rate,
    )


def _simulators_at(stack: Stack, priority: str) -> str:
    """Every SMSC simulator process's threads at `priority` (bench/realtime.py) where allowed:
    the one they all got (`fifo`, `normal`...), or `mixed`."""
    got = {prioritise(priority, proc.pid) for proc in stack.smscs.values()}
    return got.pop() if len(got) == 1 else "mixed"


@fault(
    "cpu_hog",
    measures_others=False,
    totals={"rate_share_under_cpu_load": min},
    finish=_cpu_load_share,
)
async def cpu_hog(run: Run) -> dict[str, Any]:
    """--cpu-hog busy loops (one per core by default: bench/cpuhog.py) on the same cores for
    --fault-s, the SMSC simulators at real-time priority meanwhile where allowed
    (`simulator_priority`): the campaign must keep its rate, and never go above it."""
    hog = CpuHog(run.args.cpu_hog or default_hogs())
    start = time.time()
    hog.start()
    # The SMSC simulators at real-time FIFO priority 1 where allowed (as loadtest/campaign.py
    # runs its own): a simulator the hogs stall reads the submits of a second late and dates
    # them all in the next one, bunching arrivals into one second.
    priority = _simulators_at(run.stack, "fifo")
    try:
        await asyncio.sleep(run.args.fault_s)
    finally:
        hog.stop()
        _simulators_at(run.stack, "normal")
    # A campaign that ran dry during the hog sends less for want of work: the share then says
    # nothing of the hog (raise --n).
    left = run.args.n - run.sampler.delivered()
    if left < run.args.rate * len(run.stack.names) * 2:
        print(f"cpu_hog: only {left} of the campaign left at its end; raise --n", flush=True)
    return {
        "cpu_hog_processes": hog.processes,
        "simulator_priority": priority,
        "campaign_left_at_end": left,
        "_window": (start, time.time()),
    }


async def _inject(run: Run, kind: Fault, normal: dict[str, float]) -> dict[str, Any]:
    args, names, sampler = run.args, run.stack.names, run.sampler
    hit = run.hit
    others = [op for op in names if op not in hit] or list(names)
    start, wall = time.monotonic(), time.time()
    print(f"fault {kind.name}: {', '.join(hit)}", flush=True)
    extra = await kind.inject(run)
    end = time.monotonic()
    during = (
        sampler.rate(others, start, end) if end - start >= 1.0 and kind.measures_others else None
    )
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
        "fault": kind.name,
        "operators_hit": hit,
        "started_at": wall,
        "lead_s": kind.lead_s,
        "fault_s": round(end - start, 2),
        "recovery_s": recovery,
        "other_operators_rate_share": round(during / base, 3)
        if during is not None and base
        else None,
        "duplicates_bound": kind.bound(run),
        **extra,
    }


def _repeats(arrivals: Mapping[str, list[float]]) -> list[tuple[float, int]]:
    """For every destination that arrived more than once, over every simulator instance of the
    run: the wall-clock time of its first arrival, and how many arrivals followed it."""
    return [(min(at), len(at) - 1) for at in arrivals.values() if len(at) > 1]


def _attribute(faults: list[dict[str, Any]], repeats: list[tuple[float, int]]) -> int:
    """Set each fault's `duplicates`: the repeats whose first copy left between its start (less
    its `lead_s`) and the next fault's (the second copy may leave much later, queued behind the
    backlog); return the repeats before the first fault (no fault to blame)."""
    for f in faults:
        # Repeats a fault counted itself (at a relay the SMSC simulators' arrivals miss).
        f["duplicates"] = f.pop("channel_duplicates", 0)
    before = 0
    for first, n in repeats:
        owner = None
        for i, f in enumerate(faults):
            if first >= f["started_at"] - f.get("lead_s", IN_FLIGHT_LEAD_S):
                owner = i
        if owner is None:
            before += n
        else:
            faults[owner]["duplicates"] += n
    return before


async def _start_alerts(
    args: argparse.Namespace, stack: Stack, *, database_url: str, redis_url: str
) -> None:
    """Targeting and alerting, seeded with an issuer and each alert fault's subscribers (in a
    city and a block of numbers of its own), when a fault of the run sends an alert."""
    audiences: dict[str, Audience] = {}
    for name in args.faults:
        count = FAULTS[name].audience
        if count is None or name in audiences:
            continue
        k = len(audiences)

        def number(i: int, k: int = k) -> str:
            return f"+{ALERT_PREFIXES[i % len(ALERT_PREFIXES)]}{k * 100_000 + i:06d}"

        def email(i: int, k: int = k) -> str:
            return f"faults-{k}-{i}@example.test"

        channel = FAULTS[name].channel
        audiences[name] = Audience(
            ALERT_PLACES[k % len(ALERT_PLACES)],
            count(args),
            number,
            email if channel == "email" else None,
            # A presence channel's fault registers nobody (its count is 0).
            targeting_pb2.CHANNEL_SMS
            if channel == "cell_broadcast"
            else targeting_pb2.Channel.Value(f"CHANNEL_{channel.upper()}"),
        )
    if not audiences and args.campaign != "alert":
        return
    env = {k: v for k, v in stack.sms_env.items() if not k.startswith("TOCSIN_")}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        TOCSIN_SMS_ADDR=f"127.0.0.1:{stack.sms_env['TOCSIN_GRPC_PORT']}",
        TOCSIN_LOG_LEVEL="WARNING",
    )
    stack.alerts = AlertServices(stack.supervisor, env)
    channels = sorted({FAULTS[name].channel for name in audiences} - {"sms"})
    stack.alerts.channels = ",".join(("sms", *channels))
    for channel in channels:
        process = PROCESSES[channel]
        if channel == "cell_broadcast":
            stack.alerts.extra_env[process] = await _cbc_peers(args, stack)
            stack.alerts.extra_env["alerting"] = {
                "TOCSIN_CELLBROADCAST_ADDR": stack.alerts.address(process)
            }
        else:
            stack.alerts.extra_env[process] = await asyncio.to_thread(
                _channel_peer, args, stack, channel
            )
        await asyncio.to_thread(stack.alerts.start, process)
    for name in ("targeting", "alerting"):
        await asyncio.to_thread(stack.alerts.start, name)
    population = args.n * POPULATION_FACTOR if args.campaign == "alert" else 0
    await stack.alerts.seed(database_url=database_url, audiences=audiences, population=population)
    for name in audiences:
        if FAULTS[name].channel == "cell_broadcast":
            # Cells of every operator over the fault's zone (where it ended up: with a
            # population loaded, somewhere nobody lives).
            await seed_cells(
                database_url,
                place=stack.alerts.audiences[name].place,
                operators=list(stack.cbcs),
                fault=name,
            )
    print(f"alerting and targeting up; audiences {sorted(audiences)}", flush=True)


#: The process of each channel a fault may start beside alerting (`python -m services.<it>`).
PROCESSES = {"email": "email", "voice": "voice", "cell_broadcast": "cellbroadcast"}


async def _cbc_peers(args: argparse.Namespace, stack: Stack) -> dict[str, str]:
    """One CBC simulator per operator, in this process as tests/services/cellbroadcast start
    them, answering --cbc-latency-s late (the work done at once: a process killed meanwhile
    never hears that its creates were taken); the cell broadcast process's environment."""
    for name in stack.names:
        sim = CbcSimulator(CbcConfig(name=name, latency_s=args.cbc_latency_s, lbsms=False))
        await sim.start()
        stack.cbcs[name] = sim
    return {
        "TOCSIN_CBC": ",".join(f"{n}=http://127.0.0.1:{s.port}" for n, s in stack.cbcs.items()),
        # Answers late but within the request timeout: nothing is retried before the kill.
        "TOCSIN_REQUEST_TIMEOUT_S": str(max(2.0, 4 * args.cbc_latency_s)),
        "TOCSIN_RETRY_MIN_S": "0.2",
        "TOCSIN_RETRY_MAX_S": "1",
        # The killed process's leases lapse soon and are swept up at once by its successor.
        "TOCSIN_LEASE_S": "3",
        "TOCSIN_SWEEP_S": "0.5",
    }


def _channel_peer(args: argparse.Namespace, stack: Stack, channel: str) -> dict[str, str]:
    """Start the peer simulator of `channel`'s process (email: a slowed SMTP relay; voice: a
    SIP trunk answering every call after a ring); that process's environment for it."""
    if channel == "email":
        relay = _start_peer(
            stack,
            "smtp-relay",
            ["-m", "simulators.smtp", "--port", "0", "--delay-s", str(args.email_relay_delay_s)],
        )
        return {
            "TOCSIN_SMTP_HOST": "127.0.0.1",
            "TOCSIN_SMTP_PORT": str(relay),
            "TOCSIN_SMTP_TLS": "none",
            "TOCSIN_BOUNCE_PORT": "-1",
            # Few connections and small transactions: a slow relay, an alert of a few seconds.
            "TOCSIN_SMTP_CONNECTIONS": "2",
            "TOCSIN_SMTP_BATCH": "10",
            "TOCSIN_CLAIM_IDLE_S": "3",
        }
    if channel == "voice":
        trunk = _start_peer(
            stack,
            "siptrunk",
            ["-m", "simulators.siptrunk", "--port", "0", "--ring-delay", str(args.voice_ring_s)],
        )
        return {
            "TOCSIN_TRUNKS": f"trunkA=127.0.0.1:{trunk}",
            # Few channels: the alert's calls go in rounds, the kill lands between them.
            "TOCSIN_TRUNK_CHANNELS": str(args.voice_channels),
            "TOCSIN_REPEAT": "1",
            "TOCSIN_RING_TIMEOUT_S": "10",
            "TOCSIN_RETRY_MIN_S": "1",
            "TOCSIN_RETRY_MAX_S": "2",
            # The killed process's channel leases lapse soon, for its successor to call.
            "TOCSIN_CHANNEL_LEASE_S": "10",
            "TOCSIN_CLAIM_IDLE_S": "3",
        }
    raise ValueError(f"channel: no peer for {channel!r}")


async def _send_campaign(args: argparse.Namespace, stack: Stack, sampler: Sampler) -> None:
    """The campaign as a test alert through alerting and targeting, to the circle around
    Brussels whose audience is nearest --n; --n becomes what targeting queued."""
    assert stack.alerts is not None
    alert_id, audience = await stack.alerts.campaign(recipients=args.n)
    sampler.alert = alert_id
    await stack.alerts.send(alert_id)
    alert = await stack.alerts.get(alert_id)
    targeted = sum(c.targeted for c in alert.progress if c.channel == SMS)
    print(f"campaign alert {alert_id}: audience {audience}, {targeted} SMS queued", flush=True)
    args.n = targeted


async def _bench(args: argparse.Namespace, supervisor: Supervisor, stack: Stack) -> dict[str, Any]:
    names = stack.names
    database_url = supervisor.postgres(data_dir=stack.pg_dir, fast_unsafe=True)
    stack.redis_port = free_port()
    stack.redis_dir.mkdir(parents=True, exist_ok=True)
    server = supervisor.add_server(start_redis(data_dir=stack.redis_dir, port=stack.redis_port))
    redis_url = stack.redis_url = server.url
    # The benchmarks' migration too: the synthetic population's bookkeeping (--campaign alert).
    await asyncio.to_thread(migrate, database_url)
    # No connection kept open: PostgreSQL restarts under it (pg_restart).
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=2)
    await pool.execute("TRUNCATE sms_messages, sms_message_ids")
    for name in names:
        stack.start_smsc(name, new_port=True)
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
        TOCSIN_ROUTES=";".join(
            f"{n}={p},{a}" + "".join(f",324{d}" for d in range(i, 10, len(names)))
            for i, (n, p, a) in enumerate(zip(names, PREFIXES, ALERT_PREFIXES, strict=False))
        ),
        TOCSIN_RATELIMIT_RULES=str(rules_file),
        TOCSIN_CLAIM_IDLE_S="3",
        TOCSIN_LOG_LEVEL="WARNING",
    )
    if args.max_in_flight:
        env["TOCSIN_MAX_IN_FLIGHT"] = str(args.max_in_flight)
    stack.sms_env = env
    stack.start_sms()
    await _start_alerts(args, stack, database_url=database_url, redis_url=redis_url)
    redis = connect_redis(redis_url)
    sampler = Sampler(pool)
    sampling = asyncio.create_task(sampler.run())
    t0 = time.monotonic()
    if args.campaign == "alert":
        await _send_campaign(args, stack, sampler)
    else:
        await _produce(redis, args.n, len(names))
    # Normal rates, once the service is bound and sending.
    while True:
        if sampler.delivered():
            break
        await asyncio.sleep(0.5)  # polling PostgreSQL's counts: nothing to await on
    await asyncio.sleep(2.0)  # past the start: every bind up, leases flowing
    m0, w0 = time.monotonic(), time.time()
    await asyncio.sleep(args.normal_s)
    m1 = time.monotonic()
    stack.normal_window = (w0, time.time())
    normal = {op: sampler.rate([op], m0, m1) for op in names}
    faults: list[dict[str, Any]] = []
    for i, kind in enumerate(FAULTS[name] for name in args.faults):
        if sampler.delivered() >= args.n:
            print(f"campaign over before fault {kind.name}: raise --n", flush=True)
            break
        # A small alert that expires half-way through the fault: nothing of it may be handed
        # to an operator after that (the simulators count such submits as stale).
        expiring = f"{ALERT}-expiring-{i}"
        # Twice: after a Redis restart the client's first command meets its dead connection.
        for attempt in range(2):
            try:
                await _produce(
                    redis,
                    EXPIRING_PER_OPERATOR * len(names),
                    len(names),
                    alert=expiring,
                    expires_s=max(0.5, args.fault_s / 2),
                    # A block of numbers of its own per fault. It was chosen by hash(alert) % 99,
                    # which Python salts per process: two faults' alerts shared a block in about
                    # two runs of five, and their 150 numbers each got both alerts, counted as
                    # 150 duplicates of the fault after (docs/faults.md).
                    offset=expiring_offset(i),
                )
                break
            except (OSError, aioredis.RedisError) as exc:
                if attempt:
                    print(f"expiring alert of {kind.name} not queued: {exc!r}", flush=True)
        run = Run(stack, args, kind.hits(names), sampler)
        faults.append(await _inject(run, kind, normal))
        await asyncio.sleep(args.normal_s)
    await redis.aclose()
    last, last_change = -1, time.monotonic()
    while sampler.delivered() < args.n and time.monotonic() - last_change < args.stall_s:
        if sampler.delivered() != last:
            last, last_change = sampler.delivered(), time.monotonic()
        await asyncio.sleep(0.5)
    elapsed = time.monotonic() - t0
    sampling.cancel()
    rows = await pool.fetch(
        "SELECT state, count(*) AS n FROM sms_messages WHERE alert = $1 GROUP BY state",
        sampler.alert,
    )
    states = {str(r["state"]): int(r["n"]) for r in rows}
    assert stack.sms is not None
    stack.sms.send_signal(signal.SIGTERM)
    await asyncio.to_thread(stack.sms.wait, 60)
    for name in list(stack.smscs):
        stack.stop_smsc(name)
    for sim in stack.cbcs.values():
        await sim.stop()
    sample = await _duplicate_sample(pool, stack.arrivals())
    await pool.close()
    figures = _figures(args, stack, faults, normal, states=states, elapsed=elapsed)
    if sample:
        figures["duplicate_sample"] = sample
    return figures


#: Duplicated destinations shown with their rows (the first ones by first arrival).
#: Destinations sampled per burst of duplicates (first copies within BURST_GAP_S of each other),
#: and in all: each fault's duplicates come in a burst of their own, so every one is sampled
#: (the first five of the run were all sms_kill9's while 150 more came later, unexplained).
DUPLICATE_SAMPLE = 3
DUPLICATE_SAMPLE_MAX = 15
BURST_GAP_S = 5.0


def _sampled(arrivals: Mapping[str, list[float]]) -> list[str]:
    """The destinations to sample: the first DUPLICATE_SAMPLE of each burst of repeats, in the
    order of their first copies, at most DUPLICATE_SAMPLE_MAX."""
    repeated = sorted((min(at), dest) for dest, at in arrivals.items() if len(at) > 1)
    chosen: list[str] = []
    in_burst, last = 0, float("-inf")
    for first, dest in repeated:
        in_burst = 0 if first - last > BURST_GAP_S else in_burst
        last = first
        if in_burst < DUPLICATE_SAMPLE and len(chosen) < DUPLICATE_SAMPLE_MAX:
            chosen.append(dest)
        in_burst += 1
    return chosen


async def _duplicate_sample(
    pool: asyncpg.Pool, arrivals: Mapping[str, list[float]]
) -> list[dict[str, Any]]:
    """A few destinations that arrived more than once, each with its arrival times and its rows
    in sms_messages: what a reader needs to tell which path sent it twice."""
    sample: list[dict[str, Any]] = []
    for dest in _sampled(arrivals):
        rows = await pool.fetch(
            "SELECT alert, version, state, holder, attempts, message_ids, bind, error,"
            " created_at, submitted_at, done_at FROM sms_messages WHERE address = $1",
            dest if dest.startswith("+") else "+" + dest,
        )
        sample.append(
            {
                "destination": dest,
                "arrivals": sorted(arrivals[dest]),
                "rows": [
                    {
                        k: (v.timestamp() if hasattr(v, "timestamp") else v)
                        for k, v in dict(r).items()
                    }
                    for r in rows
                ],
            }
        )
    return sample


def _figures(
    args: argparse.Namespace,
    stack: Stack,
    faults: list[dict[str, Any]],
    normal: dict[str, float],
    *,
    states: dict[str, int],
    elapsed: float,
) -> dict[str, Any]:
    stale = sum(int(s.get("stale_submits", 0)) for s in stack.stopped)
    # Accepted by an SMSC whose receipt never came: a simulator stopped (smsc_down) or cut
    # (smsc_hang, smsc_garbage) forgets the receipts it still owed, as a real SMSC would not.
    # Handed over, so not lost by the platform; shown apart.
    awaiting = states.get("submitted", 0)
    lost = args.n - states.get("delivered", 0) - awaiting
    unblamed = _attribute(faults, _repeats(stack.arrivals()))
    over = unblamed + sum(max(0, f["duplicates"] - f["duplicates_bound"]) for f in faults)
    for f in faults:
        # Stale submits and undelivered recipients cannot be dated: the campaign's figures,
        # and those of the fault's own alert.
        f.update(
            lost=lost + f.get("alert_lost", 0), stale_sent=stale + f.get("alert_stale_sent", 0)
        )
        del f["started_at"], f["lead_s"]
        finish = FAULTS[f["fault"]].finish
        if finish is not None:
            finish(stack, f)
    lost += sum(f.get("alert_lost", 0) for f in faults)
    # Broadcasts a CBC still held after the alert's cancel (cellbroadcast_kill9).
    stale += sum(f.get("alert_stale_sent", 0) for f in faults)
    recoveries = [f["recovery_s"] for f in faults]
    shares = [f["other_operators_rate_share"] for f in faults if f["other_operators_rate_share"]]
    figures: dict[str, Any] = {
        "n": args.n,
        "operators": len(stack.names),
        "rate_per_operator_sms_per_s": args.rate,
        "normal_sms_per_s": round(sum(normal.values()), 1),
        "elapsed_s": round(elapsed, 1),
        "faults_injected": [f["fault"] for f in faults],
        "faults": faults,
        "lost": lost,
        "awaiting_receipt": awaiting,
        "states": states,
        "duplicates": sum(f["duplicates"] for f in faults) + unblamed,
        "duplicates_over_bound": over,
        "stale_sent": stale,
        "max_recovery_s": None if None in recoveries or not recoveries else max(recoveries),
        "min_other_operators_rate_share": min(shares) if shares else None,
    }
    for kind in FAULTS.values():
        for key in kind.totals:
            figures[key] = None  # every total named, null when its fault was not injected
    for f in faults:
        for key, combine in FAULTS[f["fault"]].totals.items():
            values = [g[key] for g in faults if g.get(key) is not None]
            figures[key] = combine(values) if values else None
    return figures


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    WORK.mkdir(parents=True, exist_ok=True)
    names = [op.name for op in stack_operators()][: len(PREFIXES)]
    try:
        with Supervisor(log_dir=WORK / f"log-{os.getpid()}") as supervisor:
            stack = Stack(supervisor, names, args)
            return await _bench(args, supervisor, stack)
    finally:
        shutil.rmtree(WORK / f"pg-{os.getpid()}", ignore_errors=True)
        shutil.rmtree(WORK / f"redis-{os.getpid()}", ignore_errors=True)


#: Faults of a default run, in order. `redis_lost` joins them with --campaign alert only: the
#: unread entries of a campaign written straight onto the stream cannot be re-derived.
DEFAULT_FAULTS = (
    "smsc_down",
    "smsc_throttled",
    "smsc_hang",
    "smsc_garbage",
    "sms_kill9",
    "pg_restart",
    "redis_restart",
    "alerting_kill9",
    "targeting_kill9",
    "priority_alert",
    "cpu_hog",
)


#: Faults on demand only (not in a default run): kill -9 of the channel processes besides SMS,
#: each started with its peer simulators for its fault. Run alone, they write RESULTS_CHANNELS.
CHANNEL_FAULTS = ("email_kill9", "voice_kill9", "cellbroadcast_kill9")


def default_faults(campaign: str) -> list[str]:
    """The faults of a default run: with the campaign sent as an alert (which alerting can
    re-derive from PostgreSQL), `redis_lost` too, last (its duplicates, the known re-queue of
    recipients still waiting in the SMS process, are then blamed on it alone)."""
    return [*DEFAULT_FAULTS, *(("redis_lost",) if campaign == "alert" else ())]


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    # 400,000: at 900 SMS/s the campaign lasts the eleven default faults with their normal
    # seconds between them (200,000 ended before targeting_kill9).
    p.add_argument("--n", type=int, default=400_000, help="recipients of the campaign")
    p.add_argument("--rate", type=int, default=300, help="submit_sm per second per operator")
    p.add_argument("--fault-s", type=float, default=60.0, help="seconds a timed fault lasts")
    p.add_argument("--normal-s", type=float, default=10.0, help="normal seconds between faults")
    p.add_argument("--recovery-max-s", type=float, default=60.0)
    p.add_argument("--stall-s", type=float, default=60.0, help="give up after no progress")
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=0,
        help="the SMS process's TOCSIN_MAX_IN_FLIGHT (0: its default); a small run scales it "
        "down with the campaign so that a fault's backlog meets it as a full run's does",
    )
    p.add_argument(
        "--alert-recipients",
        type=int,
        default=300,
        help="recipients of the alerts of alerting_kill9 and priority_alert",
    )
    p.add_argument(
        "--resolve-recipients",
        type=int,
        default=10_000,
        help="recipients of targeting_kill9's alert: enough that resolving it takes a while",
    )
    p.add_argument(
        "--email-recipients",
        type=int,
        default=300,
        help="e-mail addresses of email_kill9's alert",
    )
    p.add_argument(
        "--email-relay-delay-s",
        type=float,
        default=0.02,
        help="seconds the SMTP relay simulator waits before each RCPT and DATA answer "
        "(email_kill9: the kill lands while the alert's e-mails are being sent)",
    )
    p.add_argument(
        "--voice-recipients", type=int, default=60, help="numbers of voice_kill9's alert"
    )
    p.add_argument(
        "--voice-channels",
        type=int,
        default=10,
        help="voice_kill9: concurrent calls of the voice process's trunk (TOCSIN_TRUNK_CHANNELS)",
    )
    p.add_argument(
        "--voice-ring-s",
        type=float,
        default=1.0,
        help="voice_kill9: seconds the SIP trunk simulator rings before it answers",
    )
    p.add_argument(
        "--cbc-latency-s",
        type=float,
        default=0.5,
        help="cellbroadcast_kill9: seconds the CBC simulators hold each answer until the kill "
        "(their work done at once), so that the kill lands with creates unanswered",
    )
    p.add_argument(
        "--cbc-settle-s",
        type=float,
        default=1.0,
        help="cellbroadcast_kill9: seconds after CancelAlert's answer by which every CBC must "
        "have deleted the alert (what one still holds then is stale_sent)",
    )
    p.add_argument(
        "--alert-timeout-s",
        type=float,
        default=120.0,
        help="seconds an alert sent through alerting may take to be complete",
    )
    p.add_argument("--cpu-hog", type=int, default=0, help="busy loops of cpu_hog (0: one per core)")
    p.add_argument(
        "--campaign",
        choices=("stream", "alert"),
        default="stream",
        help="stream: the campaign written straight onto the SMS stream; alert: a test alert "
        "through alerting and targeting to a synthetic population (N x 5 loaded, a zone around "
        "Brussels of about N), which alerting can re-derive when Redis loses its data",
    )
    p.add_argument(
        "--faults",
        nargs="*",
        default=None,
        choices=list(FAULTS),
        help="faults in order (default: DEFAULT_FAULTS, and redis_lost last with --campaign alert)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the figures go (default: faults_channels.json for CHANNEL_FAULTS alone, "
        "faults.json otherwise)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run, print and write the figures."""
    args = parser().parse_args(argv)
    if args.faults is None:
        args.faults = default_faults(args.campaign)
    if args.out is None:
        alone = args.faults and set(args.faults) <= set(CHANNEL_FAULTS)
        args.out = RESULTS_CHANNELS if alone else RESULTS
    figures = asyncio.run(run(args))
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if figures["lost"] == 0 and figures["stale_sent"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
