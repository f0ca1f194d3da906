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

from stack.services import SERVICES
from stack.supervisor import Supervisor

#: Printed by the supervisor once every service is SERVING.
READY_LINE = "tocsin: ready"


class StackError(RuntimeError):
    """The stack did not come up; the message carries its output."""


#: Offsets that keep every port of the stack (2525-9106 and 50051-50056, plus the offset)
#: outside Linux's ephemeral range (32768-60999): a port there may be taken at any moment as the
#: local end of somebody's outgoing connection (seen with two test workers: gRPC could not bind
#: 127.0.0.1:55632).
OFFSETS = range(11000, 15470, 10)


def random_offset() -> int:
    """A port offset unlikely to collide with `make run`, another test's stack, or anybody's
    outgoing connections."""
    return random.choice(OFFSETS)


@dataclass
class RunningStack:
    """A `python -m stack run` child and where its parts listen."""

    #: The supervisor whose one child is `python -m stack run`.
    supervisor: Supervisor
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

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each part of the stack (services, stores, simulators)."""
        return self.supervisor.cpu_seconds()

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
    plaintext: bool = False,
) -> Iterator[RunningStack]:
    """Start the stack, wait until it is ready, yield it, then stop it (SIGINT, then SIGKILL)."""
    offset = random_offset() if offset is None else offset
    args = ["-m", "stack", "run", "--var", str(var), "--port-offset", str(offset)]
    if not demo:
        args.append("--no-demo")
    if exit_when_ready:
        args.append("--exit-when-ready")
    for service, count in (processes or {}).items():
        args += ["--processes", f"{service}={count}"]
    if plaintext:
        args.append("--plaintext")
    supervisor = Supervisor()
    proc = supervisor.spawn(
        "stack",
        args,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        output="pipe",
        # What Ctrl-C sends it: the stack stops its own children, in order.
        stop_signal=signal.SIGINT,
    )
    running = RunningStack(supervisor=supervisor, proc=proc, offset=offset, var=var)
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
        supervisor.stop(timeout=60.0)
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        if echo:
            sys.stdout.flush()


def port_taken(var: Path) -> bool:
    """Whether a service of a stack that did not start found its port taken by another socket:
    shifted ports lie in the ephemeral range, where any client socket of this machine may sit."""
    return any("Failed to bind" in log.read_text() for log in (var / "log").glob("*.log"))


def dead_logs(var: Path, *, lines: int = 25) -> str:
    """The end of each log that shows a crash or a refused setting (what made a service exit)."""
    tails = []
    for log in sorted((var / "log").glob("*.log")):
        text = log.read_text(encoding="utf-8", errors="replace")
        if "Traceback" in text or "invalid setting" in text:
            tail = "\n".join(text.splitlines()[-lines:])
            tails.append(f"\n--- {log.name} (end) ---\n{tail}")
    return "".join(tails)
