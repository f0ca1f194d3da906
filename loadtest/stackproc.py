"""Run `python -m stack run` as a child process on shifted ports, and stop it again.

Load tests, the metrics-coverage test and the demo test all need a whole stack of their own next
to whatever else runs on the machine: a random port offset and a temporary `--var` give them one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from stack.services import SERVICES, SMSCS

ROOT = Path(__file__).resolve().parent.parent
#: Printed by the supervisor once every service is SERVING.
READY_LINE = "tocsin: ready"


class StackError(RuntimeError):
    """The stack did not come up; the message carries its output."""


def random_offset() -> int:
    """A port offset unlikely to collide with `make run` or another test's stack."""
    return random.randrange(1000, 9000, 10)


@dataclass
class RunningStack:
    """A `python -m stack run` child and where its parts listen."""

    proc: subprocess.Popen[str]
    offset: int
    var: Path
    #: Every line the supervisor printed so far (a reader thread appends to it).
    lines: list[str] = field(default_factory=list)

    def grpc(self, service: str) -> str:
        """`127.0.0.1:<port>` of a service's gRPC server."""
        spec = next(s for s in SERVICES if s.name == service)
        return f"127.0.0.1:{spec.grpc_port + self.offset}"

    def metrics(self, service: str) -> str:
        """URL of a service's /metrics."""
        spec = next(s for s in SERVICES if s.name == service)
        return f"http://127.0.0.1:{spec.metrics_port + self.offset}/metrics"

    def services(self) -> list[str]:
        """Names of the services this stack runs (those built so far)."""
        return [s.name for s in SERVICES if s.exists()]

    def smsc_ports(self) -> dict[str, int]:
        """Operator -> port of each SMSC simulator."""
        return {s.operator: s.port + self.offset for s in SMSCS}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each part of the stack (services, stores, simulators)."""
        used: dict[str, float] = {}
        for proc in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                name = _part(proc.cmdline())
                t = proc.cpu_times()
            except psutil.Error:
                continue
            used[name] = used.get(name, 0.0) + t.user + t.system
        return used

    @property
    def output(self) -> str:
        """What the supervisor printed so far."""
        return "".join(self.lines)

    def database_url(self) -> str:
        """The PostgreSQL URL the stack uses (external, or its embedded server's)."""
        return self._store_url("postgres", "DATABASE_URL")

    def redis_url(self) -> str:
        """The Redis URL the stack uses."""
        return self._store_url("redis", "REDIS_URL")

    def _store_url(self, store: str, variable: str) -> str:
        """A store's URL from the supervisor's `  <store>  <url>` line, else the environment."""
        for line in self.lines:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == store and "://" in parts[1]:
                return parts[1]
        external = os.environ.get(variable)
        if external:
            return external
        raise StackError(f"the stack did not say where {store} listens")


def _part(cmdline: list[str]) -> str:
    """Which part of the stack a command line is: `sms`, `smsc-opA`, `postgres`, `redis`."""
    if "-m" in cmdline:
        module = cmdline[cmdline.index("-m") + 1]
        if module == "simulators.smsc" and "--name" in cmdline:
            return f"smsc-{cmdline[cmdline.index('--name') + 1]}"
        return module.rsplit(".", 1)[-1] if module.startswith("services.") else module
    program = Path(cmdline[0].split()[0]).name if cmdline and cmdline[0] else "?"
    for store in ("postgres", "redis"):
        if program.startswith(store):
            return store
    return program


def _pump(proc: subprocess.Popen[str], lines: list[str], ready: threading.Event) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(READY_LINE):
            ready.set()
    ready.set()


@contextmanager
def running_stack(
    *,
    var: Path,
    offset: int | None = None,
    demo: bool = False,
    exit_when_ready: bool = False,
    timeout: float = 120.0,
    echo: bool = False,
    processes: dict[str, int] | None = None,
) -> Iterator[RunningStack]:
    """Start the stack, wait until it is ready, yield it, then stop it (SIGINT, then SIGKILL)."""
    offset = random_offset() if offset is None else offset
    args = [sys.executable, "-m", "stack", "run", "--var", str(var), "--port-offset", str(offset)]
    if not demo:
        args.append("--no-demo")
    if exit_when_ready:
        args.append("--exit-when-ready")
    for service, count in (processes or {}).items():
        args += ["--processes", f"{service}={count}"]
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    running = RunningStack(proc=proc, offset=offset, var=var)
    ready = threading.Event()
    reader = threading.Thread(target=_pump, args=(proc, running.lines, ready), daemon=True)
    reader.start()
    try:
        if not ready.wait(timeout) or not any(
            line.startswith(READY_LINE) for line in running.lines
        ):
            raise StackError(f"the stack did not become ready:\n{running.output}{dead_logs(var)}")
        if echo:
            sys.stdout.write(running.output)
        yield running
    finally:
        stop(proc)
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        if echo:
            sys.stdout.flush()


def dead_logs(var: Path, *, lines: int = 25) -> str:
    """The end of each log that shows a crash or a refused setting (what made a service exit)."""
    tails = []
    for log in sorted((var / "log").glob("*.log")):
        text = log.read_text(encoding="utf-8", errors="replace")
        if "Traceback" in text or "invalid setting" in text:
            tail = "\n".join(text.splitlines()[-lines:])
            tails.append(f"\n--- {log.name} (end) ---\n{tail}")
    return "".join(tails)


def stop(proc: subprocess.Popen[str], *, timeout: float = 60.0) -> None:
    """Ask the supervisor to stop everything (SIGINT, as Ctrl-C), kill it if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()
